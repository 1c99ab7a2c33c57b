// Applying a compiled policy to the real maps (daemon/dataplane/apply.hpp), on the loaded object's tries.
//
// Test that: a first apply writes exactly the compiled tables, the ports and bw_config; a re-apply
// adds, updates and removes only what changed and keeps the counters of what stays; a concurrent
// reader doing kernel-style longest-prefix lookups (bpf_map_lookup_elem on the trie) while
// policies alternate never finds an address missing, nor with an entry that is neither its old nor
// its new one; the same with the kernel's IPv4 lookup order through the pre-filter (byte, host map,
// class, else the trie); a trie too small for old and new at once fails before writing, unless
// allowed.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/dataplane/apply.hpp"
#include "daemon/policy/feeds.hpp"
#include "daemon/policy/policy.hpp"
#include "daemon/dataplane/prefilter_host.hpp"
#include "daemon/dataplane/prefilter.hpp"
#include "daemon/dataplane/prefilter_sum.hpp"
#include "lib/bpf_harness.hpp"
#include "lib/test_util.hpp"

namespace bw::test {
namespace {


ApplyStats MustApply(const CompiledPolicy& c, const MapSet& m, ApplyOptions o = {}) {
  auto st = ApplyPolicy(c, m, o);
  INFO(st.status());
  REQUIRE(st.ok());
  return *st;
}

bool SameDecision(const bw_list_value& a, const bw_list_value& b) {
  return a.list_id == b.list_id && a.entry_ref == b.entry_ref && a.action == b.action &&
         a.prefixlen == b.prefixlen;
}
bool SameDecision(const KernelValue& a, const KernelValue& b) { return a == b; }

// The tries hold exactly the compiled tables (decision fields).
void CheckTriesEqual(const CompiledPolicy& c, const MapSet& m) {
  auto v4 = ReadTrie(m.watch_v4);
  auto v6 = ReadTrie(m.watch_v6);
  REQUIRE(v4.ok());
  REQUIRE(v6.ok());
  REQUIRE(v4->size() == c.v4.size());
  REQUIRE(v6->size() == c.v6.size());
  for (size_t i = 0; i < c.v4.size(); ++i) {
    INFO(c.v4[i].prefix.ToString());
    CHECK((*v4)[i].prefix == c.v4[i].prefix);
    CHECK(SameDecision((*v4)[i].value, c.v4[i].value));
  }
  for (size_t i = 0; i < c.v6.size(); ++i) {
    CHECK((*v6)[i].prefix == c.v6[i].prefix);
    CHECK(SameDecision((*v6)[i].value, c.v6[i].value));
  }
}

std::optional<bw_list_value> Exact(const MapSet& m, const std::string& cidr) {
  Prefix p = *ParsePrefix(cidr);
  auto r = p.is_v4() ? m.watch_v4.Lookup(ToV4Key(p)) : m.watch_v6.Lookup(ToV6Key(p));
  REQUIRE(r.ok());
  return *r;
}

void SetCounters(const MapSet& m, const std::string& cidr, uint64_t hits, uint64_t drops) {
  Prefix p = *ParsePrefix(cidr);
  auto v = Exact(m, cidr);
  REQUIRE(v.has_value());
  v->hits = hits;
  v->drops = drops;
  absl::Status st = p.is_v4() ? m.watch_v4.Update(ToV4Key(p), *v) : m.watch_v6.Update(ToV6Key(p), *v);
  REQUIRE(st.ok());
}

const char* kPolicyA = R"(
ports: [443, 8443]
banner: { server: drop, client: alert }
block_event_interval: 250ms
lists:
  - name: seed-2013-09
    action: watch
    entries: [37.9.53.0/24, 37.9.53.12, 37.9.53.40]
  - name: blocked
    action: block
    entries: [203.0.113.0/24, "2001:db8:1::/48", 198.51.100.0/25]
  - name: safe
    action: safelist
    entries: [203.0.113.10]
)";

// Same lists, with: 37.9.53.40 dropped, 37.9.53.97 added, the /24 now blocked (so its hosts'
// values change), 198.51.100.0/25 gone, 2001:db8:2::/48 added.
const char* kPolicyB = R"(
ports: [443]
banner: { server: alert, client: off }
lists:
  - name: seed-2013-09
    action: block
    entries: [37.9.53.0/24, 37.9.53.12, 37.9.53.97]
  - name: blocked
    action: block
    entries: [203.0.113.0/24, "2001:db8:1::/48", "2001:db8:2::/48"]
  - name: safe
    action: safelist
    entries: [203.0.113.10]
)";

TEST_CASE("apply: first apply writes the tables, ports and config") {
  BpfHarness h;
  h.Reset();
  CompiledPolicy a = CompileYaml(kPolicyA);
  ApplyStats st = MustApply(a, h.maps());
  CHECK(st.added == 7);
  CHECK(st.updated == 0);
  CHECK(st.removed == 0);
  CHECK(st.unchanged == 0);
  CHECK(st.v4_entries == 6);
  CHECK(st.v6_entries == 1);
  CheckTriesEqual(a, h.maps());
  auto ports = h.maps().WatchedPorts();
  REQUIRE(ports.ok());
  CHECK(*ports == std::vector<uint16_t>{443, 8443});
  auto cfg = h.maps().ReadConfig();
  REQUIRE(cfg.ok());
  CHECK(int(cfg->banner_action[BW_SIDE_SERVER]) == BW_BANNER_DROP);
  CHECK(int(cfg->banner_action[BW_SIDE_CLIENT]) == BW_BANNER_ALERT);
  CHECK(cfg->block_event_interval_ns == 250000000ull);
  // The value of a host inside the seed /24 names its own entry.
  auto v = Exact(h.maps(), "37.9.53.12");
  REQUIRE(v);
  CHECK(int(v->action) == BW_ACTION_WATCH);
  CHECK(int(v->prefixlen) == 32);
  CHECK(a.list(v->list_id)->name == "seed-2013-09");
  // Applying the same policy again changes nothing.
  ApplyStats again = MustApply(a, h.maps());
  CHECK(again.unchanged == 7);
  CHECK(again.added + again.updated + again.removed == 0);
  CHECK(again.ToString().find("unchanged 7") != std::string::npos);
}

