// reference.cpp — the data plane's rules as a plain userspace parser and decision (see reference.hpp).
//
// Written from the rules, on purpose in a different shape from bpf/: frame bytes and sizes
// throughout, one bounds check per read against the limit that applies (the frame for headers that
// locate the datagram, the IP datagram for everything inside it).
#include "lib/reference.hpp"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace bw::test {
namespace {

constexpr uint16_t kEthIp = 0x0800, kEthIpv6 = 0x86dd, kTpid8021q = 0x8100, kTpid8021ad = 0x88a8;
constexpr uint8_t kProtoTcp = 6, kProtoUdp = 17;
constexpr uint8_t kSyn = 0x02;

uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

bool IsV6ExtHeader(uint8_t next) {
  return next == 0 || next == 43 || next == 44 || next == 51 || next == 60;
}

// What parsing found. Addresses are good unless status is kNonIp or kMalformed.
struct Parsed {
  enum Status { kOk, kNonIp, kMalformed, kBadL4, kExtLimit } status = kMalformed;
  int family = 0;
  uint8_t saddr[16] = {};
  uint8_t daddr[16] = {};
  bool later_fragment = false;
  uint8_t l4proto = 0;      // 0 unless known (later fragments, extension limit: unknown)
  bool have_ports = false;  // TCP or UDP header valid
  uint16_t sport = 0, dport = 0;
  uint8_t tcp_flags = 0;
  size_t payload_off = 0, payload_len = 0;  // TCP payload by the IP length fields
  std::string trace;
};

void ParseL4(const uint8_t* f, size_t l4, size_t ip_end, Parsed& p) {
  if (p.l4proto == kProtoTcp) {
    if (l4 + 20 > ip_end) {
      p.status = Parsed::kBadL4;
      absl::StrAppend(&p.trace, " tcp: header past datagram end;");
      return;
    }
    size_t hdr = (f[l4 + 12] >> 4) * 4u;
    if (hdr < 20 || l4 + hdr > ip_end) {
      p.status = Parsed::kBadL4;
      absl::StrAppend(&p.trace, " tcp: bad data offset ", hdr, ";");
      return;
    }
    p.have_ports = true;
    p.sport = Be16(f + l4);
    p.dport = Be16(f + l4 + 2);
    p.tcp_flags = f[l4 + 13];
    p.payload_off = l4 + hdr;
    p.payload_len = ip_end - p.payload_off;
    absl::StrAppend(&p.trace, absl::StrFormat(" tcp %u->%u flags=0x%02x payload=%u;", p.sport,
                                              p.dport, p.tcp_flags, p.payload_len));
  } else if (p.l4proto == kProtoUdp) {
    if (l4 + 8 > ip_end) {
      p.status = Parsed::kBadL4;
      absl::StrAppend(&p.trace, " udp: header past datagram end;");
      return;
    }
    p.have_ports = true;
    p.sport = Be16(f + l4);
    p.dport = Be16(f + l4 + 2);
    absl::StrAppend(&p.trace, " udp ", p.sport, "->", p.dport, ";");
  } else {
    absl::StrAppend(&p.trace, " l4 proto ", p.l4proto, ";");
  }
}

Parsed ParseIpv4(const uint8_t* f, size_t len, size_t l3) {
  Parsed p;
  if (len < l3 + 20) {
    p.trace = "ipv4: shorter than 20 bytes;";
    return p;
  }
  const uint8_t* ip = f + l3;
  unsigned version = ip[0] >> 4, ihl = ip[0] & 0xf;
  size_t hdr = ihl * 4u, total = Be16(ip + 2);
  if (version != 4 || ihl < 5) {
    p.trace = absl::StrCat("ipv4: version ", version, " ihl ", ihl, ";");
    return p;
  }
  if (total < hdr || l3 + total > len || l3 + hdr > len) {
    p.trace = absl::StrCat("ipv4: tot_len ", total, " (header ", hdr, ", frame ", len, ");");
    return p;
  }
  p.status = Parsed::kOk;
  p.family = 4;
  std::memcpy(p.saddr, ip + 12, 4);
  std::memcpy(p.daddr, ip + 16, 4);
  unsigned frag_offset = Be16(ip + 6) & 0x1fff;
  p.trace = absl::StrCat("ipv4 hdr=", hdr, " tot=", total, ";");
  if (frag_offset != 0) {
    p.later_fragment = true;
    absl::StrAppend(&p.trace, " later fragment;");
    return p;
  }
  p.l4proto = ip[9];
  ParseL4(f, l3 + hdr, l3 + total, p);
  return p;
}

Parsed ParseIpv6(const uint8_t* f, size_t len, size_t l3) {
  Parsed p;
  if (len < l3 + 40) {
    p.trace = "ipv6: shorter than 40 bytes;";
    return p;
  }
  const uint8_t* ip = f + l3;
  if ((ip[0] >> 4) != 6) {
    p.trace = absl::StrCat("ipv6: version ", ip[0] >> 4, ";");
    return p;
  }
  size_t ip_end = l3 + 40 + Be16(ip + 4);
  if (ip_end > len) {
    p.trace = absl::StrCat("ipv6: payload_len ", Be16(ip + 4), " past frame end ", len, ";");
    return p;
  }
  p.family = 6;
  std::memcpy(p.saddr, ip + 8, 16);
  std::memcpy(p.daddr, ip + 24, 16);
  p.trace = absl::StrCat("ipv6 end=", ip_end, ";");
  uint8_t next = ip[6];
  size_t pos = l3 + 40;
  for (int walked = 0; walked < BW_V6_EXT_MAX && IsV6ExtHeader(next); ++walked) {
    size_t hlen;
    if (next == 44) {
      hlen = 8;
    } else {
      if (pos + 2 > ip_end) {
        p.trace += absl::StrCat(" ext ", next, " at ", pos, ": no room for its length;");
        return p;  // malformed
      }
      hlen = next == 51 ? (f[pos + 1] + 2u) * 4u : (f[pos + 1] + 1u) * 8u;
    }
    if (pos + hlen > ip_end) {
      p.trace += absl::StrCat(" ext ", next, " at ", pos, " len ", hlen, ": past datagram end;");
      return p;  // malformed
    }
    absl::StrAppend(&p.trace, " ext ", next, " len ", hlen, ";");
    if (next == 44 && (Be16(f + pos + 2) >> 3) != 0) {
      p.status = Parsed::kOk;
      p.later_fragment = true;
      absl::StrAppend(&p.trace, " later fragment;");
      return p;
    }
    next = f[pos];
    pos += hlen;
  }
  if (IsV6ExtHeader(next)) {
    p.status = Parsed::kExtLimit;
    absl::StrAppend(&p.trace, " extension header limit (next ", next, ");");
    return p;
  }
  p.status = Parsed::kOk;
  p.l4proto = next;
  ParseL4(f, pos, ip_end, p);
  return p;
}

Parsed Parse(const uint8_t* f, size_t len) {
  if (len < 14) {
    Parsed p;
    p.trace = "shorter than Ethernet;";
    return p;
  }
  uint16_t type = Be16(f + 12);
  size_t off = 14;
  int tags = 0;
  while (type == kTpid8021q || type == kTpid8021ad) {
    if (tags == 2) break;  // a third tag: not parsed, so not IP
    if (off + 4 > len) {
      Parsed p;
      p.trace = "VLAN tag past frame end;";
      return p;
    }
    type = Be16(f + off + 2);
    off += 4;
    ++tags;
  }
  Parsed p;
  if (type == kEthIp) {
    p = ParseIpv4(f, len, off);
  } else if (type == kEthIpv6) {
    p = ParseIpv6(f, len, off);
  } else {
    p.status = Parsed::kNonIp;
    p.trace = absl::StrFormat("ethertype 0x%04x;", type);
    return p;
  }
  p.trace = absl::StrCat(tags, " vlan; ", p.trace);
  return p;
}

bool PrefixMatches(const uint8_t* prefix, unsigned len, const uint8_t* addr) {
  for (unsigned bit = 0; bit < len; ++bit) {
    uint8_t mask = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((prefix[bit / 8] & mask) != (addr[bit / 8] & mask)) return false;
  }
  return true;
}

void MaskTo(uint8_t* addr, unsigned len, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) {
    if (len >= (i + 1) * 8) continue;
    unsigned keep = len > i * 8 ? len - i * 8 : 0;
    addr[i] &= static_cast<uint8_t>(0xff00 >> keep);
  }
}

