#include "daemon/dataplane/list_counters.hpp"

#include "daemon/dataplane/apply.hpp"
#include "daemon/dataplane/prefilter.hpp"

namespace bw {

ListCounters::ByList ListCounters::Read(const MapSet& maps) {
  ByList out;
  for (auto r : {ReadTrieCounted(maps.watch_v4), ReadTrieCounted(maps.watch_v6)}) {
    if (!r.ok()) continue;
    for (const CountedEntry& c : *r) {
      Counts& s = out[c.entry.value.list_id];
      s.hits += c.hits;
      s.drops += c.drops;
    }
  }
  // Packets decided by the IPv4 pre-filter count per class, per CPU: each class is one list.
  if (auto cls = ReadClasses(maps.v4_class); cls.ok()) {
    for (uint32_t c = 1; c < BW_V4_PRE_TRIE; ++c) {
      if (!ClassUsed((*cls)[c])) continue;
      auto per_cpu = maps.v4_cls_cnt.LookupAll(c);
      if (!per_cpu.ok()) continue;
      Counts& s = out[(*cls)[c].list_id];
      for (const bw_v4_cls_cnt& v : *per_cpu) {
        s.hits += v.hits;
        s.drops += v.drops;
      }
    }
  }
  return out;
}

ListCounters::ByList ListCounters::Get(size_t prefixes) {
  constexpr size_t kLargeTries = 100'000;
  const bool large = took_ > absl::Milliseconds(50) || prefixes > kLargeTries;
  if (!large) {
    absl::Time t0 = absl::Now();
    cache_ = Read(maps_);
    at_ = absl::Now();
    took_ = at_ - t0;
    return cache_;
  }
  if (next_.valid() && next_.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
    auto [counts, took] = next_.get();
    cache_ = std::move(counts);
    took_ = took;
    at_ = absl::Now();
  }
  if (!next_.valid() && absl::Now() - at_ >= absl::Seconds(10)) {
    // The maps' fds are only read there; the MapSet outlives the thread (Stop waits).
    next_ = std::async(std::launch::async, [maps = &maps_] {
      absl::Time t0 = absl::Now();
      ByList s = Read(*maps);
      return std::make_pair(std::move(s), absl::Now() - t0);
    });
  }
  return cache_;
}

void ListCounters::Stop() {
  if (next_.valid()) next_.wait();
}

}  // namespace bw