TEST_CASE("apply: a re-apply diffs, and counters of prefixes that stay are kept") {
  BpfHarness h;
  h.Reset();
  CompiledPolicy a = CompileYaml(kPolicyA), b = CompileYaml(kPolicyB);
  MustApply(a, h.maps());
  SetCounters(h.maps(), "37.9.53.12", 5, 0);      // stays, value changes (watch -> block)
  SetCounters(h.maps(), "203.0.113.0/24", 0, 7);  // stays unchanged
  SetCounters(h.maps(), "203.0.113.10", 3, 1);    // stays unchanged
  SetCounters(h.maps(), "2001:db8:1::/48", 0, 9); // stays unchanged
  SetCounters(h.maps(), "37.9.53.40", 11, 0);     // removed

  // Dry run: the numbers, no writes.
  ApplyStats dry = MustApply(b, h.maps(), ApplyOptions{.dry_run = true});
  CHECK(dry.added == 2);
  CHECK(dry.removed == 2);
  CheckTriesEqual(a, h.maps());

  ApplyStats st = MustApply(b, h.maps());
  CHECK(st.added == 2);      // 37.9.53.97, 2001:db8:2::/48
  CHECK(st.updated == 2);    // 37.9.53.0/24 and 37.9.53.12: watch -> block
  CHECK(st.removed == 2);    // 37.9.53.40, 198.51.100.0/25
  CHECK(st.unchanged == 3);  // 203.0.113.0/24, 203.0.113.10, 2001:db8:1::/48
  CheckTriesEqual(b, h.maps());
  auto v = Exact(h.maps(), "37.9.53.12");
  REQUIRE(v);
  CHECK(int(v->action) == BW_ACTION_BLOCK);
  CHECK(v->hits == 5u);
  CHECK(Exact(h.maps(), "203.0.113.0/24")->drops == 7u);
  CHECK(Exact(h.maps(), "203.0.113.10")->hits == 3u);
  CHECK(Exact(h.maps(), "2001:db8:1::/48")->drops == 9u);
  CHECK(Exact(h.maps(), "37.9.53.97")->hits == 0u);
  // 37.9.53.40 is now covered by the /24 only.
  auto cover = Exact(h.maps(), "37.9.53.40");
  REQUIRE(cover);
  CHECK(int(cover->prefixlen) == 24);
  CHECK(*h.maps().WatchedPorts() == std::vector<uint16_t>{443});
  CHECK(int(h.maps().ReadConfig()->banner_action[BW_SIDE_CLIENT]) == BW_BANNER_OFF);
  CHECK(h.maps().ReadConfig()->block_event_interval_ns == 1000000000ull);

  // Counters that the data plane itself bumps survive a change of the entry's value.
  h.SetBannerActions(BW_BANNER_ALERT, BW_BANNER_ALERT);
  RunResult r = h.RunXdp(PacketBuilder().ipv4("37.9.53.12", "198.51.100.20").tcp(443, 50000).build());
  CHECK(r.retval == XDP_DROP);
  uint64_t drops = Exact(h.maps(), "37.9.53.12")->drops;
  CHECK(drops == 1u);
  MustApply(a, h.maps());  // back to watch: value changes, counters stay
  CHECK(Exact(h.maps(), "37.9.53.12")->drops == drops);
  CHECK(Exact(h.maps(), "37.9.53.12")->hits == 5u);
  CheckTriesEqual(a, h.maps());
}

TEST_CASE("apply: diffing against the applied policy in memory gives what reading the maps gives") {
  BpfHarness h;
  h.Reset();
  CompiledPolicy a = CompileYaml(kPolicyA), b = CompileYaml(kPolicyB);
  MustApply(a, h.maps());
  SetCounters(h.maps(), "37.9.53.12", 5, 0);  // stays, value changes: counters kept
  ApplyStats st = MustApply(b, h.maps(), ApplyOptions{.applied = &a});
  CHECK(st.added == 2);
  CHECK(st.updated == 2);
  CHECK(st.removed == 2);
  CHECK(st.unchanged == 3);
  CheckTriesEqual(b, h.maps());
  CHECK(Exact(h.maps(), "37.9.53.12")->hits == 5u);
  CHECK(*h.maps().WatchedPorts() == std::vector<uint16_t>{443});  // a's 8443 went: rewritten
  // Unchanged ports are not rewritten, so a stray write stays...
  REQUIRE(h.maps().ports.Update(22, BW_PORT_WATCHED).ok());
  MustApply(b, h.maps(), ApplyOptions{.applied = &b});
  CHECK(*h.maps().WatchedPorts() == std::vector<uint16_t>{22, 443});
  // ...while a read-back apply repairs everything.
  MustApply(b, h.maps());
  CHECK(*h.maps().WatchedPorts() == std::vector<uint16_t>{443});
  CheckTriesEqual(b, h.maps());
}

TEST_CASE("apply: stray keys with host bits set are matched as their prefix") {
  BpfHarness h;
  h.Reset();
  h.AddPrefix("203.0.113.5/24", BW_ACTION_WATCH, 99);  // how the trie stores it: 203.0.113.0/24
  CompiledPolicy a = CompileYaml(kPolicyA);
  ApplyStats st = MustApply(a, h.maps());
  CHECK(st.updated == 1);
  CHECK(st.added == 6);
  CheckTriesEqual(a, h.maps());
}

// ---- concurrent reader --------------------------------------------------------------------------

// Nested prefixes around a set of hot addresses in 10.0.0.0/8, each length present or not and with
// a random action, so two draws differ in every way a diff can (add, remove, re-valued, a covering
// prefix appearing or vanishing above or below a kept one).
// One block list of `prefixes` (entry k on line k + 1), compiled.
CompiledPolicy BlockList(const std::vector<Prefix>& prefixes) {
  Policy p;
  p.path = "block.yaml";
  p.files = {p.path};
  ListSpec l;
  l.name = "l";
  l.action = ListAction::kBlock;
  for (size_t k = 0; k < prefixes.size(); ++k)
    l.entries.push_back({prefixes[k], 0, static_cast<uint32_t>(k + 1), ""});
  p.lists.push_back(std::move(l));
  auto c = Compile(p);
  REQUIRE(c.ok());
  return std::move(*c);
}

