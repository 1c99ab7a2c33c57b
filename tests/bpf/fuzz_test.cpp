// Differential fuzz of the data plane against the userspace reference model (lib/reference.hpp).
//
// A seeded generator (std::mt19937_64; BW_FUZZ_SEED, BW_FUZZ_FRAMES override the defaults) makes
// epochs of about 10,000 frames. Each epoch starts from BpfHarness::Reset() with a new random
// configuration, written to the maps and mirrored into a fresh ReferenceModel: a few IPv4/IPv6
// prefixes (random lengths, any combination of action bits, random list ids), random watched and
// proxy ports, banner actions and the non-TLS flag, a block-event interval of 0 (every block emits
// an event; the rate limiter is the fixture table's). Frames are structured (VLAN tags, IPv4
// options, IPv6 extension headers, fragments, TCP/UDP/ICMP/raw, ports, sequence numbers and
// payloads from small sets, addresses from a pool that hits the watchlists, IPv4-mapped IPv6),
// replays of earlier flows (to reach banner-dropped flows), scripted flows (below), fully random,
// or any of those mutated (bit flips, truncation, random length fields, IHL, doff, sequence
// numbers, payload heads, ...). About a quarter run through TC egress, the rest through XDP
// ingress.
//
// Scripted flows exercise the state the kernel keeps between frames, interleaved with each other
// and with everything else: banners cut into segments of one to three bytes that continue at the
// right sequence number (or not: gaps, overlaps, wrong bytes, retransmissions, data and ACKs in
// between); SYN-ACKs from watched ports followed by a first payload at ISN + 1 (lines before the
// version line, long lines, lines up to the 1024-byte window, HTTP responses with "SSH-" lines,
// non-TLS text, TLS records, splits, wrong sequence numbers); and HTTP CONNECT requests to proxy
// ports (hostnames, IPv4, [IPv6], watched and unwatched ports, overlong and junk targets) followed
// by the proxy's 200/403/... replies with or without the banner in the same segment.
//
// Per frame: the verdict and every event field except ts_ns must equal the model's. Per epoch:
// both directions' counters, every watchlist entry (value and hits/drops), the set of dropped
// flows and the contents of bw_stream, bw_partial and bw_tunnels must equal the model's; on a
// difference the epoch is replayed with counters and state maps compared after every frame, to
// name the frame. A failure prints the seed, the frame index, the frame hex, the frame's recipe and
// both sides' results. A frame's outcome can depend on earlier frames of its epoch (dropped flows,
// split banners, first payloads, tunnels), so reproduce with the same seed and BW_FUZZ_FRAMES =
// index + 1.
//
// The model follows the rules alone (the kernel's CONNECT parsing was fixed to match them);
// BW_FUZZ_STRICT=0 makes it follow the departures an older kernel had (enum RefQuirk in
// lib/reference.hpp), counted in the summary.
//
// BPF_PROG_TEST_RUN for TC refuses (EINVAL) frames whose EtherType is IPv4/IPv6 but which are
// shorter than that IP header; those few run through XDP instead. Frames are never shorter than
// an Ethernet header: neither test run accepts them.
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/bpf_harness.hpp"
#include "lib/packet.hpp"
#include "lib/reference.hpp"

namespace bw::test {
namespace {

constexpr uint64_t kDefaultSeed = 0x5353482d322e3030ULL;  // "SSH-2.00"
constexpr uint64_t kDefaultFrames = 1000000;
constexpr size_t kEpochFrames = 10000;

uint64_t EnvU64(const char* name, uint64_t def) {
  const char* v = std::getenv(name);
  if (!v || !*v) return def;
  char* end = nullptr;
  unsigned long long x = std::strtoull(v, &end, 0);
  if (!end || *end) FAIL(name << ": not a number: " << v);
  return x;
}

std::string Printable(std::string_view b, size_t max = 48) {
  std::string s;
  for (size_t i = 0; i < b.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(b[i]);
    if (c == '\r')
      s += "\\r";
    else if (c == '\n')
      s += "\\n";
    else if (c >= 0x20 && c < 0x7f)
      s += static_cast<char>(c);
    else
      absl::StrAppendFormat(&s, "\\x%02x", c);
  }
  if (b.size() > max) absl::StrAppend(&s, "...(", b.size(), ")");
  return s;
}

std::string Hex(const Bytes& b) {
  std::string s;
  for (size_t i = 0; i < b.size(); ++i) {
    if (i && i % 32 == 0) s += "\n    ";
    absl::StrAppendFormat(&s, "%02x", b[i]);
  }
  return s;
}

// What an epoch writes into the maps (and the model's view of it).
struct EpochSetup {
  RefConfig cfg;
  std::vector<std::pair<uint16_t, uint8_t>> port_values;  // raw bw_ports values written
  std::string ToString() const {
    std::string s = absl::StrFormat(
        "banner_action server=%u client=%u; flags=0x%02x; unparsed=%u; quirks=0x%x;",
        cfg.banner_action[BW_SIDE_SERVER], cfg.banner_action[BW_SIDE_CLIENT], cfg.flags,
        cfg.unparsed, cfg.quirks);
    absl::StrAppend(&s, " watched ports:");
    for (auto [p, v] : port_values)
      if (v & BW_PORT_WATCHED) absl::StrAppend(&s, " ", p);
    absl::StrAppend(&s, "; proxy ports:");
    for (auto [p, v] : port_values)
      if (v & BW_PORT_PROXY) absl::StrAppend(&s, " ", p);
    absl::StrAppend(&s, "; prefixes (insertion order):");
    for (const RefPrefix& p : cfg.prefixes) absl::StrAppend(&s, "\n    ", p.ToString());
    return s;
  }
};

// A configuration change in the middle of an epoch (the daemon writes bw_config and bw_ports at
// any time): state made under one setting meets frames decided under another.
struct Reconfig {
  RefConfig cfg;  // banner actions, flags and port flags from now on (prefixes unused)
  std::vector<std::pair<uint16_t, uint8_t>> port_updates;  // bw_ports values written
  std::string ToString() const {
    std::string s = absl::StrFormat("banner_action server=%u client=%u; flags=0x%02x; unparsed=%u",
                                    cfg.banner_action[BW_SIDE_SERVER],
                                    cfg.banner_action[BW_SIDE_CLIENT], cfg.flags, cfg.unparsed);
    for (auto [p, v] : port_updates) absl::StrAppend(&s, "; port ", p, " = ", v);
    return s;
  }
};

struct Case {
  Bytes frame;
  bool tc = false;  // TC egress (else XDP ingress)
  std::string recipe;
  std::optional<Reconfig> reconfig;  // applied to the kernel and the model before this frame
};

// A TCP conversation seen earlier, to send more of it (either way) after a banner drop.
struct Tuple {
  Addr src, dst;
  uint16_t sport, dport;
};

// Where the builder put things, for targeted mutations.
struct Layout {
  size_t l3 = 14;
  size_t l4 = 0;  // 0: unknown
  size_t payload = 0;  // TCP payload; 0: unknown
  int family = 0;  // 0: not IP
  std::vector<size_t> exts;  // IPv6 extension header offsets
};

class Generator {
 public:
  // `features`: enum bw_feature bits of the object under test, for the model (RefConfig).
  Generator(uint64_t seed, uint32_t features) : rng_(seed), features_(features) {
    for (const char* a : {"203.0.113.10", "203.0.113.77", "203.0.113.255", "198.51.100.20",
                          "198.51.100.1", "37.9.53.12", "37.9.53.200", "192.0.2.1", "10.1.2.3",
                          "0.0.0.0", "255.255.255.255", "1.2.3.4"})
      v4_.push_back(Addr::Parse(a));
    for (const char* a : {"2001:db8:1::10", "2001:db8:1::11", "2001:db8:2::20", "2001:db8:1:ffff::1",
                          "2001:db8:ffff::1", "fe80::1", "::1", "::", "::ffff:203.0.113.10",
                          "::ffff:37.9.53.12", "::ffff:198.51.100.20", "::ffff:0:203.0.113.10",
                          "::203.0.113.10", "64:ff9b::203.0.113.10", "2001:db8::ffff:203.0.113.10"})
      v6_.push_back(Addr::Parse(a));
    payloads_ = {
        "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
        "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3 with a comment long enough to pass 64 bytes\r\n",
        "SSH-1.99-Cisco-1.25\r\n",
        "SSH-",
        "SSH",
        "SS",
        "S",
        " SSH-2.0-x\r\n",
        "ssh-2.0-x\r\n",
        "SSH_2.0-x\r\n",
        "SSH-2.0-dropbear_2022.83\r\n",
        std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),
        "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\n",
        "",
        "H-2.0-x\r\n",
        "-2.0-x\r\n",
        "CONNECT 203.0.113.10:443 HTTP/1.1\r\n\r\n",
        "CONNECT [2001:db8::10]:22 HTTP/1.1\r\n\r\n",
        "HTTP/1.1 200 Connection established\r\n\r\nSSH-2.0-x\r\n",
        "HTTP/1.0 403 Forbidden\r\n\r\n",
        "+OK POP3 ready\r\n",
        "banner follows\r\nSSH-2.0-x\r\n",
    };
  }

  uint64_t Below(uint64_t n) { return rng_() % n; }
  bool Chance(unsigned percent) { return Below(100) < percent; }

