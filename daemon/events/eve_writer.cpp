#include "daemon/events/eve_writer.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "daemon/events/community_id.hpp"
#include "daemon/events/signatures.hpp"
#include "maps/maps.hpp"

namespace bw {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr uint64_t kFlowIdMask = 0x7ffffffffffffULL;  // 51 bits, as Suricata's FlowGetId

// ---- low-level writers: each appends at `p` and returns the new end. The caller has reserved
// room (see the bound computed in FormatAt). ---------------------------------------------------------

template <size_t N>
inline char* Lit(char* p, const char (&s)[N]) {
  std::memcpy(p, s, N - 1);
  return p + N - 1;
}

inline char* Str(char* p, std::string_view s) {
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

constexpr std::array<char, 200> MakeDigitPairs() {
  std::array<char, 200> t{};
  for (int i = 0; i < 100; ++i) {
    t[2 * i] = static_cast<char>('0' + i / 10);
    t[2 * i + 1] = static_cast<char>('0' + i % 10);
  }
  return t;
}
constexpr std::array<char, 200> kDigitPairs = MakeDigitPairs();

inline char* U64(char* p, uint64_t v) {
  char tmp[20];
  char* e = tmp + sizeof(tmp);
  char* s = e;
  while (v >= 100) {
    const unsigned r = static_cast<unsigned>(v % 100);
    v /= 100;
    s -= 2;
    std::memcpy(s, &kDigitPairs[2 * r], 2);
  }
  if (v >= 10) {
    s -= 2;
    std::memcpy(s, &kDigitPairs[2 * v], 2);
  } else {
    *--s = static_cast<char>('0' + v);
  }
  std::memcpy(p, s, static_cast<size_t>(e - s));
  return p + (e - s);
}

inline char* Dec2(char* p, unsigned v) {  // v < 100, zero-padded
  std::memcpy(p, &kDigitPairs[2 * v], 2);
  return p + 2;
}

inline char* U8(char* p, unsigned v) {  // 0..255 without padding
  if (v >= 100) {
    *p++ = static_cast<char>('0' + v / 100);
    return Dec2(p, v % 100);
  }
  if (v >= 10) return Dec2(p, v);
  *p++ = static_cast<char>('0' + v);
  return p;
}

inline char* Ipv4(char* p, const uint8_t* a) {
  p = U8(p, a[0]);
  *p++ = '.';
  p = U8(p, a[1]);
  *p++ = '.';
  p = U8(p, a[2]);
  *p++ = '.';
  return U8(p, a[3]);
}

inline char* Hex16(char* p, unsigned w) {  // lowercase, no leading zeros
  bool started = false;
  for (int shift = 12; shift >= 0; shift -= 4) {
    const unsigned d = (w >> shift) & 0xf;
    if (d || started || shift == 0) {
      *p++ = kHex[d];
      started = true;
    }
  }
  return p;
}

// RFC 5952 text, byte-for-byte what glibc's inet_ntop(AF_INET6) prints: the longest run of >= 2
// zero groups (the first on a tie) becomes "::", and ::ffff:a.b.c.d and ::a.b.c.d (IPv4-mapped
// and -compatible, but not ::1 style short forms) end in a dotted quad.
char* Ipv6(char* p, const uint8_t* a) {
  unsigned w[8];
  for (int i = 0; i < 8; ++i) w[i] = (unsigned{a[2 * i]} << 8) | a[2 * i + 1];
  int best_base = -1, best_len = 0, cur_base = -1, cur_len = 0;
  for (int i = 0; i < 8; ++i) {
    if (w[i] == 0) {
      if (cur_base == -1) {
        cur_base = i;
        cur_len = 1;
      } else {
        ++cur_len;
      }
    } else if (cur_base != -1) {
      if (best_base == -1 || cur_len > best_len) {
        best_base = cur_base;
        best_len = cur_len;
      }
      cur_base = -1;
    }
  }
  if (cur_base != -1 && (best_base == -1 || cur_len > best_len)) {
    best_base = cur_base;
    best_len = cur_len;
  }
  if (best_base != -1 && best_len < 2) best_base = -1;
  for (int i = 0; i < 8; ++i) {
    if (best_base != -1 && i >= best_base && i < best_base + best_len) {
      if (i == best_base) *p++ = ':';
      continue;
    }
    if (i != 0) *p++ = ':';
    if (i == 6 && best_base == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff))) {
      return Ipv4(p, a + 12);
    }
    p = Hex16(p, w[i]);
  }
  if (best_base != -1 && best_base + best_len == 8) *p++ = ':';
  return p;
}

inline char* Addr(char* p, uint8_t family, const uint8_t* a) {
  return family == BW_FAMILY_V4 ? Ipv4(p, a) : Ipv6(p, a);
}

// Escape class of a byte in a JSON string: 0 verbatim, else the character after '\' for the short
// escapes, or 'u' for \u00xx.
constexpr std::array<char, 256> MakeEscapes() {
  std::array<char, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = (c < 0x20 || c >= 0x7f) ? 'u' : 0;
  t['"'] = '"';
  t['\\'] = '\\';
  t['\b'] = 'b';
  t['\t'] = 't';
  t['\n'] = 'n';
  t['\f'] = 'f';
  t['\r'] = 'r';
  return t;
}
constexpr std::array<char, 256> kEscape = MakeEscapes();

inline char* EscapeByte(char* p, uint8_t c) {
  const char e = kEscape[c];
  *p++ = '\\';
  if (e != 'u') {
    *p++ = e;
    return p;
  }
  p = Lit(p, "u00");
  *p++ = kHex[c >> 4];
  *p++ = kHex[c & 0xf];
  return p;
}

