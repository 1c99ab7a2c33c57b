#include "bench/lib/feeds.hpp"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace bw::bench {

uint64_t Rng::Next() {
  uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Rng::Below(uint64_t n) {
  // Rejection keeps it exactly uniform.
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = Next();
  while (x >= limit);
  return x % n;
}

double Rng::Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

std::string Ipv4ToString(uint32_t a) {
  uint32_t n = htonl(a);
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &n, buf, sizeof(buf));
  return buf;
}

uint32_t V4Mask(int len) { return len == 0 ? 0 : ~0U << (32 - len); }

namespace {


// Space a public feed would not list (and the benchmarks' own veth addresses).
struct Range {
  uint32_t net;
  int len;
};
constexpr Range kSpecial[] = {
    {0x00000000, 8},  {0x0a000000, 8},  {0x64400000, 10}, {0x7f000000, 8},
    {0xa9fe0000, 16}, {0xac100000, 12}, {0xc0000000, 24}, {0xc0000200, 24},
    {0xc0586300, 24}, {0xc0a80000, 16}, {0xc6120000, 15}, {0xc6336400, 24},
    {0xcb007100, 24}, {0xe0000000, 3},
};

bool Overlaps(uint32_t net, int len, const Range& r) {
  int l = len < r.len ? len : r.len;
  return (net & V4Mask(l)) == (r.net & V4Mask(l));
}

bool Public(uint32_t net, int len) {
  for (const Range& r : kSpecial)
    if (Overlaps(net, len, r)) return false;
  return true;
}

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {
    // A few thousand hot /16s, fixed by the seed before anything else is drawn.
    while (hot_.size() < 4096) {
      uint32_t net = static_cast<uint32_t>(rng_.Next()) & 0xffff0000U;
      if (Public(net, 16)) hot_.push_back(net);
    }
  }

  Prefix Next() {
    double r = rng_.Unit();
    if (r < 0.95) return V4(rng_.Unit());
    return V6();
  }

 private:
  Prefix V4(double r) {
    int len;
    bool hot_ok = false;
    if (r < 0.55) {
      len = 24, hot_ok = true;
    } else if (r < 0.85) {
      len = 32, hot_ok = true;
    } else if (r < 0.98) {
      // /23 most often, each shorter length half as often, /8 the floor.
      len = 23;
      while (len > 8 && rng_.Unit() < 0.5) --len;
    } else {
      len = 25 + static_cast<int>(rng_.Below(7));
    }
    for (;;) {
      uint32_t a = static_cast<uint32_t>(rng_.Next());
      if (hot_ok && rng_.Unit() < 0.5) a = hot_[rng_.Below(hot_.size())] | (a & 0xffff);
      uint32_t net = a & V4Mask(len);
      if (!Public(net, len)) continue;
      return Prefix::V4(net, static_cast<unsigned>(len));
    }
  }

  Prefix V6() {
    double r = rng_.Unit();
    int len = r < 0.10 ? 32 : r < 0.60 ? 48 : r < 0.85 ? 64 : 128;
    uint64_t hi = rng_.Next(), lo = rng_.Next();
    // Global unicast 2000::/3, never 2001:db8::/32 (documentation).
    hi = (hi & 0x1fffffffffffffffULL) | 0x2000000000000000ULL;
    if ((hi >> 32) == 0x20010db8ULL) hi ^= 0x0000000100000000ULL;
    uint8_t a[16];
    for (int i = 0; i < 8; ++i) a[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
    for (int i = 0; i < 8; ++i) a[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
    return Prefix::Make(Family::kV6, a, static_cast<unsigned>(len));  // host bits masked
  }

  Rng rng_;
  std::vector<uint32_t> hot_;
};


}  // namespace

std::vector<Prefix> FeedPrefixes(size_t n, uint64_t seed) {
  Generator g(seed);
  absl::flat_hash_set<Prefix> seen;
  seen.reserve(n);
  std::vector<Prefix> out;
  out.reserve(n);
  while (out.size() < n) {
    Prefix p = g.Next();
    if (!seen.insert(p).second) continue;
    out.push_back(p);
  }
  return out;
}

void V4Index::Add(const Prefix& p) {
  if (!p.is_v4()) return;
  by_len_[p.len].insert(p.v4());
  lens_ |= 1ULL << p.len;
}

bool V4Index::Contains(uint32_t a) const {
  for (int len = 0; len <= 32; ++len)
    if ((lens_ >> len) & 1)
      if (by_len_[len].contains(a & V4Mask(len))) return true;
  return false;
}

std::vector<uint32_t> CleanSources(const V4Index& index, size_t count, uint64_t seed) {
  Rng rng(seed);
  std::vector<uint32_t> out;
  out.reserve(count);
  while (out.size() < count) {
    uint32_t a = static_cast<uint32_t>(rng.Next());
    if ((a & 0xff) == 0 || (a & 0xff) == 0xff) continue;  // no network/broadcast-looking hosts
    if (!Public(a, 32) || index.Contains(a)) continue;
    out.push_back(a);
  }
  return out;
}

std::vector<uint32_t> CoveredSources(const std::vector<Prefix>& prefixes, size_t count,
                                     uint64_t seed) {
  std::vector<uint32_t> out;
  bool any_v4 = false;
  for (const Prefix& p : prefixes) any_v4 = any_v4 || p.is_v4();
  if (!any_v4) return out;
  Rng rng(seed);
  out.reserve(count);
  while (out.size() < count) {
    const Prefix* p = nullptr;
    // Draw among IPv4 prefixes only.
    for (;;) {
      p = &prefixes[rng.Below(prefixes.size())];
      if (p->is_v4()) break;
    }
    uint32_t host = static_cast<uint32_t>(rng.Next()) & ~V4Mask(p->len);
    out.push_back(p->v4() | host);
  }
  return out;
}

FeedShape Shape(const std::vector<Prefix>& prefixes, size_t n) {
  FeedShape s;
  for (size_t i = 0; i < n && i < prefixes.size(); ++i) {
    const Prefix& p = prefixes[i];
    if (!p.is_v4()) {
      ++s.v6;
      continue;
    }
    ++s.v4;
    if (p.len == 24) ++s.v4_24;
    else if (p.len == 32) ++s.v4_32;
    else if (p.len < 24) ++s.v4_8_23;
    else ++s.v4_25_31;
  }
  return s;
}

absl::Status ApplyAsPolicy(const std::vector<Prefix>& prefixes, size_t n, const MapSet& maps,
                           std::unique_ptr<CompiledPolicy>* applied, ApplyStats* stats) {
  bw::Policy policy;
  policy.path = "bench.yaml";
  policy.files = {policy.path};
  ListSpec l;
  l.name = "bench";
  l.action = ListAction::kBlock;
  l.entries.reserve(n);
  for (size_t i = 0; i < n && i < prefixes.size(); ++i) {
    l.entries.push_back({prefixes[i], 0, static_cast<uint32_t>(i + 1), ""});
  }
  policy.lists.push_back(std::move(l));
  auto c = Compile(policy, absl::Now(), applied->get());
  if (!c.ok()) return c.status();
  ApplyOptions o;
  o.ports = false;
  o.config = false;
  o.applied = applied->get();
  auto st = ApplyPolicy(*c, maps, o);
  if (!st.ok()) return st.status();
  if (stats) *stats = *st;
  *applied = std::make_unique<CompiledPolicy>(std::move(*c));
  return absl::OkStatus();
}

}  // namespace bw::bench
