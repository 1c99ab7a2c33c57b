// Differential fuzz of the data plane against the userspace reference model (lib/reference.hpp).
//
// A seeded generator (std::mt19937_64; BW_FUZZ_SEED, BW_FUZZ_FRAMES override the defaults) makes
// epochs of about 10,000 frames. Each epoch starts from BpfHarness::Reset() with a new random
// configuration, written to the maps and mirrored into a fresh ReferenceModel: a few IPv4/IPv6
// prefixes (random lengths, any combination of action bits, random list ids), random watched ports
// and banner actions, a block-event interval of 0 (every block emits an event; the rate limiter
// is the fixture table's). Frames are structured (VLAN tags, IPv4 options, IPv6 extension headers,
// fragments, TCP/UDP/ICMP/raw, ports and payloads from small sets, addresses from a pool that hits
// the watchlists, IPv4-mapped IPv6), replays of earlier flows (to reach banner-dropped flows), fully
// random, or any of those mutated (bit flips, truncation, random length fields, IHL, doff, ...).
// About a quarter run through TC egress, the rest through XDP ingress.
//
// Per frame: the verdict and every event field except ts_ns must equal the model's. Per epoch:
// both directions' counters, every watchlist entry (value and hits/drops) and the set of dropped
// flows must equal the model's; on a difference the epoch is replayed with the counters compared
// after every frame, to name the frame. A failure prints the seed, the frame index, the frame hex,
// the frame's recipe and both sides' results. A frame's outcome can depend on earlier frames of its
// epoch (banner-dropped flows), so reproduce with the same seed and BW_FUZZ_FRAMES = index + 1.
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
    std::string s = absl::StrFormat("banner_action server=%u client=%u; watched ports:",
                                    cfg.banner_action[BW_SIDE_SERVER],
                                    cfg.banner_action[BW_SIDE_CLIENT]);
    for (auto [p, v] : port_values)
      if (v & BW_PORT_WATCHED) absl::StrAppend(&s, " ", p);
    absl::StrAppend(&s, "; prefixes (insertion order):");
    for (const RefPrefix& p : cfg.prefixes) absl::StrAppend(&s, "\n    ", p.ToString());
    return s;
  }
};