// The banner mapping (header): every byte is one code point U+0000..U+00FF. At most 6 bytes out
// per byte in.
char* JsonBanner(char* p, const uint8_t* b, size_t n) {
  *p++ = '"';
  for (size_t i = 0; i < n; ++i) {
    const uint8_t c = b[i];
    if (kEscape[c] == 0) {
      *p++ = static_cast<char>(c);
    } else {
      p = EscapeByte(p, c);
    }
  }
  *p++ = '"';
  return p;
}

// Length of the well-formed UTF-8 sequence (Unicode Table 3-7) starting at s[i] with a lead byte
// >= 0x80, or 0 if it is not one.
inline size_t Utf8SeqLen(const uint8_t* s, size_t i, size_t n) {
  const uint8_t c = s[i];
  auto cont = [&](size_t k, uint8_t lo = 0x80, uint8_t hi = 0xbf) {
    return i + k < n && s[i + k] >= lo && s[i + k] <= hi;
  };
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c == 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (c == 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

// UTF-8 text: well-formed multi-byte sequences verbatim, ASCII as for the banner, any other byte
// as \u00xx. At most 6 bytes out per byte in.
char* JsonTextBody(char* p, std::string_view text) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const uint8_t c = s[i];
    if (c < 0x80) {
      if (kEscape[c] == 0) {
        *p++ = static_cast<char>(c);
      } else {
        p = EscapeByte(p, c);
      }
      ++i;
      continue;
    }
    const size_t len = Utf8SeqLen(s, i, n);
    if (len == 0) {
      p = EscapeByte(p, c);
      ++i;
    } else {
      std::memcpy(p, s + i, len);
      p += len;
      i += len;
    }
  }
  return p;
}

char* JsonText(char* p, std::string_view text) {
  *p++ = '"';
  p = JsonTextBody(p, text);
  *p++ = '"';
  return p;
}

// ---- time ------------------------------------------------------------------------------------------

// Howard Hinnant's civil_from_days: days since 1970-01-01 -> proleptic Gregorian y/m/d.
inline void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2);
}

// "YYYY-MM-DDTHH:MM:SS" (19 bytes) for a second since the epoch.
void DateTime(int64_t sec, char out[19]) {
  int64_t days = sec / 86400;
  int64_t rem = sec % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  int64_t y;
  unsigned m, d;
  CivilFromDays(days, &y, &m, &d);
  const unsigned yy = static_cast<unsigned>(y < 0 ? 0 : (y > 9999 ? 9999 : y));
  char* p = out;
  p = Dec2(p, yy / 100);
  p = Dec2(p, yy % 100);
  *p++ = '-';
  p = Dec2(p, m);
  *p++ = '-';
  p = Dec2(p, d);
  *p++ = 'T';
  const unsigned r = static_cast<unsigned>(rem);
  p = Dec2(p, r / 3600);
  *p++ = ':';
  p = Dec2(p, r / 60 % 60);
  *p++ = ':';
  Dec2(p, r % 60);
}

inline void SplitNs(int64_t wall_ns, int64_t* sec, unsigned* usec) {
  int64_t s = wall_ns / 1000000000;
  int64_t ns = wall_ns % 1000000000;
  if (ns < 0) {
    ns += 1000000000;
    --s;
  }
  *sec = s;
  *usec = static_cast<unsigned>(ns / 1000);
}

inline char* Micros(char* p, unsigned usec) {  // ".uuuuuu+0000"
  *p++ = '.';
  p = Dec2(p, usec / 10000);
  p = Dec2(p, usec / 100 % 100);
  p = Dec2(p, usec % 100);
  return Lit(p, "+0000");
}

// ---- event helpers ---------------------------------------------------------------------------------

inline uint16_t Port(__be16 p) { return ntohs(p); }

inline bool HasPorts(const bw_event& ev) {
  return ev.l4proto == IPPROTO_TCP || ev.l4proto == IPPROTO_UDP;
}

// ICMP and ICMPv6 events carry the type and code in the port fields (BW_ICMP_UNREAD: not read).
inline bool HasIcmp(const bw_event& ev) {
  return (ev.l4proto == IPPROTO_ICMP || ev.l4proto == IPPROTO_ICMPV6) &&
         ntohs(ev.sport) != BW_ICMP_UNREAD && ntohs(ev.dport) != BW_ICMP_UNREAD;
}

inline bool IsV4Mapped(const uint8_t* a) {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a, kPrefix, sizeof(kPrefix)) == 0;
}

// Appends "a/len" for the event's matched prefix; returns p unchanged if there is none.
char* Prefix(char* p, const bw_event& ev) {
  const uint8_t* remote = ev.direction == BW_DIR_EGRESS ? ev.daddr : ev.saddr;
  uint8_t masked[16];
  unsigned bits;
  uint8_t family;
  if (ev.family == BW_FAMILY_V4 ||
      (ev.family == BW_FAMILY_V6 && IsV4Mapped(remote) && ev.prefixlen <= 32)) {
    if (ev.prefixlen > 32) return p;
    std::memcpy(masked, ev.family == BW_FAMILY_V4 ? remote : remote + 12, 4);
    bits = 32;
    family = BW_FAMILY_V4;
  } else if (ev.family == BW_FAMILY_V6) {
    if (ev.prefixlen > 128) return p;
    std::memcpy(masked, remote, 16);
    bits = 128;
    family = BW_FAMILY_V6;
  } else {
    return p;
  }
  const unsigned len = ev.prefixlen;
  for (unsigned i = 0; i < bits / 8; ++i) {
    const unsigned lo = i * 8;
    if (len >= lo + 8) continue;
    masked[i] = len <= lo ? 0 : static_cast<uint8_t>(masked[i] & (0xff00u >> (len - lo)));
  }
  p = Addr(p, family, masked);
  *p++ = '/';
  return U8(p, len);
}

