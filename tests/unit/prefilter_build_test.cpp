// The IPv4 pre-filter's contents (daemon/dataplane/prefilter.hpp), without the kernel.
//
// Test that: for random nested policies, the pre-filter's answer for any address (byte, host
// entry, class) is the (action, list) of the compiled table's longest match, or "ask the trie"
// (class 15), never something else; /25-/27 entries of another class become chunk entries;
// /28-/32s of another class get host entries, within the host map's capacity; classes stay where they were across a recompile and
// pairs beyond 14 fall to the trie.
#include <catch2/catch.hpp>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "daemon/policy/policy.hpp"
#include "daemon/dataplane/prefilter.hpp"

namespace bw {
namespace {

Policy RandomPolicy(std::mt19937& rng, int lists) {
  Policy p;
  p.path = "p.yaml";
  p.files = {p.path};
  const ListAction acts[3] = {ListAction::kWatch, ListAction::kBlock, ListAction::kSafelist};
  for (int l = 0; l < lists; ++l) {
    ListSpec ls;
    ls.name = absl::StrCat("l", l);
    ls.action = acts[l % 3];
    p.lists.push_back(ls);
  }
  const unsigned lens[] = {20, 23, 24, 24, 25, 26, 27, 28, 31, 32, 32, 32};
  for (int i = 0; i < 4000; ++i) {
    uint32_t a = 0x0a000000u | (rng() & 0x000fffffu);  // crowded into 10.0.0.0/12
    unsigned len = lens[rng() % std::size(lens)];
    p.lists[rng() % lists].entries.push_back({Prefix::V4(a, len), 0, uint32_t(i + 1), ""});
  }
  return p;
}

TEST_CASE("prefilter build: every address resolves to its longest match's decision or the trie") {
  std::mt19937 rng(5);
  for (int lists : {3, 6, 30}) {
    auto c = Compile(RandomPolicy(rng, lists));
    REQUIRE(c.ok());
    V4ClassTable classes = AssignClasses(c->v4, V4ClassTable{});
    V4Prefilter pf = BuildV4Prefilter(c->v4, classes);
    size_t by_class = 0, by_trie = 0, unlisted = 0;
    for (int i = 0; i < 200000; ++i) {
      uint32_t a = 0x0a000000u | (rng() & 0x000fffffu);
      if (i % 10 == 0) a = rng();  // anywhere
      uint8_t cls = PrefilterClass(pf.bytes.data(), pf.hosts, a);
      const KernelEntry* m = c->Lookup(Prefix::V4(a, 32));
      INFO(Prefix::V4(a, 32).ToString() << " class " << int(cls));
      if (cls == BW_V4_PRE_TRIE) {
        ++by_trie;
      } else if (cls == 0) {
        ++unlisted;
        CHECK(m == nullptr);
      } else {
        ++by_class;
        REQUIRE(m != nullptr);
        CHECK(classes[cls].action == m->value.action);
        CHECK(classes[cls].list_id == m->value.list_id);
      }
    }
    CHECK(by_class > 0);
    // Only pairs beyond the 14 classes are left to the trie (/25-/27s have chunk entries).
    if (lists == 30)
      CHECK(by_trie > 0);
    else
      CHECK(by_trie == 0);
    CHECK(unlisted > 0);
    std::set<std::pair<uint8_t, uint32_t>> pairs;
    for (const KernelEntry& e : c->v4) pairs.insert({e.value.action, e.value.list_id});
    int used = 0;
    for (uint32_t k = 1; k < BW_V4_PRE_TRIE; ++k) used += ClassUsed(classes[k]);
    CHECK(used == static_cast<int>(std::min<size_t>(pairs.size(), 14)));
    if (lists == 30) CHECK(pairs.size() > 14);
    // Stable: the same policy keeps every class; a changed one keeps the pairs still in use.
    V4ClassTable again = AssignClasses(c->v4, classes);
    for (uint32_t k = 0; k < BW_V4_CLASSES; ++k) {
      CHECK(again[k].list_id == classes[k].list_id);
      CHECK(again[k].action == classes[k].action);
    }
  }
}

TEST_CASE("prefilter build: partial coverage, hosts and safelist exceptions") {
  Policy p;
  p.path = "p.yaml";
  p.files = {p.path};
  ListSpec block{.name = "block", .action = ListAction::kBlock};
  ListSpec safe{.name = "safe", .action = ListAction::kSafelist};
  ListSpec watch{.name = "watch", .action = ListAction::kWatch};
  block.entries.push_back({Prefix::V4(0xcb007100u, 24), 0, 1, ""});  // 203.0.113.0/24
  safe.entries.push_back({Prefix::V4(0xcb007109u, 32), 0, 2, ""});   // 203.0.113.9
  watch.entries.push_back({Prefix::V4(0xc0000200u, 25), 0, 3, ""});  // 192.0.2.0/25
  watch.entries.push_back({Prefix::V4(0xc6336400u, 24), 0, 4, ""});  // 198.51.100.0/24
  watch.entries.push_back({Prefix::V4(0xc6336480u, 25), 0, 5, ""});  // same class: no trie
  p.lists = {block, safe, watch};
  auto c = Compile(p);
  REQUIRE(c.ok());
  V4ClassTable t = AssignClasses(c->v4, V4ClassTable{});
  V4Prefilter pf = BuildV4Prefilter(c->v4, t);
  uint8_t b203 = pf.bytes[0xcb0071u];
  CHECK((b203 & BW_V4_PRE_HOSTS) != 0);
  CHECK(t[b203 & BW_V4_PRE_CLASS_MASK].action == BW_ACTION_BLOCK);
  REQUIRE(pf.hosts.contains(0xcb007109u));
  CHECK(t[pf.hosts.at(0xcb007109u)].action == BW_ACTION_SAFELIST);
  // A /25 of another class than the rest of its /24: chunk entries for its four /27s.
  CHECK(pf.bytes[0xc00002u] == (0 | BW_V4_PRE_CHUNKS));
  for (uint32_t j = 0; j < 4; ++j) {
    REQUIRE(pf.hosts.contains(V4ChunkKeyOf(0xc0000200u + 32 * j)));
    CHECK(t[pf.hosts.at(V4ChunkKeyOf(0xc0000200u + 32 * j))].action == BW_ACTION_WATCH);
  }
  CHECK(!pf.hosts.contains(V4ChunkKeyOf(0xc0000280u)));  // the other half: the /24's (unlisted)
  CHECK(PrefilterClass(pf.bytes.data(), pf.hosts, 0xc000027fu) != 0);
  CHECK(PrefilterClass(pf.bytes.data(), pf.hosts, 0xc0000280u) == 0);
  CHECK(t[pf.bytes[0xc63364u]].action == BW_ACTION_WATCH);  // /25 of the same class: nothing
  CHECK(pf.hosts.size() == 1 + 4);
}

// Every address of /24 `idx`: the pre-filter's class is its longest match's decision, never the
// trie.
void CheckEveryAddress(const CompiledPolicy& c, const V4Prefilter& pf, const V4ClassTable& t,
                       uint32_t idx) {
  for (uint32_t a = idx << 8; a <= ((idx << 8) | 0xffu); ++a) {
    const KernelEntry* m = c.Lookup(Prefix::V4(a, 32));
    uint8_t cls = PrefilterClass(pf.bytes.data(), pf.hosts, a);
    INFO(Prefix::V4(a, 32).ToString());
    if (!m) {
      CHECK(cls == 0);
    } else {
      REQUIRE(cls != 0);
      REQUIRE(cls != BW_V4_PRE_TRIE);
      CHECK(t[cls].action == m->value.action);
      CHECK(t[cls].list_id == m->value.list_id);
    }
  }
}

TEST_CASE("prefilter build: /28-/31 become host entries, nested exceptions included") {
  Policy p;
  p.path = "p.yaml";
  p.files = {p.path};
  ListSpec block{.name = "block", .action = ListAction::kBlock};
  ListSpec safe{.name = "safe", .action = ListAction::kSafelist};
  block.entries.push_back({Prefix::V4(0xc6336410u, 28), 0, 1, ""});  // 198.51.100.16/28
  safe.entries.push_back({Prefix::V4(0xc6336418u, 30), 0, 2, ""});   // .24/30 inside it
  block.entries.push_back({Prefix::V4(0xc6336419u, 32), 0, 3, ""});  // .25 inside that
  block.entries.push_back({Prefix::V4(0xc0000200u, 26), 0, 4, ""});  // 192.0.2.0/26: chunks
  block.entries.push_back({Prefix::V4(0xc0000240u, 31), 0, 5, ""});  // and a /31 beside it
  safe.entries.push_back({Prefix::V4(0xc0000220u, 27), 0, 6, ""});   // a /27 inside the /26
  safe.entries.push_back({Prefix::V4(0xc0000201u, 32), 0, 7, ""});   // a /32 in the blocked /27
  p.lists = {block, safe};
  auto c = Compile(p);
  REQUIRE(c.ok());
  V4ClassTable t = AssignClasses(c->v4, V4ClassTable{});
  V4Prefilter pf = BuildV4Prefilter(c->v4, t);
  CHECK(pf.bytes[0xc63364u] == (0 | BW_V4_PRE_HOSTS));  // unlisted /24 with hosts
  // The /28: blocked or safelisted addresses, all unlike the /24.
  size_t in_198 = 0;
  for (const auto& [k, cls] : pf.hosts) in_198 += V4HostSlash24(k) == 0xc63364u;
  CHECK(in_198 == 16u);
  CheckEveryAddress(*c, pf, t, 0xc63364u);
  CHECK(PrefilterClass(pf.bytes.data(), pf.hosts, 0xc6336418u) != 0);  // .24: safelisted
  // 192.0.2.0/24: chunk entries for the /26's two /27s (one blocked, one safelisted), host
  // entries for the /31 and for the safelisted /32 in the blocked /27; every address as the trie
  // says.
  CHECK(pf.bytes[0xc00002u] == (0 | BW_V4_PRE_CHUNKS | BW_V4_PRE_HOSTS));
  CHECK(pf.hosts.contains(V4ChunkKeyOf(0xc0000200u)));
  CHECK(pf.hosts.contains(V4ChunkKeyOf(0xc0000220u)));
  CHECK(pf.hosts.contains(0xc0000240u));
  CHECK(pf.hosts.contains(0xc0000201u));
  CHECK(pf.hosts.size() == 16u + 2 + 2 + 1);
  CheckEveryAddress(*c, pf, t, 0xc00002u);
  CHECK(BuildV4Hosts(c->v4, t) == pf.hosts);
}

TEST_CASE("prefilter build: a /24 whose hosts exceed the host map's capacity goes to the trie") {
  std::mt19937 rng(11);
  auto c = Compile(RandomPolicy(rng, 3));
  REQUIRE(c.ok());
  V4ClassTable classes = AssignClasses(c->v4, V4ClassTable{});
  V4Prefilter full = BuildV4Prefilter(c->v4, classes);
  REQUIRE(full.hosts.size() > 100);
  const size_t cap = full.hosts.size() / 3;
  V4Prefilter small = BuildV4Prefilter(c->v4, classes, cap);
  CHECK(small.hosts.size() <= cap);
  CHECK(small.hosts.size() > 0);
  CHECK(BuildV4Hosts(c->v4, classes, cap) == small.hosts);
  size_t to_trie = 0;
  for (size_t i = 0; i < small.bytes.size(); ++i) {
    if (small.bytes[i] == full.bytes[i]) continue;
    // Only /24s with host or chunk entries changed, and only to the trie.
    CHECK((full.bytes[i] & (BW_V4_PRE_HOSTS | BW_V4_PRE_CHUNKS)) != 0);
    CHECK(small.bytes[i] == BW_V4_PRE_TRIE);
    ++to_trie;
  }
  CHECK(to_trie > 0);
  // Every answer is still the longest match's decision or "ask the trie".
  for (int i = 0; i < 100000; ++i) {
    uint32_t a = 0x0a000000u | (rng() & 0x000fffffu);
    uint8_t cls = PrefilterClass(small.bytes.data(), small.hosts, a);
    if (cls == 0 || cls == BW_V4_PRE_TRIE) continue;
    const KernelEntry* m = c->Lookup(Prefix::V4(a, 32));
    REQUIRE(m != nullptr);
    CHECK(classes[cls].action == m->value.action);
    CHECK(classes[cls].list_id == m->value.list_id);
  }
}

}  // namespace
}  // namespace bw