  EpochSetup NewSetup() {
    EpochSetup s;
    s.cfg.features = features_;
    watched_.clear();
    proxies_.clear();
    for (uint16_t p : kPortPool) {
      bool proxy_like = p == 3128 || p == 8080;
      bool watched = p == 443 ? Chance(70) : proxy_like ? Chance(15) : Chance(35);
      bool proxy = proxy_like ? Chance(75) : Chance(12);
      uint8_t v =
          static_cast<uint8_t>((watched ? BW_PORT_WATCHED : 0) | (proxy ? BW_PORT_PROXY : 0));
      if (Chance(3)) v |= static_cast<uint8_t>(rng_() & 0xfc);  // bits the kernel does not know
      s.cfg.port_flags[p] = v;
      s.port_values.emplace_back(p, v);
      if (watched) watched_.push_back(p);
      if (proxy) proxies_.push_back(p);
    }
    s.cfg.banner_action[BW_SIDE_SERVER] = static_cast<uint8_t>(Below(3));
    s.cfg.banner_action[BW_SIDE_CLIENT] = static_cast<uint8_t>(Below(3));
    s.cfg.flags = Chance(50) ? BW_CFG_NON_TLS : 0;
    // Now and then bits the kernel does not know (BW_CFG_PREFILTER it knows: the model decides
    // through the trie, as the kernel does without it; the pre-filter has its own tests).
    if (Chance(5))
      s.cfg.flags |= static_cast<uint8_t>(rng_() & ~uint64_t{BW_CFG_NON_TLS | BW_CFG_PREFILTER});
    s.cfg.unparsed = static_cast<uint8_t>(Below(3));
    scripts_.clear();
    size_t n = Below(10);
    for (size_t i = 0; i < n; ++i) {
      RefPrefix p;
      p.family = Chance(55) ? 4 : 6;
      // Nested prefixes: often reuse an earlier base of the same family.
      const RefPrefix* nest = nullptr;
      for (const RefPrefix& q : s.cfg.prefixes)
        if (q.family == p.family && Chance(40)) nest = &q;
      if (nest) {
        std::memcpy(p.addr, nest->addr, 16);
      } else {
        Addr a = p.family == 4 ? PoolOrRandom(v4_, 4) : PoolOrRandom(v6_, 6);
        std::memcpy(p.addr, a.b, 16);
      }
      if (p.family == 4) {
        static constexpr uint8_t kLens[] = {0, 8, 16, 24, 32, 32, 28, 30, 31};
        p.len = Chance(25) ? Below(33) : kLens[Below(std::size(kLens))];
      } else {
        static constexpr uint8_t kLens[] = {0, 32, 48, 64, 96, 104, 112, 120, 127, 128, 128};
        p.len = Chance(25) ? Below(129) : kLens[Below(std::size(kLens))];
      }
      Mask(p.addr, p.len);
      p.action = static_cast<uint8_t>(Below(8));
      p.list_id = Chance(15) ? 0 : 1 + Below(1000);
      p.entry_ref = static_cast<uint32_t>(rng_());
      s.cfg.prefixes.push_back(p);
    }
    prefixes_ = s.cfg.prefixes;
    history_.clear();
    cur_ = s.cfg;
    cur_.prefixes.clear();
    return s;
  }

  Reconfig NewReconfig() {
    Reconfig r;
    if (Chance(70)) {
      cur_.banner_action[BW_SIDE_SERVER] = static_cast<uint8_t>(Below(3));
      cur_.banner_action[BW_SIDE_CLIENT] = static_cast<uint8_t>(Below(3));
    }
    if (Chance(40)) cur_.flags = Chance(50) ? BW_CFG_NON_TLS : 0;
    if (Chance(20)) cur_.unparsed = static_cast<uint8_t>(Below(3));
    if (Chance(35)) {
      uint16_t p = kPortPool[Below(std::size(kPortPool))];
      uint8_t v = static_cast<uint8_t>(Below(4));
      cur_.port_flags[p] = v;
      r.port_updates.emplace_back(p, v);
      watched_.clear();
      proxies_.clear();
      for (uint16_t q : kPortPool) {
        if (cur_.port_flags[q] & BW_PORT_WATCHED) watched_.push_back(q);
        if (cur_.port_flags[q] & BW_PORT_PROXY) proxies_.push_back(q);
      }
    }
    r.cfg = cur_;
    reconfigs_++;
    return r;
  }

  Case NewCase() {
    Case c;
    if (Below(4000) == 0) c.reconfig = NewReconfig();
    c.tc = Chance(25);
    Layout lay;
    unsigned kind = Below(100);
    bool scripted = false;
    if (kind < 3) {
      c.frame = RandomFrame(c.recipe, lay);
    } else if (kind < 13 && !history_.empty()) {
      c.frame = Replay(c.recipe, lay);
    } else if (kind < 40) {
      c.frame = FromScript(c.recipe, lay);
      scripted = true;
    } else {
      c.frame = Structured(c.recipe, lay);
    }
    // Scripted frames are mutated less often: a mutation usually ends the script's story.
    if (Chance(scripted ? 12 : 30)) {
      c.recipe += " | mutations:";
      for (int n = 1 + Below(3); n > 0; --n) Mutate(c.frame, lay, c.recipe);
      mutated_++;
    }
    if (c.tc && TcTestRunRefuses(c.frame)) {
      c.tc = false;
      tc_refused_++;
    }
    return c;
  }

  // BPF_PROG_TEST_RUN for TC (6.18 at least) refuses with EINVAL a frame whose outer EtherType is
  // IPv4 or IPv6 but which is too short for that IP header; such frames run through XDP only.
  static bool TcTestRunRefuses(const Bytes& f) {
    uint16_t type = static_cast<uint16_t>((f[12] << 8) | f[13]);
    return (type == 0x0800 && f.size() < 14 + 20) || (type == 0x86dd && f.size() < 14 + 40);
  }

  uint64_t mutated() const { return mutated_; }
  uint64_t replays() const { return replays_; }
  uint64_t randoms() const { return randoms_; }
  uint64_t tc_refused() const { return tc_refused_; }
  uint64_t scripted_frames() const { return scripted_frames_; }
  uint64_t reconfigs() const { return reconfigs_; }
  const std::array<uint64_t, 3>& scripts() const { return scripts_started_; }  // split/first/proxy

 private:
  static constexpr uint16_t kPortPool[] = {443,   8443, 22,    80, 2222, 51000,
                                           40000, 0,    65535, 1,  3128, 8080};