inline std::string_view ActionName(uint8_t action) {
  if (action & BW_ACTION_SAFELIST) return "safelist";
  if (action & BW_ACTION_BLOCK) return "block";
  if (action & BW_ACTION_WATCH) return "watch";
  return {};
}

inline std::string_view KindName(uint8_t kind) {
  switch (kind) {
    case BW_EV_BANNER:
      return "banner";
    case BW_EV_BLOCK:
      return "block";
    case BW_EV_WATCH:
      return "watch";
    case BW_EV_NON_TLS:
      return "non_tls";
    case BW_EV_UNPARSED:
      return "unparsed";
    case BW_EV_BEACON:
      return "beacon";
  }
  return {};
}

inline std::string_view MatchName(uint8_t match) {
  switch (match) {
    case BW_MATCH_SPLIT:
      return "split";
    case BW_MATCH_PRELINES:
      return "after_lines";
    case BW_MATCH_CONNECT:
      return "connect_tunnel";
    case BW_MATCH_STREAM:
      return "stream_start";
    default:
      return "direct";
  }
}

// Suricata 7's names for IP protocols 0..143 (src/util-proto-name.c, known_proto[]: IANA's
// keywords); it prints the number for the others. Index 0 is not used: see EveProtoName.
constexpr std::string_view kProtoNames[] = {
    "HOPOPT", "ICMP", "IGMP", "GGP", "IP-in-IP", "ST", "TCP", "CBT", "EGP", "IGP", "BBN-RCC-MON",
    "NVP-II", "PUP", "ARGUS", "EMCON", "XNET", "CHAOS", "UDP", "MUX", "DCN-MEAS", "HMP", "PRM",
    "XNS-IDP", "TRUNK-1", "TRUNK-2", "LEAF-1", "LEAF-2", "RDP", "IRTP", "ISO-TP4", "NETBLT",
    "MFE-NSP", "MERIT-INP", "DCCP", "3PC", "IDPR", "XTP", "DDP", "IDPR-CMTP", "TP++", "IL", "IPv6",
    "SDRP", "IPv6-Route", "IPv6-Frag", "IDRP", "RSVP", "GRE", "DSR", "BNA", "ESP", "AH", "I-NLSP",
    "SwIPe", "NARP", "MOBILE", "TLSP", "SKIP", "IPv6-ICMP", "IPv6-NoNxt", "IPv6-Opts", "Any",
    "CFTP", "Any", "SAT-EXPAK", "KRYPTOLAN", "RVD", "IPPC", "Any", "SAT-MON", "VISA", "IPCU",
    "CPNX", "CPHB", "WSN", "PVP", "BR-SAT-MON", "SUN-ND", "WB-MON", "WB-EXPAK", "ISO-IP", "VMTP",
    "SECURE-VMTP", "VINES", "TTP", "NSFNET-IGP", "DGP", "TCF", "EIGRP", "OSPF", "Sprite-RPC",
    "LARP", "MTP", "AX.25", "OS", "MICP", "SCC-SP", "ETHERIP", "ENCAP", "Any", "GMTP", "IFMP",
    "PNNI", "PIM", "ARIS", "SCPS", "QNX", "A/N", "IPComp", "SNP", "Compaq-Peer", "IPX-in-IP",
    "VRRP", "PGM", "Any", "L2TP", "DDX", "IATP", "STP", "SRP", "UTI", "SMP", "SM", "PTP", "IS-IS",
    "FIRE", "CRTP", "CRUDP", "SSCOPMCE", "IPLT", "SPS", "PIPE", "SCTP", "FC", "RSVP-E2E-IGNORE",
    "Mobility", "UDPLite", "MPLS-in-IP", "manet", "HIP", "Shim6", "WESP", "ROHC", "Ethernet",
};

inline char* Proto(char* p, uint8_t proto) {
  *p++ = '"';
  if (proto != 0 && proto < std::size(kProtoNames)) {
    p = Str(p, kProtoNames[proto]);
  } else {
    p = U8(p, proto);
  }
  *p++ = '"';
  return p;
}

// Suricata's payload_printable: printable ASCII, CR and LF as they are, any other byte as '.'
// (util-print.c, PrintStringsToBuffer); then JSON-escaped.
char* PrintablePayload(char* p, const uint8_t* b, size_t n) {
  *p++ = '"';
  for (size_t i = 0; i < n; ++i) {
    const uint8_t c = b[i];
    const bool keep = (c >= 0x20 && c < 0x7f) || c == '\r' || c == '\n';
    const uint8_t out = keep ? c : '.';
    if (kEscape[out] == 0) {
      *p++ = static_cast<char>(out);
    } else {
      p = EscapeByte(p, out);
    }
  }
  *p++ = '"';
  return p;
}

// Base64 (RFC 4648, padded), as Suricata writes "payload".
char* Base64(char* p, const uint8_t* b, size_t n) {
  *p++ = '"';
  const int w = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(p), b, static_cast<int>(n));
  p += w;
  *p++ = '"';
  return p;
}

inline uint64_t LoadLe64(const uint8_t* b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
  return v;
}

