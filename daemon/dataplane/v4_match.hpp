// v4_match.hpp — longest-prefix match of an IPv4 address over a compiled policy's IPv4 table, in
// memory: what a lookup of the address in bw_watch_v4 returns, without a syscall.
//
// Contract: built from CompiledPolicy::v4 (sorted: address, then length; every prefix's kernel
// value), which must outlive the matcher and not change. Find(a) is one binary search over the
// prefixes' start addresses and a climb through the containing prefixes (at most 32 steps): the
// last prefix starting at or before `a` is inside the longest one containing `a`, if any, so that
// one is on its chain of containing prefixes. 8 bytes per prefix.
#pragma once

#include <cstdint>
#include <vector>

#include "daemon/policy/policy.hpp"

namespace bw {

class V4Match {
 public:
  explicit V4Match(const std::vector<KernelEntry>& v4);
  // The longest prefix containing host-order address `a`, or nullptr.
  const KernelEntry* Find(uint32_t a) const;

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  const std::vector<KernelEntry>& v4_;
  std::vector<uint32_t> start_;   // v4_[i]'s first address (host order), ascending
  std::vector<uint32_t> parent_;  // the nearest prefix containing v4_[i], or kNone
};

}  // namespace bw