  static void Mask(uint8_t* a, unsigned len) {
    for (unsigned bit = len; bit < 128; ++bit) a[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  }

  Addr RandomAddr(int family) {
    Addr a;
    a.family = family;
    for (int i = 0; i < (family == 4 ? 4 : 16); ++i) a.b[i] = static_cast<uint8_t>(rng_());
    return a;
  }

  Addr PoolOrRandom(const std::vector<Addr>& pool, int family) {
    return Chance(85) ? pool[Below(pool.size())] : RandomAddr(family);
  }

  // An address inside (or just outside) one of the epoch's prefixes.
  bool NearPrefix(int family, Addr& out) {
    if (prefixes_.empty()) return false;
    const RefPrefix& p = prefixes_[Below(prefixes_.size())];
    if (p.family == 6 && family == 4) return false;
    unsigned bits = p.family == 4 ? 32 : 128;
    uint8_t a[16];
    std::memcpy(a, p.addr, 16);
    for (unsigned bit = p.len; bit < bits; ++bit)
      if (rng_() & 1) a[bit / 8] ^= static_cast<uint8_t>(0x80 >> (bit % 8));
    if (p.len > 0 && Chance(20)) {
      unsigned bit = p.len - 1 - Below(std::min(p.len, uint8_t{3}));
      a[bit / 8] ^= static_cast<uint8_t>(0x80 >> (bit % 8));
    }
    out = Addr{};
    out.family = family;
    if (family == 4) {
      std::memcpy(out.b, a, 4);
    } else if (p.family == 4) {  // IPv4-mapped IPv6
      out.b[10] = out.b[11] = 0xff;
      std::memcpy(out.b + 12, a, 4);
    } else {
      std::memcpy(out.b, a, 16);
    }
    return true;
  }

  Addr PickAddr(int family, unsigned near_percent = 35) {
    Addr a;
    if (Chance(near_percent) && NearPrefix(family, a)) return a;
    return PoolOrRandom(family == 4 ? v4_ : v6_, family);
  }

  uint16_t PickPort() {
    return Chance(85) ? kPortPool[Below(std::size(kPortPool))] : static_cast<uint16_t>(rng_());
  }

  uint8_t PickFlags() {
    static constexpr uint8_t kFlags[] = {kSyn, kSyn | kAck, kAck, kAck | kPsh, kFin | kAck, kRst, kAck | kPsh};
    return Chance(85) ? kFlags[Below(std::size(kFlags))] : static_cast<uint8_t>(rng_());
  }

  std::string PickPayload(std::string& recipe) {
    if (Chance(15)) {
      std::string p(1 + Below(300), '\0');
      for (char& ch : p) ch = static_cast<char>(rng_());
      if (Chance(30)) p.replace(0, std::min<size_t>(4, p.size()), "SSH-");
      recipe += absl::StrCat(" payload=random(", p.size(), ")");
      return p;
    }
    size_t i = Below(payloads_.size());
    recipe += absl::StrCat(" payload#", i);
    return payloads_[i];
  }

  void AddVlans(PacketBuilder& b, Layout& lay, std::string& recipe) {
    unsigned r = Below(100);
    // Mostly none to two; sometimes a stack up to the bound, or one tag past it (vlan_limit).
    int tags = r < 65 ? 0 : r < 85 ? 1 : r < 95 ? 2 : r < 98 ? 3 + static_cast<int>(Below(BW_VLAN_MAX - 2)) : BW_VLAN_MAX + 1;
    for (int i = 0; i < tags; ++i) {
      uint16_t tpid = Chance(50) ? 0x8100 : 0x88a8;
      b.vlan(static_cast<uint16_t>(Below(4096)), tpid);
      recipe += absl::StrFormat(" vlan(0x%04x)", tpid);
    }
    lay.l3 = 14 + 4 * tags;
  }

  void AddL4(PacketBuilder& b, int family, Layout& lay, std::string& recipe, size_t l4) {
    unsigned r = Below(100);
    if (r < 72) {
      uint16_t sp = PickPort(), dp = PickPort();
      uint8_t fl = PickFlags();
      uint32_t seq = PickSeq();
      b.tcp(sp, dp, fl).seq(seq);
      recipe += absl::StrFormat(" tcp %u->%u flags=0x%02x seq=%u", sp, dp, fl, seq);
      size_t opt = 0;
      if (Chance(20)) {
        opt = 4 * (1 + Below(10));
        b.tcp_options(opt);
        recipe += absl::StrCat(" tcpopt=", opt);
      }
      b.payload(PickPayload(recipe));
      lay.l4 = l4;
      lay.payload = l4 + 20 + opt;
      last_tcp_ = true;
      last_ports_ = {sp, dp};
    } else if (r < 84) {
      uint16_t sp = PickPort(), dp = PickPort();
      b.udp(sp, dp).payload(PickPayload(recipe));
      recipe += absl::StrFormat(" udp %u->%u", sp, dp);
      lay.l4 = l4;
    } else if (r < 94) {
      b.icmp().payload(PickPayload(recipe));
      recipe += family == 4 ? " icmp" : " icmpv6";
      lay.l4 = l4;
    } else {
      static constexpr uint8_t kRaw[] = {0, 6, 17, 43, 44, 51, 59, 60, 132, 255};
      uint8_t proto = Chance(70) ? kRaw[Below(std::size(kRaw))] : static_cast<uint8_t>(rng_());
      b.l4proto(proto).payload(PickPayload(recipe));
      recipe += absl::StrCat(" raw-proto=", proto);
      lay.l4 = l4;
    }
  }

  Bytes Structured(std::string& recipe, Layout& lay) {
    PacketBuilder b;
    AddVlans(b, lay, recipe);
    last_tcp_ = false;
    unsigned r = Below(100);
    std::vector<std::pair<size_t, uint16_t>> frag_edits;  // (offset, value) for ext type 44
    Addr src, dst;
    if (r < 47) {
      src = PickAddr(4), dst = PickAddr(4);
      b.ip(src, dst);
      lay.family = 4;
      recipe += absl::StrCat(" v4 ", src.ToString(), " > ", dst.ToString());
      size_t opt = 0;
      if (Chance(20)) {
        opt = 4 * (1 + Below(10));
        b.ip_options(opt);
        recipe += absl::StrCat(" ipopt=", opt);
      }
      if (Chance(8)) {
        uint16_t off = Chance(35) ? 0 : static_cast<uint16_t>(1 + Below(1000));
        bool more = Chance(50);
        b.fragment(off, more);
        recipe += absl::StrCat(" frag(", off, more ? ",MF)" : ")");
      }
      AddL4(b, 4, lay, recipe, lay.l3 + 20 + opt);
    } else if (r < 94) {
      src = PickAddr(6), dst = PickAddr(6);
      b.ip(src, dst);
      lay.family = 6;
      recipe += absl::StrCat(" v6 ", src.ToString(), " > ", dst.ToString());
      unsigned e = Below(100);
      // Up to two past the bound BW_V6_EXT_MAX (v6_ext_limit).
      int exts = e < 60 ? 0 : e < 80 ? 1 + Below(2) : e < 92 ? 3 + Below(3) : 6 + Below(BW_V6_EXT_MAX - 3);
      size_t pos = lay.l3 + 40;
      for (int i = 0; i < exts; ++i) {
        static constexpr uint8_t kTypes[] = {kIpprotoHopopts, kIpprotoRouting, kIpprotoDstopts,
                                             kIpprotoAh, kIpprotoFragment};
        uint8_t t = kTypes[Below(std::size(kTypes))];
        size_t bytes = t == kIpprotoAh ? 4 * (2 + Below(6)) : t == kIpprotoFragment ? 8 : 8 * (1 + Below(4));
        if (t != kIpprotoFragment && Chance(4))  // a long one: payload offsets past 256 bytes
          bytes = t == kIpprotoAh ? 4 * (2 + Below(200)) : 8 * (1 + Below(100));
        b.v6_ext(t, bytes);
        lay.exts.push_back(pos);
        if (t == kIpprotoFragment) {
          uint16_t off = Chance(60) ? 0 : static_cast<uint16_t>(1 + Below(8191));
          frag_edits.emplace_back(pos + 2, static_cast<uint16_t>((off << 3) | Below(2)));
          recipe += absl::StrCat(" ext44(off=", off, ")");
        } else {
          recipe += absl::StrCat(" ext", t, "(", bytes, ")");
        }
        pos += bytes;
      }
      if (Chance(8)) {
        uint16_t off = Chance(40) ? 0 : static_cast<uint16_t>(1 + Below(8191));
        bool more = Chance(50);
        b.fragment(off, more);
        lay.exts.push_back(pos);
        pos += 8;
        recipe += absl::StrCat(" frag(", off, more ? ",M)" : ")");
      }
      AddL4(b, 6, lay, recipe, pos);
    } else {
      static constexpr uint16_t kTypes[] = {0x0806, 0x88cc, 0x0000, 0x05dc, 0x8847, 0x86dc, 0x0801};
      uint16_t t = Chance(70) ? kTypes[Below(std::size(kTypes))] : static_cast<uint16_t>(rng_());
      b.ethertype(t);
      recipe += absl::StrFormat(" ethertype=0x%04x", t);
    }
    if (lay.family == 0 || Chance(15)) {
      size_t to = 60 + Below(40);
      uint8_t fill = Chance(50) ? 0 : static_cast<uint8_t>(rng_());
      b.pad_to(to, fill);
      recipe += absl::StrFormat(" pad_to(%u,0x%02x)", to, fill);
    }
    Bytes f = b.build();
    for (auto [off, v] : frag_edits) {
      f[off] = static_cast<uint8_t>(v >> 8);
      f[off + 1] = static_cast<uint8_t>(v);
    }
    if (last_tcp_) {
      history_.push_back({src, dst, last_ports_.first, last_ports_.second});
      if (history_.size() > 64) history_.pop_front();
    }
    recipe = "structured:" + recipe;
    return f;
  }

  // More of an earlier TCP conversation, same way or reversed, plain headers.
  Bytes Replay(std::string& recipe, Layout& lay) {
    replays_++;
    const Tuple& t = history_[Below(history_.size())];
    bool rev = Chance(50);
    PacketBuilder b;
    AddVlans(b, lay, recipe);
    Addr s = rev ? t.dst : t.src, d = rev ? t.src : t.dst;
    uint16_t sp = rev ? t.dport : t.sport, dp = rev ? t.sport : t.dport;
    uint8_t fl = PickFlags();
    uint32_t seq = PickSeq();
    b.ip(s, d).tcp(sp, dp, fl).seq(seq);
    lay.family = s.family;
    lay.l4 = lay.l3 + (s.family == 4 ? 20 : 40);
    lay.payload = lay.l4 + 20;
    recipe +=
        absl::StrFormat(" %s %s:%u > %s:%u flags=0x%02x seq=%u", rev ? "reversed" : "same-way",
                        s.ToString(), sp, d.ToString(), dp, fl, seq);
    b.payload(PickPayload(recipe));
    recipe = "replay:" + recipe;
    return b.build();
  }

  // ---- scripted flows ------------------------------------------------------------------------
  // A script is a short story on one flow (a split banner, a SYN-ACK and its first payload, a
  // CONNECT through a proxy), built up front with correct sequence numbers and then played one
  // frame at a time, interleaved with other scripts and with every other kind of frame.

  struct Pending {
    Bytes frame;
    Layout lay;
    std::string recipe;
  };
  struct Endpoint {
    Addr addr;
    uint16_t port = 0;
  };

  uint32_t PickSeq() {
    unsigned r = Below(100);
    if (r < 25) return 0x11000000;  // the builder's default
    if (r < 40) {
      static constexpr uint32_t kEdges[] = {0,          1,          0x7fffffff, 0x80000000,
                                            0xfffffffc, 0xfffffffd, 0xfffffffe, 0xffffffff};
      return kEdges[Below(std::size(kEdges))];
    }
    return static_cast<uint32_t>(rng_());
  }

  std::string RandomText(size_t n) {
    std::string s(n, ' ');
    for (char& c : s) c = static_cast<char>(0x20 + Below(0x5f));
    return s;
  }

  std::string RandomBytes(size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng_());
    return s;
  }

  std::string Banner() {
    static const std::string kBanners[] = {
        "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
        "SSH-2.0-dropbear_2022.83\r\n",
        "SSH-1.99-Cisco-1.25\r\n",
        "SSH-2.0-Go\r\n",
        "SSH-",
        "SSH-2.0-" + std::string(100, 'x') + "\r\n",
        "SSH-2.0-OpenSSH_8.4p1 Ubuntu-5ubuntu1.2 with a comment that runs past 64 bytes\r\n",
    };
    return kBanners[Below(std::size(kBanners))];
  }

  // Mostly a port the epoch watches (servers), or a proxy port (proxies).
  uint16_t ServerPort() {
    return !watched_.empty() && Chance(80) ? watched_[Below(watched_.size())] : PickPort();
  }
  uint16_t ProxyPort() {
    return !proxies_.empty() && Chance(85) ? proxies_[Below(proxies_.size())] : PickPort();
  }

  // A new flow: {server (or proxy), client}. Remembered for replays (banner-dropped flows).
  std::pair<Endpoint, Endpoint> NewFlow(uint16_t server_port) {
    int fam = Chance(55) ? 4 : 6;
    // Fewer addresses near the watchlists than elsewhere: a safelisted or blocked remote never
    // reaches the banner checks, and scripts are there for those.
    Endpoint srv{PickAddr(fam, 15), server_port};
    Endpoint cli{PickAddr(fam, 15),
                 Chance(25) ? PickPort() : static_cast<uint16_t>(1024 + Below(64512))};
    history_.push_back({cli.addr, srv.addr, cli.port, srv.port});
    if (history_.size() > 64) history_.pop_front();
    return {srv, cli};
  }

  // `urg`: the urgent pointer, with URG set (-1: neither).
  Pending Segment(const Endpoint& from, const Endpoint& to, uint8_t flags, uint32_t seq,
                  std::string_view payload, int urg = -1) {
    Pending p;
    PacketBuilder b;
    std::string vlans;
    AddVlans(b, p.lay, vlans);
    b.ip(from.addr, to.addr).tcp(from.port, to.port, flags).seq(seq);
    if (urg >= 0) b.urg(static_cast<uint16_t>(urg));
    size_t opt = 0;
    if (Chance(8)) {
      opt = 4 * (1 + Below(10));
      b.tcp_options(opt);
    }
    b.payload(payload);
    p.lay.family = from.addr.family;
    p.lay.l4 = p.lay.l3 + (from.addr.family == 4 ? 20 : 40);
    p.lay.payload = p.lay.l4 + 20 + opt;
    p.frame = b.build();
    p.recipe = absl::StrFormat("%s %s:%u > %s:%u flags=0x%02x seq=%u%s%s payload=\"%s\"", vlans,
                               from.addr.ToString(), from.port, to.addr.ToString(), to.port, flags,
                               seq, urg >= 0 ? absl::StrCat(" urg=", urg) : "",
                               opt ? absl::StrCat(" tcpopt=", opt) : "", Printable(payload));
    return p;
  }

  Bytes FromScript(std::string& recipe, Layout& lay) {
    if (scripts_.empty() || (scripts_.size() < 6 && Chance(25))) StartScript();
    size_t i = Below(scripts_.size());
    Pending p = std::move(scripts_[i].front());
    scripts_[i].pop_front();
    if (scripts_[i].empty()) scripts_.erase(scripts_.begin() + static_cast<long>(i));
    scripted_frames_++;
    recipe = std::move(p.recipe);
    lay = p.lay;
    return std::move(p.frame);
  }