inline uint64_t Mix64(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// ,"process":{...}: the process behind the event's connection, with ECS's field names (pid, name,
// executable, thread.id, parent.pid, user, group) plus its cgroup, container and systemd unit.
// Unknown parts are left out, never written as empty strings or zeros standing for "unknown".
char* ProcessObject(char* p, const ProcessContext& pc) {
  p = Lit(p, ",\"process\":{\"pid\":");
  p = U64(p, pc.pid);
  if (!pc.name.empty()) {
    p = Lit(p, ",\"name\":");
    p = JsonText(p, pc.name);
  }
  if (!pc.executable.empty()) {
    p = Lit(p, ",\"executable\":");
    p = JsonText(p, pc.executable);
  }
  if (pc.tid != 0) {
    p = Lit(p, ",\"thread\":{\"id\":");
    p = U64(p, pc.tid);
    *p++ = '}';
  }
  if (pc.ppid != 0) {
    p = Lit(p, ",\"parent\":{\"pid\":");
    p = U64(p, pc.ppid);
    *p++ = '}';
  }
  p = Lit(p, ",\"user\":{\"id\":");
  p = U64(p, pc.uid);
  if (!pc.user.empty()) {
    p = Lit(p, ",\"name\":");
    p = JsonText(p, pc.user);
  }
  p = Lit(p, "},\"group\":{\"id\":");
  p = U64(p, pc.gid);
  *p++ = '}';
  if (pc.cgroup_id != 0) {
    p = Lit(p, ",\"cgroup\":{\"id\":");
    p = U64(p, pc.cgroup_id);
    if (!pc.cgroup_path.empty()) {
      p = Lit(p, ",\"path\":");
      p = JsonText(p, pc.cgroup_path);
    }
    *p++ = '}';
  }
  if (pc.container) {
    p = Lit(p, ",\"container\":{\"id\":");
    p = JsonText(p, pc.container->id);
    if (!pc.container->runtime.empty()) {
      p = Lit(p, ",\"runtime\":");
      p = JsonText(p, pc.container->runtime);
    }
    *p++ = '}';
  }
  if (!pc.systemd_unit.empty()) {
    p = Lit(p, ",\"systemd_unit\":");
    p = JsonText(p, pc.systemd_unit);
  }
  *p++ = '}';
  return p;
}

absl::Status Validate(const bw_event& ev) {
  if (ev.kind != BW_EV_BANNER && ev.kind != BW_EV_BLOCK && ev.kind != BW_EV_WATCH &&
      ev.kind != BW_EV_NON_TLS && ev.kind != BW_EV_UNPARSED && ev.kind != BW_EV_BEACON)
    return absl::InvalidArgumentError(absl::StrCat("bw_event: unknown kind ", unsigned{ev.kind}));
  if (ev.family != BW_FAMILY_V4 && ev.family != BW_FAMILY_V6)
    return absl::InvalidArgumentError(absl::StrCat("bw_event: unknown family ", unsigned{ev.family}));
  if (ev.kind == BW_EV_BANNER && ev.banner_side >= BW_SIDE__MAX)
    return absl::InvalidArgumentError(
        absl::StrCat("bw_event: unknown banner side ", unsigned{ev.banner_side}));
  if (ev.banner_len > BW_BANNER_MAX)
    return absl::InvalidArgumentError(
        absl::StrCat("bw_event: banner_len ", unsigned{ev.banner_len}, " > ", BW_BANNER_MAX));
  return absl::OkStatus();
}

}  // namespace

// ---- EveFormatter ----------------------------------------------------------------------------------

EveFormatter::EveFormatter(const EveLookup* lookup, int64_t clock_offset_ns)
    : lookup_(lookup), clock_offset_ns_(clock_offset_ns), buf_(4096, '\0'),
      cached_sec_(INT64_MIN), cached_date_{} {}

char* EveFormatter::Reserve(size_t n) {
  if (buf_.size() < n) buf_.resize(std::max(n, 2 * buf_.size()));
  return buf_.data();
}

absl::StatusOr<std::string_view> EveFormatter::Format(const bw_event& ev, const EveExtra& extra) {
  return FormatAt(ev, static_cast<int64_t>(ev.ts_ns) + clock_offset_ns_, extra);
}