Policy RandomNested(std::mt19937& rng, const std::vector<uint32_t>& hot) {
  Policy p;
  p.path = "random.yaml";
  p.files = {p.path};
  const ListAction actions[3] = {ListAction::kWatch, ListAction::kBlock, ListAction::kSafelist};
  for (int l = 0; l < 6; ++l) {
    ListSpec ls;
    ls.name = absl::StrCat("list", l);
    ls.action = actions[l % 3];
    p.lists.push_back(ls);
  }
  // No /8 or /12: shared by every hot address, they would list everything in every draw.
  const unsigned lens[] = {16, 20, 22, 24, 26, 28, 30, 32};
  for (uint32_t a : hot)
    for (unsigned len : lens)
      if (rng() % 3 == 0)
        p.lists[rng() % p.lists.size()].entries.push_back({Prefix::V4(a, len), 0, 1, ""});
  return p;
}

// What the kernel's pre-filter reads for host-order address `a`, in its order: the /22's bit, the
// /24's code, the byte (code 2, a /24 of single addresses only: the host table straight away), the
// /27's chunk entry, the address's host entry. Returns the class (BW_V4_PRE_TRIE: ask the trie);
// *byte: the byte it acted on; *host: decided by a host or chunk entry.
uint32_t PrefilterRead(const V4SumMapping& sum, const volatile uint8_t* bytes,
                       const V4HostTable& ht, uint32_t a, uint8_t* byte, bool* host) {
  uint8_t code = sum.Bit0(a >> BW_V4_SUM_L0_SHIFT) ? sum.Code(a >> 8) : 0;
  uint8_t b = code == BW_V4_SUM_READ_PRE ? bytes[a >> 8]
              : code == BW_V4_SUM_HOSTS  ? static_cast<uint8_t>(BW_V4_PRE_HOSTS)
                                         : code;
  *byte = b;
  *host = false;
  uint32_t cls = b & BW_V4_PRE_CLASS_MASK;
  if (b & BW_V4_PRE_CHUNKS)
    if (std::optional<uint8_t> cc = ht.Find(V4ChunkKeyOf(a))) {
      cls = *cc;
      *host = true;
    }
  if (b & BW_V4_PRE_HOSTS)
    if (std::optional<uint8_t> hc = ht.Find(a)) {
      cls = *hc;
      *host = true;
    }
  return cls;
}

// The pre-filter's three shared mappings, as the tests' readers and checks use them.
struct PrefilterMaps {
  V4SumMapping sum;
  V4PreMapping pre;
  V4HostTable hosts;
  static PrefilterMaps Of(const MapSet& m) {
    auto s = V4SumMapping::Map(m.v4_sum);
    REQUIRE(s.ok());
    auto p = V4PreMapping::Map(m.v4_pre);
    REQUIRE(p.ok());
    auto h = V4HostTable::Map(m.v4_host);
    REQUIRE(h.ok());
    return PrefilterMaps{std::move(*s), std::move(*p), std::move(*h)};
  }
};

// A reader thread may run on any CPU, not only the one the harness pinned the test to: it must
// race the writer.
void RunOnAnyCpu() {
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int c = 0; c < CPU_SETSIZE; ++c) CPU_SET(c, &all);
  pthread_setaffinity_np(pthread_self(), sizeof(all), &all);
}

TEST_CASE("apply: a concurrent reader never sees an address missing or with a foreign entry") {
  BpfHarness h;  // pins this thread to one CPU; the reader runs on another when there is one
  h.Reset();
  std::mt19937 rng(20130911);
  std::vector<uint32_t> hot;
  for (int i = 0; i < 3000; ++i) hot.push_back(0x0a000000u | (rng() & 0x00ffffffu));
  std::vector<CompiledPolicy> versions;
  for (int v = 0; v < 4; ++v) {
    auto c = Compile(RandomNested(rng, hot));
    REQUIRE(c.ok());
    versions.push_back(std::move(*c));
  }
  // Addresses to watch: the hot ones and neighbours; some are unlisted in some versions.
  std::vector<bw_lpm_v4_key> keys;
  std::vector<std::vector<std::optional<bw_list_value>>> expect;  // per version, per key
  for (uint32_t a : hot)
    for (uint32_t d : {0u, 1u, 255u, 4096u}) keys.push_back(ToV4Key(Prefix::V4(a ^ d, 32)));
  for (const CompiledPolicy& c : versions) {
    std::vector<std::optional<bw_list_value>> e;
    for (const auto& k : keys) {
      const KernelEntry* m = c.Lookup(FromKey(k));
      e.push_back(m ? std::optional<bw_list_value>(m->value.ToMap()) : std::nullopt);
    }
    expect.push_back(std::move(e));
  }
  size_t always = 0, sometimes = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    int n = 0;
    for (const auto& e : expect) n += e[i].has_value();
    always += n == 4;
    sometimes += n > 0 && n < 4;
  }
  REQUIRE(always > keys.size() / 2);  // addresses listed before and after every change
  REQUIRE(sometimes > 100);           // and some listed on one side only
  MustApply(versions[0], h.maps());

  std::atomic<int> from{0}, to{0};  // the reader accepts either version's entry
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> lookups{0}, missing{0}, foreign{0};
  std::string first_problem;
  int fd = h.maps().watch_v4.fd();
  std::thread reader([&] {
    RunOnAnyCpu();
    while (!stop.load(std::memory_order_relaxed)) {
      for (size_t i = 0; i < keys.size() && !stop.load(std::memory_order_relaxed); ++i) {
        // Read the allowed versions before and after: a lookup straddling a version switch is
        // judged against both switches' versions.
        int f1 = from.load(), t1 = to.load();
        bw_list_value v;
        int r = bpf_map_lookup_elem(fd, &keys[i], &v);
        int f2 = from.load(), t2 = to.load();
        lookups.fetch_add(1, std::memory_order_relaxed);
        if (r != 0) {
          // Missing is only right when a version in play does not list the address.
          bool listed_by_all = true;
          for (int ver : {f1, t1, f2, t2}) listed_by_all &= expect[ver][i].has_value();
          if (listed_by_all && missing.fetch_add(1) == 0 && first_problem.empty())
            first_problem = absl::StrCat("missing ", FromKey(keys[i]).ToString());
          continue;
        }
        bool ok = false;
        for (int ver : {f1, t1, f2, t2}) ok |= expect[ver][i] && SameDecision(v, *expect[ver][i]);
        if (!ok && foreign.fetch_add(1) == 0)
          first_problem = absl::StrCat(FromKey(keys[i]).ToString(), " found action ", int(v.action),
                                       " entry ", v.entry_ref, "/", int(v.prefixlen),
                                       ", neither version ", f1, " nor ", t1);
      }
    }
  });

  int cur = 0;
  size_t changes = 0;
  for (int round = 0; round < 24; ++round) {
    int next = (cur + 1 + static_cast<int>(rng() % 3)) % 4;
    to.store(next);
    ApplyStats st = MustApply(versions[next], h.maps(), ApplyOptions{.ports = false, .config = false});
    changes += st.added + st.updated + st.removed;
    from.store(next);
    cur = next;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  stop.store(true);
  reader.join();
  INFO(first_problem);
  std::printf("apply: concurrent reader: %zu addresses (%zu listed by every version), %llu lookups "
              "over %zu changes, %llu missing, %llu foreign\n",
              keys.size(), always, static_cast<unsigned long long>(lookups.load()), changes,
              static_cast<unsigned long long>(missing.load()),
              static_cast<unsigned long long>(foreign.load()));
  CHECK(changes > 10000);
  CHECK(lookups.load() > keys.size());
  CHECK(missing.load() == 0u);
  CHECK(foreign.load() == 0u);
  CheckTriesEqual(versions[cur], h.maps());
}