  void StartScript() {
    std::deque<Pending> s;
    unsigned r = Below(100);
    const char* name;
    if (r < 35) {
      SplitScript(s);
      name = "split";
      scripts_started_[0]++;
    } else if (r < 70) {
      FirstPayloadScript(s);
      name = "first-payload";
      scripts_started_[1]++;
    } else {
      ProxyScript(s);
      name = "proxy";
      scripts_started_[2]++;
    }
    uint64_t id = ++script_ids_;
    size_t n = s.size(), k = 0;
    for (Pending& p : s)
      p.recipe = absl::StrFormat("script #%u %s, step %u/%u:%s", id, name, ++k, n, p.recipe);
    scripts_.push_back(std::move(s));
  }

  // `text` from `seq` on, its first four bytes cut into segments of one to three bytes, with the
  // things that happen to real flows in between. Returns the sequence number after it.
  uint32_t Pieces(std::deque<Pending>& out, const Endpoint& from, const Endpoint& to, uint32_t seq,
                  const std::string& text) {
    size_t pos = 0, prev_len = 0;
    for (int i = 0; pos < text.size(); ++i) {
      size_t k = text.size() - pos;
      if (pos < 4 && !(i == 0 && Chance(5))) {
        k = 1 + Below(3);
        if (pos + k >= 4) k = Chance(20) ? 4 - pos : text.size() - pos;
        k = std::min(k, text.size() - pos);
      }
      if (i > 0) {
        unsigned v = Below(100);
        if (v < 6) {
          seq += 1 + static_cast<uint32_t>(Below(3));  // a gap: no continuation
        } else if (v < 10) {
          seq -= 1 + static_cast<uint32_t>(Below(2));  // an overlap
        } else if (v < 15) {                           // the previous segment again
          out.push_back(Segment(from, to, kAck | kPsh, seq - static_cast<uint32_t>(prev_len),
                                text.substr(pos - prev_len, prev_len)));
        } else if (v < 19) {  // other data in between, in sequence
          std::string d =
              Chance(50) ? RandomText(1 + Below(6)) : std::string(Chance(50) ? "H" : "-");
          out.push_back(Segment(from, to, kAck | kPsh, seq, d));
          seq += static_cast<uint32_t>(d.size());
        } else if (v < 25) {  // the other direction
          out.push_back(Segment(to, from, kAck, PickSeq(), Chance(60) ? "" : text.substr(0, 2)));
        } else if (v < 29) {  // a bare ACK at the same sequence number
          out.push_back(Segment(from, to, kAck, seq, ""));
        }
      }
      std::string piece = text.substr(pos, k);
      if (Chance(5)) piece[Below(std::min<size_t>(piece.size(), 3))] = "Xs_H"[Below(4)];
      out.push_back(Segment(from, to, kAck | kPsh, seq, piece));
      seq += static_cast<uint32_t>(piece.size());
      pos += k;
      prev_len = k;
    }
    return seq;
  }

  void SplitScript(std::deque<Pending>& out) {
    auto [srv, cli] = NewFlow(ServerPort());
    bool from_server = Chance(60);
    const Endpoint& from = from_server ? srv : cli;
    const Endpoint& to = from_server ? cli : srv;
    std::string text =
        Chance(90) ? Banner() : std::string(Chance(50) ? "SSL is not SSH\r\n" : "SSh-2.0-x\r\n");
    uint32_t seq = Pieces(out, from, to, PickSeq(), text);
    if (Chance(30))  // the flow goes on (dropped if its banner was)
      out.push_back(Segment(from, to, kAck | kPsh, seq, Chance(50) ? "more data" : Banner()));
  }

  // A server's first payload; "" asks the caller to send a split banner instead.
  std::string FirstPayload() {
    unsigned r = Below(100);
    if (r < 38) return Prelines();
    if (r < 48) {
      static const std::string kHttp[] = {
          "HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 40\r\n\r\n",
          "HTTP/1.1 200 OK\r\nSSH-2.0-in-the-head\r\n\r\n",
          "HTTP/1.0 400 Bad Request\r\n\r\n",
          "HTTP",
          "HTTx/1.1 200 OK\r\n",
      };
      std::string h = kHttp[Below(std::size(kHttp))];
      return Chance(60) ? h + Banner() : h;
    }
    if (r < 62) {
      static const std::string kText[] = {
          "+OK POP3 server ready\r\n",
          "220 mail.example.test ESMTP Postfix\r\n",
          "* OK [CAPABILITY IMAP4rev1] ready\r\n",
          "RFB 003.008\n",
          "-ERR go away\r\n",
          "H",
          "Hi",
          "S",
          std::string("\x00\x00\x00\x01", 4),
          std::string("\x13\x03\x03 just below TLS\r\nSSH-2.0-x\r\n", 28),
          std::string("\x18\x03\x03 just above TLS\r\nSSH-2.0-x\r\n", 28),
      };
      return kText[Below(std::size(kText))];
    }
    if (r < 72) {  // a TLS record, sometimes with a version line after it: never looked at
      std::string t(1, static_cast<char>(20 + Below(4)));
      t += std::string("\x03\x03\x00\x40", 4) + RandomBytes(Below(60));
      return Chance(40) ? t + "\r\n" + Banner() : t;
    }
    if (r < 80) return Chance(70) ? Banner() : Banner() + "more after the banner\r\n";
    if (r < 88) return "";
    return RandomBytes(1 + Below(300));
  }

  // Lines before the version line (RFC 4253 4.2): short ones, lines near the 255-byte limit, long
  // ones, and version lines near the end of the 1024-byte window.
  std::string Prelines() {
    std::string s;
    int lines = static_cast<int>(Below(6));
    for (int i = 0; i < lines; ++i) {
      unsigned q = Below(100);
      size_t len = q < 75 ? Below(60) : q < 87 ? 252 + Below(7) : q < 93 ? 300 + Below(200) : 0;
      bool crlf = Chance(75);
      std::string line = RandomText(len);
      if (crlf && !line.empty()) line.back() = '\r';
      s += line + (crlf && line.empty() ? "\r\n" : "\n");
    }
    if (Chance(10)) {  // the version line around the end of the window
      size_t at = 1012 + Below(16);
      while (s.size() + 200 < at) s += RandomText(199) + "\n";
      if (s.size() + 1 <= at) s += RandomText(at - s.size() - 1) + "\n";
    }
    static const std::string kNear[] = {"SSH_2.0-x\r\n", "ssh-2.0-x\r\n", " SSH-2.0-x\r\n",
                                        "SSH\r\n"};
    s += Chance(88) ? Banner() : kNear[Below(std::size(kNear))];
    if (Chance(25)) s += "trailing data\r\n";
    return s;
  }

  void FirstPayloadScript(std::deque<Pending>& out) {
    auto [srv, cli] = NewFlow(ServerPort());
    uint32_t isn = PickSeq();
    if (Chance(30)) out.push_back(Segment(cli, srv, kSyn, PickSeq(), ""));
    uint8_t synack = kSyn | kAck;
    if (Chance(8)) synack |= static_cast<uint8_t>(rng_() & 0xed);  // other flags too
    out.push_back(Segment(srv, cli, synack, isn, Chance(3) ? "x" : ""));
    if (Chance(5)) {  // a second SYN-ACK with another ISN replaces the first
      isn = PickSeq();
      out.push_back(Segment(srv, cli, kSyn | kAck, isn, ""));
    }
    if (Chance(25)) out.push_back(Segment(cli, srv, kAck, PickSeq(), ""));
    if (Chance(6)) out.push_back(Segment(srv, cli, kAck, isn + 1, ""));  // no payload yet
    uint32_t seq = isn + 1;
    unsigned w = Below(100);
    if (w < 4)
      seq = isn;
    else if (w < 8)
      seq = isn + 2;
    std::string pl = FirstPayload();
    if (pl.empty()) {
      seq = Pieces(out, srv, cli, seq, Banner());
    } else {
      seq = StreamSegments(out, srv, cli, seq, pl);
    }
    if (Chance(30))
      out.push_back(Segment(srv, cli, kAck | kPsh, seq, Chance(50) ? Prelines() : "+OK again\r\n"));
    if (Chance(8) && !pl.empty())
      out.push_back(Segment(srv, cli, kAck | kPsh, isn + 1, pl));  // retransmitted
  }

  // A segment at `seq` as two IP fragments: the first holds the TCP header (4 bytes of options
  // make it 24, a multiple of 8) and 0, 8 or 16 payload bytes (0: RFC 1858's tiny first fragment,
  // the header alone), the second the rest; now and then the second is sent first.
  void Fragmented(std::deque<Pending>& out, const Endpoint& from, const Endpoint& to, uint8_t flags,
                  uint32_t seq, std::string_view payload, int urg) {
    size_t k = std::min<size_t>(8 * Below(3), payload.size() / 8 * 8);
    const bool v4 = from.addr.family == 4;
    PacketBuilder a, b;
    a.ip(from.addr, to.addr).tcp(from.port, to.port, flags).seq(seq).tcp_options(4);
    if (urg >= 0) a.urg(static_cast<uint16_t>(urg));
    a.fragment(0, true).payload(payload.substr(0, k));
    b.ip(from.addr, to.addr).fragment(static_cast<uint16_t>((24 + k) / 8), false).l4proto(6);
    b.payload(payload.substr(k));
    Pending first, second;
    first.lay.family = second.lay.family = from.addr.family;
    first.lay.l4 = 14 + (v4 ? 20 : 48);
    first.lay.payload = first.lay.l4 + 24;
    second.lay.l4 = second.lay.payload = 14 + (v4 ? 20 : 48);
    first.frame = a.build();
    second.frame = b.build();
    std::string what = absl::StrFormat("%s:%u > %s:%u flags=0x%02x seq=%u%s", from.addr.ToString(),
                                       from.port, to.addr.ToString(), to.port, flags, seq,
                                       urg >= 0 ? absl::StrCat(" urg=", urg) : "");
    first.recipe = absl::StrFormat(" first fragment of %s: header + \"%s\"", what,
                                   Printable(payload.substr(0, k)));
    second.recipe = absl::StrFormat(" later fragment at %u of %s: \"%s\"", 24 + k, what,
                                    Printable(payload.substr(k)));
    if (Chance(10)) std::swap(first, second);
    out.push_back(std::move(first));
    out.push_back(std::move(second));
  }

