// list_counters.hpp — hits and drops per list, read from the kernel (the tries' per-entry counters
// and the IPv4 pre-filter's per-class ones) for `status` and the metrics.
#pragma once
#include <cstdint>
#include <future>
#include <map>
#include <utility>

#include "absl/time/time.h"
#include "maps/maps.hpp"

namespace bw {

class ListCounters {
 public:
  struct Counts {
    uint64_t hits = 0, drops = 0;
  };
  using ByList = std::map<uint32_t, Counts>;  // by list id

  explicit ListCounters(const MapSet& maps) : maps_(maps) {}
  ~ListCounters() { Stop(); }

  // Read afresh when that is quick. When the tries are large (`prefixes` over 100k, or the last
  // read took over 50 ms: a read takes most of a second at a million prefixes) the last complete
  // read is returned at once, and a new one is started on a thread when it is over 10 s old, so
  // that status and scrapes stay fast.
  ByList Get(size_t prefixes);
  // When the counts Get returned were read (InfinitePast before the first read is done).
  absl::Time read_at() const { return at_; }
  // Waits for a read still running (before the maps go away).
  void Stop();

  // One whole read.
  static ByList Read(const MapSet& maps);

 private:
  const MapSet& maps_;
  ByList cache_;
  absl::Time at_ = absl::InfinitePast();
  absl::Duration took_ = absl::ZeroDuration();
  std::future<std::pair<ByList, absl::Duration>> next_;  // a read on its thread
};

}  // namespace bw
