// reference.cpp — the data plane's rules as a plain userspace parser and decision (see
// reference.hpp).
//
// Written from the rules, on purpose in a different shape from bpf/: frame bytes and sizes
// throughout, one bounds check per read against the limit that applies (the frame for headers that
// locate the datagram, the IP datagram for everything inside it). The state kept between frames
// (first payloads, split banners, tunnels) lives in ordinary std::maps keyed by endpoint strings.
#include "lib/reference.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace bw::test {
namespace {

constexpr uint16_t kEthIp = 0x0800, kEthIpv6 = 0x86dd, kTpid8021q = 0x8100, kTpid8021ad = 0x88a8;
constexpr uint8_t kProtoTcp = 6, kProtoUdp = 17, kProtoIcmp = 1, kProtoIcmp6 = 58;
constexpr uint8_t kSyn = 0x02, kAck = 0x10, kUrg = 0x20;

uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t Be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

bool IsV6ExtHeader(uint8_t next) {
  return next == 0 || next == 43 || next == 44 || next == 51 || next == 60;
}

// What parsing found. Addresses are good unless status is kNonIp or kMalformed.
struct Parsed {
  enum Status { kOk, kNonIp, kMalformed, kBadL4, kExtLimit, kVlanLimit } status = kMalformed;
  int family = 0;
  uint8_t saddr[16] = {};
  uint8_t daddr[16] = {};
  bool later_fragment = false;
  uint8_t l4proto = 0;      // 0 unless known (later fragments, extension limit: unknown)
  bool have_ports = false;  // TCP or UDP header valid
  uint16_t sport = 0, dport = 0;
  uint8_t tcp_flags = 0;
  uint32_t seq = 0;                         // TCP sequence number
  uint16_t urg_ptr = 0;                     // TCP urgent pointer
  // IP fragments: the fragment's place in the datagram, more to come, the datagram's id and
  // protocol, where its fragmentable part starts in the frame. A later fragment's payload_off and
  // payload_len are its data.
  size_t frag_off = 0, frag_start = 0;
  bool frag_more = false;
  uint8_t frag_proto = 0;
  uint32_t frag_id = 0;
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
    p.seq = Be32(f + l4 + 4);
    p.urg_ptr = Be16(f + l4 + 18);
    p.payload_off = l4 + hdr;
    p.payload_len = ip_end - p.payload_off;
    absl::StrAppend(&p.trace, absl::StrFormat(" tcp %u->%u flags=0x%02x seq=%u payload=%u;",
                                              p.sport, p.dport, p.tcp_flags, p.seq, p.payload_len));
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
  } else if (p.l4proto == kProtoIcmp || p.l4proto == kProtoIcmp6) {
    // Type and code in the port fields, as events carry them (all of a test frame is readable).
    const bool read = l4 + 2 <= ip_end;
    p.sport = read ? f[l4] : BW_ICMP_UNREAD;
    p.dport = read ? f[l4 + 1] : BW_ICMP_UNREAD;
    absl::StrAppend(&p.trace, " icmp type ", p.sport, " code ", p.dport, ";");
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
  p.frag_off = frag_offset * 8u;
  p.frag_more = Be16(ip + 6) & 0x2000;
  p.frag_proto = ip[9];
  p.frag_id = Be16(ip + 4);
  p.frag_start = l3 + hdr;
  if (frag_offset != 0) {
    p.later_fragment = true;
    p.payload_off = l3 + hdr;
    p.payload_len = total - hdr;
    absl::StrAppend(&p.trace, " later fragment at ", p.frag_off, ";");
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
    if (next == 44) {
      p.frag_off = Be16(f + pos + 2) & 0xfff8;
      p.frag_more = f[pos + 3] & 1;
      p.frag_proto = f[pos];
      p.frag_id = (uint32_t{Be16(f + pos + 4)} << 16) | Be16(f + pos + 6);
      p.frag_start = pos + 8;
      if (p.frag_off != 0) {
        p.status = Parsed::kOk;
        p.later_fragment = true;
        p.payload_off = pos + 8;
        p.payload_len = ip_end - (pos + 8);
        absl::StrAppend(&p.trace, " later fragment at ", p.frag_off, ";");
        return p;
      }
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
    if (tags == BW_VLAN_MAX) {  // one tag more than walked: addresses unknown
      Parsed p;
      p.status = Parsed::kVlanLimit;
      p.trace = absl::StrCat(tags, " vlan and more;");
      return p;
    }
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

std::string Printable(std::string_view b) {
  std::string s;
  for (unsigned char c : b)
    s += (c >= 0x20 && c < 0x7f) ? std::string(1, c) : absl::StrFormat("\\x%02x", c);
  return s;
}

constexpr size_t kScanWindow = BW_SCAN_MAX;  // payload bytes searched for lines / a head's end
constexpr size_t kMaxPreline = BW_LINE_MAX;  // bytes before the '\n' of a line before the version
constexpr size_t kConnectWindow = 64;        // payload bytes a CONNECT line is read from

bool HasPrefix(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// RFC 4253 4.2 in a server's first payload: the offset of a later line that starts "SSH-", all
// lines before it at most kMaxPreline bytes; 0 when there is none in the first kScanWindow bytes.
size_t VersionAfterLines(std::string_view pl, bool* too_long = nullptr) {
  std::string_view w = pl.substr(0, kScanWindow);
  size_t start = 0;
  for (;;) {
    size_t nl = w.find('\n', start);
    // The scan reads a line break only with four bytes after it in the window.
    if (nl == std::string_view::npos || nl + 5 > w.size()) return 0;
    if (nl - start > kMaxPreline) {
      if (too_long) *too_long = true;  // not a version exchange: the search ends
      return 0;
    }
    start = nl + 1;
    if (HasPrefix(w.substr(start), "SSH-")) return start;
  }
}

// An HTTP reply's head ends at its first blank line; the offset of "SSH-" right after it, 0 when
// the first kScanWindow bytes hold no such thing.
size_t VersionAfterHead(std::string_view pl) {
  std::string_view w = pl.substr(0, kScanWindow);
  size_t blank = w.find("\r\n\r\n");
  if (blank == std::string_view::npos) return 0;
  return HasPrefix(w.substr(blank + 4), "SSH-") ? blank + 4 : 0;
}

// A fragmented datagram as the receiver reassembles it: family, addresses, id (TCP only here).
std::string FragKey(const Parsed& p) {
  std::string k(1, static_cast<char>(p.family));
  k.append(reinterpret_cast<const char*>(p.saddr), 16);
  k.append(reinterpret_cast<const char*>(p.daddr), 16);
  k.append(reinterpret_cast<const char*>(&p.frag_id), 4);
  return k;
}

}  // namespace

const char* RefPathName(RefPath p) {
  switch (p) {
    case RefPath::kNonIp: return "non-IP";
    case RefPath::kMalformedL3: return "malformed L2/L3 (pass, no address check)";
    case RefPath::kSafelist: return "safelisted remote (pass)";
    case RefPath::kBlock: return "blocked remote (drop + block event)";
    case RefPath::kUnparsed: return "more VLAN tags or IPv6 extension headers than walked (unparsed action)";
    case RefPath::kAddrOnly: return "address check only: fragment/bad L4/ext limit/non-TCP (pass)";
    case RefPath::kPortUnwatched:
      return "TCP, no watched or proxy port (pass)";
    case RefPath::kFlowDrop: return "later packet of a banner-dropped flow (drop)";
    case RefPath::kBannerOff:
      return "watched/proxy port, every applicable check off (pass)";
    case RefPath::kSynAck:
      return "SYN-ACK without payload (pass, bw_first if checked)";
    case RefPath::kNoPayload:
      return "checked port, no payload (pass)";
    case RefPath::kConnectTunnel:
      return "CONNECT to a watched port (tunnel requested)";
    case RefPath::kConnectIgnored:
      return "\"CONN...\" to a proxy port, not followed (pass)";
    case RefPath::kTunnelOpen:
      return "proxy 200 without banner after the head (tunnel open)";
    case RefPath::kTunnelClosed:
      return "proxy refusal / open tunnel without banner (forgotten)";
    case RefPath::kTunnelWait:
      return "proxy segment, not an HTTP reply (tunnel kept)";
    case RefPath::kSplitWait:
      return "start of \"SSH-\" in a short segment (partial kept)";
    case RefPath::kStreamLines:
      return "server stream: lines followed into the next segment";
    case RefPath::kFirstPayload:
      return "server first payload, no banner, no event (pass)";
    case RefPath::kNonTls:
      return "server first payload neither TLS nor HTTP (pass + event)";
    case RefPath::kNoBanner:
      return "checked port, no banner (pass)";
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
  return absl::StrFormat(
      "kind=%u dir=%u fam=%u verdict=%u list=%u ref=%u act=%u plen=%u l4=%u flags=0x%02x %s:%u -> "
      "%s:%u side=%u match=%u banner(%u)=\"%s\"",
      kind, direction, family, verdict, list_id, entry_ref, list_action, prefixlen, l4proto,
      tcp_flags, AddrText(fam, saddr), sport, AddrText(fam, daddr), dport, banner_side, match,
      banner.size(), Printable(banner));
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

void ReferenceModel::Reconfigure(const RefConfig& cfg) {
  cfg_.port_flags = cfg.port_flags;
  cfg_.banner_action[BW_SIDE_SERVER] = cfg.banner_action[BW_SIDE_SERVER];
  cfg_.banner_action[BW_SIDE_CLIENT] = cfg.banner_action[BW_SIDE_CLIENT];
  cfg_.flags = cfg.flags;
  cfg_.unparsed = cfg.unparsed;
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

ReferenceModel::DirKey ReferenceModel::MakeDirKey(uint8_t family, const uint8_t a[16],
                                                  uint16_t aport, const uint8_t b[16],
                                                  uint16_t bport) {
  DirKey k(1, static_cast<char>(family));
  for (auto [addr, port] : {std::pair{a, aport}, std::pair{b, bport}}) {
    k.append(reinterpret_cast<const char*>(addr), 16);
    k += static_cast<char>(port >> 8);
    k += static_cast<char>(port & 0xff);
  }
  return k;
}

std::string ReferenceModel::DirKeyText(const DirKey& k) {
  if (k.size() != 37) return absl::StrCat("(bad key of ", k.size(), " bytes)");
  int fam = k[0] == BW_FAMILY_V4 ? 4 : 6;
  auto ep = [&](size_t at) {
    const auto* u = reinterpret_cast<const uint8_t*>(k.data() + at);
    std::string a = AddrText(fam, u);
    return absl::StrCat(fam == 6 ? "[" + a + "]" : a, ":", (u[16] << 8) | u[17]);
  };
  return absl::StrCat(ep(1), " > ", ep(19));
}

int ReferenceModel::ConnectPort(const uint8_t* payload, size_t len, uint32_t quirks) {
  std::string_view w(reinterpret_cast<const char*>(payload), std::min(len, kConnectWindow));
  if (w.size() < 12 || !HasPrefix(w, "CONNECT ")) return -1;
  // The target runs to the first space, which must be in the window.
  size_t space = w.find(' ', 8);
  if (space == std::string_view::npos) {
    if (!(quirks & kQuirkConnectWindowEnd) || w.size() < kConnectWindow) return -1;
    space = w.size();
  }
  std::string_view target = w.substr(8, space - 8);
  // The digits after the last ':', as a number saturated above 65535; -1 when anything else
  // (']' included) follows the colon.
  auto port_after = [&](size_t colon, bool* any_digit) -> long {
    long v = 0;
    *any_digit = false;
    for (size_t i = colon + 1; i < target.size() && target[i] != ':'; ++i) {
      char c = target[i];
      if (c < '0' || c > '9') return -1;
      *any_digit = true;
      v = std::min(v * 10 + (c - '0'), 65536L);
    }
    return v;
  };
  size_t last = target.rfind(':');
  if (last == std::string_view::npos) return -1;
  if (quirks & kQuirkConnectAnyOverflow) {
    // The kernel refuses as soon as the digits after any colon pass 65535, up to the first
    // character that is neither a digit nor ']'.
    for (size_t c = target.find(':'); c < last; c = target.find(':', c + 1)) {
      long v = 0;
      for (size_t i = c + 1; i < target.size(); ++i) {
        char ch = target[i];
        if (ch == ']') continue;
        if (ch < '0' || ch > '9') break;
        v = std::min(v * 10 + (ch - '0'), 65536L);
      }
      if (v > 65535) return -1;
    }
  }
  bool digits = false;
  long port = port_after(last, &digits);
  if (port < 0 || port > 65535) return -1;
  if (!digits && !(quirks & kQuirkConnectEmptyPort)) return -1;
  return static_cast<int>(port);
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
  if (p.status == Parsed::kVlanLimit) {
    count(BW_CNT_vlan_limit);
    r.path = RefPath::kUnparsed;
    if (cfg_.unparsed == BW_UNPARSED_DROP) {
      count(BW_CNT_unparsed_drops);
      r.verdict = BW_VERDICT_DROP;
    }
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
  if (p.status == Parsed::kExtLimit && cfg_.unparsed != BW_UNPARSED_PASS) {
    r.path = RefPath::kUnparsed;
    if (cfg_.unparsed == BW_UNPARSED_DROP) {
      count(BW_CNT_unparsed_drops);
      r.verdict = BW_VERDICT_DROP;
    } else {
      r.events.push_back(event(BW_EV_UNPARSED, BW_VERDICT_PASS));
    }
    return r;
  }
  // A later fragment of a TCP datagram whose first fragment was seen on a watched or proxy port:
  // the payload bytes it carries are that segment's, from where they start.
  bool resumed = false;
  if (p.status == Parsed::kOk && p.later_fragment && p.frag_proto == kProtoTcp) {
    auto it = frags_.find(FragKey(p));
    if (it == frags_.end()) {
      count(BW_CNT_frag_unmatched);
      absl::StrAppend(&r.trace, " fragment: first one not seen;");
    } else {
      const Frag& fr = it->second;
      const size_t end = p.frag_off + p.payload_len;
      const size_t start = std::max<size_t>(p.frag_off, fr.pay_start);
      if (end > start) {
        const uint32_t moved = static_cast<uint32_t>(start - fr.pay_start);
        p.sport = fr.sport;
        p.dport = fr.dport;
        p.seq = fr.seq + moved;
        p.tcp_flags = fr.tcp_flags;
        p.urg_ptr = fr.urg_ptr > moved ? static_cast<uint16_t>(fr.urg_ptr - moved) : 0;
        if (!p.urg_ptr) p.tcp_flags &= static_cast<uint8_t>(~kUrg);
        p.payload_off += start - p.frag_off;
        p.payload_len = end - start;
        p.l4proto = kProtoTcp;
        resumed = true;
        count(BW_CNT_frag_followed);
        absl::StrAppend(&r.trace, " fragment: segment seq ", p.seq, " payload ", p.payload_len,
                        ";");
      }
    }
  }
  if (!resumed && (p.status != Parsed::kOk || p.later_fragment || p.l4proto != kProtoTcp)) {
    r.path = RefPath::kAddrOnly;
    return r;
  }

  if (!resumed && entry && (entry->prefix.action & BW_ACTION_WATCH) && (p.tcp_flags & kSyn)) {
    count(BW_CNT_watch_hits);
    entry->hits++;
    r.events.push_back(event(BW_EV_WATCH, BW_VERDICT_PASS));
    r.watch_event = true;
  }

  // 3. Banners on watched ports, tunnels through proxy ports.
  const uint8_t sflags = cfg_.port_flags[p.sport], dflags = cfg_.port_flags[p.dport];
  const bool src_watched = sflags & BW_PORT_WATCHED, dst_watched = dflags & BW_PORT_WATCHED;
  if (!((sflags | dflags) & (BW_PORT_WATCHED | BW_PORT_PROXY))) {
    r.path = RefPath::kPortUnwatched;
    return r;
  }
  if (p.frag_more && !resumed) {
    frags_[FragKey(p)] = Frag{p.sport, p.dport, p.seq,
                              static_cast<uint16_t>(p.payload_off - p.frag_start), p.urg_ptr,
                              p.tcp_flags};
    absl::StrAppend(&r.trace, " first fragment noted;");
  }
  const uint8_t srv_cfg = cfg_.banner_action[BW_SIDE_SERVER];
  const uint8_t cli_cfg = cfg_.banner_action[BW_SIDE_CLIENT];
  const uint8_t act_srv = src_watched ? srv_cfg : uint8_t{BW_BANNER_OFF};
  const uint8_t act_cli = dst_watched ? cli_cfg : uint8_t{BW_BANNER_OFF};
  const bool non_tls = src_watched && (cfg_.flags & BW_CFG_NON_TLS);
  // A tunnel carries a far server's banner: the server side's action applies to it.
  const uint8_t act_tun = srv_cfg;
  const bool connect = cfg_.features & BW_FEAT_CONNECT;
  const bool proxy_srv = connect && (sflags & BW_PORT_PROXY) && act_tun != BW_BANNER_OFF;
  const bool proxy_cli = connect && (dflags & BW_PORT_PROXY) && act_tun != BW_BANNER_OFF;
  absl::StrAppend(&r.trace,
                  absl::StrFormat(" ports 0x%x/0x%x act_srv=%u act_cli=%u non_tls=%d proxy_srv=%d "
                                  "proxy_cli=%d;",
                                  sflags, dflags, act_srv, act_cli, non_tls, proxy_srv, proxy_cli));

  FlowKey flow = MakeFlowKey(p.family, p.saddr, p.sport, p.daddr, p.dport);
  if (srv_cfg == BW_BANNER_DROP || cli_cfg == BW_BANNER_DROP) {
    if (flows_.count(flow)) {
      count(BW_CNT_flow_drops);
      r.verdict = BW_VERDICT_DROP;
      r.path = RefPath::kFlowDrop;
      absl::StrAppend(&r.trace, " flow was banner-dropped;");
      return r;
    }
  }
  if (act_srv == BW_BANNER_OFF && act_cli == BW_BANNER_OFF && !non_tls && !proxy_srv &&
      !proxy_cli) {
    r.path = RefPath::kBannerOff;
    return r;
  }

  const uint8_t fam = p.family == 4 ? BW_FAMILY_V4 : BW_FAMILY_V6;
  const DirKey fwd = MakeDirKey(fam, p.saddr, p.sport, p.daddr, p.dport);  // sender -> receiver
  const std::string_view pl(reinterpret_cast<const char*>(f + p.payload_off), p.payload_len);

  // A SYN-ACK: the server's first payload will carry its ISN + 1.
  if ((p.tcp_flags & (kSyn | kAck)) == (kSyn | kAck) && pl.empty()) {
    if (act_srv != BW_BANNER_OFF || non_tls) {
      streams_[fwd] = Stream{p.seq + 1u, 0, BW_STREAM_FIRST, 0};
      absl::StrAppend(&r.trace, " SYN-ACK: stream starts at ", p.seq + 1u, ";");
    }
    r.path = RefPath::kSynAck;
    return r;
  }
  if (pl.empty()) {
    r.path = RefPath::kNoPayload;
    return r;
  }

  // Banner events: up to BW_BANNER_MAX bytes of the version line as found.
  auto hit = [&](uint8_t side, uint8_t act, uint8_t match, std::string banner) {
    count(side == BW_SIDE_SERVER ? BW_CNT_banner_server : BW_CNT_banner_client);
    if (match == BW_MATCH_SPLIT) count(BW_CNT_banner_split);
    if (match == BW_MATCH_PRELINES) count(BW_CNT_banner_prelines);
    if (match == BW_MATCH_CONNECT) count(BW_CNT_banner_connect);
    if (match == BW_MATCH_STREAM) count(BW_CNT_banner_stream);
    r.path = RefPath::kBannerAlert;
    if (act == BW_BANNER_DROP) {
      flows_.insert(flow);
      count(BW_CNT_banner_drops);
      r.verdict = BW_VERDICT_DROP;
      r.path = RefPath::kBannerDrop;
    }
    RefEvent e = event(BW_EV_BANNER, r.verdict);
    e.banner_side = side;
    e.match = match;
    banner.resize(std::min<size_t>(banner.size(), BW_BANNER_MAX));
    e.banner = std::move(banner);
    r.events.push_back(std::move(e));
    absl::StrAppend(&r.trace, " banner side ", side, " action ", act, " match ", match, ";");
    return r;
  };
  const bool ssh = HasPrefix(pl, "SSH-");

  // A client asks a proxy for a tunnel; only a watched target port is followed.
  if (proxy_cli && pl.size() >= 12 && HasPrefix(pl, "CONN")) {
    const auto* raw = reinterpret_cast<const uint8_t*>(pl.data());
    int port = ConnectPort(raw, pl.size(), cfg_.quirks);
    auto followed = [&](int port) {
      return port >= 0 && (cfg_.port_flags[port] & BW_PORT_WATCHED);
    };
    // Which modelled kernel departures decided this request (compared with the rules alone).
    int strict = ConnectPort(raw, pl.size(), 0);
    if (followed(strict) != followed(port) || (followed(port) && strict != port))
      for (uint32_t q = 1; q < kQuirkAll; q <<= 1)
        if ((cfg_.quirks & q) && ConnectPort(raw, pl.size(), q) != strict) r.quirk |= q;
    absl::StrAppend(&r.trace, " CONNECT port ", port, " (rules alone: ", strict, ");");
    if (!followed(port)) {
      r.path = RefPath::kConnectIgnored;
      return r;
    }
    // The tunnel is keyed by the direction its reply comes in: proxy -> client.
    tunnels_[MakeDirKey(fam, p.daddr, p.dport, p.saddr, p.sport)] =
        Tunnel{BW_TUNNEL_REQUESTED, static_cast<uint16_t>(port)};
    count(BW_CNT_tunnels);
    r.path = RefPath::kConnectTunnel;
    return r;
  }
  // The proxy's side of a tunnel.
  if (proxy_srv) {
    auto t = tunnels_.find(fwd);
    if (t != tunnels_.end()) {
      if (t->second.state == BW_TUNNEL_OPEN) {
        tunnels_.erase(t);  // the far server's first segment has been seen
        absl::StrAppend(&r.trace, " open tunnel: first segment;");
        if (ssh) return hit(BW_SIDE_SERVER, act_tun, BW_MATCH_CONNECT, std::string(pl));
        r.path = RefPath::kTunnelClosed;
        return r;
      }
      if (!HasPrefix(pl, "HTTP")) {
        r.path = RefPath::kTunnelWait;
        return r;
      }
      if (pl.size() < 12 || pl.substr(9, 3) != "200") {
        tunnels_.erase(t);
        absl::StrAppend(&r.trace, " tunnel refused;");
        r.path = RefPath::kTunnelClosed;
        return r;
      }
      if (size_t at = VersionAfterHead(pl)) {
        tunnels_.erase(t);
        return hit(BW_SIDE_SERVER, act_tun, BW_MATCH_CONNECT, std::string(pl.substr(at)));
      }
      t->second.state = BW_TUNNEL_OPEN;
      r.path = RefPath::kTunnelOpen;
      return r;
    }
  }
  if (act_srv == BW_BANNER_OFF && act_cli == BW_BANNER_OFF && !non_tls) {
    r.path = RefPath::kBannerOff;
    return r;
  }
  const uint8_t side = act_srv != BW_BANNER_OFF ? BW_SIDE_SERVER : BW_SIDE_CLIENT;
  const uint8_t act = side == BW_SIDE_SERVER ? act_srv : act_cli;

  // The seed's rule: "SSH-" at the start of a segment.
  if (ssh && act != BW_BANNER_OFF) return hit(side, act, BW_MATCH_DIRECT, std::string(pl));

  // "SSH-" spread over segments of this direction, each at the sequence number the last ended at.
  if (act != BW_BANNER_OFF && (pl[0] == 'S' || pl[0] == 'H' || pl[0] == '-')) {
    static constexpr std::string_view kSsh = "SSH-";
    auto prev = partial_.find(fwd);
    size_t have = prev != partial_.end() && prev->second.next_seq == p.seq ? prev->second.len : 0;
    size_t got = std::min(pl.size(), 4 - have);
    bool continues = pl.substr(0, got) == kSsh.substr(have, got);
    absl::StrAppend(&r.trace, " split: had ", have, ", this segment ", got,
                    continues ? " continues;" : " does not continue;");
    if (continues && have + got == 4) {
      if (prev != partial_.end()) partial_.erase(prev);
      if (have == 0) return hit(side, act, BW_MATCH_DIRECT, std::string(pl));
      return hit(side, act, BW_MATCH_SPLIT, std::string(kSsh) + std::string(pl.substr(got)));
    }
    if (continues && pl.size() < 4) {
      partial_[fwd] =
          Partial{static_cast<uint32_t>(p.seq + pl.size()), static_cast<uint8_t>(have + got)};
      r.path = RefPath::kSplitWait;
      return r;
    }
    if (prev != partial_.end()) partial_.erase(prev);
  }

  // A server's stream, as the receiver delivers it: from the byte it awaits (the SYN-ACK's
  // sequence number + 1 at first), wherever that lies in the segment (the bytes before it are
  // delivered already and trimmed); Linux takes the urgent byte (urgent pointer - 1, tcp_stdurg
  // off) out of the stream when it lies in this segment at or after that byte.
  auto stream = src_watched && (act_srv != BW_BANNER_OFF || non_tls) ? streams_.find(fwd)
                                                                     : streams_.end();
  if (stream != streams_.end() && stream->second.next_seq - p.seq < pl.size()) {
    const size_t start = stream->second.next_seq - p.seq;
    std::string view(pl.substr(start));
    bool urgent_in_head = false;
    if (p.tcp_flags & kUrg) {
      size_t u = p.urg_ptr ? p.urg_ptr - 1u : 0;
      if (u >= start && u < pl.size()) {
        urgent_in_head = u - start < 4;
        view.erase(u - start, 1);
      }
    }
    absl::StrAppend(&r.trace, " stream: awaited byte at payload offset ", start,
                    urgent_in_head ? ", urgent byte in its first four" : "", ";");
    if (HasPrefix(view, "SSH-") && act_srv != BW_BANNER_OFF) {
      streams_.erase(stream);
      // The banner as sent: the four bytes, then what follows the bytes they span.
      std::string banner = urgent_in_head ? "SSH-" + std::string(pl.substr(start + 5))
                                          : std::string(pl.substr(start));
      return hit(BW_SIDE_SERVER, act_srv, BW_MATCH_STREAM, std::move(banner));
    }
    const bool first = stream->second.state == BW_STREAM_FIRST;
    const uint8_t c0 = view.empty() ? 0 : static_cast<uint8_t>(view[0]);
    if (first && ((c0 >= 20 && c0 <= 23) || HasPrefix(view, "HTTP"))) {
      streams_.erase(stream);
      absl::StrAppend(&r.trace, " first payload TLS or HTTP;");
      r.path = RefPath::kFirstPayload;
      return r;
    }
    const bool lines = (cfg_.features & BW_FEAT_PRELINES) && act_srv != BW_BANNER_OFF;
    bool too_long = false;
    if (lines) {
      if (size_t at = VersionAfterLines(pl.substr(start), &too_long)) {
        streams_.erase(stream);
        return hit(BW_SIDE_SERVER, act_srv, BW_MATCH_PRELINES, std::string(pl.substr(start + at)));
      }
    }
    r.path = first ? RefPath::kFirstPayload : RefPath::kStreamLines;
    if (first && non_tls) {
      count(BW_CNT_non_tls);
      RefEvent e = event(BW_EV_NON_TLS, BW_VERDICT_PASS);
      e.banner_side = BW_SIDE_SERVER;
      e.banner = std::string(pl.substr(start, BW_BANNER_MAX));
      r.events.push_back(std::move(e));
      r.path = RefPath::kNonTls;
    }
    Stream& st = stream->second;
    const size_t seen = st.seen + (pl.size() - start);
    if (!lines || too_long || seen >= BW_PRELINES_BYTES || st.segs + 1u >= BW_PRELINES_SEGS) {
      streams_.erase(stream);
      absl::StrAppend(&r.trace, " stream no longer followed;");
      return r;
    }
    st = Stream{static_cast<uint32_t>(p.seq + pl.size()), static_cast<uint16_t>(seen),
                BW_STREAM_LINES, static_cast<uint8_t>(st.segs + 1)};
    absl::StrAppend(&r.trace, " lines followed to ", st.next_seq, ";");
    return r;
  }
  r.path = RefPath::kNoBanner;
  return r;
}

}  // namespace bw::test