  // `text` from `seq` on as a server may shape it so that no segment starts with it while the
  // receiver still delivers it: cut into up to four segments; a segment may start up to three
  // bytes before the last one ended (bytes the receiver has and trims, here anything), and may
  // carry one urgent byte (URG, the urgent pointer one past it) inserted near its start, which
  // the receiver takes out of the stream; now and then an urgent pointer that points anywhere.
  // Returns the sequence number after the text.
  uint32_t StreamSegments(std::deque<Pending>& out, const Endpoint& from, const Endpoint& to,
                          uint32_t seq, std::string_view text) {
    size_t pieces = Chance(60) ? 1 : 2 + Below(3);
    size_t pos = 0;
    for (size_t i = 0; i < pieces && pos < text.size(); i++) {
      size_t n = i + 1 == pieces ? text.size() - pos : 1 + Below(std::min<size_t>(text.size() - pos, 40));
      std::string seg(text.substr(pos, n));
      uint32_t at = seq + static_cast<uint32_t>(pos);
      if (Chance(25)) {  // an overlap: bytes the receiver has already
        size_t k = 1 + Below(3);
        std::string old;
        for (size_t j = 0; j < k; j++) old += static_cast<char>(Chance(30) ? 0x16 : rng_());
        seg = old + seg;
        at -= static_cast<uint32_t>(k);
      }
      int urg = -1;
      if (Chance(12)) {  // an urgent byte near the start
        size_t u = Below(std::min<size_t>(seg.size() + 1, 6));
        seg.insert(u, 1, static_cast<char>(rng_()));
        urg = static_cast<int>(u) + 1;
      } else if (Chance(3)) {
        urg = static_cast<int>(Below(80));
      }
      const uint8_t flags = kAck | kPsh | (urg >= 0 ? kUrg : 0);
      if (Chance(10))
        Fragmented(out, from, to, flags, at, seg, urg);
      else
        out.push_back(Segment(from, to, flags, at, seg, urg));
      pos += n;
    }
    return seq + static_cast<uint32_t>(text.size());
  }

  std::string ConnectRequest() {
    uint16_t port;
    unsigned pr = Below(100);
    if (pr < 55 && !watched_.empty())
      port = watched_[Below(watched_.size())];
    else if (pr < 85)
      port = kPortPool[Below(std::size(kPortPool))];
    else
      port = static_cast<uint16_t>(rng_());
    std::string ps = std::to_string(port);
    if (Chance(4)) ps = "00" + ps;
    static const char* kHosts[] = {"example.test", "ssh.example.org", "a", "x-1.example.net"};
    static const char* kV4[] = {"203.0.113.10", "198.51.100.20", "37.9.53.12", "10.0.0.1"};
    static const char* kV6[] = {"2001:db8::10", "::1", "2001:db8:1::443", "fe80::1",
                                "2001:db8::22"};
    std::string host = kHosts[Below(std::size(kHosts))];
    std::string target;
    bool line_only = false;
    unsigned k = Below(100);
    if (k < 28) {
      target = host + ":" + ps;
    } else if (k < 46) {
      target = std::string(kV4[Below(std::size(kV4))]) + ":" + ps;
    } else if (k < 60) {
      target = "[" + std::string(kV6[Below(std::size(kV6))]) + "]:" + ps;
    } else if (k < 64) {
      target = "[" + std::string(kV6[Below(std::size(kV6))]) + "]";  // no port
    } else if (k < 66) {
      target = host;  // no colon at all
    } else if (k < 69) {
      target = host + ":";  // a colon, no digits
    } else if (k < 72) {
      static const char* kBig[] = {"65536", "99999", "655350", "4294967739"};
      target = host + ":" + kBig[Below(std::size(kBig))];
    } else if (k < 75) {
      target = host + ":" + ps + std::string(1, "x./-"[Below(4)]);
    } else if (k < 77) {
      target = "[::99999]:" + ps;  // digits past 65535 after an earlier colon
    } else if (k < 79) {
      target = host + ":" + ps.substr(0, 1) + "]" + ps.substr(1);
    } else if (k < 89) {
      // A long target whose port ends near byte 64 (the request line is read from 64 bytes).
      size_t len = 40 + Below(20);
      target = std::string(len, 'h') + ".test:" + ps;
    } else if (k < 93) {
      target = host + ":" + ps;  // the line ends without " HTTP/1.x"
      line_only = true;
    } else {
      static const std::string kJunk[] = {
          "CONNECTX host:443 HTTP/1.1\r\n\r\n",
          "CONN\r\n\r\nhost:443 HTTP/1.1\r\n",
          "connect host:443 HTTP/1.1\r\n\r\n",
          "CONNECT  host:443 HTTP/1.1\r\n\r\n",
          "CONNECT\thost:443 HTTP/1.1\r\n\r\n",
          "GET http://host:443/ HTTP/1.1\r\n\r\n",
          "CONNECT h:1",
          "CONNECT h:22",
          "CONNECT :443 HTTP/1.1\r\n\r\n",
          "CONNECT host:443",
      };
      return Chance(80) ? kJunk[Below(std::size(kJunk))] : "CONN" + RandomBytes(8 + Below(60));
    }
    if (line_only) return "CONNECT " + target + (Chance(50) ? "\r\n" : "");
    return "CONNECT " + target + " HTTP/1." + (Chance(50) ? "1" : "0") + "\r\nHost: " + target +
           "\r\n\r\n";
  }

  std::string ProxyReply() {
    unsigned k = Below(100);
    if (k < 45) {
      std::string r = "HTTP/1.1 200 Connection established\r\n";
      if (Chance(30)) r += "Proxy-agent: test/1.0\r\n";
      if (Chance(4)) r += "X-Pad: " + RandomText(1000) + "\r\n";  // the head ends past the window
      r += "\r\n";
      unsigned t = Below(100);
      if (t < 45)
        r += Banner();
      else if (t < 52)
        r += std::string("\x16\x03\x03\x00\x40", 5) + RandomBytes(20);
      else if (t < 58)
        r += "\r\n" + Banner();  // not right after the first blank line
      return r;
    }
    static const std::string kReplies[] = {
        "HTTP/1.0 200 OK\r\n\r\n",
        "HTTP/1.1 403 Forbidden\r\n\r\n",
        "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
        "HTTP/1.1 502 Bad Gateway\r\n\r\n",
        "HTTP/1.1 2",
        "HTTP/1.1 20",
        "HTTP",
        "HTTP/1.1 200",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "HTTP/1.1 200 OK\n\n",
        "http/1.1 200 ok\r\n\r\n",
        "HTTP/1.1\t200 OK\r\n\r\n",
        "HTTPS/1.1200 OK\r\n\r\n",
    };
    if (k < 90) {
      std::string r = kReplies[Below(std::size(kReplies))];
      return Chance(40) ? r + Banner() : r;
    }
    return Chance(50) ? Banner() : RandomBytes(1 + Below(100));
  }

  void ProxyScript(std::deque<Pending>& out) {
    auto [proxy, cli] = NewFlow(ProxyPort());
    out.push_back(Segment(cli, proxy, kAck | kPsh, PickSeq(), ConnectRequest()));
    if (Chance(5)) out.push_back(Segment(cli, proxy, kAck | kPsh, PickSeq(), ConnectRequest()));
    uint32_t seq = PickSeq();
    if (Chance(12)) {  // something before the reply: the tunnel waits
      std::string d = Chance(50) ? std::string("\x16\x03\x03\x00\x10", 5) : std::string("Hello");
      out.push_back(Segment(proxy, cli, kAck | kPsh, seq, d));
      seq += static_cast<uint32_t>(d.size());
    }
    if (Chance(5)) out.push_back(Segment(proxy, cli, kAck, seq, ""));
    std::string reply = ProxyReply();
    out.push_back(Segment(proxy, cli, kAck | kPsh, seq, reply));
    seq += static_cast<uint32_t>(reply.size());
    if (Chance(80)) {
      unsigned t = Below(100);
      std::string next = t < 60   ? Banner()
                         : t < 75 ? std::string("\x16\x03\x03\x00\x40", 5) + RandomBytes(30)
                         : t < 85 ? std::string("S")
                                  : RandomText(1 + Below(40));
      out.push_back(Segment(proxy, cli, kAck | kPsh, seq, next));
      seq += static_cast<uint32_t>(next.size());
    }
    if (Chance(25)) out.push_back(Segment(proxy, cli, kAck | kPsh, seq, Banner()));
    if (Chance(5)) out.push_back(Segment(cli, proxy, kAck | kPsh, PickSeq(), Banner()));
  }

  Bytes RandomFrame(std::string& recipe, Layout& lay) {
    randoms_++;
    Bytes f(14 + Below(200));
    for (uint8_t& x : f) x = static_cast<uint8_t>(rng_());
    lay.l3 = 14;
    if (Chance(70)) {
      bool v6 = Chance(50);
      f[12] = v6 ? 0x86 : 0x08;
      f[13] = v6 ? 0xdd : 0x00;
      lay.family = v6 ? 6 : 4;
      if (f.size() > 14 && Chance(50)) f[14] = v6 ? static_cast<uint8_t>(0x60 | (f[14] & 0x0f)) : 0x45;
      lay.l4 = lay.l3 + (v6 ? 40 : 20);
    }
    recipe = absl::StrCat("random(", f.size(), ")");
    return f;
  }

  static void Put16(Bytes& f, size_t off, uint16_t v) {
    if (off + 2 > f.size()) return;
    f[off] = static_cast<uint8_t>(v >> 8);
    f[off + 1] = static_cast<uint8_t>(v);
  }

