// prefilter_host.hpp — the IPv4 pre-filter's host table (bw_v4_host): the addresses whose class
// differs from their /24's, in an open-addressed table of cache-line buckets that the kernel reads
// with one or a few array loads (the layout and the search are in maps/bannerwatch_abi.h,
// BW_V4_HOST_*).
//
// Contract: every write is one aligned 8-byte store into the shared mapping, so a concurrent
// reader sees a slot before or after it, never half. Entries never move: Put rewrites an
// address's own slot or fills the first empty or removed slot of its probe buckets, Remove marks a
// slot removed, and a slot is empty again only after Clear. So a search that follows the kernel's
// rule (stop at the entry, or after a bucket with an empty slot) always finds a live entry, while
// other entries are added and removed around it. Put fails (false, nothing written) when the
// address's probe buckets have no empty or removed slot; the apply then leaves its /24 to the
// trie. Removed slots are reused by later Puts; Clear empties the table, for when nothing reads
// it (no /24 byte has BW_V4_PRE_HOSTS).
#pragma once

#include <cstdint>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "maps/maps.hpp"

namespace bw {

inline constexpr size_t kV4HostSlots = size_t{BW_V4_HOST_BUCKETS} * BW_V4_HOST_SLOTS;

// A host table key: a host-order address, or with kV4ChunkKey the first address of a /27 (a chunk
// entry: the /27's class, for a /24 with BW_V4_PRE_CHUNKS).
using V4HostKey = uint64_t;
inline constexpr V4HostKey kV4ChunkKey = BW_V4_HOST_CHUNK;
inline V4HostKey V4ChunkKeyOf(uint32_t addr) { return kV4ChunkKey | (addr & ~uint32_t{31}); }
inline uint32_t V4HostAddr(V4HostKey k) { return static_cast<uint32_t>(k); }
inline uint32_t V4HostSlash24(V4HostKey k) { return static_cast<uint32_t>(k) >> 8; }

// A read/write shared mapping of bw_v4_host.
class V4HostTable {
 public:
  static absl::StatusOr<V4HostTable> Map(const V4HostMap& m);

  // The class of key `a` (an address, or a chunk), found as the kernel finds it, or nullopt.
  std::optional<uint8_t> Find(V4HostKey a) const;
  // Every live entry: key -> class.
  absl::flat_hash_map<V4HostKey, uint8_t> Entries() const;
  // Sets the class of `a`; false when there is no room in its probe buckets (nothing written).
  bool Put(V4HostKey a, uint8_t cls);
  // Marks the entry of `a` removed; false when it has none.
  bool Remove(V4HostKey a);
  // Every slot empty.
  void Clear();

  struct Counts {
    size_t live = 0, removed = 0;
  };
  Counts Count() const;

  // The raw slots, for tests.
  const volatile uint64_t* slots() const { return p_; }

 private:
  explicit V4HostTable(SharedMapping m) : m_(std::move(m)), p_(m_.as<uint64_t>()) {}
  // The slot holding a live entry of `a`, or nullptr; *matched (if given) gets the value the
  // search read there, each slot being read once.
  volatile uint64_t* Slot(V4HostKey a, uint64_t* matched = nullptr) const;
  SharedMapping m_;
  volatile uint64_t* p_;
};

inline uint64_t V4HostSlot(V4HostKey a, uint8_t cls) {
  return BW_V4_HOST_LIVE | uint64_t{static_cast<uint8_t>(cls & BW_V4_PRE_CLASS_MASK)} << 32 |
         (a & (kV4ChunkKey | 0xffffffffULL));
}

}  // namespace bw