absl::StatusOr<std::string_view> EveFormatter::FormatAt(const bw_event& ev, int64_t wall_ns,
                                                        const EveExtra& extra) {
  if (absl::Status st = Validate(ev); !st.ok()) return st;
  const Signature* sig = SignatureForEvent(ev.kind, ev.banner_side);
  const bool strict = options_.schema == EveSchema::kSuricata7;

  // Metadata first, so the whole line's size is bounded before writing.
  std::string_view ifname, source_id, pcap;
  EveListInfo list;
  bool list_known = false;
  if (lookup_ != nullptr) {
    ifname = lookup_->IfName(ev.ifindex);
    pcap = lookup_->PcapFilename();
    if (ev.list_id != 0) list_known = lookup_->List(ev.list_id, &list);
    if (ev.entry_ref != 0) source_id = lookup_->EntrySourceId(ev.entry_ref);
  }
  const std::string_view host = options_.host;
  const bool ports = HasPorts(ev);
  char msg_buf[256];
  const std::string_view msg =
      sig->msg.size() + kSignatureMessageExtra <= sizeof(msg_buf)
          ? SignatureMessage(*sig, ports ? Port(ev.sport) : 0, ports ? Port(ev.dport) : 0, msg_buf)
          : sig->msg;
  char community_id[kCommunityIdChars];
  const bool have_community_id = EveCommunityId(ev, options_.community_id_seed, community_id);
  const bool payload = ev.kind == BW_EV_BANNER || ev.kind == BW_EV_NON_TLS;

  // Fixed text and numbers stay well under 2048 bytes (the strict form's tag prefixes included);
  // each escaped byte takes at most 6; the strict form writes the banner twice (base64, printable).
  size_t bound = 2048 + 6 * (msg.size() + sig->category.size() + size_t{ev.banner_len} +
                             ifname.size() + source_id.size() + host.size() + pcap.size()) +
                 (strict ? 8 * size_t{ev.banner_len} : 0);
  if (list_known) {
    bound += 6 * (list.name.size() + list.reason.size());
    for (const std::string& t : list.tags) bound += 6 * t.size() + 24;
  }
  const ProcessContext* proc = extra.process;
  if (proc != nullptr)  // numbers and names: 1024; strings escaped, twice in the strict form
    bound += 1024 + 12 * (proc->name.size() + proc->executable.size() + proc->user.size() +
                          proc->cgroup_path.size() + proc->systemd_unit.size() +
                          (proc->container ? proc->container->id.size() +
                                                 proc->container->runtime.size()
                                           : 0));
  bound += 6 * extra.refused.size() + (extra.beacon ? 1024 : 0);
  char* const start = Reserve(bound);
  char* p = start;

  int64_t sec;
  unsigned usec;
  SplitNs(wall_ns, &sec, &usec);
  if (sec != cached_sec_) {
    DateTime(sec, cached_date_);
    cached_sec_ = sec;
  }
  p = Lit(p, "{\"timestamp\":\"");
  p = Str(p, std::string_view(cached_date_, 19));
  p = Micros(p, usec);
  p = Lit(p, "\",\"flow_id\":");
  p = U64(p, EveFlowId(ev));
  if (!pcap.empty()) {
    p = Lit(p, ",\"pcap_filename\":");
    p = JsonText(p, pcap);
  }
  if (!ifname.empty() && !strict) {
    p = Lit(p, ",\"in_iface\":");
    p = JsonText(p, ifname);
  }
  p = Lit(p, ",\"event_type\":\"alert\",\"src_ip\":\"");
  p = Addr(p, ev.family, ev.saddr);
  if (ports) {
    p = Lit(p, "\",\"src_port\":");
    p = U64(p, Port(ev.sport));
    p = Lit(p, ",\"dest_ip\":\"");
  } else {
    p = Lit(p, "\",\"dest_ip\":\"");
  }
  p = Addr(p, ev.family, ev.daddr);
  if (ports) {
    p = Lit(p, "\",\"dest_port\":");
    p = U64(p, Port(ev.dport));
    p = Lit(p, ",\"proto\":");
  } else {
    p = Lit(p, "\",\"proto\":");
  }
  p = Proto(p, ev.l4proto);
  if (HasIcmp(ev)) {
    p = Lit(p, ",\"icmp_type\":");
    p = U64(p, ntohs(ev.sport));
    p = Lit(p, ",\"icmp_code\":");
    p = U64(p, ntohs(ev.dport));
  }
  if (have_community_id) {
    p = Lit(p, ",\"community_id\":\"");
    p = Str(p, std::string_view(community_id, kCommunityIdChars));
    *p++ = '"';
  }
  p = EveToServer(ev, lookup_) ? Lit(p, ",\"direction\":\"to_server\"")
                               : Lit(p, ",\"direction\":\"to_client\"");
  if (strict) {
    if (payload) {
      p = Lit(p, ",\"payload\":");
      p = Base64(p, ev.banner, ev.banner_len);
      p = Lit(p, ",\"payload_printable\":");
      p = PrintablePayload(p, ev.banner, ev.banner_len);
    }
    if (ev.l4proto == IPPROTO_TCP) {
      p = Lit(p, ",\"tcp\":{\"tcp_flags\":\"");
      *p++ = kHex[ev.tcp_flags >> 4];
      *p++ = kHex[ev.tcp_flags & 0xf];
      p = Lit(p, "\"}");
    }
  }

  p = ev.verdict == BW_VERDICT_DROP ? Lit(p, ",\"alert\":{\"action\":\"blocked\",\"gid\":")
                                    : Lit(p, ",\"alert\":{\"action\":\"allowed\",\"gid\":");
  p = U64(p, sig->gid);
  p = Lit(p, ",\"signature_id\":");
  p = U64(p, sig->signature_id);
  p = Lit(p, ",\"rev\":");
  p = U64(p, sig->rev);
  p = Lit(p, ",\"signature\":");
  p = JsonText(p, msg);
  p = Lit(p, ",\"category\":");
  p = JsonText(p, sig->category);
  p = Lit(p, ",\"severity\":");
  p = U64(p, sig->severity);

  // The bannerwatch details: an object of their own, or (strict) "bannerwatch.NAME:VALUE" strings
  // in alert.metadata.tag, the one free-form list Suricata 7's schema has room for.
  bool first = true;
  auto key = [&](std::string_view name) {  // opens one detail; its value follows
    if (strict) {
      if (!first) *p++ = ',';
      p = Lit(p, "\"bannerwatch.");
      p = Str(p, name);
      *p++ = ':';
    } else {
      if (!first) *p++ = ',';
      *p++ = '"';
      p = Str(p, name);
      p = Lit(p, "\":");
    }
    first = false;
  };
  auto text = [&](std::string_view name, std::string_view v) {  // a string value
    key(name);
    if (strict) {
      p = JsonTextBody(p, v);
      *p++ = '"';
    } else {
      p = JsonText(p, v);
    }
  };
  auto number = [&](std::string_view name, uint64_t v) {
    key(name);
    p = U64(p, v);
    if (strict) *p++ = '"';
  };
  if (strict) {
    p = Lit(p, ",\"metadata\":{\"tag\":[");
  } else {
    p = Lit(p, "},\"bannerwatch\":{");
  }
  text("kind", KindName(ev.kind));
  text("direction", ev.direction == BW_DIR_EGRESS ? "egress" : "ingress");
  if (ev.kind == BW_EV_BANNER) {
    text("banner_side", ev.banner_side == BW_SIDE_CLIENT ? "client" : "server");
    if (!strict) {
      key("banner");
      p = JsonBanner(p, ev.banner, ev.banner_len);
    }
    text("match", MatchName(ev.match));
  } else if (ev.kind == BW_EV_NON_TLS && !strict) {
    key("payload");
    p = JsonBanner(p, ev.banner, ev.banner_len);
  }
  if (ev.l4proto == IPPROTO_TCP && !strict) {
    char flags[2] = {kHex[ev.tcp_flags >> 4], kHex[ev.tcp_flags & 0xf]};
    text("tcp_flags", std::string_view(flags, 2));
  }
  if (ev.list_id != 0) {
    if (list_known) {
      text("list", list.name);
    } else {
      number("list_id", ev.list_id);
    }
  }
  if (const std::string_view action = ActionName(ev.list_action); !action.empty()) {
    text("list_action", action);
    // No entry and no length: the reader could not complete a pre-filter event (a reload came
    // in between), so there is no prefix to name, rather than 0.0.0.0/0.
    const bool have_prefix = ev.entry_ref != 0 || ev.prefixlen != 0;
    char prefix[64];
    char* const pe = have_prefix ? Prefix(prefix, ev) : prefix;
    if (pe != prefix) text("prefix", std::string_view(prefix, static_cast<size_t>(pe - prefix)));
  }
  if (list_known) {
    if (strict) {
      for (const std::string& t : list.tags) text("tags", t);
    } else {
      key("tags");
      *p++ = '[';
      for (size_t i = 0; i < list.tags.size(); ++i) {
        if (i) *p++ = ',';
        p = JsonText(p, list.tags[i]);
      }
      *p++ = ']';
    }
    if (!list.reason.empty()) text("reason", list.reason);
  }
  if (!source_id.empty()) text("source_id", source_id);
  if (ev.kind == BW_EV_BLOCK || ev.kind == BW_EV_WATCH) number("suppressed", ev.suppressed);
  if (!extra.refused.empty()) text("refused", extra.refused);
  if (const BeaconAlert* a = extra.beacon) {
    const BeaconScore* b = &a->score;
    char num[64];
    auto fixed = [&](std::string_view name, double v) {  // three decimals, as RITA prints scores
      int n = std::snprintf(num, sizeof(num), "%.3f", v);
      key(name);
      p = Str(p, std::string_view(num, static_cast<size_t>(n)));
      if (strict) *p++ = '"';
    };
    if (strict) {
      fixed("beacon.score", b->score);
      fixed("beacon.median_interval_s", static_cast<double>(b->median_interval_ns) / 1e9);
      number("beacon.connections", b->connections);
    } else {
      key("beacon");
      *p++ = '{';
      first = true;
      fixed("score", b->score);
      fixed("skew_score", b->skew_score);
      fixed("mad_score", b->mad_score);
      fixed("count_score", b->count_score);
      fixed("bowley", b->bowley);
      fixed("median_interval_s", static_cast<double>(b->median_interval_ns) / 1e9);
      fixed("mad_s", static_cast<double>(b->mad_ns) / 1e9);
      number("connections", b->connections);
      text("first", FormatEveTimestamp(a->first_ns + clock_offset_ns_));
      text("last", FormatEveTimestamp(a->last_ns + clock_offset_ns_));
      *p++ = '}';
      first = false;
    }
  }
  if (proc != nullptr && strict) {
    // Not properties of Suricata 7's schema either: the process as tags.
    number("process.pid", proc->pid);
    if (!proc->name.empty()) text("process.name", proc->name);
    if (!proc->executable.empty()) text("process.executable", proc->executable);
    number("process.user.id", proc->uid);
    if (!proc->user.empty()) text("process.user.name", proc->user);
    if (proc->container) text("process.container.id", proc->container->id);
  }
  if (strict) {
    // Not properties of Suricata 7's schema: kept here rather than lost.
    if (!ifname.empty()) text("in_iface", ifname);
    if (!host.empty()) text("host", host);
    p = Lit(p, "]}}");
  } else {
    *p++ = '}';
    if (proc != nullptr) p = ProcessObject(p, *proc);
    if (!host.empty()) {
      p = Lit(p, ",\"host\":");
      p = JsonText(p, host);
    }
  }
  *p++ = '}';
  return std::string_view(start, static_cast<size_t>(p - start));
}