  void Mutate(Bytes& f, const Layout& lay, std::string& recipe) {
    const size_t l3 = lay.l3, l4 = lay.l4;
    switch (Below(16)) {
      case 0: {  // a bit anywhere
        size_t i = Below(f.size());
        uint8_t bit = static_cast<uint8_t>(1u << Below(8));
        f[i] ^= bit;
        recipe += absl::StrFormat(" flip[%u]^0x%02x", i, bit);
        break;
      }
      case 1: {  // a random byte in the headers
        size_t lim = std::min(f.size(), (l4 ? l4 + 24 : l3 + 64));
        size_t i = Below(lim);
        f[i] = static_cast<uint8_t>(rng_());
        recipe += absl::StrFormat(" byte[%u]=0x%02x", i, f[i]);
        break;
      }
      case 2: {  // IP length field
        if (lay.family == 0) break;
        size_t at = l3 + (lay.family == 4 ? 2 : 4);
        if (at + 2 > f.size()) break;
        uint16_t cur = static_cast<uint16_t>((f[at] << 8) | f[at + 1]);
        uint16_t v = Chance(50) ? static_cast<uint16_t>(rng_()) : static_cast<uint16_t>(cur + Below(33) - 16);
        Put16(f, at, v);
        recipe += absl::StrCat(" iplen=", v);
        break;
      }
      case 3: {  // IHL
        if (l3 >= f.size()) break;
        uint8_t ihl = static_cast<uint8_t>(Below(16));
        f[l3] = static_cast<uint8_t>((f[l3] & 0xf0) | ihl);
        recipe += absl::StrCat(" ihl=", ihl);
        break;
      }
      case 4: {  // TCP data offset
        if (!l4 || l4 + 12 >= f.size()) break;
        uint8_t doff = static_cast<uint8_t>(Below(16));
        f[l4 + 12] = static_cast<uint8_t>((doff << 4) | (f[l4 + 12] & 0x0f));
        recipe += absl::StrCat(" doff=", doff);
        break;
      }
      case 5: {  // truncate (BPF_PROG_TEST_RUN needs an Ethernet header)
        size_t n = 14 + Below(f.size() - 14 + 1);
        f.resize(n);
        recipe += absl::StrCat(" truncate=", n);
        break;
      }
      case 6: {  // trailing bytes (padding the IP lengths do not count)
        size_t n = 1 + Below(64);
        for (size_t i = 0; i < n; ++i) f.push_back(static_cast<uint8_t>(rng_()));
        recipe += absl::StrCat(" append=", n);
        break;
      }
      case 7: {  // an EtherType / TPID
        static constexpr uint16_t kTypes[] = {0x0800, 0x86dd, 0x8100, 0x88a8, 0x0806};
        size_t at = 12 + 4 * Below((l3 - 12) / 4 + 1);
        uint16_t t = Chance(80) ? kTypes[Below(std::size(kTypes))] : static_cast<uint16_t>(rng_());
        if (at + 2 > f.size()) break;
        Put16(f, at, t);
        recipe += absl::StrFormat(" type[%u]=0x%04x", at, t);
        break;
      }
      case 8: {  // IP version
        if (l3 >= f.size()) break;
        uint8_t v = Chance(50) ? (Chance(50) ? 4 : 6) : static_cast<uint8_t>(Below(16));
        f[l3] = static_cast<uint8_t>((v << 4) | (f[l3] & 0x0f));
        recipe += absl::StrCat(" version=", v);
        break;
      }
      case 9: {  // an IPv6 next header (fixed header or extension)
        if (lay.family != 6) break;
        size_t at = lay.exts.empty() || Chance(40) ? l3 + 6 : lay.exts[Below(lay.exts.size())];
        static constexpr uint8_t kNext[] = {0, 43, 44, 51, 60, 6, 17, 58, 59};
        uint8_t v = Chance(80) ? kNext[Below(std::size(kNext))] : static_cast<uint8_t>(rng_());
        if (at >= f.size()) break;
        f[at] = v;
        recipe += absl::StrFormat(" next[%u]=%u", at, v);
        break;
      }
      case 10: {  // IPv4 fragment field, or an IPv6 fragment offset
        if (lay.family == 4) {
          uint16_t v = Chance(50) ? static_cast<uint16_t>(Below(2) << 13) : static_cast<uint16_t>(rng_());
          Put16(f, l3 + 6, v);
          recipe += absl::StrFormat(" frag_off=0x%04x", v);
        } else if (!lay.exts.empty()) {
          size_t at = lay.exts[Below(lay.exts.size())] + 2;
          uint16_t v = static_cast<uint16_t>(rng_());
          Put16(f, at, v);
          recipe += absl::StrFormat(" u16[%u]=0x%04x", at, v);
        }
        break;
      }
      case 11: {  // an IPv6 extension header length
        if (lay.exts.empty()) break;
        size_t at = lay.exts[Below(lay.exts.size())] + 1;
        if (at >= f.size()) break;
        f[at] = Chance(50) ? static_cast<uint8_t>(Below(4)) : static_cast<uint8_t>(rng_());
        recipe += absl::StrFormat(" extlen[%u]=%u", at, f[at]);
        break;
      }
      case 12: {  // TCP flags
        if (!l4 || l4 + 13 >= f.size()) break;
        f[l4 + 13] = static_cast<uint8_t>(rng_());
        recipe += absl::StrFormat(" flags=0x%02x", f[l4 + 13]);
        break;
      }
      case 13: {  // "SSH-" somewhere (a banner where a header parse may or may not land)
        if (f.size() < 18) break;
        size_t at = Below(f.size() - 3);
        std::memcpy(&f[at], "SSH-", 4);
        recipe += absl::StrCat(" SSH-@", at);
        break;
      }
      case 14: {  // the TCP sequence number: one off, or anything
        if (!l4 || l4 + 8 > f.size()) break;
        uint32_t cur = (uint32_t{f[l4 + 4]} << 24) | (uint32_t{f[l4 + 5]} << 16) |
                       (uint32_t{f[l4 + 6]} << 8) | f[l4 + 7];
        uint32_t v =
            Chance(60) ? cur + static_cast<uint32_t>(Below(5)) - 2 : static_cast<uint32_t>(rng_());
        for (int i = 0; i < 4; ++i) f[l4 + 4 + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
        recipe += absl::StrCat(" seq=", v);
        break;
      }
      case 15: {  // a payload byte near the start, from the characters the checks look for
        if (!lay.payload || lay.payload >= f.size()) break;
        static constexpr char kChars[] = "SH-CONTP2\r\n :]\x16\x17";
        size_t at = lay.payload + Below(std::min<size_t>(16, f.size() - lay.payload));
        f[at] = Chance(80) ? static_cast<uint8_t>(kChars[Below(sizeof(kChars) - 1)])
                           : static_cast<uint8_t>(rng_());
        recipe += absl::StrFormat(" payload[%u]=0x%02x", at - lay.payload, f[at]);
        break;
      }
    }
  }

  std::mt19937_64 rng_;
  uint32_t features_;
  std::vector<Addr> v4_, v6_;
  std::vector<std::string> payloads_;
  std::vector<RefPrefix> prefixes_;
  std::deque<Tuple> history_;
  bool last_tcp_ = false;
  std::pair<uint16_t, uint16_t> last_ports_;
  std::vector<uint16_t> watched_, proxies_;   // the epoch's watched and proxy ports (of the pool)
  RefConfig cur_;                             // the configuration in force (no prefixes)
  std::vector<std::deque<Pending>> scripts_;  // scripted flows in progress
  uint64_t script_ids_ = 0;
  uint64_t mutated_ = 0, replays_ = 0, randoms_ = 0, tc_refused_ = 0, scripted_frames_ = 0;
  uint64_t reconfigs_ = 0;
  std::array<uint64_t, 3> scripts_started_{};
};

// ---- kernel side ----------------------------------------------------------------------------------

void Apply(BpfHarness& h, const EpochSetup& s) {
  h.Reset();
  bw_config cfg{};
  cfg.banner_action[BW_SIDE_SERVER] = s.cfg.banner_action[BW_SIDE_SERVER];
  cfg.banner_action[BW_SIDE_CLIENT] = s.cfg.banner_action[BW_SIDE_CLIENT];
  cfg.flags = s.cfg.flags;
  cfg.unparsed = s.cfg.unparsed;
  cfg.block_event_interval_ns = 0;  // every block emits its event
  REQUIRE(h.maps().WriteConfig(cfg).ok());
  for (auto [port, value] : s.port_values) REQUIRE(h.maps().ports.Update(port, value).ok());
  for (const RefPrefix& p : s.cfg.prefixes) {
    bw_list_value v{};
    v.list_id = p.list_id;
    v.entry_ref = p.entry_ref;
    v.action = p.action;
    v.prefixlen = p.len;
    if (p.family == 4) {
      bw_lpm_v4_key k{};
      k.prefixlen = p.len;
      std::memcpy(k.addr, p.addr, 4);
      REQUIRE(h.maps().watch_v4.Update(k, v).ok());
    } else {
      bw_lpm_v6_key k{};
      k.prefixlen = p.len;
      std::memcpy(k.addr, p.addr, 16);
      REQUIRE(h.maps().watch_v6.Update(k, v).ok());
    }
  }
}

RefEvent FromKernel(const bw_event& e) {
  RefEvent r;
  r.kind = e.kind;
  r.direction = e.direction;
  r.family = e.family;
  r.verdict = e.verdict;
  r.list_id = e.list_id;
  r.entry_ref = e.entry_ref;
  r.list_action = e.list_action;
  r.prefixlen = e.prefixlen;
  r.l4proto = e.l4proto;
  r.tcp_flags = e.tcp_flags;
  std::memcpy(r.saddr, e.saddr, 16);
  std::memcpy(r.daddr, e.daddr, 16);
  r.sport = ntohs(e.sport);
  r.dport = ntohs(e.dport);
  r.banner_side = e.banner_side;
  r.match = e.match;
  r.banner.assign(reinterpret_cast<const char*>(e.banner), std::min<size_t>(e.banner_len, BW_BANNER_MAX));
  return r;
}

// Empty when equal; else which fields differ.
std::string DiffEvent(const bw_event& k, const RefEvent& want) {
  std::string d;
  auto field = [&](const char* name, uint64_t got, uint64_t exp) {
    if (got != exp) absl::StrAppend(&d, " ", name, ": kernel ", got, " model ", exp, ";");
  };
  field("kind", k.kind, want.kind);
  field("direction", k.direction, want.direction);
  field("family", k.family, want.family);
  field("verdict", k.verdict, want.verdict);
  field("list_id", k.list_id, want.list_id);
  field("entry_ref", k.entry_ref, want.entry_ref);
  field("list_action", k.list_action, want.list_action);
  field("prefixlen", k.prefixlen, want.prefixlen);
  field("l4proto", k.l4proto, want.l4proto);
  field("tcp_flags", k.tcp_flags, want.tcp_flags);
  field("sport", ntohs(k.sport), want.sport);
  field("dport", ntohs(k.dport), want.dport);
  field("banner_side", k.banner_side, want.banner_side);
  field("match", k.match, want.match);
  field("banner_len", k.banner_len, want.banner.size());
  field("ifindex", k.ifindex, 1);
  field("suppressed", k.suppressed, 0);
  field("flags", k.flags, 0);  // BW_EVF_DETAIL never reaches a reader that completes events
  if (k.ts_ns == 0) absl::StrAppend(&d, " ts_ns: 0;");
  if (std::memcmp(k.saddr, want.saddr, 16)) absl::StrAppend(&d, " saddr;");
  if (std::memcmp(k.daddr, want.daddr, 16)) absl::StrAppend(&d, " daddr;");
  if (k.banner_len == want.banner.size() && k.banner_len <= BW_BANNER_MAX &&
      std::memcmp(k.banner, want.banner.data(), k.banner_len))
    absl::StrAppend(&d, " banner bytes;");
  return d;
}

uint32_t ExpectedRetval(bool tc, uint8_t verdict) {
  if (tc) return verdict == BW_VERDICT_DROP ? TC_ACT_SHOT : TC_ACT_OK;
  return verdict == BW_VERDICT_DROP ? XDP_DROP : XDP_PASS;
}

// The kernel's state between frames (bw_stream, bw_partial, bw_tunnels), opened from the pins.
struct StateMaps {
  Map<bw_flow_key, bw_stream> streams;
  Map<bw_flow_key, bw_partial> partial;
  Map<bw_flow_key, bw_tunnel> tunnels;