struct Case {
  Bytes frame;
  bool tc = false;  // TC egress (else XDP ingress)
  std::string recipe;
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
  int family = 0;  // 0: not IP
  std::vector<size_t> exts;  // IPv6 extension header offsets
};

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {
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
    };
  }

  uint64_t Below(uint64_t n) { return rng_() % n; }
  bool Chance(unsigned percent) { return Below(100) < percent; }

  EpochSetup NewSetup() {
    EpochSetup s;
    for (uint16_t p : kPortPool) {
      bool watched = p == 443 ? Chance(70) : Chance(35);
      s.cfg.watched[p] = watched;
      s.port_values.emplace_back(p, watched ? (Chance(80) ? 1 : 3) : (Chance(80) ? 0 : 2));
    }
    s.cfg.banner_action[BW_SIDE_SERVER] = static_cast<uint8_t>(Below(3));
    s.cfg.banner_action[BW_SIDE_CLIENT] = static_cast<uint8_t>(Below(3));
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
    return s;
  }

  Case NewCase() {
    Case c;
    c.tc = Chance(25);
    Layout lay;
    unsigned kind = Below(100);
    if (kind < 3) {
      c.frame = RandomFrame(c.recipe, lay);
    } else if (kind < 15 && !history_.empty()) {
      c.frame = Replay(c.recipe, lay);
    } else {
      c.frame = Structured(c.recipe, lay);
    }
    if (Chance(30)) {
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

 private:
  static constexpr uint16_t kPortPool[] = {443, 8443, 22, 80, 2222, 51000, 40000, 0, 65535, 1};

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

  Addr PickAddr(int family) {
    Addr a;
    if (Chance(35) && NearPrefix(family, a)) return a;
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
    int tags = r < 65 ? 0 : r < 85 ? 1 : r < 97 ? 2 : 3;
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
      b.tcp(sp, dp, fl);
      recipe += absl::StrFormat(" tcp %u->%u flags=0x%02x", sp, dp, fl);
      if (Chance(20)) {
        size_t opt = 4 * (1 + Below(10));
        b.tcp_options(opt);
        recipe += absl::StrCat(" tcpopt=", opt);
      }
      b.payload(PickPayload(recipe));
      lay.l4 = l4;
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
      int exts = e < 60 ? 0 : e < 80 ? 1 + Below(2) : e < 92 ? 3 + Below(3) : 6 + Below(3);
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
    b.ip(s, d).tcp(sp, dp, fl);
    lay.family = s.family;
    lay.l4 = lay.l3 + (s.family == 4 ? 20 : 40);
    recipe += absl::StrFormat(" %s %s:%u > %s:%u flags=0x%02x", rev ? "reversed" : "same-way",
                              s.ToString(), sp, d.ToString(), dp, fl);
    b.payload(PickPayload(recipe));
    recipe = "replay:" + recipe;
    return b.build();
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
    switch (Below(14)) {
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
    }
  }

  std::mt19937_64 rng_;
  std::vector<Addr> v4_, v6_;
  std::vector<std::string> payloads_;
  std::vector<RefPrefix> prefixes_;
  std::deque<Tuple> history_;
  bool last_tcp_ = false;
  std::pair<uint16_t, uint16_t> last_ports_;
  uint64_t mutated_ = 0, replays_ = 0, randoms_ = 0, tc_refused_ = 0;
};

// ---- kernel side ----------------------------------------------------------------------------------

void Apply(BpfHarness& h, const EpochSetup& s) {
  h.Reset();
  bw_config cfg{};
  cfg.banner_action[BW_SIDE_SERVER] = s.cfg.banner_action[BW_SIDE_SERVER];
  cfg.banner_action[BW_SIDE_CLIENT] = s.cfg.banner_action[BW_SIDE_CLIENT];
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
  field("banner_len", k.banner_len, want.banner.size());
  field("ifindex", k.ifindex, 1);
  field("suppressed", k.suppressed, 0);
  field("_pad0", k._pad0, 0);
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

struct Stats {
  uint64_t frames = 0, xdp = 0, tc = 0, events = 0, epochs = 0, drops = 0;
  std::array<uint64_t, 4> by_kind{};
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
                        const RefResult& want, const RunResult& got) {
  std::string s = absl::StrFormat(
      "fuzz mismatch: BW_FUZZ_SEED=0x%x frame index %u (%s; reproduce with BW_FUZZ_FRAMES=%u)\n"
      "  epoch setup: %s\n  recipe: %s\n"
      "  frame (%u bytes):\n    %s\n  model: verdict %s, %u event(s); trace: %s\n",
      seed, index, c.tc ? "TC egress" : "XDP ingress", index + 1, setup.ToString(), c.recipe, c.frame.size(),
      Hex(c.frame), want.verdict == BW_VERDICT_DROP ? "DROP" : "PASS", want.events.size(),
      want.trace);
  for (const RefEvent& e : want.events) absl::StrAppend(&s, "    model  event: ", e.ToString(), "\n");
  absl::StrAppend(&s, "  kernel: retval ", got.retval, " (expected ",
                  ExpectedRetval(c.tc, want.verdict), "), ", got.events.size(), " event(s)\n");
  for (const bw_event& e : got.events)
    absl::StrAppend(&s, "    kernel event: ", FromKernel(e).ToString(), "\n");
  return s;
}

// Runs one epoch. Returns an empty string or a failure report. With per_frame_counters the
// counters are compared after every frame (used to find the frame behind an epoch-level difference).
std::string RunEpoch(BpfHarness& h, uint64_t seed, uint64_t first_index, const EpochSetup& setup,
                     const std::vector<Case>& cases, bool per_frame_counters, Stats* stats) {
  Apply(h, setup);
  ReferenceModel ref(setup.cfg);
  std::array<CounterArray, BW_DIR__MAX> want{};
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
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
    }
    if (!diff.empty())
      return FrameReport(seed, first_index + i, c, setup, exp, got) + "  differences:" + diff;

    if (stats) {
      stats->frames++;
      (c.tc ? stats->tc : stats->xdp)++;
      stats->events += got.events.size();
      for (const bw_event& e : got.events) stats->by_kind[e.kind & 3]++;
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
  if (diff.empty()) return "";
  std::string report = absl::StrFormat(
      "fuzz mismatch at the end of the epoch of frames %u..%u (BW_FUZZ_SEED=0x%x):%s\n  epoch "
      "setup: %s\n",
      first_index, first_index + cases.size() - 1, seed, diff, setup.ToString());
  if (!per_frame_counters) {
    std::string located = RunEpoch(h, seed, first_index, setup, cases, true, nullptr);
    absl::StrAppend(&report, located.empty() ? "  (replaying with per-frame counters found no frame)"
                                             : "  replayed with per-frame counters:\n" + located);
  }
  return report;
}

TEST_CASE("differential fuzz: XDP ingress and TC egress agree with the reference model") {
  const uint64_t seed = EnvU64("BW_FUZZ_SEED", kDefaultSeed);
  const uint64_t frames = EnvU64("BW_FUZZ_FRAMES", kDefaultFrames);
  BpfHarness h;  // default ring: 4 MiB, drained after every run
  Generator gen(seed);
  Stats st;
  auto t0 = std::chrono::steady_clock::now();
  uint64_t index = 0;
  while (index < frames) {
    EpochSetup setup = gen.NewSetup();
    size_t n = std::min<uint64_t>(kEpochFrames / 2 + gen.Below(kEpochFrames + 1), frames - index);
    std::vector<Case> cases;
    cases.reserve(n);
    for (size_t i = 0; i < n; ++i) cases.push_back(gen.NewCase());
    std::string failure = RunEpoch(h, seed, index, setup, cases, false, &st);
    if (!failure.empty()) {
      std::fprintf(stderr, "%s\n", failure.c_str());
      FAIL(failure);
    }
    st.epochs++;
    index += n;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::string out = absl::StrFormat(
      "differential fuzz: seed 0x%x, %u frames (%u XDP ingress, %u TC egress) in %u epochs, %.1f s "
      "(%.2f us/frame incl. generation and model)\n"
      "  frames: %u mutated, %u flow replays, %u fully random, the rest structured; %u short IP\n"
      "  frames meant for TC sent through XDP instead (TC test runs refuse them)\n"
      "  events compared field by field: %u (banner %u, block %u, watch %u); verdict drop %u, pass %u\n"
      "  outcomes (model's decision path):\n",
      seed, st.frames, st.xdp, st.tc, st.epochs, secs, secs * 1e6 / std::max<uint64_t>(st.frames, 1),
      gen.mutated(), gen.replays(), gen.randoms(), gen.tc_refused(), st.events, st.by_kind[BW_EV_BANNER],
      st.by_kind[BW_EV_BLOCK], st.by_kind[BW_EV_WATCH], st.drops, st.frames - st.drops);
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
  // The generator must keep reaching every decision path.
  if (frames >= 100000)
    for (size_t p = 0; p < st.by_path.size(); ++p) {
      INFO("path: " << RefPathName(static_cast<RefPath>(p)));
      CHECK(st.by_path[p] > 0u);
    }
}

}  // namespace
}  // namespace bw::test
