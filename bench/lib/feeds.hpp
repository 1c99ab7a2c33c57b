// feeds.hpp — deterministic, feed-shaped prefix sets and the source addresses that go with them.
//
// Contract: FeedPrefixes(n, seed) returns the first n prefixes of one fixed pseudo-random sequence
// (so a 10 k set is the first 10 k of the 1 M set and sizes nest), without duplicates, shaped like
// public blocklists: ~95 % IPv4 (55 % /24, 30 % /32, 13 % /8–/23 with shorter lengths rarer,
// 2 % /25–/31), ~5 % IPv6 (/32, /48, /64, /128); half of the IPv4 /24s and /32s crowd into a few
// thousand "hot" /16s, as real feeds do. Addresses are public-looking (no private, loopback,
// multicast, CGN or documentation space) and exist only in memory and in the maps and sets the
// benchmarks load: no traffic is ever sent to them outside the benchmark's own namespaces.
// Everything is computed with our own RNG (splitmix64), not <random>'s distributions, whose output
// differs between standard libraries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "daemon/dataplane/apply.hpp"
#include "daemon/policy/policy.hpp"
#include "maps/maps.hpp"

namespace bw::bench {

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next();
  uint64_t Below(uint64_t n);  // uniform in [0, n), n > 0
  double Unit();               // uniform in [0, 1)

 private:
  uint64_t s_;
};

// The daemon's prefix type: the benchmarks load their sets through its compile and apply.
using Prefix = bw::Prefix;

std::vector<Prefix> FeedPrefixes(size_t n, uint64_t seed);

// Longest-prefix membership for IPv4 prefixes, in userspace (one hash set per prefix length).
class V4Index {
 public:
  void Add(const Prefix& p);
  bool Contains(uint32_t addr_host_order) const;

 private:
  absl::flat_hash_set<uint32_t> by_len_[33];
  uint64_t lens_ = 0;  // bit i: some prefix of length i
};

// `count` public-looking IPv4 addresses (host order) that no prefix of `index` covers.
std::vector<uint32_t> CleanSources(const V4Index& index, size_t count, uint64_t seed);
// `count` IPv4 addresses (host order), each inside one of the IPv4 prefixes of `prefixes`
// (a prefix drawn uniformly, then a host inside it).
std::vector<uint32_t> CoveredSources(const std::vector<Prefix>& prefixes, size_t count,
                                     uint64_t seed);

// Summary for reports: how many prefixes of each kind.
struct FeedShape {
  size_t v4 = 0, v6 = 0, v4_24 = 0, v4_32 = 0, v4_8_23 = 0, v4_25_31 = 0;
};
FeedShape Shape(const std::vector<Prefix>& prefixes, size_t n);

std::string Ipv4ToString(uint32_t host_order);
// The host-order netmask of an IPv4 prefix length (0..32).
uint32_t V4Mask(int len);

// Loads prefixes[0, n) as one block list the way the daemon does: Compile, then ApplyPolicy as a
// diff against `*applied` (the policy this process applied last, null at first), which fills the
// IPv4 pre-filter and sets BW_CFG_PREFILTER; bw_config's other fields and the ports are kept.
absl::Status ApplyAsPolicy(const std::vector<Prefix>& prefixes, size_t n, const MapSet& maps,
                           std::unique_ptr<CompiledPolicy>* applied, ApplyStats* stats = nullptr);

}  // namespace bw::bench