  explicit StateMaps(const std::string& pin_root) {
    auto open = [&](const char* name) {
      auto fd = OpenPinnedObject(pin_root + "/" + name);
      if (!fd.ok()) FAIL(fd.status());
      return std::move(*fd);
    };
    streams = Map<bw_flow_key, bw_stream>(open(BW_MAP_STREAM), BW_MAP_STREAM);
    partial = Map<bw_flow_key, bw_partial>(open(BW_MAP_PARTIAL), BW_MAP_PARTIAL);
    tunnels = Map<bw_flow_key, bw_tunnel>(open(BW_MAP_TUNNELS), BW_MAP_TUNNELS);
  }
};

std::string ValueText(const ReferenceModel::Stream& v) {
  return absl::StrCat("next seq ", v.next_seq, v.state == BW_STREAM_FIRST ? ", first" : ", lines",
                      " (", v.seen, " bytes, ", v.segs, " segments)");
}
std::string ValueText(const ReferenceModel::Partial& v) {
  return absl::StrCat("next seq ", v.next_seq, ", ", v.len, " byte(s) of \"SSH-\"");
}
std::string ValueText(const ReferenceModel::Tunnel& v) {
  return absl::StrCat(v.state == BW_TUNNEL_OPEN        ? "open"
                      : v.state == BW_TUNNEL_REQUESTED ? "requested"
                                                       : "state?",
                      " (", int(v.state), ") to port ", v.target_port);
}

// Kernel values in the model's terms; false when a padding byte is not zero.
bool FromKernel(const bw_stream& v, ReferenceModel::Stream* out) {
  *out = {v.next_seq, v.seen, v.state, v.segs};
  return true;
}
bool FromKernel(const bw_partial& v, ReferenceModel::Partial* out) {
  *out = {v.next_seq, v.len};
  return !(v._pad0[0] | v._pad0[1] | v._pad0[2]);
}
bool FromKernel(const bw_tunnel& v, ReferenceModel::Tunnel* out) {
  *out = {v.state, v.target_port};
  return !(v._pad0 | v._pad1);
}

// Appends the differences between one kernel state map and the model's copy; returns its size.
template <typename V, typename W>
size_t DiffStateMap(const char* name, const Map<bw_flow_key, V>& kmap,
                    const std::map<ReferenceModel::DirKey, W>& want, std::string* diff) {
  auto dump = kmap.Dump();
  REQUIRE(dump.ok());
  std::map<ReferenceModel::DirKey, W> got;
  size_t bad_padding = 0;
  for (const auto& [k, v] : *dump) {
    W w;
    if (!FromKernel(v, &w) || (k._pad0[0] | k._pad0[1] | k._pad0[2])) bad_padding++;
    got[ReferenceModel::MakeDirKey(k.family, k.a_addr, ntohs(k.a_port), k.b_addr,
                                   ntohs(k.b_port))] = w;
  }
  if (got == want && bad_padding == 0) return got.size();
  absl::StrAppend(diff, "\n  ", name, ": kernel ", got.size(), " entries, model ", want.size());
  if (bad_padding)
    absl::StrAppend(diff, "; ", bad_padding, " kernel entries with non-zero padding");
  int shown = 0;
  auto show = [&](const ReferenceModel::DirKey& k, const W* kv, const W* mv) {
    if (++shown > 8) return;
    absl::StrAppend(diff, "\n    ", ReferenceModel::DirKeyText(k), ": kernel ",
                    kv ? ValueText(*kv) : std::string("-"), ", model ",
                    mv ? ValueText(*mv) : std::string("-"));
  };
  for (const auto& [k, v] : got) {
    auto m = want.find(k);
    if (m == want.end())
      show(k, &v, nullptr);
    else if (!(m->second == v))
      show(k, &v, &m->second);
  }
  for (const auto& [k, v] : want)
    if (!got.count(k)) show(k, nullptr, &v);
  if (shown > 8) absl::StrAppend(diff, "\n    (", shown - 8, " more)");
  return got.size();
}

// Empty when bw_stream, bw_partial and bw_tunnels hold what the model holds.
std::string DiffState(const StateMaps& m, const ReferenceModel& ref,
                      std::array<uint64_t, 3>* sizes) {
  std::string d;
  size_t a = DiffStateMap(BW_MAP_STREAM, m.streams, ref.streams(), &d);
  size_t b = DiffStateMap(BW_MAP_PARTIAL, m.partial, ref.partial(), &d);
  size_t c = DiffStateMap(BW_MAP_TUNNELS, m.tunnels, ref.tunnels(), &d);
  if (sizes) {
    (*sizes)[0] += a;
    (*sizes)[1] += b;
    (*sizes)[2] += c;
  }
  return d;
}

struct Stats {
  uint64_t frames = 0, xdp = 0, tc = 0, events = 0, epochs = 0, drops = 0;
  std::array<uint64_t, 5> by_kind{};       // enum bw_event_kind
  std::array<uint64_t, 5> by_match{};      // banner events by enum bw_banner_match
  std::array<uint64_t, 3> quirk_frames{};  // frames a modelled kernel departure decided, by bit
  std::array<uint64_t, 3>
      state_entries{};  // bw_first/partial/tunnels entries compared at epoch ends
  std::array<uint64_t, static_cast<size_t>(RefPath::kCount)> by_path{};
  uint64_t watch_events = 0;
  CounterArray counters{};  // the model's counters summed over both directions (all matched)
};

std::string CountersText(const CounterArray& c) {
  std::string s;
  for (int i = 0; i < BW_CNT__MAX; ++i)
    if (c[i]) absl::StrAppend(&s, " ", kCounterNames[i], "=", c[i]);
  return s.empty() ? " (none)" : s;
}

std::string FrameReport(uint64_t seed, uint64_t index, const Case& c, const EpochSetup& setup,
                        const std::string& reconfigured, const RefResult& want,
                        const RunResult& got) {
  std::string s = absl::StrFormat(
      "fuzz mismatch: BW_FUZZ_SEED=0x%x frame index %u (%s; reproduce with BW_FUZZ_FRAMES=%u)\n"
      "  epoch setup: %s%s\n  recipe: %s\n"
      "  frame (%u bytes):\n    %s\n  model: verdict %s, %u event(s); trace: %s\n",
      seed, index, c.tc ? "TC egress" : "XDP ingress", index + 1, setup.ToString(), reconfigured,
      c.recipe, c.frame.size(), Hex(c.frame), want.verdict == BW_VERDICT_DROP ? "DROP" : "PASS",
      want.events.size(), want.trace);
  for (const RefEvent& e : want.events) absl::StrAppend(&s, "    model  event: ", e.ToString(), "\n");
  absl::StrAppend(&s, "  kernel: retval ", got.retval, " (expected ",
                  ExpectedRetval(c.tc, want.verdict), "), ", got.events.size(), " event(s)\n");
  for (const bw_event& e : got.events)
    absl::StrAppend(&s, "    kernel event: ", FromKernel(e).ToString(), "\n");
  return s;
}

// Runs one epoch. Returns an empty string or a failure report. With per_frame_counters the
// counters are compared after every frame (used to find the frame behind an epoch-level difference).
std::string RunEpoch(BpfHarness& h, const StateMaps& state, uint64_t seed, uint64_t first_index,
                     const EpochSetup& setup, const std::vector<Case>& cases,
                     bool per_frame_counters, Stats* stats) {
  Apply(h, setup);
  ReferenceModel ref(setup.cfg);
  std::array<CounterArray, BW_DIR__MAX> want{};
  std::string reconfigured;  // mid-epoch configuration changes so far, for reports
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    if (c.reconfig) {
      bw_config kc{};
      kc.banner_action[BW_SIDE_SERVER] = c.reconfig->cfg.banner_action[BW_SIDE_SERVER];
      kc.banner_action[BW_SIDE_CLIENT] = c.reconfig->cfg.banner_action[BW_SIDE_CLIENT];
      kc.flags = c.reconfig->cfg.flags;
      kc.unparsed = c.reconfig->cfg.unparsed;
      kc.block_event_interval_ns = 0;
      REQUIRE(h.maps().WriteConfig(kc).ok());
      for (auto [port, value] : c.reconfig->port_updates)
        REQUIRE(h.maps().ports.Update(port, value).ok());
      ref.Reconfigure(c.reconfig->cfg);
      absl::StrAppend(&reconfigured, "\n  reconfigured before frame ", first_index + i, ": ",
                      c.reconfig->ToString());
    }
    bw_direction dir = c.tc ? BW_DIR_EGRESS : BW_DIR_INGRESS;
    RunResult got = c.tc ? h.RunTc(c.frame) : h.RunXdp(c.frame);
    RefResult exp = ref.Run(c.frame.data(), c.frame.size(), dir);
    for (int k = 0; k < BW_CNT__MAX; ++k) want[dir][k] += exp.counters[k];

    std::string diff;
    if (got.retval != ExpectedRetval(c.tc, exp.verdict)) diff += " verdict differs;";
    if (got.events.size() != exp.events.size()) {
      diff += " event count differs;";

    } else {
      for (size_t e = 0; e < got.events.size(); ++e) {
        std::string d = DiffEvent(got.events[e], exp.events[e]);
        if (!d.empty()) absl::StrAppend(&diff, " event ", e, ":", d);
      }
    }
    if (per_frame_counters && diff.empty()) {
      for (int d = 0; d < BW_DIR__MAX; ++d) {
        CounterArray k = h.Counters(static_cast<bw_direction>(d));
        if (k != want[d])
          absl::StrAppend(&diff, " counters (dir ", d, ") kernel", CountersText(k), " / model",
                          CountersText(want[d]), "; this frame's model increments",
                          CountersText(exp.counters), ";");
      }
      if (diff.empty()) diff = DiffState(state, ref, nullptr);
    }
    if (!diff.empty())
      return FrameReport(seed, first_index + i, c, setup, reconfigured, exp, got) +
             "  differences:" + diff;

    if (stats) {
      stats->frames++;
      (c.tc ? stats->tc : stats->xdp)++;
      stats->events += got.events.size();
      for (const bw_event& e : got.events) {
        if (e.kind < stats->by_kind.size()) stats->by_kind[e.kind]++;
        if (e.kind == BW_EV_BANNER && e.match < stats->by_match.size()) stats->by_match[e.match]++;
      }
      for (size_t q = 0; q < stats->quirk_frames.size(); ++q)
        if (exp.quirk & (1u << q)) stats->quirk_frames[q]++;
      stats->by_path[static_cast<size_t>(exp.path)]++;
      stats->watch_events += exp.watch_event;
      stats->drops += exp.verdict == BW_VERDICT_DROP;
      for (int k = 0; k < BW_CNT__MAX; ++k) stats->counters[k] += exp.counters[k];
    }
  }

