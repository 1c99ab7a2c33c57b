// prefilter_host.cpp — see prefilter_host.hpp.
#include "daemon/dataplane/prefilter_host.hpp"

namespace bw {
namespace {

bool Live(uint64_t v) { return (v & (BW_V4_HOST_LIVE | BW_V4_HOST_DEAD)) == BW_V4_HOST_LIVE; }
// A slot's key: its address, and its chunk flag.
V4HostKey KeyOf(uint64_t v) { return v & (kV4ChunkKey | 0xffffffffULL); }

}  // namespace

absl::StatusOr<V4HostTable> V4HostTable::Map(const V4HostMap& m) {
  auto s = SharedMapping::Map(m.fd(), m.name(), kV4HostSlots * 8);
  if (!s.ok()) return s.status();
  return V4HostTable(std::move(*s));
}

volatile uint64_t* V4HostTable::Slot(V4HostKey a, uint64_t* matched) const {
  uint32_t home = bw_v4_host_home(V4HostAddr(a));
  for (uint32_t i = 0; i < BW_V4_HOST_PROBES; ++i) {
    volatile uint64_t* b = p_ + size_t{(home + i) & (BW_V4_HOST_BUCKETS - 1)} * BW_V4_HOST_SLOTS;
    bool open = false;
    for (uint32_t j = 0; j < BW_V4_HOST_SLOTS; ++j) {
      uint64_t v = b[j];
      if (KeyOf(v) == a && Live(v)) {
        if (matched) *matched = v;
        return b + j;
      }
      open |= v == 0;
    }
    if (open) return nullptr;
  }
  return nullptr;
}

std::optional<uint8_t> V4HostTable::Find(V4HostKey a) const {
  // The class comes from the value the search matched, as in the kernel's bw_host_class: a reader
  // beside a writer that read the slot again could find it removed by then (class 0).
  uint64_t v;
  if (!Slot(a, &v)) return std::nullopt;
  return static_cast<uint8_t>((v >> 32) & BW_V4_PRE_CLASS_MASK);
}

absl::flat_hash_map<V4HostKey, uint8_t> V4HostTable::Entries() const {
  absl::flat_hash_map<V4HostKey, uint8_t> out;
  for (size_t k = 0; k < kV4HostSlots; ++k) {
    uint64_t v = p_[k];
    if (Live(v)) out[KeyOf(v)] = static_cast<uint8_t>((v >> 32) & BW_V4_PRE_CLASS_MASK);
  }
  return out;
}

bool V4HostTable::Put(V4HostKey a, uint8_t cls) {
  const uint64_t want = V4HostSlot(a, cls);
  if (volatile uint64_t* s = Slot(a)) {
    if (*s != want) *s = want;
    return true;
  }
  // Not there: the first empty or removed slot of its probe buckets. The buckets before it then
  // have neither, so a search never stops short of it.
  uint32_t home = bw_v4_host_home(V4HostAddr(a));
  for (uint32_t i = 0; i < BW_V4_HOST_PROBES; ++i) {
    volatile uint64_t* b = p_ + size_t{(home + i) & (BW_V4_HOST_BUCKETS - 1)} * BW_V4_HOST_SLOTS;
    for (uint32_t j = 0; j < BW_V4_HOST_SLOTS; ++j) {
      uint64_t v = b[j];
      if (v == 0 || (v & BW_V4_HOST_DEAD)) {
        b[j] = want;
        return true;
      }
    }
  }
  return false;
}

bool V4HostTable::Remove(V4HostKey a) {
  volatile uint64_t* s = Slot(a);
  if (!s) return false;
  // Keeps the key: a removed slot is still not empty, so searches go on past it.
  *s = BW_V4_HOST_DEAD | KeyOf(a);
  return true;
}

void V4HostTable::Clear() {
  for (size_t k = 0; k < kV4HostSlots; ++k) p_[k] = 0;
}

V4HostTable::Counts V4HostTable::Count() const {
  Counts c;
  for (size_t k = 0; k < kV4HostSlots; ++k) {
    uint64_t v = p_[k];
    if (Live(v))
      ++c.live;
    else if (v & BW_V4_HOST_DEAD)
      ++c.removed;
  }
  return c;
}

}  // namespace bw
