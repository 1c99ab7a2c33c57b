// maps.hpp — typed C++ access to bannerwatch's maps (the ABI is maps/bannerwatch_abi.h).
//
// Contract: every wrapper holds a map fd (owned, closed on destruction) and speaks the ABI's key
// and value types; errors come back as absl::Status naming the map and the syscall, with strerror.
// A MapSet can be taken from a loaded skeleton (fds duplicated) or opened from a pin root, so the
// daemon, the CLI and the tests use the same code.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "maps/bannerwatch_abi.h"

namespace bw {

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  bool valid() const { return fd_ >= 0; }
  absl::StatusOr<Fd> Dup() const;

 private:
  int fd_ = -1;
};

// "name: what(): strerror(errno)"
absl::Status ErrnoStatus(absl::string_view name, absl::string_view what, int err);

// A batch map command (BPF_MAP_*_BATCH) failed with `err` because the kernel has none for this
// map type: ENOTSUPP (524, what 5.10 answers for an LPM trie) or EOPNOTSUPP whenever; EINVAL (a
// kernel without the command) on a map's first batch call only, where the element-wise path that
// follows reports a real EINVAL itself. The kernel leaves `count` as it was when it refuses the
// command, so `count` does not tell.
bool BatchUnsupported(int err, bool first_call);

// A read/write shared mapping (MAP_SHARED) of a BPF_F_MMAPABLE array map's first `bytes` bytes,
// unmapped on destruction: the kernel reads what is stored here at once. Movable.
class SharedMapping {
 public:
  static absl::StatusOr<SharedMapping> Map(int fd, absl::string_view name, size_t bytes);
  SharedMapping(SharedMapping&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr; }
  SharedMapping& operator=(SharedMapping&&) = delete;
  ~SharedMapping();
  template <typename T>
  volatile T* as() const { return static_cast<volatile T*>(p_); }

 private:
  SharedMapping(void* p, size_t bytes) : p_(p), bytes_(bytes) {}
  void* p_;
  size_t bytes_;
};

// A map of fixed key and value types. For per-CPU maps use PerCpuMap.
template <typename K, typename V>
class Map {
 public:
  Map() = default;
  Map(Fd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}
  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }
  bool valid() const { return fd_.valid(); }

  absl::Status Update(const K& key, const V& value, uint64_t flags = 0 /* BPF_ANY */) const;
  absl::StatusOr<std::optional<V>> Lookup(const K& key) const;
  // NotFound is not an error: returns false.
  absl::StatusOr<bool> Delete(const K& key) const;
  // Visits every key; keys deleted meanwhile may be skipped (kernel iteration semantics).
  absl::Status ForEachKey(const std::function<void(const K&)>& fn) const;
  absl::StatusOr<std::vector<std::pair<K, V>>> Dump() const;

 private:
  Fd fd_;
  std::string name_;
};

// A per-CPU array: values are read and written for every possible CPU.
template <typename V>
class PerCpuArray {
 public:
  PerCpuArray() = default;
  PerCpuArray(Fd fd, std::string name);
  int fd() const { return fd_.get(); }
  bool valid() const { return fd_.valid(); }
  absl::StatusOr<std::vector<V>> LookupAll(uint32_t key) const;  // one value per possible CPU
  absl::Status Zero(uint32_t key) const;

 private:
  Fd fd_;
  std::string name_;
  int ncpus_ = 0;
};

using WatchV4Map = Map<bw_lpm_v4_key, bw_list_value>;
using WatchV6Map = Map<bw_lpm_v6_key, bw_list_value>;
using ConfigMap = Map<uint32_t, bw_config>;
using PortsMap = Map<uint32_t, uint8_t>;
using FlowsMap = Map<bw_flow_key, bw_flow_value>;
using V4PreMap = Map<uint32_t, uint64_t>;       // BPF_F_MMAPABLE: written through a mapping
using V4SumMap = Map<uint32_t, uint64_t>;       // BPF_F_MMAPABLE too
using V4HostMap = Map<uint32_t, bw_v4_host_bucket>;  // key: bucket; daemon/dataplane/prefilter_host.hpp
using V4ClassMap = Map<uint32_t, bw_v4_class>;

// Counter names in enum bw_counter order.
inline constexpr std::array<const char*, BW_CNT__MAX> kCounterNames = {
#define BW_COUNTER_NAME(name) #name,
    BW_COUNTERS(BW_COUNTER_NAME)
#undef BW_COUNTER_NAME
};
static_assert(sizeof(bw_counters) == BW_CNT__MAX * sizeof(uint64_t));

// Counter values as an array indexed by enum bw_counter.
using CounterArray = std::array<uint64_t, BW_CNT__MAX>;
CounterArray ToArray(const bw_counters& c);