std::string AddrText(int family, const uint8_t* a) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family == 4 ? AF_INET : AF_INET6, a, buf, sizeof(buf));
  return buf;
}

}  // namespace

const char* RefPathName(RefPath p) {
  switch (p) {
    case RefPath::kNonIp: return "non-IP";
    case RefPath::kMalformedL3: return "malformed L2/L3 (pass, no address check)";
    case RefPath::kSafelist: return "safelisted remote (pass)";
    case RefPath::kBlock: return "blocked remote (drop + block event)";
    case RefPath::kAddrOnly: return "address check only: fragment/bad L4/ext limit/non-TCP (pass)";
    case RefPath::kPortUnwatched: return "TCP, no watched port (pass)";
    case RefPath::kFlowDrop: return "later packet of a banner-dropped flow (drop)";
    case RefPath::kBannerOff: return "watched port, banner action off (pass)";
    case RefPath::kNoBanner: return "watched port, no \"SSH-\" (pass)";
    case RefPath::kBannerAlert: return "banner alert (pass + event)";
    case RefPath::kBannerDrop: return "banner drop (drop + event)";
    case RefPath::kCount: break;
  }
  return "?";
}

std::string RefPrefix::ToString() const {
  return absl::StrCat(AddrText(family, addr), "/", len, " act=", action, " list=", list_id,
                      " ref=", entry_ref);
}

