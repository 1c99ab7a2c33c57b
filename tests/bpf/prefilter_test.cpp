// The IPv4 pre-filter (bw_v4_pre / bw_v4_host / bw_v4_class) against the trie alone.
//
// Test that: for one policy applied by the daemon's apply to two loaded objects, one with
// BW_CFG_PREFILTER set and one with it cleared, every probe packet (XDP ingress and TC egress; SYN,
// SYN-ACK, banner, plain segment, UDP) gets the same verdict, the same events (list, entry, prefix
// length, suppression) and the same counters, and per-list hits/drops (trie entries plus per-class
// counters) agree. The policy covers: a /32 inside a blocked /24, safelist exceptions, /25-/31
// partial coverage, a /24 safelist inside a /16 block, more (action, list) pairs than the 14
// classes, IPv4-mapped IPv6 and IPv6 (both stay on the trie), and unlisted addresses.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <unistd.h>
#include <linux/if_ether.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/dataplane/apply.hpp"
#include "daemon/dataplane/loader.hpp"
#include "daemon/policy/policy.hpp"
#include "daemon/dataplane/prefilter.hpp"
#include "daemon/dataplane/prefilter_sum.hpp"
#include "lib/bpf_harness.hpp"
#include "lib/test_util.hpp"
#include "lib/packet.hpp"

