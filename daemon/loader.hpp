// loader.hpp — owns the loaded data plane (the bannerwatch skeleton).
//
// Contract: Load() opens the BPF object, sizes its maps, reuses maps already pinned under the pin
// root (adoption: a restarted daemon keeps the same watchlists, flows, counters and the events
// buffered meanwhile) or creates and pins them there, and loads both programs. The pin root is
// created with mode 0700. Destroying a DataPlane closes its fds; it never unpins: Unpin() does.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "maps/maps.hpp"

struct bannerwatch;  // the generated skeleton

namespace bw {

struct LoadOptions {
  std::string pin_root = BW_PIN_ROOT_DEFAULT;
  uint32_t v4_entries = BW_V4_ENTRIES_DEFAULT;
  uint32_t v6_entries = BW_V6_ENTRIES_DEFAULT;
  uint32_t flows = BW_FLOWS_DEFAULT;
  uint32_t events_bytes = BW_EVENTS_BYTES_DEFAULT;
};

class DataPlane {
 public:
  static absl::StatusOr<std::unique_ptr<DataPlane>> Load(const LoadOptions& opts);
  ~DataPlane();
  DataPlane(const DataPlane&) = delete;
  DataPlane& operator=(const DataPlane&) = delete;

  const std::string& pin_root() const { return pin_root_; }
  int xdp_fd() const;
  int tc_fd() const;
  int events_fd() const;
  // Capacities (max_entries) the tries were loaded or adopted with.
  uint32_t v4_capacity() const;
  uint32_t v6_capacity() const;
  // True when the maps were found pinned (a previous daemon's) rather than created.
  bool adopted() const { return adopted_; }
  // Fresh fds (dup) for every map.
  absl::StatusOr<MapSet> Maps() const;
  bannerwatch* skel() { return skel_; }

  // Removes every map pin and the pin root (if then empty). Links are the attach module's.
  absl::Status UnpinMaps();

 private:
  DataPlane() = default;
  bannerwatch* skel_ = nullptr;
  std::string pin_root_;
  bool adopted_ = false;
};

// Creates `dir` (and parents) with mode 0700 if missing; checks that it lives on bpffs.
absl::Status EnsurePinRoot(const std::string& dir);

}  // namespace bw