// ---- free functions --------------------------------------------------------------------------------

int64_t MonotonicToRealtimeNs() {
  // Bracket the monotonic read with two realtime reads and take their midpoint.
  timespec r1, m, r2;
  clock_gettime(CLOCK_REALTIME, &r1);
  clock_gettime(CLOCK_MONOTONIC, &m);
  clock_gettime(CLOCK_REALTIME, &r2);
  auto ns = [](const timespec& t) { return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec; };
  return ns(r1) + (ns(r2) - ns(r1)) / 2 - ns(m);
}

std::string FormatEveTimestamp(int64_t wall_ns) {
  int64_t sec;
  unsigned usec;
  SplitNs(wall_ns, &sec, &usec);
  char out[32];
  DateTime(sec, out);
  char* p = Micros(out + 19, usec);
  return std::string(out, static_cast<size_t>(p - out));
}

std::string FormatEveAddress(uint8_t family, const uint8_t addr[16]) {
  char out[64];
  char* p = Addr(out, family, addr);
  return std::string(out, static_cast<size_t>(p - out));
}

std::string FormatEvePrefix(const bw_event& ev) {
  if (ActionName(ev.list_action).empty()) return {};
  char out[64];
  char* p = Prefix(out, ev);
  return std::string(out, static_cast<size_t>(p - out));
}

