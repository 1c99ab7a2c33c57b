// apply.hpp — writes a CompiledPolicy into the data plane's maps as a safe diff.
//
// Contract: the tries are read back (or taken from ApplyOptions::applied) and compared with the
// compiled tables. New prefixes and changed values are written first, each after the new prefixes
// it contains; prefixes no longer wanted are deleted last, each before the old prefixes it contains
// (in batched syscalls that keep that order). With that order every address, at every moment of
// the change, resolves to either its old or its new entry: nothing kept by both versions goes missing and no address is ever
// seen with an entry that belongs to neither version. Unchanged prefixes are not touched; changed
// ones keep their hits/drops counters (read, then written with the new value: increments landing in
// between are lost). Then the watched ports and bw_config are written. A failure stops the apply
// and leaves a state the next apply (of any policy) diffs against and repairs.
//
// IPv4 pre-filter (prefilter.hpp): on a second thread, beside the trie diffs, every /24 whose
// pre-filter answer changes is first sent to the trie (byte 15), then classes, host entries and
// final bytes are written (order and argument in apply.cpp); bw_config's BW_CFG_PREFILTER is set once it is
// populated and kept by later config writes. A dry run does not touch it. A failed apply (a trie
// too small, a map error) may leave /24s sent to the trie (byte 15): decisions stay right, only
// slower, until the next apply repairs them.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/policy/policy.hpp"
#include "maps/maps.hpp"

namespace bw {

struct ApplyOptions {
  bool lists = true;   // the tries
  bool ports = true;   // bw_ports
  bool config = true;  // bw_config (banner actions, block-event interval)
  bool dry_run = false;  // compute the diff and the stats, write nothing
  // Adding before removing needs room for old and new prefixes at once. When a trie's capacity
  // (max_entries) is too small for that, the apply fails before writing anything, unless this is
  // set: then that trie's removals run first, and addresses may be briefly unlisted.
  bool allow_remove_first = false;
  // What the maps hold now, when this process applied it last and nothing else wrote them since:
  // the diff is then taken against it instead of reading the tries back (reading 1 M prefixes
  // takes most of a second), and ports are rewritten only if they changed. Null: read the maps
  // (on adoption and after a failed apply). Maps just created hold an empty CompiledPolicy.
  const CompiledPolicy* applied = nullptr;
  // The host table is rebuilt (compacted) when at least this many of its slots hold removed
  // entries and they outnumber half the live ones: removed slots are reused but never emptied,
  // and fewer empty slots make searches for unlisted addresses read more buckets.
  size_t host_compact_removed = BW_V4_HOST_BUCKETS * BW_V4_HOST_SLOTS / 8;
};

struct ApplyStats {
  size_t added = 0, updated = 0, removed = 0, unchanged = 0;  // both tries
  size_t v4_entries = 0, v6_entries = 0;  // in the tries afterwards
  bool removed_first = false;             // the capacity fallback ran
  size_t prefilter_changed = 0;           // IPv4 pre-filter: /24 bytes rewritten
  size_t prefilter_hosts = 0;             // bw_v4_host entries afterwards
  size_t prefilter_host_overflow = 0;     // /24s left to the trie: their hosts found no slot
  bool prefilter_host_compacted = false;  // the host table was rebuilt
  absl::Duration prefilter_time;          // computing and writing the pre-filter
  absl::Duration read_time, write_time, elapsed;
  std::string ToString() const;  // "added 3, updated 1, removed 2, unchanged 10 (v4 ..., v6 ...) in 1.2ms"
};

absl::StatusOr<ApplyStats> ApplyPolicy(const CompiledPolicy& policy, const MapSet& maps,
                                       const ApplyOptions& opts = {});

// What the tries hold now, sorted by prefix (host bits of stored keys masked).
absl::StatusOr<std::vector<KernelEntry>> ReadTrie(const WatchV4Map& map);
absl::StatusOr<std::vector<KernelEntry>> ReadTrie(const WatchV6Map& map);
// The same with each value's packet counters.
struct CountedEntry {
  KernelEntry entry;
  uint64_t hits = 0, drops = 0;
};
absl::StatusOr<std::vector<CountedEntry>> ReadTrieCounted(const WatchV4Map& map);
absl::StatusOr<std::vector<CountedEntry>> ReadTrieCounted(const WatchV6Map& map);

}  // namespace bw