std::string RefEvent::ToString() const {
  int fam = family == BW_FAMILY_V4 ? 4 : 6;
  std::string b;
  for (unsigned char c : banner) b += (c >= 0x20 && c < 0x7f) ? std::string(1, c) : absl::StrFormat("\\x%02x", c);
  return absl::StrFormat(
      "kind=%u dir=%u fam=%u verdict=%u list=%u ref=%u act=%u plen=%u l4=%u flags=0x%02x %s:%u -> "
      "%s:%u side=%u banner(%u)=\"%s\"",
      kind, direction, family, verdict, list_id, entry_ref, list_action, prefixlen, l4proto,
      tcp_flags, AddrText(fam, saddr), sport, AddrText(fam, daddr), dport, banner_side,
      banner.size(), b);
}

ReferenceModel::ReferenceModel(const RefConfig& cfg) : cfg_(cfg) {
  for (RefPrefix p : cfg.prefixes) {
    MaskTo(p.addr, p.len, p.family == 4 ? 4 : 16);
    bool replaced = false;
    for (Entry& e : entries_) {
      if (e.prefix.family == p.family && e.prefix.len == p.len &&
          std::memcmp(e.prefix.addr, p.addr, 16) == 0) {
        e.prefix = p;
        replaced = true;
      }
    }
    if (!replaced) entries_.push_back({p, 0, 0});
  }
}

ReferenceModel::Entry* ReferenceModel::Lookup(int family, const uint8_t* addr) {
  Entry* best = nullptr;
  for (Entry& e : entries_) {
    if (e.prefix.family != family || !PrefixMatches(e.prefix.addr, e.prefix.len, addr)) continue;
    if (!best || e.prefix.len > best->prefix.len) best = &e;
  }
  return best;
}

ReferenceModel::FlowKey ReferenceModel::MakeFlowKey(uint8_t family, const uint8_t a[16],
                                                    uint16_t aport, const uint8_t b[16],
                                                    uint16_t bport) {
  auto endpoint = [](const uint8_t* addr, uint16_t port) {
    std::string s(reinterpret_cast<const char*>(addr), 16);
    s += static_cast<char>(port >> 8);
    s += static_cast<char>(port & 0xff);
    return s;
  };
  std::string x = endpoint(a, aport), y = endpoint(b, bport);
  if (y < x) std::swap(x, y);
  return std::string(1, static_cast<char>(family)) + x + y;
}

