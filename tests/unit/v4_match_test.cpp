// V4Match (daemon/dataplane/v4_match.hpp) against a brute-force longest-prefix match, over random nested
// IPv4 tables, and on a compiled policy against CompiledPolicy::Lookup.
#include <catch2/catch.hpp>
#include <algorithm>
#include <random>
#include <vector>

#include "daemon/dataplane/v4_match.hpp"
#include "lib/test_util.hpp"

namespace bw {
namespace {

const KernelEntry* BruteForce(const std::vector<KernelEntry>& v4, uint32_t a) {
  const KernelEntry* best = nullptr;
  for (const KernelEntry& e : v4)
    if (e.prefix.contains(Prefix::V4(a, 32)) && (!best || e.prefix.len > best->prefix.len)) best = &e;
  return best;
}

TEST_CASE("v4 match: random nested tables give the brute-force longest match") {
  std::mt19937 rng(4242);
  for (int round = 0; round < 40; ++round) {
    // Prefixes around a few hot addresses, every length (the default route in some rounds).
    std::vector<uint32_t> hot;
    for (int i = 0; i < 6; ++i) hot.push_back(rng());
    std::vector<Prefix> ps;
    size_t n = 1 + rng() % 400;
    for (size_t i = 0; i < n; ++i) {
      unsigned len = round % 5 == 0 ? rng() % 33 : 1 + rng() % 32;
      ps.push_back(Prefix::V4(hot[rng() % hot.size()] ^ (rng() & 0xffff), len));
    }
    std::sort(ps.begin(), ps.end());
    ps.erase(std::unique(ps.begin(), ps.end()), ps.end());
    std::vector<KernelEntry> v4;
    for (size_t i = 0; i < ps.size(); ++i) {
      KernelEntry e;
      e.prefix = ps[i];
      e.value.entry_ref = static_cast<uint32_t>(i + 1);
      v4.push_back(e);
    }
    V4Match m(v4);
    for (int q = 0; q < 2000; ++q) {
      uint32_t a = q % 2 ? static_cast<uint32_t>(rng()) : hot[rng() % hot.size()] ^ (rng() & 0x1ffff);
      if (q % 7 == 0) a = ps[rng() % ps.size()].v4();  // exactly a prefix's first address
      INFO("round " << round << " address " << Prefix::V4(a, 32).ToString());
      CHECK(m.Find(a) == BruteForce(v4, a));
    }
  }
  V4Match empty(std::vector<KernelEntry>{});
  CHECK(empty.Find(0x0a000001) == nullptr);
}

TEST_CASE("v4 match: a compiled policy answers as CompiledPolicy::Lookup") {
  CompiledPolicy c = test::CompileYaml(R"(
lists:
  - name: watch
    action: watch
    entries: [10.0.0.0/8, 10.1.0.0/16, 10.1.2.0/24, 10.1.2.3/32, 192.0.2.0/24]
  - name: block
    action: block
    entries: [10.1.0.0/20, 10.1.2.128/25, 198.51.100.7/32]
  - name: safe
    action: safelist
    entries: [10.1.2.200/29]
)");
  V4Match m(c.v4);
  std::mt19937 rng(7);
  for (int q = 0; q < 20000; ++q) {
    const uint32_t bases[] = {0x0a000000, 0x0a010000, 0x0a010200, 0xc0000200, 0xc6336400};
    uint32_t a = bases[rng() % 5] | (rng() & (q % 3 ? 0xff : 0xffff));
    const KernelEntry* want = c.Lookup(Prefix::V4(a, 32));
    const KernelEntry* got = m.Find(a);
    INFO(Prefix::V4(a, 32).ToString());
    REQUIRE((got == nullptr) == (want == nullptr));
    if (got) CHECK(got->prefix == want->prefix);
  }
}

}  // namespace
}  // namespace bw