uint64_t EveFlowId(const bw_event& ev) {
  const size_t alen = ev.family == BW_FAMILY_V4 ? 4 : 16;
  uint8_t s[16] = {}, d[16] = {};
  std::memcpy(s, ev.saddr, alen);
  std::memcpy(d, ev.daddr, alen);
  uint16_t sp = 0, dp = 0;
  if (HasPorts(ev)) {
    sp = Port(ev.sport);
    dp = Port(ev.dport);
  }
  const uint8_t* a = s;
  const uint8_t* b = d;
  uint16_t ap = sp, bp = dp;
  const int c = std::memcmp(s, d, 16);
  if (c > 0 || (c == 0 && sp > dp)) {
    a = d;
    b = s;
    ap = dp;
    bp = sp;
  }
  const uint64_t words[5] = {
      LoadLe64(a), LoadLe64(a + 8), LoadLe64(b), LoadLe64(b + 8),
      (uint64_t{ap} << 48) | (uint64_t{bp} << 32) | (uint64_t{ev.family} << 8) | ev.l4proto};
  uint64_t h = 0x6a09e667f3bcc908ULL;
  for (uint64_t w : words) h = (h ^ Mix64(w)) * 0x9e3779b97f4a7c15ULL;
  return Mix64(h) & kFlowIdMask;
}

std::string EveProtoName(uint8_t proto) {
  char out[32];  // the longest name, "RSVP-E2E-IGNORE", is 15 characters, quoted 17
  char* p = Proto(out, proto);
  return std::string(out + 1, static_cast<size_t>(p - out - 2));
}

bool EveCommunityId(const bw_event& ev, uint16_t seed, char* out) {
  const size_t alen = ev.family == BW_FAMILY_V4 ? 4 : 16;
  CommunityIdTuple t{ev.saddr, ev.daddr, alen, ev.l4proto, HasPorts(ev)};
  switch (ev.l4proto) {
    case IPPROTO_ICMP:    // the type and code stand for the ports (the spec's equivalents)
    case IPPROTO_ICMPV6:
      if (!HasIcmp(ev)) return false;
      CommunityIdIcmp(ev.saddr, ev.daddr, alen, ev.l4proto == IPPROTO_ICMPV6,
                      static_cast<uint8_t>(ntohs(ev.sport)), static_cast<uint8_t>(ntohs(ev.dport)),
                      seed, out);
      return true;
    case 0:               // not read: a later fragment, an unwalked extension header chain
    case IPPROTO_SCTP:    // its ports are not in the event
      return false;
    case IPPROTO_TCP:
    case IPPROTO_UDP:
      t.sport = Port(ev.sport);
      t.dport = Port(ev.dport);
      break;
    default:              // protocols without ports: addresses and protocol only
      break;
  }
  CommunityIdV1(t, seed, out);
  return true;
}

bool EveToServer(const bw_event& ev, const EveLookup* lookup) {
  if (ev.kind == BW_EV_BANNER) return ev.banner_side == BW_SIDE_CLIENT;
  if (ev.kind == BW_EV_NON_TLS) return false;  // a server's payload
  constexpr uint8_t kSyn = 0x02, kAck = 0x10;
  if (ev.l4proto == IPPROTO_TCP && (ev.tcp_flags & kSyn)) return !(ev.tcp_flags & kAck);
  if (!HasPorts(ev)) return true;
  const uint16_t sp = Port(ev.sport), dp = Port(ev.dport);
  // No source port yet: a call refused before the socket was bound (a client's).
  if (sp == 0 && dp != 0) return true;
  if (lookup != nullptr && ev.l4proto == IPPROTO_TCP) {
    const bool sw = lookup->IsWatchedPort(sp), dw = lookup->IsWatchedPort(dp);
    if (sw != dw) return dw;
  }
  if (sp != dp) return dp < sp;
  return true;
}

absl::StatusOr<std::string> BannerBytesFromJson(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size());
  const auto* s = reinterpret_cast<const uint8_t*>(utf8.data());
  for (size_t i = 0; i < utf8.size();) {
    const uint8_t c = s[i];
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if ((c == 0xc2 || c == 0xc3) && i + 1 < utf8.size() && (s[i + 1] & 0xc0) == 0x80) {
      out.push_back(static_cast<char>(((c & 0x1f) << 6) | (s[i + 1] & 0x3f)));
      i += 2;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("banner: byte offset ", i, " is not a code point U+0000..U+00FF"));
    }
  }
  return out;
}

// ---- EveSink ---------------------------------------------------------------------------------------

namespace {

int64_t CoarseNowNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
  return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec;
}

// mkdir -p of the directories above `path`, mode 0750.
absl::Status MakeParents(const std::string& path) {
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    const std::string dir = path.substr(0, pos);
    if (dir.empty() || dir.back() == '/') continue;
    if (mkdir(dir.c_str(), 0750) == 0 || errno == EEXIST) continue;
    const int err = errno;
    struct stat st;  // an existing directory may still answer EACCES/EROFS: that is fine
    if (stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
    return ErrnoStatus(dir, "mkdir", err);
  }
  return absl::OkStatus();
}

}  // namespace

EveSink::EveSink(const EveSinkOptions& opts) : opts_(opts) {}