  // Epoch totals: counters, watchlist entries with their statistics, dropped flows.
  std::string diff;
  for (int d = 0; d < BW_DIR__MAX; ++d) {
    CounterArray k = h.Counters(static_cast<bw_direction>(d));
    if (k != want[d])
      absl::StrAppend(&diff, "\n  counters (dir ", d, "): kernel", CountersText(k), "\n    model",
                      CountersText(want[d]));
  }
  auto v4 = h.maps().watch_v4.Dump();
  auto v6 = h.maps().watch_v6.Dump();
  REQUIRE(v4.ok());
  REQUIRE(v6.ok());
  if (v4->size() + v6->size() != ref.entries().size())
    absl::StrAppend(&diff, "\n  watchlist entries: kernel ", v4->size() + v6->size(), " model ",
                    ref.entries().size());
  for (const ReferenceModel::Entry& e : ref.entries()) {
    const bw_list_value* kv = nullptr;
    if (e.prefix.family == 4) {
      for (const auto& [k, v] : *v4)
        if (k.prefixlen == e.prefix.len && !std::memcmp(k.addr, e.prefix.addr, 4)) kv = &v;
    } else {
      for (const auto& [k, v] : *v6)
        if (k.prefixlen == e.prefix.len && !std::memcmp(k.addr, e.prefix.addr, 16)) kv = &v;
    }
    if (!kv) {
      absl::StrAppend(&diff, "\n  entry missing in the kernel: ", e.prefix.ToString());
      continue;
    }
    if (kv->list_id != e.prefix.list_id || kv->entry_ref != e.prefix.entry_ref ||
        kv->action != e.prefix.action || kv->prefixlen != e.prefix.len || kv->hits != e.hits ||
        kv->drops != e.drops)
      absl::StrAppend(&diff, "\n  entry ", e.prefix.ToString(), ": kernel hits=", kv->hits,
                      " drops=", kv->drops, " list=", kv->list_id, " act=", kv->action,
                      "; model hits=", e.hits, " drops=", e.drops);
  }
  auto flows = h.maps().flows.Dump();
  REQUIRE(flows.ok());
  std::set<ReferenceModel::FlowKey> kflows;
  for (const auto& [k, v] : *flows)
    kflows.insert(ReferenceModel::MakeFlowKey(k.family, k.a_addr, ntohs(k.a_port), k.b_addr,
                                              ntohs(k.b_port)));
  if (kflows != ref.flows())
    absl::StrAppend(&diff, "\n  dropped flows: kernel ", kflows.size(), " (", flows->size(),
                    " keys), model ", ref.flows().size());
  diff += DiffState(state, ref, stats ? &stats->state_entries : nullptr);
  if (diff.empty()) return "";
  std::string report = absl::StrFormat(
      "fuzz mismatch at the end of the epoch of frames %u..%u (BW_FUZZ_SEED=0x%x):%s\n  epoch "
      "setup: %s%s\n",
      first_index, first_index + cases.size() - 1, seed, diff, setup.ToString(), reconfigured);
  if (!per_frame_counters) {
    std::string located = RunEpoch(h, state, seed, first_index, setup, cases, true, nullptr);
    absl::StrAppend(&report, located.empty() ? "  (replaying with per-frame counters found no frame)"
                                             : "  replayed with per-frame counters:\n" + located);
  }
  return report;
}

TEST_CASE("differential fuzz: XDP ingress and TC egress agree with the reference model") {
  const uint64_t seed = EnvU64("BW_FUZZ_SEED", kDefaultSeed);
  const uint64_t frames = EnvU64("BW_FUZZ_FRAMES", kDefaultFrames);
  const bool strict = EnvU64("BW_FUZZ_STRICT", 1) != 0;
  BpfHarness h;  // default ring (BW_EVENTS_BYTES_DEFAULT), drained after every run
  StateMaps state(h.pin_root());
  Generator gen(seed, h.dataplane().features());  // the core variant follows no tunnels
  Stats st;
  auto t0 = std::chrono::steady_clock::now();
  uint64_t index = 0;
  while (index < frames) {
    EpochSetup setup = gen.NewSetup();
    setup.cfg.quirks = strict ? 0u : uint32_t{kQuirkAll};
    size_t n = std::min<uint64_t>(kEpochFrames / 2 + gen.Below(kEpochFrames + 1), frames - index);
    std::vector<Case> cases;
    cases.reserve(n);
    for (size_t i = 0; i < n; ++i) cases.push_back(gen.NewCase());
    std::string failure = RunEpoch(h, state, seed, index, setup, cases, false, &st);
    if (!failure.empty()) {
      std::fprintf(stderr, "%s\n", failure.c_str());
      FAIL(failure);
    }
    st.epochs++;
    index += n;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const CounterArray& c = st.counters;
  std::string out = absl::StrFormat(
      "differential fuzz (%s variant): seed 0x%x, %u frames (%u XDP ingress, %u TC egress) in %u "
      "epochs, %.1f s (%.2f us/frame incl. generation and model)\n"
      "  frames: %u mutated, %u flow replays, %u fully random, %u scripted (%u split-banner, %u "
      "first-payload, %u proxy scripts), the rest structured; %u short IP frames meant for TC "
      "sent\n"
      "  through XDP instead (TC test runs refuse them); %u configuration changes mid-epoch\n"
      "  events compared field by field: %u (banner %u [direct %u, split %u, prelines %u, connect "
      "%u, stream start %u], block %u, watch %u, non-TLS %u);\n"
      "  verdict drop %u, pass %u\n"
      "  stateful outcomes: split hits %u, prelines hits %u, connect hits %u, non-TLS events %u, "
      "tunnels requested %u\n"
      "  state maps equal at every epoch end (%s): %u bw_stream, %u bw_partial, %u bw_tunnels "
      "entries in all\n"
      "  kernel departures from the rules %s: CONNECT target cut at byte 64 %u, "
      "overflow after an earlier colon %u, empty port read as 0 %u frame(s)\n"
      "  outcomes (model's decision path):\n",
      VariantName(h.dataplane().variant()), seed, st.frames, st.xdp, st.tc, st.epochs, secs,
      secs * 1e6 / std::max<uint64_t>(st.frames, 1), gen.mutated(), gen.replays(), gen.randoms(),
      gen.scripted_frames(), gen.scripts()[0], gen.scripts()[1], gen.scripts()[2], gen.tc_refused(),
      gen.reconfigs(), st.events, st.by_kind[BW_EV_BANNER], st.by_match[BW_MATCH_DIRECT],
      st.by_match[BW_MATCH_SPLIT], st.by_match[BW_MATCH_PRELINES], st.by_match[BW_MATCH_CONNECT],
      st.by_match[BW_MATCH_STREAM], st.by_kind[BW_EV_BLOCK], st.by_kind[BW_EV_WATCH], st.by_kind[BW_EV_NON_TLS], st.drops,
      st.frames - st.drops, c[BW_CNT_banner_split], c[BW_CNT_banner_prelines],
      c[BW_CNT_banner_connect], c[BW_CNT_non_tls], c[BW_CNT_tunnels],
      absl::StrCat(st.epochs, " epochs"), st.state_entries[0], st.state_entries[1],
      st.state_entries[2],
      strict ? "(strict: none modelled)" : "modelled (BW_FUZZ_STRICT=0)",
      st.quirk_frames[0], st.quirk_frames[1], st.quirk_frames[2]);
  for (size_t p = 0; p < st.by_path.size(); ++p)
    absl::StrAppendFormat(&out, "    %-66s %8u\n", RefPathName(static_cast<RefPath>(p)), st.by_path[p]);
  absl::StrAppendFormat(&out, "    %-66s %8u\n", "(frames that also raised a watch event)", st.watch_events);
  absl::StrAppend(&out, "  counters (both directions, equal in kernel and model):");
  for (int k = 0; k < BW_CNT__MAX; ++k) {
    if (k % 6 == 0) out += "\n   ";
    absl::StrAppend(&out, " ", kCounterNames[k], "=", st.counters[k]);
  }
  out += "\n";
  std::printf("%s", out.c_str());
  std::fflush(stdout);

  CHECK(st.frames == frames);
  // The generator must keep reaching every decision path and every way of finding a banner that
  // the variant under test has (the core one follows no tunnels and finds no preceded lines).
  if (frames >= 100000) {
    const uint32_t have = h.dataplane().features();
    const bool connect = have & BW_FEAT_CONNECT;
    for (size_t p = 0; p < st.by_path.size(); ++p) {
      switch (static_cast<RefPath>(p)) {
        case RefPath::kConnectTunnel:
        case RefPath::kConnectIgnored:
        case RefPath::kTunnelOpen:
        case RefPath::kTunnelClosed:
        case RefPath::kTunnelWait:
          if (!connect) continue;
          break;
        case RefPath::kStreamLines:
          if (!(have & BW_FEAT_PRELINES)) continue;
          break;
        default:
          break;
      }
      INFO("path: " << RefPathName(static_cast<RefPath>(p)));
      CHECK(st.by_path[p] > 0u);
    }
    for (size_t m = 0; m < st.by_match.size(); ++m) {
      if ((m == BW_MATCH_PRELINES && !(have & BW_FEAT_PRELINES)) ||
          (m == BW_MATCH_CONNECT && !connect))
        continue;
      INFO("banner match " << m);
      CHECK(st.by_match[m] > 0u);
    }
    CHECK(st.by_kind[BW_EV_NON_TLS] > 0u);
    CHECK(c[BW_CNT_frag_followed] > 0u);
    CHECK(c[BW_CNT_frag_unmatched] > 0u);
    if (connect) CHECK(c[BW_CNT_tunnels] > 0u);
    for (size_t i = 0; i < st.state_entries.size(); ++i) {
      if (i == 2 && !connect) continue;
      INFO("state map " << i << " (stream, partial, tunnels) never held an entry at an epoch end");
      CHECK(st.state_entries[i] > 0u);
    }
  }
}

}  // namespace
}  // namespace bw::test