namespace bw::test {
namespace {

std::string PolicyYaml() {
  std::string y = R"(
ports: [443]
banner: { server: alert, client: alert }
block_event_interval: 1s
lists:
  - name: blocked
    action: block
    entries: [203.0.113.0/24, 100.80.0.0/16, "2001:db8:1::/48"]
  - name: watch-hosts
    action: watch
    entries: [203.0.113.7, 37.9.53.12, 192.0.2.200, "2001:db8:2::7"]
  - name: safe
    action: safelist
    entries: [203.0.113.9, 100.80.7.0/24, 192.0.2.128/26]
  - name: seed
    action: watch
    entries: [37.9.53.0/24, 192.0.2.0/25, 198.51.100.64/30]
  - name: partial-block
    action: block
    entries: [192.0.2.0/26, 198.51.100.0/31]
)";
  // 20 more block lists, one /24 each: more (action, list) pairs than the 14 classes.
  for (int i = 0; i < 20; ++i)
    absl::StrAppend(&y, "  - name: many", i, "\n    action: block\n    entries: [100.64.", i,
                    ".0/24, 100.65.", i, ".1]\n");
  return y;
}


// Probe addresses: every case of the policy, its edges and neighbours.
std::vector<std::string> Probes4() {
  return {"203.0.113.1",   "203.0.113.7",   "203.0.113.9",  "203.0.113.255", "203.0.112.1",
          "37.9.53.1",     "37.9.53.12",    "37.9.53.13",   "192.0.2.1",     "192.0.2.63",
          "192.0.2.64",    "192.0.2.127",   "192.0.2.128",  "192.0.2.191",   "192.0.2.192",
          "192.0.2.200",   "192.0.2.255",   "198.51.100.0", "198.51.100.1",  "198.51.100.2",
          "198.51.100.64", "198.51.100.67", "198.51.100.68", "100.80.0.1",   "100.80.7.7",
          "100.80.255.9",  "100.64.0.5",    "100.64.13.5",  "100.64.14.5",   "100.64.19.5",
          "100.65.0.1",    "100.65.19.1",   "100.65.19.2",  "10.1.2.3",      "0.0.0.1",
          "255.255.255.254"};
}

std::string Mapped(const std::string& v4) { return "::ffff:" + v4; }

struct Probe {
  std::string what;
  Bytes frame;
  bool xdp;
};

std::vector<Probe> Probes() {
  std::vector<Probe> out;
  auto add4or6 = [&](const std::string& remote, const std::string& local) {
    bool v6 = remote.find(':') != std::string::npos;
    auto ip = [&](PacketBuilder& b, bool ingress) -> PacketBuilder& {
      if (v6) return ingress ? b.ipv6(remote, local) : b.ipv6(local, remote);
      return ingress ? b.ipv4(remote, local) : b.ipv4(local, remote);
    };
    for (bool xdp : {true, false}) {
      std::string dir = xdp ? "ingress " : "egress ";
      {
        PacketBuilder b;
        ip(b, xdp).tcp(xdp ? 40000 : 443, xdp ? 443 : 40000, kSyn);
        out.push_back({dir + remote + " SYN", b.build(), xdp});
      }
      {
        PacketBuilder b;
        ip(b, xdp).tcp(xdp ? 443 : 40001, xdp ? 40001 : 443, kSyn | kAck);
        out.push_back({dir + remote + " SYN-ACK", b.build(), xdp});
      }
      {
        PacketBuilder b;  // a server banner from a watched port (remote = server on ingress)
        ip(b, xdp).tcp(xdp ? 443 : 40002, xdp ? 40002 : 443)
            .payload("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n");
        out.push_back({dir + remote + " banner", b.build(), xdp});
      }
      {
        PacketBuilder b;
        ip(b, xdp).tcp(xdp ? 40003 : 80, xdp ? 80 : 40003).payload("GET / HTTP/1.1\r\n");
        out.push_back({dir + remote + " plain", b.build(), xdp});
      }
      {
        PacketBuilder b;
        ip(b, xdp).udp(53, 53).payload("x");
        out.push_back({dir + remote + " UDP", b.build(), xdp});
      }
    }
  };
  const std::string local4 = "198.51.100.20", local6 = "2001:db8:ffff::20";
  for (const std::string& a : Probes4()) add4or6(a, local4);
  for (const std::string& a : {std::string("203.0.113.7"), std::string("203.0.113.9"),
                               std::string("37.9.53.12"), std::string("100.64.19.5"),
                               std::string("10.1.2.3")})
    add4or6(Mapped(a), local6);
  for (const char* a : {"2001:db8:1::1", "2001:db8:2::7", "2001:db8:2::8", "2001:db8:3::1"})
    add4or6(a, local6);
  return out;
}

std::string EventString(const bw_event& e) {
  std::string s = absl::StrCat("kind ", int(e.kind), " dir ", int(e.direction), " fam ",
                               int(e.family), " verdict ", int(e.verdict), " list ", e.list_id,
                               " entry ", e.entry_ref, " action ", int(e.list_action), " len ",
                               int(e.prefixlen), " suppressed ", e.suppressed, " proto ",
                               int(e.l4proto), " flags ", int(e.tcp_flags), " ports ",
                               ntohs(e.sport), ">", ntohs(e.dport), " side ", int(e.banner_side),
                               " match ", int(e.match), " ifindex ", e.ifindex, " addrs ");
  for (int i = 0; i < 16; ++i) absl::StrAppend(&s, int(e.saddr[i]), ".");
  for (int i = 0; i < 16; ++i) absl::StrAppend(&s, int(e.daddr[i]), ".");
  absl::StrAppend(&s, " banner '",
                  std::string(reinterpret_cast<const char*>(e.banner),
                              std::min<size_t>(e.banner_len, BW_BANNER_MAX)),
                  "'");
  return s;
}

// Per-list hits and drops as the daemon sums them: trie entries plus pre-filter classes.
std::map<uint32_t, std::pair<uint64_t, uint64_t>> ListStats(const MapSet& m) {
  std::map<uint32_t, std::pair<uint64_t, uint64_t>> out;
  for (auto r : {ReadTrieCounted(m.watch_v4), ReadTrieCounted(m.watch_v6)}) {
    REQUIRE(r.ok());
    for (const CountedEntry& c : *r) {
      out[c.entry.value.list_id].first += c.hits;
      out[c.entry.value.list_id].second += c.drops;
    }
  }
  auto cls = ReadClasses(m.v4_class);
  REQUIRE(cls.ok());
  for (uint32_t c = 1; c < BW_V4_PRE_TRIE; ++c) {
    if (!ClassUsed((*cls)[c])) continue;
    auto v = m.v4_cls_cnt.LookupAll(c);
    REQUIRE(v.ok());
    for (const auto& x : *v) {
      out[(*cls)[c].list_id].first += x.hits;
      out[(*cls)[c].list_id].second += x.drops;
    }
  }
  for (auto it = out.begin(); it != out.end();)
    it = it->second == std::pair<uint64_t, uint64_t>{0, 0} ? out.erase(it) : std::next(it);
  return out;
}

uint8_t ByteOf(const V4PreMapping& m, const std::string& a) {
  Addr x = Addr::Parse(a);
  uint32_t h = (uint32_t{x.b[0]} << 24) | (uint32_t{x.b[1]} << 16) | (uint32_t{x.b[2]} << 8) | x.b[3];
  return m.bytes()[h >> 8];
}

TEST_CASE("prefilter: verdicts, events, counters and list stats equal the trie's") {
  CompiledPolicy c = CompileYaml(PolicyYaml());
  BpfHarness on, off;
  on.Reset();
  off.Reset();
  for (BpfHarness* h : {&on, &off}) {
    auto st = ApplyPolicy(c, h->maps());
    INFO(st.status());
    REQUIRE(st.ok());
  }
  // `off`: the same maps, the pre-filter switched off (the trie alone, as before it existed).
  auto cfg = off.maps().ReadConfig();
  REQUIRE(cfg.ok());
  REQUIRE((cfg->flags & BW_CFG_PREFILTER) != 0);
  cfg->flags &= ~BW_CFG_PREFILTER;
  REQUIRE(off.maps().WriteConfig(*cfg).ok());

  // The pre-filter holds what the cases need: classes, hosts, the trie for the rest.
  auto mapping = V4PreMapping::Map(on.maps().v4_pre);
  REQUIRE(mapping.ok());
  CHECK((ByteOf(*mapping, "203.0.113.1") & BW_V4_PRE_HOSTS) != 0);   // /32s inside a blocked /24
  CHECK((ByteOf(*mapping, "203.0.113.1") & BW_V4_PRE_CLASS_MASK) != 0);
  CHECK((ByteOf(*mapping, "203.0.113.1") & BW_V4_PRE_CLASS_MASK) != BW_V4_PRE_TRIE);
  CHECK((ByteOf(*mapping, "192.0.2.1") & BW_V4_PRE_CHUNKS) != 0);    // /25-/27 inside: chunks
  CHECK(ByteOf(*mapping, "192.0.2.1") != BW_V4_PRE_TRIE);
  CHECK((ByteOf(*mapping, "198.51.100.1") & BW_V4_PRE_HOSTS) != 0);  // a /30 and a /31: hosts
  CHECK(ByteOf(*mapping, "10.1.2.3") == 0);                           // unlisted
  CHECK(ByteOf(*mapping, "100.80.7.7") != ByteOf(*mapping, "100.80.8.7"));  // safelist in block
  int overflow = 0;
  for (int i = 0; i < 20; ++i)
    overflow += ByteOf(*mapping, absl::StrCat("100.64.", i, ".1")) == BW_V4_PRE_TRIE;
  CHECK(overflow > 0);  // some pairs had no class left
  auto classes = ReadClasses(on.maps().v4_class);
  REQUIRE(classes.ok());
  int used = 0;
  for (uint32_t k = 1; k < BW_V4_PRE_TRIE; ++k) used += ClassUsed((*classes)[k]);
  CHECK(used == 14);
  // The summary is the bytes' function: a code per /24, a bit per /22 with any code set.
  auto sum = V4SumMapping::Map(on.maps().v4_sum);
  REQUIRE(sum.ok());
  size_t bad_codes = 0, bad_bits = 0, direct = 0, quiet = 0;
  for (uint32_t j = 0; j < (1u << (32 - BW_V4_SUM_L0_SHIFT)); ++j) {
    bool any = false;
    for (uint32_t i = j * kV4SumL0Span; i < (j + 1) * kV4SumL0Span; ++i) {
      uint8_t code = sum->Code(i);
      bad_codes += code != SumCode(mapping->bytes()[i]);
      direct += code == 1 || code == 2;
      any |= code != 0;
    }
    bad_bits += sum->Bit0(j) != any;
    quiet += !any;
  }
  CHECK(bad_codes == 0u);
  CHECK(bad_bits == 0u);
  CHECK(direct > 0u);  // some /24s are decided by their code alone
  CHECK(quiet > 0u);  // /22s with nothing listed: answered by their bit alone

  std::vector<Probe> probes = Probes();
  size_t events = 0, drops = 0;
  for (int pass = 0; pass < 2; ++pass) {  // the second pass meets the block-event rate limiter
    for (const Probe& p : probes) {
      INFO(p.what << " (pass " << pass << ")");
      RunResult a = p.xdp ? on.RunXdp(p.frame) : on.RunTc(p.frame);
      RunResult b = p.xdp ? off.RunXdp(p.frame) : off.RunTc(p.frame);
      CHECK(a.retval == b.retval);
      REQUIRE(a.events.size() == b.events.size());
      for (size_t i = 0; i < a.events.size(); ++i) CHECK(EventString(a.events[i]) == EventString(b.events[i]));
      events += a.events.size();
      drops += a.retval == (p.xdp ? uint32_t{XDP_DROP} : uint32_t{2 /* TC_ACT_SHOT */});
    }
  }
  for (bw_direction d : {BW_DIR_INGRESS, BW_DIR_EGRESS}) {
    CounterArray x = on.Counters(d), y = off.Counters(d);
    for (int i = 0; i < BW_CNT__MAX; ++i) {
      INFO(kCounterNames[i] << " dir " << int(d));
      CHECK(x[i] == y[i]);
    }
  }
  auto sa = ListStats(on.maps()), sb = ListStats(off.maps());
  CHECK(sa == sb);
  CHECK(!sa.empty());
  // ...and `on` decided through the classes: their counters moved, the /24's trie entry did not.
  uint64_t by_class = 0;
  for (uint32_t k = 1; k < BW_V4_PRE_TRIE; ++k) {
    auto v = on.maps().v4_cls_cnt.LookupAll(k);
    REQUIRE(v.ok());
    for (const auto& x : *v) by_class += x.hits + x.drops;
  }
  CHECK(by_class > 20);
  Prefix blocked24 = *ParsePrefix("203.0.113.0/24");
  auto e_on = on.maps().watch_v4.Lookup(ToV4Key(blocked24));
  auto e_off = off.maps().watch_v4.Lookup(ToV4Key(blocked24));
  REQUIRE(e_on.ok());
  REQUIRE(e_off.ok());
  REQUIRE(e_on->has_value());
  REQUIRE(e_off->has_value());
  CHECK((*e_on)->drops == 0);
  CHECK((*e_off)->drops > 0);
  std::printf("prefilter: %zu probes x 2 passes, %zu events, %zu drops, %zu lists with hits/drops: "
              "identical with the pre-filter on and off\n",
              probes.size(), events, drops, sa.size());
  CHECK(events > 50);
  CHECK(drops > 50);
}

// A summary pinned by a build that reads the codes and bytes otherwise (one element shorter: before
// the chunk entries) must not be shared with this program: the load is refused, naming the fix.
TEST_CASE("prefilter: a pin root holding the summary of another layout is refused") {
  std::string root = absl::StrCat("/sys/fs/bpf/bwtest-", getpid(), "-layout");
  REQUIRE(EnsurePinRoot(root).ok());
  LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = BPF_F_MMAPABLE);
  int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "bw_v4_sum", 4, 8, BW_V4_SUM_ELEMS - 1, &o);
  REQUIRE(fd >= 0);
  REQUIRE(bpf_obj_pin(fd, (root + "/bw_v4_sum").c_str()) == 0);
  close(fd);
  auto dp = DataPlane::Load(LoadOptions{.pin_root = root});
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
  REQUIRE_FALSE(dp.ok());
  INFO(dp.status());
  CHECK(dp.status().message().find("bannerwatch detach") != absl::string_view::npos);
}

}  // namespace
}  // namespace bw::test