RefResult ReferenceModel::Run(const uint8_t* f, size_t len, bw_direction dir) {
  RefResult r;
  auto count = [&](bw_counter c) { r.counters[c]++; };
  count(BW_CNT_packets);

  Parsed p = Parse(f, len);
  r.trace = p.trace;
  if (p.status == Parsed::kNonIp) {
    count(BW_CNT_non_ip);
    r.path = RefPath::kNonIp;
    return r;
  }
  if (p.status == Parsed::kMalformed) {
    count(BW_CNT_malformed);
    r.path = RefPath::kMalformedL3;
    return r;
  }
  count(p.family == 4 ? BW_CNT_ipv4 : BW_CNT_ipv6);
  if (p.later_fragment)
    count(BW_CNT_fragments);
  else if (p.status == Parsed::kExtLimit)
    count(BW_CNT_v6_ext_limit);
  else if (p.l4proto == kProtoTcp)
    count(BW_CNT_tcp);
  else if (p.l4proto == kProtoUdp)
    count(BW_CNT_udp);
  else
    count(BW_CNT_other_l4);
  if (p.status == Parsed::kBadL4) count(BW_CNT_malformed);

  // The remote: IPv4-mapped IPv6 addresses go to the IPv4 list.
  const uint8_t* remote = dir == BW_DIR_INGRESS ? p.saddr : p.daddr;
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  Entry* entry = nullptr;
  if (p.family == 4)
    entry = Lookup(4, remote);
  else if (std::memcmp(remote, kMapped, 12) == 0)
    entry = Lookup(4, remote + 12);
  else
    entry = Lookup(6, remote);
  absl::StrAppend(&r.trace, " remote ", AddrText(p.family, remote), " -> ",
                  entry ? entry->prefix.ToString() : std::string("unlisted"), ";");

  auto event = [&](uint8_t kind, uint8_t verdict) {
    RefEvent e;
    e.kind = kind;
    e.direction = static_cast<uint8_t>(dir);
    e.family = p.family == 4 ? BW_FAMILY_V4 : BW_FAMILY_V6;
    e.verdict = verdict;
    if (entry) {
      e.list_id = entry->prefix.list_id;
      e.entry_ref = entry->prefix.entry_ref;
      e.list_action = entry->prefix.action;
      e.prefixlen = entry->prefix.len;
    }
    e.l4proto = p.l4proto;
    e.tcp_flags = p.tcp_flags;
    std::memcpy(e.saddr, p.saddr, 16);
    std::memcpy(e.daddr, p.daddr, 16);
    e.sport = p.sport;
    e.dport = p.dport;
    count(BW_CNT_events);
    return e;
  };

  if (entry && (entry->prefix.action & BW_ACTION_SAFELIST)) {
    count(BW_CNT_safelist_passes);
    r.path = RefPath::kSafelist;
    return r;
  }
  if (entry && (entry->prefix.action & BW_ACTION_BLOCK)) {
    count(BW_CNT_block_drops);
    entry->drops++;
    r.verdict = BW_VERDICT_DROP;
    r.events.push_back(event(BW_EV_BLOCK, BW_VERDICT_DROP));
    r.path = RefPath::kBlock;
    return r;
  }
  if (p.status != Parsed::kOk || p.later_fragment || p.l4proto != kProtoTcp) {
    r.path = RefPath::kAddrOnly;
    return r;
  }

  if (entry && (entry->prefix.action & BW_ACTION_WATCH) && (p.tcp_flags & kSyn)) {
    count(BW_CNT_watch_hits);
    entry->hits++;
    r.events.push_back(event(BW_EV_WATCH, BW_VERDICT_PASS));
    r.watch_event = true;
  }

  bool src_watched = cfg_.watched[p.sport], dst_watched = cfg_.watched[p.dport];
  if (!src_watched && !dst_watched) {
    r.path = RefPath::kPortUnwatched;
    return r;
  }
  uint8_t act_srv = src_watched ? cfg_.banner_action[BW_SIDE_SERVER] : uint8_t{BW_BANNER_OFF};
  uint8_t act_cli = dst_watched ? cfg_.banner_action[BW_SIDE_CLIENT] : uint8_t{BW_BANNER_OFF};
  FlowKey flow = MakeFlowKey(p.family, p.saddr, p.sport, p.daddr, p.dport);
  if (cfg_.banner_action[BW_SIDE_SERVER] == BW_BANNER_DROP ||
      cfg_.banner_action[BW_SIDE_CLIENT] == BW_BANNER_DROP) {
    if (flows_.count(flow)) {
      count(BW_CNT_flow_drops);
      r.verdict = BW_VERDICT_DROP;
      r.path = RefPath::kFlowDrop;
      absl::StrAppend(&r.trace, " flow was banner-dropped;");
      return r;
    }
  }
  if (act_srv == BW_BANNER_OFF && act_cli == BW_BANNER_OFF) {
    r.path = RefPath::kBannerOff;
    return r;
  }
  if (p.payload_len < 4 || std::memcmp(f + p.payload_off, "SSH-", 4) != 0) {
    r.path = RefPath::kNoBanner;
    return r;
  }
  uint8_t side = act_srv != BW_BANNER_OFF ? BW_SIDE_SERVER : BW_SIDE_CLIENT;
  uint8_t act = side == BW_SIDE_SERVER ? act_srv : act_cli;
  count(side == BW_SIDE_SERVER ? BW_CNT_banner_server : BW_CNT_banner_client);
  r.path = RefPath::kBannerAlert;
  if (act == BW_BANNER_DROP) {
    flows_.insert(flow);
    count(BW_CNT_banner_drops);
    r.verdict = BW_VERDICT_DROP;
    r.path = RefPath::kBannerDrop;
  }
  RefEvent e = event(BW_EV_BANNER, r.verdict);
  e.banner_side = side;
  size_t n = p.payload_len < BW_BANNER_MAX ? p.payload_len : BW_BANNER_MAX;
  e.banner.assign(reinterpret_cast<const char*>(f + p.payload_off), n);
  r.events.push_back(std::move(e));
  absl::StrAppend(&r.trace, " banner side ", side, " action ", act, ";");
  return r;
}

}  // namespace bw::test
