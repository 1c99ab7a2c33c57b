#include "lib/packet.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace bw::test {
namespace {

void Put16(Bytes& b, size_t off, uint16_t v) {
  b[off] = v >> 8;
  b[off + 1] = v & 0xff;
}

}  // namespace

uint32_t ChecksumAdd(const uint8_t* p, size_t n, uint32_t sum) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (n & 1) sum += p[n - 1] << 8;
  return sum;
}

uint16_t ChecksumFold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

Addr Addr::Parse(std::string_view text) {
  Addr a;
  std::string s(text);
  if (inet_pton(AF_INET, s.c_str(), a.b) == 1) {
    a.family = 4;
  } else if (inet_pton(AF_INET6, s.c_str(), a.b) == 1) {
    a.family = 6;
  } else {
    std::fprintf(stderr, "packet builder: bad address '%s'\n", s.c_str());
    std::abort();
  }
  return a;
}

std::string Addr::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family == 4 ? AF_INET : AF_INET6, b, buf, sizeof(buf));
  return buf;
}

PacketBuilder& PacketBuilder::vlan(uint16_t vid, uint16_t tpid) {
  vlans_.push_back({tpid, vid});
  return *this;
}
PacketBuilder& PacketBuilder::ethertype(uint16_t type) {
  ethertype_ = type;
  return *this;
}
PacketBuilder& PacketBuilder::ipv4(std::string_view s, std::string_view d) {
  return ip(Addr::Parse(s), Addr::Parse(d));
}
PacketBuilder& PacketBuilder::ipv6(std::string_view s, std::string_view d) {
  return ip(Addr::Parse(s), Addr::Parse(d));
}
PacketBuilder& PacketBuilder::ip(const Addr& s, const Addr& d) {
  src_ = s;
  dst_ = d;
  have_ip_ = true;
  return *this;
}
PacketBuilder& PacketBuilder::ip_options(size_t bytes) {
  ip_opt_ = bytes;
  return *this;
}
PacketBuilder& PacketBuilder::ihl(uint8_t v) {
  ihl_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::tot_len(uint16_t v) {
  tot_len_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::version(uint8_t v) {
  version_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::v6_ext(uint8_t type, size_t bytes) {
  exts_.push_back({type, bytes});
  return *this;
}
PacketBuilder& PacketBuilder::fragment(uint16_t offset8, bool more) {
  frag_ = {offset8, more};
  return *this;
}
PacketBuilder& PacketBuilder::tcp(uint16_t s, uint16_t d, uint8_t flags) {
  l4_ = L4::kTcp;
  sport_ = s;
  dport_ = d;
  flags_ = flags;
  return *this;
}
PacketBuilder& PacketBuilder::tcp_options(size_t bytes) {
  tcp_opt_ = bytes;
  return *this;
}
PacketBuilder& PacketBuilder::doff(uint8_t v) {
  doff_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::seq(uint32_t v) {
  seq_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::urg(uint16_t ptr) {
  flags_ |= kUrg;
  urg_ = ptr;
  return *this;
}
PacketBuilder& PacketBuilder::udp(uint16_t s, uint16_t d) {
  l4_ = L4::kUdp;
  sport_ = s;
  dport_ = d;
  return *this;
}
PacketBuilder& PacketBuilder::icmp() {
  l4_ = L4::kIcmp;
  return *this;
}
PacketBuilder& PacketBuilder::l4proto(uint8_t proto) {
  l4_ = L4::kRaw;
  raw_proto_ = proto;
  return *this;
}
PacketBuilder& PacketBuilder::payload(std::string_view p) {
  payload_.assign(p.begin(), p.end());
  return *this;
}
PacketBuilder& PacketBuilder::payload(const Bytes& p) {
  payload_ = p;
  return *this;
}
PacketBuilder& PacketBuilder::pad_to(size_t n, uint8_t fill) {
  pad_to_ = n;
  pad_fill_ = fill;
  return *this;
}
PacketBuilder& PacketBuilder::truncate(size_t n) {
  truncate_ = n;
  return *this;
}

Bytes PacketBuilder::build() const {
  // L4 segment first (checksums need the pseudo header, filled in below).
  Bytes l4;
  uint8_t proto = 0;
  switch (l4_) {
    case L4::kTcp: {
      proto = 6;
      size_t hl = 20 + tcp_opt_;
      l4.assign(hl, 0);
      Put16(l4, 0, sport_);
      Put16(l4, 2, dport_);
      l4[4] = seq_ >> 24;
      l4[5] = (seq_ >> 16) & 0xff;
      l4[6] = (seq_ >> 8) & 0xff;
      l4[7] = seq_ & 0xff;
      l4[8] = 0x22;  // ack
      l4[12] = static_cast<uint8_t>((doff_ ? *doff_ : hl / 4) << 4);
      l4[13] = flags_;
      Put16(l4, 14, 64240);
      Put16(l4, 18, urg_);
      for (size_t i = 20; i < hl; ++i) l4[i] = 1;  // NOP options
      break;
    }
    case L4::kUdp:
      proto = 17;
      l4.assign(8, 0);
      Put16(l4, 0, sport_);
      Put16(l4, 2, dport_);
      Put16(l4, 4, static_cast<uint16_t>(8 + payload_.size()));
      break;
    case L4::kIcmp:
      proto = src_.family == 4 ? 1 : 58;
      l4.assign(8, 0);
      l4[0] = src_.family == 4 ? 8 : 128;  // echo request
      break;
    case L4::kRaw:
      proto = raw_proto_;
      break;
    case L4::kNone:
      break;
  }
  size_t l4_hdr = l4.size();
  l4.insert(l4.end(), payload_.begin(), payload_.end());

  // Pseudo-header checksum for TCP/UDP/ICMPv6.
  if (have_ip_ && l4_ != L4::kRaw && l4_ != L4::kNone) {
    size_t ck = proto == 6 ? 16 : proto == 17 ? 6 : 2;
    uint32_t sum = 0;
    if (proto != 1) {
      size_t alen = src_.family == 4 ? 4 : 16;
      sum = ChecksumAdd(src_.b, alen, sum);
      sum = ChecksumAdd(dst_.b, alen, sum);
      sum += proto;
      sum += static_cast<uint32_t>(l4.size());
    }
    sum = ChecksumAdd(l4.data(), l4.size(), sum);
    uint16_t c = ChecksumFold(sum);
    if (proto == 17 && c == 0) c = 0xffff;
    Put16(l4, ck, c);
  }
  (void)l4_hdr;

  Bytes ipb;
  if (have_ip_ && src_.family == 4) {
    size_t hl = 20 + ip_opt_;
    ipb.assign(hl, 0);
    ipb[0] = static_cast<uint8_t>(((version_ ? *version_ : 4) << 4) | (ihl_ ? *ihl_ : hl / 4));
    Put16(ipb, 2, tot_len_ ? *tot_len_ : static_cast<uint16_t>(hl + l4.size()));
    Put16(ipb, 4, 0x1234);
    if (frag_) Put16(ipb, 6, static_cast<uint16_t>((frag_->second ? 0x2000 : 0) | frag_->first));
    ipb[8] = 64;
    ipb[9] = proto;
    std::memcpy(&ipb[12], src_.b, 4);
    std::memcpy(&ipb[16], dst_.b, 4);
    for (size_t i = 20; i < hl; ++i) ipb[i] = 1;  // NOP options
    Put16(ipb, 10, ChecksumFold(ChecksumAdd(ipb.data(), hl)));
    ipb.insert(ipb.end(), l4.begin(), l4.end());
  } else if (have_ip_) {
    // Extension headers, then the fragment header if any, chained by next-header.
    std::vector<std::pair<uint8_t, Bytes>> chain;
    for (const Ext& e : exts_) {
      Bytes h(e.bytes, 0);
      if (e.type == kIpprotoAh)
        h[1] = static_cast<uint8_t>(e.bytes / 4 - 2);
      else
        h[1] = static_cast<uint8_t>(e.bytes / 8 - 1);
      if (e.type != kIpprotoAh && e.bytes > 2) h[2] = 1, h[3] = static_cast<uint8_t>(e.bytes - 4);  // PadN
      chain.emplace_back(e.type, std::move(h));
    }
    if (frag_) {
      Bytes h(8, 0);
      Put16(h, 2, static_cast<uint16_t>((frag_->first << 3) | (frag_->second ? 1 : 0)));
      h[7] = 0x42;
      chain.emplace_back(kIpprotoFragment, std::move(h));
    }
    Bytes exts;
    for (size_t i = 0; i < chain.size(); ++i) {
      Bytes& h = chain[i].second;
      h[0] = i + 1 < chain.size() ? chain[i + 1].first : proto;
      exts.insert(exts.end(), h.begin(), h.end());
    }
    ipb.assign(40, 0);
    ipb[0] = static_cast<uint8_t>((version_ ? *version_ : 6) << 4);
    Put16(ipb, 4, tot_len_ ? *tot_len_ : static_cast<uint16_t>(exts.size() + l4.size()));
    ipb[6] = chain.empty() ? proto : chain[0].first;
    ipb[7] = 64;
    std::memcpy(&ipb[8], src_.b, 16);
    std::memcpy(&ipb[24], dst_.b, 16);
    ipb.insert(ipb.end(), exts.begin(), exts.end());
    ipb.insert(ipb.end(), l4.begin(), l4.end());
  }

  Bytes f = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};  // dst, src MAC
  uint16_t l3type = ethertype_ ? *ethertype_ : (!have_ip_ || src_.family == 4 ? 0x0800 : 0x86dd);
  for (const Vlan& v : vlans_) {
    f.push_back(v.tpid >> 8);
    f.push_back(v.tpid & 0xff);
    f.push_back(v.vid >> 8);
    f.push_back(v.vid & 0xff);
  }
  f.push_back(l3type >> 8);
  f.push_back(l3type & 0xff);
  f.insert(f.end(), ipb.begin(), ipb.end());
  if (f.size() < pad_to_) f.resize(pad_to_, pad_fill_);
  if (truncate_ && *truncate_ < f.size()) f.resize(*truncate_);
  return f;
}

}  // namespace bw::test
