// The incremental Compile (daemon/policy/policy.hpp): a reload compiled against the previous CompiledPolicy
// merges the previous sorted IPv4 items with what changed instead of sorting again; the result must
// be the full compile's, field by field, over many random reloads (adds, removes, duplicates, moves
// within and between lists, nested prefixes of every length, precedence ties, the same prefix in
// several lists), and the reloads that change lists, actions or expiry must fall back.
#include <catch2/catch.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "daemon/policy/policy.hpp"

namespace bw {
namespace {

std::string Str(const Prefix& p) { return p.ToString(); }

// The first difference between two compiled policies ("" when equal in every field but
// compile_state, which is checked through the next round's compile that uses it).
std::string Diff(const CompiledPolicy& a, const CompiledPolicy& b) {
  std::ostringstream o;
  if (a.policy_path != b.policy_path) return "policy_path";
  if (a.compiled_at != b.compiled_at) return "compiled_at";
  if (a.files != b.files) return "files";
  if (a.ports != b.ports) return "ports";
  if (a.proxy_ports != b.proxy_ports) return "proxy_ports";
  if (std::memcmp(&a.config, &b.config, sizeof a.config) != 0) return "config";
  if (a.next_expiry != b.next_expiry) return "next_expiry";
  if (a.max_list_id != b.max_list_id) return absl::StrCat("max_list_id ", a.max_list_id, " ", b.max_list_id);
  if (a.max_entry_ref != b.max_entry_ref)
    return absl::StrCat("max_entry_ref ", a.max_entry_ref, " ", b.max_entry_ref);
  if (a.lists.size() != b.lists.size()) return "lists.size";
  for (size_t i = 0; i < a.lists.size(); ++i) {
    const CompiledList &x = a.lists[i], &y = b.lists[i];
    if (x.id != y.id || x.name != y.name || x.action != y.action || x.tags != y.tags ||
        x.reason != y.reason || x.expires != y.expires || x.expired != y.expired ||
        x.entries != y.entries)
      return absl::StrCat("lists[", i, "]");
  }
  if (a.entries.size() != b.entries.size()) return "entries.size";
  for (size_t i = 0; i < a.entries.size(); ++i) {
    const CompiledEntry &x = a.entries[i], &y = b.entries[i];
    if (x.ref != y.ref || !(x.prefix == y.prefix) || x.list_id != y.list_id || x.file != y.file ||
        x.line != y.line || !(x.source_id == y.source_id))
      return absl::StrCat("entries[", i, "] ", Str(x.prefix), " ref ", x.ref, " vs ", Str(y.prefix),
                          " ref ", y.ref);
  }
  for (int f = 0; f < 2; ++f) {
    const auto& ta = f ? a.v6 : a.v4;
    const auto& tb = f ? b.v6 : b.v4;
    const char* name = f ? "v6" : "v4";
    if (ta.size() != tb.size()) return absl::StrCat(name, ".size ", ta.size(), " ", tb.size());
    for (size_t i = 0; i < ta.size(); ++i) {
      const KernelEntry &x = ta[i], &y = tb[i];
      if (!(x.prefix == y.prefix) || std::memcmp(&x.value, &y.value, sizeof x.value) != 0)
        return absl::StrCat(name, "[", i, "] ", Str(x.prefix), " ref ", x.value.entry_ref, " list ",
                            x.value.list_id, " action ", int(x.value.action), " len ",
                            int(x.value.prefixlen), " vs ", Str(y.prefix), " ref ", y.value.entry_ref,
                            " list ", y.value.list_id, " action ", int(y.value.action), " len ",
                            int(y.value.prefixlen));
    }
  }
  if (a.entry_index != b.entry_index) return "entry_index";
  if (a.entry_slot != b.entry_slot) return "entry_slot";
  // entry()/list() over every ref handed out (and one past).
  for (uint32_t r = 0; r <= a.max_entry_ref + 1; ++r) {
    const CompiledEntry *x = a.entry(r), *y = b.entry(r);
    if ((x == nullptr) != (y == nullptr) || (x && x - a.entries.data() != y - b.entries.data()))
      return absl::StrCat("entry(", r, ")");
  }
  return "";
}

// Prefixes that nest and overlap a lot: few distinct bytes, every length.
Prefix RandomPrefix(std::mt19937& rng) {
  static const uint8_t kBytes[] = {0, 1, 10, 128, 255};
  auto byte = [&] { return kBytes[rng() % 5]; };
  if (rng() % 5 != 0) {
    uint32_t a = (uint32_t{10} << 24) | (uint32_t{byte()} << 16) | (uint32_t{byte()} << 8) | byte();
    if (rng() % 8 == 0) a = static_cast<uint32_t>(rng());
    unsigned len = rng() % 3 == 0 ? 32 : rng() % 33;
    return Prefix::V4(a, len);
  }
  uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8};
  for (int i = 4; i < 16; ++i) b[i] = rng() % 4 == 0 ? byte() : 0;
  unsigned len = rng() % 3 == 0 ? 128 : rng() % 129;
  return Prefix::Make(Family::kV6, b, len);
}

PolicyEntry RandomEntry(std::mt19937& rng, const std::vector<Prefix>& pool) {
  static const char* kSources[] = {"", "SBL1", "SBL2", "spam"};
  PolicyEntry e;
  e.prefix = rng() % 6 == 0 ? RandomPrefix(rng) : pool[rng() % pool.size()];
  e.file = rng() % 3;
  e.line = 1 + rng() % 1000;
  e.source_id = kSources[rng() % 4];
  return e;
}

// One reload's worth of random changes; returns true when it changed what forces the full path.
bool Mutate(std::mt19937& rng, Policy& p, const std::vector<Prefix>& pool, absl::Time now) {
  bool structural = false;
  int changes = 1 + static_cast<int>(rng() % 12);
  for (int c = 0; c < changes; ++c) {
    ListSpec& l = p.lists[rng() % p.lists.size()];
    auto& es = l.entries;
    switch (rng() % 9) {
      case 0:
      case 1:  // add anywhere (often a duplicate of an existing prefix)
        es.insert(es.begin() + static_cast<long>(es.empty() ? 0 : rng() % (es.size() + 1)),
                  RandomEntry(rng, pool));
        break;
      case 2:
      case 3:  // remove
        if (!es.empty()) es.erase(es.begin() + static_cast<long>(rng() % es.size()));
        break;
      case 4: {  // move to another list
        if (es.empty()) break;
        size_t k = rng() % es.size();
        PolicyEntry e = es[k];
        es.erase(es.begin() + static_cast<long>(k));
        auto& to = p.lists[rng() % p.lists.size()].entries;
        to.insert(to.begin() + static_cast<long>(rng() % (to.size() + 1)), e);
        break;
      }
      case 5: {  // move within the list
        if (es.size() < 2) break;
        size_t k = rng() % es.size();
        PolicyEntry e = es[k];
        es.erase(es.begin() + static_cast<long>(k));
        es.insert(es.begin() + static_cast<long>(rng() % (es.size() + 1)), e);
        break;
      }
      case 6:  // duplicate an entry in place (same prefix twice in a row)
        if (!es.empty()) {
          size_t k = rng() % es.size();
          es.insert(es.begin() + static_cast<long>(k), es[k]);
        }
        break;
      case 7:  // renumbered lines (an edit above)
        for (auto& e : es) e.line += 1;
        break;
      case 8:  // rare: the structural changes the incremental path does not cover
        switch (rng() % 12) {
          case 0:
            es.clear();  // emptied: still incremental
            break;
          case 1:
            l.action = static_cast<ListAction>(1 + rng() % 3);
            structural = true;
            break;
          case 2:
            l.expires = rng() % 2 ? now - absl::Hours(1) : now + absl::Hours(1);
            structural = true;
            break;
          case 3:
            std::swap(p.lists.front(), p.lists.back());
            structural = true;
            break;
          case 4:
            l.tags = {"t" + std::to_string(rng() % 3)};
            l.reason = "r";
            break;
        }
        break;
    }
  }
  return structural;
}

TEST_CASE("compile: the incremental path, writing into the replaced policy's storage, equals the full compile over random reloads") {
  std::mt19937 rng(GENERATE(1u, 2u, 3u, 4u));
  std::vector<Prefix> pool;
  for (int i = 0; i < 200; ++i) pool.push_back(RandomPrefix(rng));
  Policy p;
  p.path = "policy.yaml";
  p.files = {"policy.yaml", "a.txt", "b.txt"};
  p.v4_entries = p.v6_entries = 1u << 20;
  const ListAction kActions[] = {ListAction::kWatch, ListAction::kBlock, ListAction::kBlock,
                                 ListAction::kSafelist, ListAction::kWatch};
  for (int li = 0; li < 5; ++li) {
    ListSpec l;
    l.name = "list" + std::to_string(li);
    l.action = kActions[li];
    if (li == 4) l.expires = absl::FromUnixSeconds(1) ;  // expired all along
    for (int k = 0; k < 60 + static_cast<int>(rng() % 200); ++k) l.entries.push_back(RandomEntry(rng, pool));
    p.lists.push_back(std::move(l));
  }
  absl::Time now = absl::FromUnixSeconds(1700000000);
  auto first = Compile(p, now);
  REQUIRE(first.ok());
  CompiledPolicy prev = *first;
  CompiledPolicy spare;  // the one replaced a round ago: its storage is written into, as the daemon does
  uint64_t inc0 = IncrementalCompileCount();
  int rounds = 300, structural = 0;
  for (int round = 0; round < rounds; ++round) {
    INFO("round " << round);
    now += absl::Seconds(1);
    structural += Mutate(rng, p, pool, now);
    uint64_t before = IncrementalCompileCount();
    SetIncrementalCompile(false);
    auto full = Compile(p, now, &prev);
    SetIncrementalCompile(true);
    REQUIRE(IncrementalCompileCount() == before);
    auto inc = Compile(p, now, &prev, &spare);
    REQUIRE(full.ok());
    REQUIRE(inc.ok());
    CHECK(spare.entries.empty());
    CHECK(spare.v4.empty());
    std::string d = Diff(*inc, *full);
    INFO(d);
    REQUIRE(d.empty());
    spare = std::move(prev);
    prev = std::move(*inc);  // the next round merges from the incremental result's items
  }
  uint64_t incremental = IncrementalCompileCount() - inc0;
  INFO(incremental << " incremental of " << rounds << ", " << structural << " structural changes");
  CHECK(incremental >= static_cast<uint64_t>(rounds) * 2 / 3);
  CHECK(incremental < static_cast<uint64_t>(rounds));  // some fell back
}

TEST_CASE("compile: a list renamed, added or with another action falls back to the full compile") {
  Policy p;
  p.path = "policy.yaml";
  p.files = {"policy.yaml"};
  ListSpec a;
  a.name = "a";
  a.action = ListAction::kBlock;
  for (uint32_t i = 0; i < 50; ++i) a.entries.push_back({Prefix::V4(0x0a000000 + (i << 8), 24), 0, i + 1, ""});
  p.lists.push_back(a);
  CompiledPolicy c1 = *Compile(p);
  uint64_t n0 = IncrementalCompileCount();
  Policy q = p;
  q.lists[0].entries.pop_back();
  CompiledPolicy c2 = *Compile(q, absl::Now(), &c1);
  CHECK(IncrementalCompileCount() == n0 + 1);
  q.lists[0].name = "b";
  (void)*Compile(q, absl::Now(), &c2);
  CHECK(IncrementalCompileCount() == n0 + 1);
  q = p;
  q.lists[0].action = ListAction::kWatch;
  (void)*Compile(q, absl::Now(), &c2);
  CHECK(IncrementalCompileCount() == n0 + 1);
  q = p;
  q.lists.push_back(a);
  q.lists.back().name = "c";
  (void)*Compile(q, absl::Now(), &c2);
  CHECK(IncrementalCompileCount() == n0 + 1);
}

}  // namespace
}  // namespace bw