absl::StatusOr<std::unique_ptr<EveSink>> EveSink::Open(const EveSinkOptions& opts) {
  if (opts.path.empty() && !opts.to_stdout)
    return absl::InvalidArgumentError("eve sink: neither a path nor stdout");
  EveSinkOptions o = opts;
  o.buffer_bytes = std::max<size_t>(o.buffer_bytes, 4096);
  std::unique_ptr<EveSink> sink(new EveSink(o));
  absl::MutexLock lock(&sink->mu_);
  sink->buf_ = std::make_unique<char[]>(o.buffer_bytes);
  if (!o.path.empty()) {
    if (absl::Status st = MakeParents(o.path); !st.ok()) return st;
    if (absl::Status st = sink->OpenFileLocked(); !st.ok()) return st;
  }
  return sink;
}

EveSink::~EveSink() {
  absl::MutexLock lock(&mu_);
  (void)FlushLocked();
  if (fd_ >= 0) close(fd_);
}

absl::Status EveSink::OpenFileLocked() {
  const int fd = open(opts_.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return ErrnoStatus(opts_.path, "open", errno);
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
  return absl::OkStatus();
}

absl::Status EveSink::Write(std::string_view line) {
  absl::MutexLock lock(&mu_);
  absl::Status st = MaybeReopenLocked();
  const size_t need = line.size() + 1;
  if (used_ + need > opts_.buffer_bytes) {
    if (absl::Status f = FlushLocked(); st.ok()) st = f;
  }
  if (need > opts_.buffer_bytes) {  // longer than the whole buffer: write it on its own
    std::string tmp;
    tmp.reserve(need);
    tmp.append(line.data(), line.size());
    tmp.push_back('\n');
    pending_lines_ = 1;
    absl::Status f = WriteAllLocked(tmp.data(), tmp.size());
    pending_lines_ = 0;
    return st.ok() ? f : st;
  }
  std::memcpy(buf_.get() + used_, line.data(), line.size());
  buf_[used_ + line.size()] = '\n';
  used_ += need;
  if (pending_lines_++ == 0) {
    oldest_ns_ = CoarseNowNs();
  } else if (CoarseNowNs() - oldest_ns_ >= absl::ToInt64Nanoseconds(opts_.flush_interval)) {
    if (absl::Status f = FlushLocked(); st.ok()) st = f;
  }
  return st;
}

absl::Status EveSink::Flush() {
  absl::MutexLock lock(&mu_);
  absl::Status st = MaybeReopenLocked();
  if (absl::Status f = FlushLocked(); st.ok()) st = f;
  return st;
}

absl::Status EveSink::Reopen() {
  absl::MutexLock lock(&mu_);
  reopen_requested_.store(false, std::memory_order_relaxed);
  return ReopenLocked();
}

absl::Status EveSink::MaybeReopenLocked() {
  if (!reopen_requested_.load(std::memory_order_relaxed)) return absl::OkStatus();
  reopen_requested_.store(false, std::memory_order_relaxed);
  return ReopenLocked();
}

absl::Status EveSink::ReopenLocked() {
  absl::Status st = FlushLocked();
  if (opts_.path.empty()) return st;
  if (absl::Status o = OpenFileLocked(); !o.ok()) return o;  // the old file stays in use
  reopens_.fetch_add(1, std::memory_order_relaxed);
  return st;
}

absl::Status EveSink::FlushLocked() {
  if (used_ == 0) return absl::OkStatus();
  absl::Status st = WriteAllLocked(buf_.get(), used_);
  used_ = 0;
  pending_lines_ = 0;
  return st;
}

// Writes to every output; counts the lines in flight (pending_lines_) as written if at least one
// output took them all, else as dropped. The file only ever holds whole lines: when a write stops
// part of the way (a full disk, a file size limit), the lines it finished count as written and
// the cut one is taken off again (ftruncate to the last '\n'), so the next line starts afresh.
absl::Status EveSink::WriteAllLocked(const char* data, size_t n) {
  absl::Status first;
  bool any_ok = false;
  uint64_t partial_lines = 0;  // lines a failed file write still got out whole
  auto write_fd = [&](int fd, absl::string_view name, bool is_file) {
    off_t start = is_file ? lseek(fd, 0, SEEK_END) : -1;
    size_t off = 0;
    while (off < n) {
      const ssize_t w = write(fd, data + off, n - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        write_errors_.fetch_add(1, std::memory_order_relaxed);
        if (first.ok()) first = ErrnoStatus(name, "write", err);
        if (is_file && off > 0 && start >= 0) {
          const char* last_nl = static_cast<const char*>(memrchr(data, '\n', off));
          size_t whole = last_nl ? static_cast<size_t>(last_nl - data) + 1 : 0;
          partial_lines = static_cast<uint64_t>(std::count(data, data + whole, '\n'));
          if (whole < off && ftruncate(fd, start + static_cast<off_t>(whole)) != 0) {
            // Cannot take the cut line off: end it, so that the next line stands on its own.
            (void)!write(fd, "\n", 1);
          }
        }
        return;
      }
      off += static_cast<size_t>(w);
    }
    any_ok = true;
  };
  if (fd_ >= 0) write_fd(fd_, opts_.path, true);
  if (opts_.to_stdout) write_fd(STDOUT_FILENO, "stdout", false);
  if (any_ok) {
    lines_written_.fetch_add(pending_lines_, std::memory_order_relaxed);
  } else {
    lines_written_.fetch_add(partial_lines, std::memory_order_relaxed);
    lines_dropped_.fetch_add(pending_lines_ - std::min(partial_lines, pending_lines_),
                             std::memory_order_relaxed);
  }
  return first;
}

}  // namespace bw