// The maps userspace holds a handle to, written once: MapSet's field, its C++ type, the map's
// identifier in bpf/ (the skeleton's field and the pinned file's name) and the ABI header's name
// for it. MapSet, MapSet::OpenPinned and DataPlane::Maps are made from this list; a map missing
// from the object fails the build (the skeleton has no such field), and an ABI name that differs
// from the identifier fails the static_assert below. Maps only the kernel uses (flow state,
// scratch) are not here, nor the ring buffer (DataPlane::events_fd: the event reader's).
#define BW_MAPSET_MAPS(X)                                                  \
  X(watch_v4, WatchV4Map, bw_watch_v4, BW_MAP_WATCH_V4)                    \
  X(watch_v6, WatchV6Map, bw_watch_v6, BW_MAP_WATCH_V6)                    \
  X(config, ConfigMap, bw_config, BW_MAP_CONFIG)                           \
  X(ports, PortsMap, bw_ports, BW_MAP_PORTS)                               \
  X(flows, FlowsMap, bw_flows, BW_MAP_FLOWS)                               \
  X(counters, PerCpuArray<bw_counters>, bw_counters, BW_MAP_COUNTERS)      \
  X(block_rl, PerCpuArray<bw_block_rl_slot>, bw_block_rl, BW_MAP_BLOCK_RL) \
  X(block_bud, PerCpuArray<bw_block_budget>, bw_block_bud, BW_MAP_BLOCK_BUD) \
  X(v4_pre, V4PreMap, bw_v4_pre, BW_MAP_V4_PRE)                            \
  X(v4_sum, V4SumMap, bw_v4_sum, BW_MAP_V4_SUM)                            \
  X(v4_host, V4HostMap, bw_v4_host, BW_MAP_V4_HOST)                        \
  X(v4_class, V4ClassMap, bw_v4_class, BW_MAP_V4_CLASS)                    \
  X(v4_cls_cnt, PerCpuArray<bw_v4_cls_cnt>, bw_v4_cls_cnt, BW_MAP_V4_CLS_CNT)

#define BW_MAPSET_NAME_CHECK(field, type, ident, abi_name) \
  static_assert(std::string_view(abi_name) == #ident, "ABI name of " #ident);
BW_MAPSET_MAPS(BW_MAPSET_NAME_CHECK)
#undef BW_MAPSET_NAME_CHECK

// All maps of the data plane, by name.
struct MapSet {
#define BW_MAPSET_FIELD(field, type, ident, abi_name) type field;
  BW_MAPSET_MAPS(BW_MAPSET_FIELD)
#undef BW_MAPSET_FIELD

  // Opens every map pinned under `pin_root` (BPF_OBJ_GET).
  static absl::StatusOr<MapSet> OpenPinned(const std::string& pin_root);

  // Counters summed over CPUs, for one direction.
  absl::StatusOr<CounterArray> ReadCounters(bw_direction dir) const;
  absl::Status ZeroCounters() const;

  // Config helpers.
  absl::StatusOr<bw_config> ReadConfig() const;
  absl::Status WriteConfig(const bw_config& cfg) const;
  // Makes exactly `ports` watched and `proxy` proxy ports: sets first, then clears the rest.
  absl::Status SetWatchedPorts(const std::vector<uint16_t>& ports,
                               const std::vector<uint16_t>& proxy = {}) const;
  absl::StatusOr<std::vector<uint16_t>> WatchedPorts() const;
  absl::StatusOr<std::vector<uint16_t>> ProxyPorts() const;

  // Empties a map (all keys deleted); for tests and `detach`.
  template <typename M>
  static absl::Status Clear(const M& m);
};

// Opens one pinned object; errors name the path.
absl::StatusOr<Fd> OpenPinnedObject(const std::string& path);

// Completes an event the IPv4 pre-filter decided (BW_EVF_DETAIL): the entry and prefix length come
// from the trie, the source of truth for details, when they belong to the list and action that
// decided (a reload in between leaves them 0). Clears the flag; returns whether it was set.
bool CompleteEvent(const WatchV4Map& v4, bw_event* ev);
// What a kernel lookup of IPv4 address `addr4` (network order) in the trie finds, or nullopt.
std::optional<bw_list_value> LookupV4(const WatchV4Map& v4, const uint8_t* addr4);
// The same with the longest match found by `find` (given the remote IPv4 address, network order;
// nullopt: none), e.g. from the applied policy in memory instead of a trie lookup per event.
bool CompleteEventWith(
    bw_event* ev, absl::FunctionRef<std::optional<bw_list_value>(const uint8_t* addr4)> find);

}  // namespace bw

#include "maps/maps_impl.hpp"