// The kernel's order with BW_CFG_PREFILTER: the summary (the /22's bit, the /24's code), the /24's
// byte when the code says so, the host map when its bit 4 is set, the
// class table, the trie for class 15. A program run is a few hundred nanoseconds inside one RCU
// read-side section, never the length of a whole apply; a user-space reader can be descheduled for
// that long, so a read that spans an entire apply (one started and finished within it) is not
// judged (counted as "spanning").
TEST_CASE("apply: a pre-filter reader never sees an address missing or with a foreign decision") {
  BpfHarness h;
  h.Reset();
  std::mt19937 rng(20240521);
  std::vector<uint32_t> hot;
  for (int i = 0; i < 3000; ++i) hot.push_back(0x0a000000u | (rng() & 0x00ffffffu));
  std::vector<CompiledPolicy> versions;
  for (int v = 0; v < 4; ++v) {
    auto c = Compile(RandomNested(rng, hot));
    REQUIRE(c.ok());
    versions.push_back(std::move(*c));
  }
  std::vector<uint32_t> addrs;  // host order
  std::vector<std::vector<std::optional<bw_list_value>>> expect;
  for (uint32_t a : hot)
    for (uint32_t d : {0u, 1u, 255u, 4096u}) addrs.push_back(a ^ d);
  for (const CompiledPolicy& c : versions) {
    std::vector<std::optional<bw_list_value>> e;
    for (uint32_t a : addrs) {
      const KernelEntry* m = c.Lookup(Prefix::V4(a, 32));
      e.push_back(m ? std::optional<bw_list_value>(m->value.ToMap()) : std::nullopt);
    }
    expect.push_back(std::move(e));
  }
  MustApply(versions[0], h.maps());
  auto cfg = h.maps().ReadConfig();
  REQUIRE(cfg.ok());
  REQUIRE((cfg->flags & BW_CFG_PREFILTER) != 0);
  PrefilterMaps pm = PrefilterMaps::Of(h.maps());
  const volatile uint8_t* bytes = pm.pre.bytes();
  const V4SumMapping& sum = pm.sum;
  const V4HostTable& ht = pm.hosts;

  std::atomic<int> from{0}, to{0};
  std::atomic<uint64_t> started{0}, finished{0};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> lookups{0}, missing{0}, foreign{0}, via_class{0}, via_host{0}, via_trie{0},
      spanning{0};
  std::string first_problem;
  int trie_fd = h.maps().watch_v4.fd(), class_fd = h.maps().v4_class.fd();
  std::thread reader([&] {
    RunOnAnyCpu();
    while (!stop.load(std::memory_order_relaxed)) {
      for (size_t i = 0; i < addrs.size() && !stop.load(std::memory_order_relaxed); ++i) {
        int f1 = from.load(), t1 = to.load();
        uint64_t s1 = started.load();
        auto began = std::chrono::steady_clock::now();
        uint32_t a = addrs[i];
        uint8_t b;
        bool host;
        uint32_t cls = PrefilterRead(sum, bytes, ht, a, &b, &host);
        bool found = false;
        uint8_t action = 0;
        uint32_t list_id = 0;
        std::optional<bw_list_value> full;
        if (cls == BW_V4_PRE_TRIE) {
          bw_lpm_v4_key k = ToV4Key(Prefix::V4(a, 32));
          bw_list_value v;
          if (bpf_map_lookup_elem(trie_fd, &k, &v) == 0) {
            found = true;
            full = v;
          }
        } else if (cls != 0) {
          bw_v4_class cv{};
          bpf_map_lookup_elem(class_fd, &cls, &cv);  // a failure leaves {0, 0}: judged foreign
          found = true;
          action = cv.action;
          list_id = cv.list_id;
        }
        uint64_t e2 = finished.load();
        int f2 = from.load(), t2 = to.load();
        lookups.fetch_add(1, std::memory_order_relaxed);
        if (e2 > s1) {  // an apply started after our first read has finished: not a program's view
          spanning.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        // A program runs to completion within microseconds with bottom halves off, and a host
        // table rebuild waits 20 ms for those in flight; this thread can be preempted for longer
        // on a busy host. A lookup that took that long is not a program's view either.
        if (std::chrono::steady_clock::now() - began > std::chrono::milliseconds(5)) {
          spanning.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        (cls == BW_V4_PRE_TRIE ? via_trie : host ? via_host : via_class)
            .fetch_add(1, std::memory_order_relaxed);
        if (!found) {
          bool listed_by_all = true;
          for (int ver : {f1, t1, f2, t2}) listed_by_all &= expect[ver][i].has_value();
          if (listed_by_all && missing.fetch_add(1) == 0 && first_problem.empty())
            first_problem = absl::StrCat("missing ", Prefix::V4(a, 32).ToString(), " byte ", int(b));
          continue;
        }
        bool ok = false;
        for (int ver : {f1, t1, f2, t2}) {
          const auto& want = expect[ver][i];
          if (!want) continue;
          ok |= full ? SameDecision(*full, *want)
                     : (want->action == action && want->list_id == list_id);
        }
        if (!ok && foreign.fetch_add(1) == 0)
          first_problem = absl::StrCat(Prefix::V4(a, 32).ToString(), " byte ", int(b), " class ",
                                       cls, " found action ", int(full ? full->action : action),
                                       " list ", full ? full->list_id : list_id,
                                       ", neither version ", f1, " nor ", t1);
      }
    }
  });

  int cur = 0;
  size_t changes = 0, rewritten = 0, compacted = 0;
  for (int round = 0; round < 24; ++round) {
    int next = (cur + 1 + static_cast<int>(rng() % 3)) % 4;
    to.store(next);
    started.fetch_add(1);
    // Every other round against the applied policy in memory, as the daemon does.
    ApplyOptions o{.ports = false, .config = false};
    if (round % 2) o.applied = &versions[cur];
    // Every third round rebuilds the host table under the reader.
    if (round % 3 == 2) o.host_compact_removed = 1;
    ApplyStats st = MustApply(versions[next], h.maps(), o);
    changes += st.added + st.updated + st.removed;
    rewritten += st.prefilter_changed;
    compacted += st.prefilter_host_compacted;
    finished.fetch_add(1);
    from.store(next);
    cur = next;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  stop.store(true);
  reader.join();
  INFO(first_problem);
  std::printf("apply: pre-filter reader: %zu addresses, %llu lookups (%llu by class, %llu by host, "
              "%llu by trie, %llu spanning an apply) over %zu changes and %zu /24 rewrites, %llu "
              "missing, %llu foreign\n",
              addrs.size(), static_cast<unsigned long long>(lookups.load()),
              static_cast<unsigned long long>(via_class.load()),
              static_cast<unsigned long long>(via_host.load()),
              static_cast<unsigned long long>(via_trie.load()),
              static_cast<unsigned long long>(spanning.load()), changes, rewritten,
              static_cast<unsigned long long>(missing.load()),
              static_cast<unsigned long long>(foreign.load()));
  CHECK(changes > 10000);
  CHECK(compacted > 0u);
  CHECK(via_class.load() > 0);
  CHECK(via_host.load() > 0);
  CHECK(via_trie.load() > 0);
  CHECK(missing.load() == 0u);
  CHECK(foreign.load() == 0u);
  CheckTriesEqual(versions[cur], h.maps());
  // The pre-filter ends equal to a fresh build of the last policy under the classes in the map.
  auto classes = ReadClasses(h.maps().v4_class);
  REQUIRE(classes.ok());
  V4Prefilter want = BuildV4Prefilter(versions[cur].v4, *classes);
  CHECK(BuildV4Hosts(versions[cur].v4, *classes) == want.hosts);  // what a diff in memory uses
  size_t diff = 0;
  for (size_t i = 0; i < kV4PreBytes; ++i) diff += bytes[i] != want.bytes[i];
  CHECK(diff == 0u);
  CHECK(ht.Entries() == want.hosts);
}

// The pre-filter in the maps equals a fresh build of `c` under the classes in the map: bytes,
// summary codes, host entries.
void CheckPrefilterEqual(const CompiledPolicy& c, const MapSet& m) {
  auto classes = ReadClasses(m.v4_class);
  REQUIRE(classes.ok());
  V4Prefilter want = BuildV4Prefilter(c.v4, *classes);
  PrefilterMaps pm = PrefilterMaps::Of(m);
  const volatile uint8_t* bytes = pm.pre.bytes();
  size_t diff = 0, code_diff = 0;
  for (size_t i = 0; i < kV4PreBytes; ++i) {
    diff += bytes[i] != want.bytes[i];
    code_diff += SumCode(want.bytes[i]) != pm.sum.Code(static_cast<uint32_t>(i));
  }
  CHECK(diff == 0u);
  CHECK(code_diff == 0u);
  CHECK(pm.hosts.Entries() == want.hosts);
}

// /24s holding single addresses only are read straight from their summary code (BW_V4_SUM_HOSTS),
// not through their byte: a rebuild of the host table must move their codes away too. /24s with
// /27 chunk entries (a /26 here) read the table through their byte: it must move those too.
TEST_CASE("apply: a host table rebuild never leaves a /24 of single addresses or chunks unread") {
  BpfHarness h;
  h.Reset();
  auto version = [](bool all) {
    std::vector<Prefix> v;
    for (uint32_t i = 0; i < 4096; ++i) {
      if (all || i % 2 == 0) v.push_back(Prefix::V4(0x0a000007u | (i << 8), 32));
      if (i % 2 == 1 && i < 1024) v.push_back(Prefix::V4(0x0b000040u | (i << 8), 26));  // kept
    }
    return BlockList(v);
  };
  CompiledPolicy all = version(true), half = version(false);
  MustApply(all, h.maps());
  PrefilterMaps pm = PrefilterMaps::Of(h.maps());
  const V4SumMapping& sum = pm.sum;
  const volatile uint8_t* bytes = pm.pre.bytes();
  const V4HostTable& ht = pm.hosts;
  int trie_fd = h.maps().watch_v4.fd();
  // The kept addresses' /24s are of single addresses only: code 2; the /26s' have chunks.
  CHECK(sum.Code(0x0a000007u >> 8) == BW_V4_SUM_HOSTS);
  CHECK(bytes[0x0b000140u >> 8] == (0 | BW_V4_PRE_CHUNKS));

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> lookups{0}, missing{0}, via_host{0};
  std::thread reader([&] {
    RunOnAnyCpu();
    while (!stop.load(std::memory_order_relaxed)) {
      for (uint32_t i = 0; i < 4096; ++i) {
        // The kept single addresses, and an address of each kept /26.
        if (i % 2 == 1 && i >= 1024) continue;
        uint32_t a = i % 2 == 0 ? 0x0a000007u | (i << 8) : 0x0b000045u | (i << 8);
        // The kernel's order (PrefilterRead), then the trie.
        uint8_t b;
        bool host;
        uint32_t cls = PrefilterRead(sum, bytes, ht, a, &b, &host);
        if (host) via_host.fetch_add(1, std::memory_order_relaxed);
        bool found = cls != 0 && cls != BW_V4_PRE_TRIE;
        if (cls == BW_V4_PRE_TRIE) {
          bw_lpm_v4_key k = ToV4Key(Prefix::V4(a, 32));
          bw_list_value v;
          found = bpf_map_lookup_elem(trie_fd, &k, &v) == 0;
        }
        lookups.fetch_add(1, std::memory_order_relaxed);
        if (!found) missing.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  size_t rebuilt = 0;
  for (int round = 0; round < 6; ++round) {
    // all -> half removes 2048 of 4096 entries: a rebuild when removed slots may be as few as 1.
    ApplyOptions o{.ports = false, .config = false};
    o.applied = round % 2 ? &half : &all;
    o.host_compact_removed = 1;
    ApplyStats st = MustApply(round % 2 ? all : half, h.maps(), o);
    rebuilt += st.prefilter_host_compacted;
  }
  stop.store(true);
  reader.join();
  std::printf("apply: host table rebuilds: %zu, %llu lookups of kept addresses (%llu by host), %llu "
              "missing\n",
              rebuilt, static_cast<unsigned long long>(lookups.load()),
              static_cast<unsigned long long>(via_host.load()),
              static_cast<unsigned long long>(missing.load()));
  CHECK(rebuilt >= 3);
  CHECK(via_host.load() > 0);
  CHECK(missing.load() == 0u);
}

/* Test that a reload diffed against the applied policy in memory, which recomputes the pre-filter
   only under the prefixes that changed, leaves exactly what a full build gives: small random
   changes across several lists of every action (entries added, removed, moved to another list),
   nested and overlapping prefixes from /8 to /32, and now and then a list emptied or refilled so
   that classes change meaning too. */
TEST_CASE("apply: a reload's pre-filter diff in memory equals a full build") {
  BpfHarness h;
  h.Reset();
  std::mt19937 rng(777);
  std::vector<uint32_t> hot;
  for (int i = 0; i < 400; ++i) hot.push_back((0x0a000000u + (rng() % 4) * 0x01000000u) | (rng() & 0x00ffffffu));
  Policy p = RandomNested(rng, hot);
  for (int i = 0; i < 20; ++i)  // a few big ones, covering many /24s
    p.lists[rng() % p.lists.size()].entries.push_back({Prefix::V4(hot[rng() % hot.size()], 8 + rng() % 12), 0, 1, ""});
  auto prev = Compile(p);
  REQUIRE(prev.ok());
  MustApply(*prev, h.maps());
  CheckPrefilterEqual(*prev, h.maps());
  const unsigned lens[] = {8, 12, 16, 20, 23, 24, 25, 26, 28, 29, 30, 31, 32};
  size_t rewritten = 0, compacted = 0;
  for (int round = 0; round < 30; ++round) {
    INFO("round " << round);
    // 1-5 % of the entries change.
    size_t n = 0;
    for (const ListSpec& l : p.lists) n += l.entries.size();
    size_t k = 1 + n * (1 + rng() % 5) / 100;
    for (size_t c = 0; c < k; ++c) {
      ListSpec& l = p.lists[rng() % p.lists.size()];
      switch (rng() % 3) {
        case 0:  // remove
          if (!l.entries.empty()) l.entries.erase(l.entries.begin() + rng() % l.entries.size());
          break;
        case 1:  // add, near a hot address
          l.entries.push_back({Prefix::V4(hot[rng() % hot.size()] ^ (rng() & 0x1ff), lens[rng() % 13]), 0, 1, ""});
          break;
        default:  // move to another list
          if (!l.entries.empty()) {
            size_t at = rng() % l.entries.size();
            p.lists[rng() % p.lists.size()].entries.push_back(l.entries[at]);
            l.entries.erase(l.entries.begin() + at);
          }
      }
    }
    if (round % 10 == 9) p.lists[rng() % p.lists.size()].entries.clear();  // a class freed
    auto next = Compile(p, absl::Now(), &*prev);
    REQUIRE(next.ok());
    // Every fourth round also rebuilds the host table.
    ApplyStats st = MustApply(*next, h.maps(),
                              ApplyOptions{.applied = &*prev,
                                           .host_compact_removed = round % 4 == 3 ? 1u : 1u << 17});
    rewritten += st.prefilter_changed;
    compacted += st.prefilter_host_compacted;
    CheckTriesEqual(*next, h.maps());
    CheckPrefilterEqual(*next, h.maps());
    auto full = BuildV4Prefilter(next->v4, *ReadClasses(h.maps().v4_class));
    CHECK(st.prefilter_hosts == full.hosts.size());
    prev = std::move(next);
  }
  CHECK(rewritten > 0u);
  CHECK(compacted > 0u);
}

TEST_CASE("apply: a trie too small for old and new at once fails before writing, unless allowed") {
  LoadOptions lo;
  lo.v4_entries = 64;
  BpfHarness h(lo);
  h.Reset();
  auto make = [](uint32_t base) {
    std::vector<Prefix> v;
    for (uint32_t i = 0; i < 40; ++i) v.push_back(Prefix::V4(base + i, 32));
    return BlockList(v);
  };
  CompiledPolicy a = make(0xc6336400u /* 198.51.100.0 */), b = make(0xcb007100u /* 203.0.113.0 */);
  MustApply(a, h.maps());
  auto st = ApplyPolicy(b, h.maps());
  REQUIRE_FALSE(st.ok());
  CHECK(st.status().code() == absl::StatusCode::kResourceExhausted);
  INFO(st.status());
  CHECK(st.status().message().find("needs room for 80 prefixes at once") != absl::string_view::npos);
  CheckTriesEqual(a, h.maps());  // nothing was changed
  ApplyStats ok = MustApply(b, h.maps(), ApplyOptions{.allow_remove_first = true});
  CHECK(ok.removed_first);
  CheckTriesEqual(b, h.maps());
}

// Not run by default (hidden tag): prints apply times for 1 M prefixes and a 1% change.
TEST_CASE("apply: bench: 1M prefixes, then a 1% change", "[.bench]") {
  BpfHarness h;
  h.Reset();
  std::mt19937 rng(7);
  Policy p;
  p.path = "bench.yaml";
  p.files = {p.path};
  for (ListAction a : {ListAction::kBlock, ListAction::kWatch}) {
    ListSpec l;
    l.name = absl::StrCat("l", int(a));
    l.action = a;
    p.lists.push_back(l);
  }
  for (uint32_t i = 0; i < 1000000; ++i)
    p.lists[i % 2].entries.push_back({Prefix::V4(rng(), 16 + rng() % 17), 0, i + 1, ""});
  auto t0 = std::chrono::steady_clock::now();
  auto c = Compile(p);
  REQUIRE(c.ok());
  auto t1 = std::chrono::steady_clock::now();
  ApplyStats first = MustApply(*c, h.maps(), ApplyOptions{.ports = false, .config = false});
  // 1%: 5,000 removed, 5,000 added, 5,000 entries moved to the other list (re-valued).
  for (int i = 0; i < 5000; ++i) p.lists[0].entries[i].prefix = Prefix::V4(rng(), 24);
  for (int i = 0; i < 5000; ++i) {
    auto e = p.lists[0].entries.back();
    p.lists[0].entries.pop_back();
    p.lists[1].entries.push_back(e);
  }
  auto t2 = std::chrono::steady_clock::now();
  auto c2 = Compile(p, absl::Now(), &*c);  // ids kept: only what changed is rewritten
  REQUIRE(c2.ok());
  auto t3 = std::chrono::steady_clock::now();
  auto renumbered = Compile(p);  // for comparison: ids from scratch
  REQUIRE(renumbered.ok());
  ApplyStats fresh_ids = MustApply(*renumbered, h.maps(), ApplyOptions{.dry_run = true});
  ApplyStats second = MustApply(*c2, h.maps(), ApplyOptions{.ports = false, .config = false});
  ApplyStats same = MustApply(*c2, h.maps(), ApplyOptions{.ports = false, .config = false});
  // As the daemon does it: the diff against the policy it applied last, without reading back.
  MustApply(*c, h.maps(), ApplyOptions{.ports = false, .config = false});
  ApplyStats mem = MustApply(*c2, h.maps(),
                             ApplyOptions{.ports = false, .config = false, .applied = &*c});
  CheckTriesEqual(*c2, h.maps());
  auto ms = [](absl::Duration d) { return absl::ToDoubleMilliseconds(d); };
  std::printf("compile 1M: %.0f ms (%zu kernel entries)\n",
              std::chrono::duration<double, std::milli>(t1 - t0).count(), c->v4.size());
  std::printf("apply 1M into empty tries: %s (read %.0f ms, write %.0f ms)\n", first.ToString().c_str(),
              ms(first.read_time), ms(first.write_time));
  std::printf("compile again with the previous policy's ids: %.0f ms\n",
              std::chrono::duration<double, std::milli>(t3 - t2).count());
  std::printf("(the same change compiled without the previous ids would write: %s)\n",
              fresh_ids.ToString().c_str());
  std::printf("apply 1%% change: %s (read %.0f ms, write %.0f ms)\n", second.ToString().c_str(),
              ms(second.read_time), ms(second.write_time));
  std::printf("apply no change: %s (read %.0f ms)\n", same.ToString().c_str(), ms(same.read_time));
  std::printf("apply 1%% change against the applied policy in memory: %s\n", mem.ToString().c_str());
}

}  // namespace
}  // namespace bw::test

namespace bw::test {
namespace {

// Feed-shaped prefixes, as bench/lib/feeds.hpp describes real blocklists: ~95 % IPv4 (55 % /24,
// 30 % /32, 13 % /8-/23 with each shorter length half as likely, 2 % /25-/31; half of the /24s and
// /32s in a few thousand hot /16s), ~5 % IPv6; one line each, as a list file holds them.
class FeedLines {
 public:
  explicit FeedLines(uint64_t seed) : s_(seed) {
    while (hot_.size() < 4096) hot_.push_back(Public() & 0xffff0000u);
  }
  std::string Next() {
    uint64_t k = Draw() % 1000;
    if (k < 50) {
      unsigned len = (unsigned[]){32, 48, 64, 128}[Draw() & 3];
      uint8_t b[16] = {0x2a, 0x0b};
      uint64_t hi = Draw(), lo = Draw();
      std::memcpy(b + 2, &hi, 6);
      std::memcpy(b + 8, &lo, 8);
      return Prefix::Make(Family::kV6, b, len).HumanString();
    }
    unsigned len;
    bool hot = false;
    if (k < 50 + 523) {
      len = 24, hot = true;
    } else if (k < 50 + 808) {
      len = 32, hot = true;
    } else if (k < 50 + 931) {
      len = 23;
      while (len > 8 && (Draw() & 1)) --len;
    } else {
      len = 25 + static_cast<unsigned>(Draw() % 7);
    }
    uint32_t a = Public();
    if (hot && (Draw() & 1)) a = hot_[Draw() % hot_.size()] | (a & 0xffff);
    return Prefix::V4(a, len).HumanString();
  }

 private:
  uint64_t Draw() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // 1.0.0.0 - 126.255.255.255 and 128.0.0.0 - 191.255.255.255, without 10/8 (no documentation
  // ranges, which the tests' own hosts use).
  uint32_t Public() {
    for (;;) {
      uint32_t a = static_cast<uint32_t>(Draw());
      uint32_t top = a >> 24;
      if (top != 0 && top != 10 && top != 127 && top < 192) return a;
    }
  }
  uint64_t s_;
  std::vector<uint32_t> hot_;
};

// Not run by default (hidden tag): 1 M feed-shaped prefixes in list files, parsed, compiled and
// applied as the daemon does it; then one file rewritten with 1 % of its lines changed, reloaded.
TEST_CASE("apply: bench: 1M prefixes from list files, then a file with 1% changed", "[.bench]") {
  BpfHarness h;
  h.Reset();
  TempDir dir("bw-bench");
  FeedLines gen(20130911);
  std::vector<std::string> big;
  for (int i = 0; i < 900000; ++i) big.push_back(gen.Next());
  std::vector<std::string> small;
  for (int i = 0; i < 100000; ++i) small.push_back(gen.Next());
  std::string drop = "; Spamhaus DROP List (bench copy)\n";
  for (int i = 0; i < 100000; ++i) absl::StrAppend(&drop, small[i], " ; SBL", 100000 + i, "\n");
  auto write_big = [&] {
    std::string s = "# Category : reputation\n";
    for (const std::string& l : big) absl::StrAppend(&s, l, "\n");
    dir.Write("feed.netset", s);
  };
  write_big();
  dir.Write("drop.txt", drop);
  std::string policy = dir.Write("policy.yaml", R"(
limits: { v4_entries: 2000000, v6_entries: 200000 }
lists:
  - name: feed
    action: block
    files: [feed.netset]
  - name: drop
    action: watch
    files: [drop.txt]
  - name: ours
    action: safelist
    entries: [203.0.113.0/24]
)");
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  using clk = std::chrono::steady_clock;
  auto t0 = clk::now();
  auto p = LoadPolicyFile(policy);
  REQUIRE(p.ok());
  auto t1 = clk::now();
  auto c = Compile(*p);
  REQUIRE(c.ok());
  auto t2 = clk::now();
  ApplyStats first = MustApply(*c, h.maps(), ApplyOptions{.ports = false, .config = false});
  auto t3 = clk::now();
  std::printf("first apply: %s\n", first.ToString().c_str());
  std::printf("files 1M: parse %.0f ms, compile %.0f ms, apply %.0f ms (trie write %.0f ms, "
              "pre-filter %.0f ms): total %.0f ms (%zu IPv4, %zu IPv6 kernel entries)\n",
              ms(t0, t1), ms(t1, t2), ms(t2, t3), absl::ToDoubleMilliseconds(first.write_time),
              absl::ToDoubleMilliseconds(first.prefilter_time), ms(t0, t3), c->v4.size(),
              c->v6.size());
  // 1 % of all prefixes: 3,300 lines of the big file replaced, 3,300 removed, 3,400 added.
  for (int i = 0; i < 3300; ++i) big[(i * 7919u) % big.size()] = gen.Next();
  big.erase(big.begin() + 1000, big.begin() + 4300);
  for (int i = 0; i < 3400; ++i) big.push_back(gen.Next());
  write_big();
  auto t4 = clk::now();
  auto p2 = LoadPolicyFile(policy);
  REQUIRE(p2.ok());
  auto t5 = clk::now();
  auto c2 = Compile(*p2, absl::Now(), &*c);
  REQUIRE(c2.ok());
  auto t6 = clk::now();
  ApplyStats second = MustApply(*c2, h.maps(),
                                ApplyOptions{.ports = false, .config = false, .applied = &*c});
  auto t7 = clk::now();
  std::printf("reload, 1%% changed: parse %.0f ms, compile %.0f ms, apply %.0f ms (trie write %.0f "
              "ms, pre-filter %.0f ms): total %.0f ms; %s\n",
              ms(t4, t5), ms(t5, t6), ms(t6, t7), absl::ToDoubleMilliseconds(second.write_time),
              absl::ToDoubleMilliseconds(second.prefilter_time), ms(t4, t7),
              second.ToString().c_str());
  CheckTriesEqual(*c2, h.maps());
  // About 1 % of all prefixes again (10 % of the small file's lines replaced), in the small file:
  // the big one comes from the feed cache.
  std::string drop2 = "; Spamhaus DROP List (bench copy)\n";
  for (int i = 0; i < 100000; ++i)
    absl::StrAppend(&drop2, i % 10 ? small[i] : gen.Next(), " ; SBL", 100000 + i, "\n");
  dir.Write("drop.txt", drop2);
  FeedCacheStats s0 = GetFeedCacheStats();
  auto t8 = clk::now();
  auto p3 = LoadPolicyFile(policy);
  REQUIRE(p3.ok());
  auto t9 = clk::now();
  auto c3 = Compile(*p3, absl::Now(), &*c2);
  REQUIRE(c3.ok());
  auto t10 = clk::now();
  ApplyStats third = MustApply(*c3, h.maps(),
                               ApplyOptions{.ports = false, .config = false, .applied = &*c2});
  auto t11 = clk::now();
  FeedCacheStats s1 = GetFeedCacheStats();
  std::printf("reload, the small file changed (%llu parsed, %llu from the cache): parse %.0f ms, "
              "compile %.0f ms, apply %.0f ms (trie write %.0f ms, pre-filter %.0f ms): total %.0f "
              "ms; %s\n",
              static_cast<unsigned long long>(s1.parses - s0.parses),
              static_cast<unsigned long long>(s1.hits - s0.hits), ms(t8, t9), ms(t9, t10),
              ms(t10, t11), absl::ToDoubleMilliseconds(third.write_time),
              absl::ToDoubleMilliseconds(third.prefilter_time), ms(t8, t11),
              third.ToString().c_str());
  CheckTriesEqual(*c3, h.maps());
}

}  // namespace
}  // namespace bw::test
