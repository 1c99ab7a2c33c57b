// prefilter.hpp — the IPv4 pre-filter's contents, computed from a compiled policy's IPv4 table.
//
// Contract: BuildV4Prefilter turns CompiledPolicy::v4 (sorted, effective values) into one byte per
// /24 and the host table's entries: the addresses that need their own class (/32s, and /28-/31s
// expanded to theirs) and the /27 chunks that need theirs (/25-/27s), with one sweep over the
// prefixes, within the host map's capacity; AssignClasses hands
// out the 14 classes stably (a pair keeps its class across reloads while it is in use; new pairs
// get free classes, the ones covering most /24s first; the rest are decided through the trie).
// V4PreMapping is the daemon's shared mapping of bw_v4_pre (BPF_F_MMAPABLE). The apply order that
// keeps reloads safe is in apply.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "daemon/policy/policy.hpp"
#include "daemon/dataplane/prefilter_host.hpp"
#include "maps/maps.hpp"

namespace bw {

inline constexpr size_t kV4PreBytes = size_t{BW_V4_PRE_ELEMS} * 8;  // one per /24

// Index 0 and 15 unused; a slot is free when list_id and action are both 0.
using V4ClassTable = std::array<bw_v4_class, BW_V4_CLASSES>;

inline bool ClassUsed(const bw_v4_class& c) { return c.list_id != 0 || c.action != 0; }

// The class of a decision under `t`: 1..14, or BW_V4_PRE_TRIE when it has none.
uint8_t ClassOf(const V4ClassTable& t, uint8_t action, uint32_t list_id);

V4ClassTable AssignClasses(const std::vector<KernelEntry>& v4, const V4ClassTable& old);

using V4Hosts = absl::flat_hash_map<V4HostKey, uint8_t>;  // host table key -> class

struct V4Prefilter {
  std::vector<uint8_t> bytes;  // kV4PreBytes, indexed by host-order addr >> 8
  V4Hosts hosts;
};

// At most `host_capacity` host entries (BW_V4_HOST_CAPACITY): /24s whose hosts would not fit
// are decided by the trie.
V4Prefilter BuildV4Prefilter(const std::vector<KernelEntry>& v4, const V4ClassTable& classes,
                             size_t host_capacity = SIZE_MAX);
// BuildV4Prefilter(v4, classes, host_capacity).hosts alone, without the 16 MiB byte table.
V4Hosts BuildV4Hosts(const std::vector<KernelEntry>& v4, const V4ClassTable& classes,
                     size_t host_capacity = SIZE_MAX);

// Prefixes from /28 to /31 inside a /24 become host entries (16 at most each), /25-/27s chunk
// entries (4 at most each).
inline constexpr unsigned kV4ExpandLen = 28;
inline constexpr unsigned kV4ChunkLen = 27;
// The host table entries a prefix of the IPv4 table makes at most: 2^(32 - len) for /28../32,
// 2^(27 - len) for /25../27, else 0.
inline size_t HostSpan(const Prefix& p) {
  return p.len >= kV4ExpandLen ? size_t{1} << (32 - p.len)
         : p.len > 24          ? size_t{1} << (kV4ChunkLen - p.len)
                               : 0;
}

// An upper bound of the host entries BuildV4Prefilter makes from `v4` (every /28../32 expanded):
// when it is within the host map's capacity, no /24 is sent to the trie for lack of room, and
// each /24's byte and hosts depend on its own prefixes and those covering it only.
size_t HostBound(const std::vector<KernelEntry>& v4);

// BuildV4Prefilter one /24 at a time, for /24s visited in increasing order (one forward walk over
// the table), without a host capacity (see HostBound): what a reload that changed a few prefixes
// needs, instead of the whole 16 MiB table.
class V4PrefilterWalker {
 public:
  V4PrefilterWalker(const std::vector<KernelEntry>& v4, const V4ClassTable& classes);
  // The byte of /24 `idx` (> every earlier call's) and its host entries (replacing `hosts`).
  uint8_t At(uint32_t idx, std::vector<std::pair<V4HostKey, uint8_t>>& hosts);

 private:
  struct Cover {
    uint32_t lo, hi;  // /24 indexes
    uint8_t cls;
  };
  const std::vector<KernelEntry>& v4_;
  const V4ClassTable& classes_;
  size_t i_ = 0;
  std::vector<Cover> stack_;
};

// What the kernel's pre-filter answers for `addr` (host order): the class, or BW_V4_PRE_TRIE.
uint8_t PrefilterClass(const uint8_t* bytes, const V4Hosts& hosts, uint32_t addr);

// A read/write shared mapping of bw_v4_pre.
class V4PreMapping {
 public:
  static absl::StatusOr<V4PreMapping> Map(const V4PreMap& m);
  volatile uint8_t* bytes() const { return m_.as<uint8_t>(); }

 private:
  explicit V4PreMapping(SharedMapping m) : m_(std::move(m)) {}
  SharedMapping m_;
};

absl::StatusOr<V4ClassTable> ReadClasses(const V4ClassMap& m);

}  // namespace bw
