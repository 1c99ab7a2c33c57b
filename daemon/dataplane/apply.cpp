// apply.cpp — policy -> maps as an ordered diff (see apply.hpp for the contract and the order).
//
// Why the order is safe. A lookup returns the longest stored prefix covering the address.
//  Phase 1 (add and update; each new prefix after every new prefix it contains: post-order, which
//  longest-first also satisfies): the tries hold every old prefix plus the new ones written so far.
//  If a lookup lands on a prefix written in this phase, every longer new prefix covering the address
//  lies inside it and was written before it, so it is the address's new longest match, carrying its
//  new value. If it lands on anything else, that is an old prefix with its old value and, since all
//  old prefixes are still there, the address's old longest match.
//  Phase 2 (remove; each prefix before every prefix it contains: pre-order, i.e. sorted order, which
//  shortest-first also satisfies): the tries hold every new prefix plus old ones not yet removed. A
//  lookup landing on a new prefix finds the new longest match; landing on an old-only prefix means
//  no longer old prefix covering the address has been removed yet (they lie inside it and go
//  later), so it is the old longest match.
//  Within each phase, elements go in batches (BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH), which
//  the kernel applies one by one in array order, so the order above holds element by element.
// Writing in any other order can expose, for a moment, a prefix whose value belongs to neither
// version for that address (e.g. a new /16 watch before the new /24 safelist inside it).
#include "daemon/dataplane/apply.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cerrno>
#include <arpa/inet.h>

#include <cstring>
#include <optional>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "daemon/dataplane/prefilter_host.hpp"
#include "daemon/dataplane/prefilter.hpp"
#include "daemon/dataplane/prefilter_sum.hpp"

namespace bw {
namespace {

template <typename K>
K KeyOf(const Prefix& p);
template <>
bw_lpm_v4_key KeyOf<bw_lpm_v4_key>(const Prefix& p) { return ToV4Key(p); }
template <>
bw_lpm_v6_key KeyOf<bw_lpm_v6_key>(const Prefix& p) { return ToV6Key(p); }

const Prefix& PrefixOf(const KernelEntry& e) { return e.prefix; }
const Prefix& PrefixOf(const CountedEntry& e) { return e.entry.prefix; }

// Reads the whole trie, with BPF_MAP_LOOKUP_BATCH where the kernel supports it for LPM tries and
// one get_next_key + lookup per element otherwise: one E per element, made by `make(prefix,
// value)`, sorted by prefix.
template <typename E, typename K, typename Make>
absl::StatusOr<std::vector<E>> ReadTrieAs(const Map<K, bw_list_value>& map, Make make) {
  std::vector<E> out;
  auto add = [&](const K& k, const bw_list_value& v) { out.push_back(make(FromKey(k), v)); };
  constexpr uint32_t kChunk = 4096;
  std::vector<K> keys(kChunk);
  std::vector<bw_list_value> vals(kChunk);
  K token{};
  bool first = true, batch_ok = true;
  for (;;) {
    uint32_t count = kChunk;
    LIBBPF_OPTS(bpf_map_batch_opts, bo);
    int r = bpf_map_lookup_batch(map.fd(), first ? nullptr : &token, &token, keys.data(),
                                 vals.data(), &count, &bo);
    int err = r == 0 ? 0 : errno;
    if (r != 0 && err != ENOENT) {
      if (first) {  // not supported for this map type here: fall back
        batch_ok = false;
        break;
      }
      return ErrnoStatus(map.name(), "bpf_map_lookup_batch", err);
    }
    first = false;
    for (uint32_t i = 0; i < count; ++i) add(keys[i], vals[i]);
    if (r != 0) break;  // ENOENT: done
  }
  if (!batch_ok) {
    out.clear();
    auto dump = map.Dump();
    if (!dump.ok()) return dump.status();
    out.reserve(dump->size());
    for (const auto& [k, v] : *dump) add(k, v);
  }
  std::sort(out.begin(), out.end(),
            [](const E& a, const E& b) { return PrefixOf(a) < PrefixOf(b); });
  return out;
}

template <typename K>
absl::StatusOr<std::vector<KernelEntry>> ReadTrieImpl(const Map<K, bw_list_value>& map) {
  return ReadTrieAs<KernelEntry>(map, [](const Prefix& p, const bw_list_value& v) {
    return KernelEntry{p, KernelValue::Of(v)};
  });
}

template <typename K>
absl::StatusOr<std::vector<CountedEntry>> ReadTrieCountedImpl(const Map<K, bw_list_value>& map) {
  return ReadTrieAs<CountedEntry>(map, [](const Prefix& p, const bw_list_value& v) {
    return CountedEntry{KernelEntry{p, KernelValue::Of(v)}, v.hits, v.drops};
  });
}

absl::StatusOr<uint32_t> MaxEntries(int fd, const std::string& name) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
    return ErrnoStatus(name, "bpf_obj_get_info_by_fd", errno);
  return info.max_entries;
}

// Elements per BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH call. One syscall costs about a
// microsecond here, as much as an LPM trie insert; larger batches gain nothing measurable.
constexpr size_t kBatch = 1024;

// Writes keys[i] -> vals[i] in array order: BPF_MAP_UPDATE_BATCH, or one update per element when
// the kernel has no batch for this map type. `*batch` carries that finding between calls.
template <typename K, typename V>
absl::Status UpdateMany(const Map<K, V>& map, const K* keys, const V* vals, size_t n, bool* batch) {
  size_t i = 0;
  while (*batch && i < n) {
    uint32_t count = static_cast<uint32_t>(std::min(kBatch, n - i));
    LIBBPF_OPTS(bpf_map_batch_opts, bo, .elem_flags = BPF_ANY);
    if (bpf_map_update_batch(map.fd(), keys + i, vals + i, &count, &bo) == 0) {
      i += count;
      continue;
    }
    int err = errno;
    if (BatchUnsupported(err, i == 0)) {
      *batch = false;
      break;
    }
    return ErrnoStatus(map.name(), "bpf_map_update_batch", err);
  }
  for (; i < n; ++i)
    if (auto st = map.Update(keys[i], vals[i], BPF_ANY); !st.ok()) return st;
  return absl::OkStatus();
}

// Deletes keys in array order; keys already gone are not an error.
template <typename K, typename V>
absl::Status DeleteMany(const Map<K, V>& map, const K* keys, size_t n, bool* batch) {
  size_t i = 0;
  while (*batch && i < n) {
    uint32_t count = static_cast<uint32_t>(std::min(kBatch, n - i));
    LIBBPF_OPTS(bpf_map_batch_opts, bo);
    if (bpf_map_delete_batch(map.fd(), keys + i, &count, &bo) == 0) {
      i += count;
      continue;
    }
    int err = errno;
    if (err == ENOENT) {  // keys[i + count] is not there: skip it
      i += count + 1;
      continue;
    }
    if (BatchUnsupported(err, i == 0)) {
      *batch = false;
      break;
    }
    return ErrnoStatus(map.name(), "bpf_map_delete_batch", err);
  }
  for (; i < n; ++i) {
    auto d = map.Delete(keys[i]);
    if (!d.ok()) return d.status();
  }
  return absl::OkStatus();
}

struct Op {
  const KernelEntry* want = nullptr;  // add/update: the new entry
  const KernelEntry* have = nullptr;  // update/remove: what the trie holds
};

// Puts ops, sorted by prefix (a prefix before those it contains: pre-order), into post-order: every
// prefix after all the prefixes of `ops` it contains. One pass with a stack of open prefixes. This
// is the phase-1 order of the top of this file, and unlike "longest first" it keeps neighbouring
// prefixes together, so each trie insert walks the path the previous one just warmed: about twice
// as fast as the length-major order at a million prefixes.
void PostOrder(std::vector<Op>& ops) {
  std::vector<Op> out;
  out.reserve(ops.size());
  std::vector<const Op*> open;
  for (const Op& o : ops) {
    while (!open.empty() && !open.back()->want->prefix.contains(o.want->prefix)) {
      out.push_back(*open.back());
      open.pop_back();
    }
    open.push_back(&o);
  }
  while (!open.empty()) {
    out.push_back(*open.back());
    open.pop_back();
  }
  ops = std::move(out);
}

struct TrieResult {
  size_t added = 0, updated = 0, removed = 0, unchanged = 0, final_size = 0;
  bool removed_first = false;
  absl::Duration read_time, write_time;
};

template <typename K>
absl::StatusOr<TrieResult> ApplyTrie(const Map<K, bw_list_value>& map,
                                     const std::vector<KernelEntry>& want,
                                     const std::vector<KernelEntry>* known,
                                     const ApplyOptions& opts) {
  TrieResult res;
  absl::Time t0 = absl::Now();
  absl::StatusOr<std::vector<KernelEntry>> have_or;
  if (!known) {
    have_or = ReadTrieImpl(map);
    if (!have_or.ok()) return have_or.status();
  }
  const std::vector<KernelEntry>& have = known ? *known : *have_or;
  res.read_time = absl::Now() - t0;

  std::vector<Op> write, remove;
  size_t i = 0, j = 0;
  while (i < want.size() || j < have.size()) {
    if (j == have.size() || (i < want.size() && want[i].prefix < have[j].prefix)) {
      write.push_back({&want[i++], nullptr});
    } else if (i == want.size() || have[j].prefix < want[i].prefix) {
      remove.push_back({nullptr, &have[j++]});
    } else {
      if (want[i].value == have[j].value) {
        ++res.unchanged;
      } else {
        write.push_back({&want[i], &have[j]});
      }
      ++i, ++j;
    }
  }
  for (const Op& o : write) (o.have ? res.updated : res.added)++;
  res.removed = remove.size();
  res.final_size = want.size();
  if (opts.dry_run) return res;

  // Phase 1 in post-order, phase 2 in pre-order (see the top of this file): `remove` is sorted by
  // prefix already, a covering prefix before those it contains.
  PostOrder(write);

  auto max = MaxEntries(map.fd(), map.name());
  if (!max.ok()) return max.status();
  size_t peak = have.size() + res.added;
  bool remove_first = peak > *max;
  if (remove_first && !opts.allow_remove_first)
    return absl::ResourceExhaustedError(absl::StrCat(
        map.name(), ": the change needs room for ", peak, " prefixes at once (", have.size(),
        " now + ", res.added, " new) but the trie holds at most ", *max,
        "; nothing was changed (apply with allow_remove_first to remove before adding, or raise "
        "the map size)"));

  absl::Time t1 = absl::Now();
  bool batch = true;
  auto do_removes = [&]() -> absl::Status {
    std::vector<K> keys;
    keys.reserve(remove.size());
    for (const Op& o : remove) keys.push_back(KeyOf<K>(o.have->prefix));
    return DeleteMany(map, keys.data(), keys.size(), &batch);
  };
  if (remove_first) {
    res.removed_first = true;
    if (auto st = do_removes(); !st.ok()) return st;
  }
  std::vector<K> keys(std::min(kBatch, write.size()));
  std::vector<bw_list_value> vals(keys.size());
  for (size_t b = 0; b < write.size(); b += kBatch) {
    size_t n = std::min(kBatch, write.size() - b);
    for (size_t k = 0; k < n; ++k) {
      const Op& o = write[b + k];
      keys[k] = KeyOf<K>(o.want->prefix);
      bw_list_value& v = vals[k];
      v = o.want->value.ToMap();
      if (o.have) {
        // Keep the counters: read them as late as possible (just before this batch is written),
        // then write them with the new decision.
        auto cur = map.Lookup(keys[k]);
        if (!cur.ok()) return cur.status();
        if (cur->has_value()) {
          v.hits = (*cur)->hits;
          v.drops = (*cur)->drops;
        }
      }
    }
    if (auto st = UpdateMany(map, keys.data(), vals.data(), n, &batch); !st.ok()) return st;
  }
  if (!remove_first)
    if (auto st = do_removes(); !st.ok()) return st;
  res.write_time = absl::Now() - t1;
  return res;
}

// The IPv4 pre-filter's part of an apply. Safe order (an address's old and new decision are the
// only ones a reader can see, reading byte -> chunk -> host -> class, else the trie):
//  First, every /24 that changes (its byte, a /27 chunk or /32 inside, or the meaning of the class
//  its byte or one of its entries names) is set to 15 (trie, hosts and chunks bits clear).
//  Then classes that change meaning (nothing names them now) are rewritten and their counters
//  zeroed, host entries of changed /24s are written and removed, then the final bytes go in.
//  The trie diff runs beside all of this, on another thread: a byte of 15 sends a reader to the
//  trie, which at every moment of its own diff gives each address its old or its new decision; a
//  class byte or host entry never sends a reader to the trie. So the pre-filter may reach its new
//  state before, during or after the trie reaches its own.
struct PrefilterApply {
  std::optional<V4PreMapping> map;
  std::optional<V4SumMapping> sum;  // read before the bytes; see prefilter_sum.hpp
  std::optional<V4HostTable> hosts;
  V4ClassTable old_classes{}, classes{};
  V4Prefilter want;  // bytes: empty when the apply is incremental (changed_bytes has them)
  V4Hosts have_hosts;  // incremental: of the affected /24s only
  std::vector<uint32_t> changed;  // /24 indexes
  std::vector<uint8_t> changed_bytes;  // their final bytes
  size_t hosts_after = 0;         // bw_v4_host entries once applied (counted in the table)
  size_t host_overflow = 0;       // /24s left to the trie: no room for a host in its buckets
  std::array<bool, BW_V4_CLASSES> meaning_changed{};
};

// The /24s (indexes, sorted, unique) that prefixes differing between two IPv4 tables cover: the
// only ones whose pre-filter byte or host entries can differ. Also HostBound of both tables, from
// the same pass.
std::vector<uint32_t> AffectedSlash24s(const std::vector<KernelEntry>& have,
                                       const std::vector<KernelEntry>& want, size_t* bound_have,
                                       size_t* bound_want) {
  size_t bh = 0, bw = 0;
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // [first, last] /24 indexes
  auto add = [&](const Prefix& p) {
    uint32_t first = p.v4() >> 8;
    uint32_t last = p.len <= 24 ? first + (uint32_t{1} << (24 - p.len)) - 1 : first;
    ranges.emplace_back(first, last);
  };
  size_t i = 0, j = 0;
  while (i < want.size() || j < have.size()) {
    if (j == have.size() || (i < want.size() && want[i].prefix < have[j].prefix)) {
      bw += HostSpan(want[i].prefix);
      add(want[i++].prefix);
    } else if (i == want.size() || have[j].prefix < want[i].prefix) {
      bh += HostSpan(have[j].prefix);
      add(have[j++].prefix);
    } else {
      size_t span = HostSpan(want[i].prefix);
      bw += span, bh += span;
      if (!(want[i].value == have[j].value)) add(want[i].prefix);
      ++i, ++j;
    }
  }
  *bound_have = bh;
  *bound_want = bw;
  std::sort(ranges.begin(), ranges.end());
  std::vector<uint32_t> out;
  uint64_t next = 0;  // first index not yet emitted
  for (const auto& [first, last] : ranges)
    for (uint64_t k = std::max<uint64_t>(first, next); k <= last; ++k) out.push_back(static_cast<uint32_t>(k)), next = k + 1;
  return out;
}

// The pre-filter part of a reload against the applied policy in memory, in proportion to the
// change: only the /24s under prefixes that differ are recomputed (V4PrefilterWalker), when that
// gives what BuildV4Prefilter would (no class changes meaning, no host capacity limit in play).
// Returns false (and leaves `pa` alone) when it does not apply.
bool PrefilterPrepareIncremental(const CompiledPolicy& policy, const CompiledPolicy& applied,
                                 size_t host_cap, PrefilterApply& pa) {
  // A class that changes meaning changes every /24 that reads it: those are found by the full
  // pass. Except on maps that hold nothing (just created: the applied policy is empty and no class
  // is in use), where no /24 reads anything and the ones to write are all under the new prefixes.
  bool empty_maps = applied.v4.empty();
  for (uint32_t c = 1; c < BW_V4_PRE_TRIE; ++c) empty_maps &= !ClassUsed(pa.old_classes[c]);
  if (!empty_maps)
    for (bool m : pa.meaning_changed)
      if (m) return false;
  // The old table's walk runs on a second thread, beside the new one's.
  struct Walk {
    std::vector<uint8_t> bytes;                              // per affected /24
    std::vector<uint32_t> first;                             // its hosts: [first[k], first[k+1])
    std::vector<std::pair<V4HostKey, uint8_t>> hosts;
  };
  auto walk = [](const std::vector<KernelEntry>& v4, const V4ClassTable& classes,
                 const std::vector<uint32_t>& affected, Walk& w) {
    V4PrefilterWalker walker(v4, classes);
    std::vector<std::pair<V4HostKey, uint8_t>> h;
    w.bytes.reserve(affected.size());
    w.first.reserve(affected.size() + 1);
    for (uint32_t idx : affected) {
      w.bytes.push_back(walker.At(idx, h));
      w.first.push_back(static_cast<uint32_t>(w.hosts.size()));
      w.hosts.insert(w.hosts.end(), h.begin(), h.end());
    }
    w.first.push_back(static_cast<uint32_t>(w.hosts.size()));
  };
  size_t bound_old = 0, bound_new = 0;
  std::vector<uint32_t> affected = AffectedSlash24s(applied.v4, policy.v4, &bound_old, &bound_new);
  if (bound_new > host_cap || bound_old > host_cap) return false;
  Walk wn, wo;
  std::thread old_walk([&] { walk(applied.v4, pa.old_classes, affected, wo); });
  walk(policy.v4, pa.classes, affected, wn);
  old_walk.join();
  const volatile uint8_t* cur = pa.map->bytes();
  for (size_t k = 0; k < affected.size(); ++k) {
    uint32_t idx = affected[k];
    auto hn = absl::MakeConstSpan(wn.hosts).subspan(wn.first[k], wn.first[k + 1] - wn.first[k]);
    auto ho = absl::MakeConstSpan(wo.hosts).subspan(wo.first[k], wo.first[k + 1] - wo.first[k]);
    for (const auto& [a, c] : hn) pa.want.hosts[a] = c;
    for (const auto& [a, c] : ho) pa.have_hosts[a] = c;
    if (cur[idx] != wn.bytes[k] || hn != ho) {
      pa.changed.push_back(idx);
      pa.changed_bytes.push_back(wn.bytes[k]);
    }
  }
  return true;
}

absl::StatusOr<PrefilterApply> PrefilterPrepare(const CompiledPolicy& policy, const MapSet& maps,
                                                const ApplyOptions& opts) {
  PrefilterApply pa;
  auto m = V4PreMapping::Map(maps.v4_pre);
  if (!m.ok()) return m.status();
  pa.map.emplace(std::move(*m));
  auto sm = V4SumMapping::Map(maps.v4_sum);
  if (!sm.ok()) return sm.status();
  pa.sum.emplace(std::move(*sm));
  auto oc = ReadClasses(maps.v4_class);
  if (!oc.ok()) return oc.status();
  pa.old_classes = *oc;
  pa.classes = AssignClasses(policy.v4, pa.old_classes);
  auto ht = V4HostTable::Map(maps.v4_host);
  if (!ht.ok()) return ht.status();
  pa.hosts.emplace(std::move(*ht));
  // The host table's capacity bounds the host entries (removals go first, so it never holds more
  // than the new policy's); /24s beyond it are decided by the trie.
  constexpr size_t host_cap = BW_V4_HOST_CAPACITY;
  for (uint32_t c = 1; c < BW_V4_PRE_TRIE; ++c)
    pa.meaning_changed[c] = std::memcmp(&pa.old_classes[c], &pa.classes[c], sizeof(bw_v4_class)) != 0;
  if (opts.applied && PrefilterPrepareIncremental(policy, *opts.applied, host_cap, pa)) return pa;
  pa.want = BuildV4Prefilter(policy.v4, pa.classes, host_cap);
  if (opts.applied) {
    pa.have_hosts = BuildV4Hosts(opts.applied->v4, pa.old_classes, host_cap);
  } else {
    pa.have_hosts = pa.hosts->Entries();
  }
  // A stale value in the unused slots would make a stale byte 0 or 15 mean something: never.
  std::vector<bool> mark(kV4PreBytes, false);
  const volatile uint8_t* cur = pa.map->bytes();
  const uint8_t* want = pa.want.bytes.data();
  bool any_meaning = false;
  for (bool m : pa.meaning_changed) any_meaning |= m;
  // Eight bytes at a time where they are equal and no class changed meaning (most of a reload);
  // not on a first apply, which checks every byte's summary code.
  const volatile uint64_t* cur8 = reinterpret_cast<const volatile uint64_t*>(cur);
  for (size_t w = 0; w < kV4PreBytes / 8; ++w) {
    uint64_t want8;
    std::memcpy(&want8, want + 8 * w, 8);
    if (!any_meaning && opts.applied && cur8[w] == want8) continue;
    for (size_t i = 8 * w; i < 8 * w + 8; ++i) {
      uint8_t o = cur[i];
      if (o != want[i] || pa.meaning_changed[o & BW_V4_PRE_CLASS_MASK])
        mark[i] = true;
      // A daemon's first apply also rewrites a summary code that does not match its byte (left
      // by an apply cut short); later ones keep them matched themselves.
      else if (!opts.applied && SumCode(o) != pa.sum->Code(static_cast<uint32_t>(i)))
        mark[i] = true;
    }
  }
  for (const auto& [a, c] : pa.have_hosts) {
    auto it = pa.want.hosts.find(a);
    if (it == pa.want.hosts.end() || it->second != c || pa.meaning_changed[c & BW_V4_PRE_CLASS_MASK])
      mark[V4HostSlash24(a)] = true;
  }
  for (const auto& [a, c] : pa.want.hosts)
    if (!pa.have_hosts.contains(a)) mark[V4HostSlash24(a)] = true;
  for (size_t i = 0; i < kV4PreBytes; ++i)
    if (mark[i]) {
      pa.changed.push_back(static_cast<uint32_t>(i));
      pa.changed_bytes.push_back(want[i]);
    }
  return pa;
}

// The /24s `idx` to the trie: their bytes 15, then their summary codes "read the byte" (and
// their /22s' bits set), so that no reader goes past the byte to a class or the host table.
void ToTrie(PrefilterApply& pa, const std::vector<uint32_t>& idx) {
  volatile uint8_t* b = pa.map->bytes();
  for (uint32_t i : idx) b[i] = BW_V4_PRE_TRIE;
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  pa.sum->Write(idx, [](uint32_t) { return static_cast<uint8_t>(BW_V4_SUM_READ_PRE); });
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

// The /24s `idx` back from the trie: their final bytes, then the summary codes of those bytes.
void PutBytes(PrefilterApply& pa, const std::vector<uint32_t>& idx,
              const std::vector<uint8_t>& bytes) {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  volatile uint8_t* b = pa.map->bytes();
  for (size_t k = 0; k < idx.size(); ++k) b[idx[k]] = bytes[k];
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  std::vector<uint8_t> codes(bytes.size());
  for (size_t k = 0; k < codes.size(); ++k) codes[k] = SumCode(bytes[k]);
  pa.sum->WriteCodes(idx, codes);
}

// Step 1: changed /24s to the trie.
void PrefilterToTrie(PrefilterApply& pa) { ToTrie(pa, pa.changed); }

// Rebuilds the host table with its live entries, none removed: first every /24 that reads it
// (hosts or chunks in its byte) goes to the trie (its byte 15, and summary code 3 for a /24 of
// single addresses, which reads the table from its code), and in-flight readers are given time to
// finish; then the table is emptied and refilled, and the bytes and codes are put back. Returns
// the /24s whose entries found no room (left at 15).
absl::flat_hash_set<uint32_t> CompactHosts(PrefilterApply& pa) {
  V4HostTable& ht = *pa.hosts;
  V4Hosts live = ht.Entries();
  const volatile uint8_t* b = pa.map->bytes();
  std::vector<uint32_t> readers;  // /24 indexes, ascending
  std::vector<uint8_t> was;       // their bytes
  for (size_t i = 0; i < kV4PreBytes; ++i)
    if (uint8_t v = b[i]; v & (BW_V4_PRE_HOSTS | BW_V4_PRE_CHUNKS)) {
      readers.push_back(static_cast<uint32_t>(i));
      was.push_back(v);
    }
  ToTrie(pa, readers);
  // A program that read a byte before it changed may still be searching the table: XDP and TC
  // programs run to completion with bottom halves off, within microseconds.
  absl::SleepFor(absl::Milliseconds(20));
  ht.Clear();
  absl::flat_hash_set<uint32_t> overflow;
  for (const auto& [a, c] : live)
    if (!ht.Put(a, c)) overflow.insert(V4HostSlash24(a));
  for (size_t k = 0; k < readers.size(); ++k)
    if (overflow.contains(readers[k])) was[k] = BW_V4_PRE_TRIE;
  PutBytes(pa, readers, was);
  return overflow;
}

// Steps 3 and 4: classes, hosts, final bytes.
absl::Status PrefilterFinish(PrefilterApply& pa, const MapSet& maps, const ApplyOptions& opts,
                             bool* compacted) {
  for (uint32_t c = 1; c < BW_V4_PRE_TRIE; ++c) {
    if (!pa.meaning_changed[c]) continue;
    if (auto st = maps.v4_cls_cnt.Zero(c); !st.ok()) return st;
    if (auto st = maps.v4_class.Update(c, pa.classes[c]); !st.ok()) return st;
  }
  // Removals first (their slots are reused); nothing reads these /24s' hosts now.
  V4HostTable& ht = *pa.hosts;
  for (const auto& [a, c] : pa.have_hosts)
    if (!pa.want.hosts.contains(a)) ht.Remove(a);
  // Then every wanted entry, as the table holds it (not as the last policy said: a /24 left to
  // the trie by a full bucket earlier has entries missing). A /24 with an address that finds no
  // room is left to the trie: its final byte becomes 15 (it may hold the host entries that did
  // fit; nothing reads them while the byte says so).
  absl::flat_hash_set<uint32_t> overflow;
  for (const auto& [a, c] : pa.want.hosts)
    if (!ht.Put(a, c)) overflow.insert(V4HostSlash24(a));
  // The changed /24s are at 15 still: their entries are live ones to keep if they fit, and their
  // final bytes go in below.
  V4HostTable::Counts n = ht.Count();
  if (n.removed >= std::max<size_t>(opts.host_compact_removed, 1) && n.removed * 2 > n.live) {
    for (uint32_t idx : CompactHosts(pa)) overflow.insert(idx);
    // Entries that did not fit before may now: only a later apply retries them.
    *compacted = true;
    n = ht.Count();
  }
  pa.hosts_after = n.live;
  if (!overflow.empty()) {
    absl::flat_hash_set<uint32_t> seen;
    for (size_t k = 0; k < pa.changed.size(); ++k)
      if (overflow.contains(pa.changed[k])) {
        pa.changed_bytes[k] = BW_V4_PRE_TRIE;
        seen.insert(pa.changed[k]);
      }
    // A /24 whose byte did not change: one the rebuild could not refill (its byte is 15 already),
    // or one whose entry was missing from the table: to the trie as well.
    for (uint32_t idx : overflow)
      if (!seen.contains(idx)) {
        pa.changed.push_back(idx);
        pa.changed_bytes.push_back(BW_V4_PRE_TRIE);
      }
    pa.host_overflow = overflow.size();
  }
  // Last, the final bytes, then their summary codes (and the /22 bits from them).
  PutBytes(pa, pa.changed, pa.changed_bytes);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<KernelEntry>> ReadTrie(const WatchV4Map& map) { return ReadTrieImpl(map); }
absl::StatusOr<std::vector<KernelEntry>> ReadTrie(const WatchV6Map& map) { return ReadTrieImpl(map); }
absl::StatusOr<std::vector<CountedEntry>> ReadTrieCounted(const WatchV4Map& map) {
  return ReadTrieCountedImpl(map);
}
absl::StatusOr<std::vector<CountedEntry>> ReadTrieCounted(const WatchV6Map& map) {
  return ReadTrieCountedImpl(map);
}

std::string ApplyStats::ToString() const {
  return absl::StrCat("added ", added, ", updated ", updated, ", removed ", removed, ", unchanged ",
                      unchanged, " (now ", v4_entries, " IPv4 and ", v6_entries, " IPv6 prefixes",
                      removed_first ? "; removed first for lack of room" : "", "; pre-filter: ",
                      prefilter_changed, " /24s rewritten, ", prefilter_hosts, " host entries, ",
                      prefilter_host_overflow
                          ? absl::StrCat(prefilter_host_overflow, " /24s left to the trie for lack "
                                         "of room in the host table, ")
                          : "",
                      prefilter_host_compacted ? "host table rebuilt, " : "",
                      absl::FormatDuration(prefilter_time), ") in ",
                      absl::FormatDuration(elapsed));
}

absl::StatusOr<ApplyStats> ApplyPolicy(const CompiledPolicy& policy, const MapSet& maps,
                                       const ApplyOptions& opts) {
  absl::Time t0 = absl::Now();
  ApplyStats st;
  bool prefilter_ready = false;
  if (opts.lists) {
    // The IPv4 pre-filter on a second thread, beside the trie diffs: its bytes never send a
    // reader to anything but a trie that is safe at every moment of its own diff, so the two need
    // no order between them (see PrefilterApply). Its computing then overlaps the trie syscalls.
    absl::Status pst;
    std::thread prefilter;
    if (!opts.dry_run) {
      prefilter = std::thread([&] {
        absl::Time tp = absl::Now();
        auto p = PrefilterPrepare(policy, maps, opts);
        if (!p.ok()) {
          pst = p.status();
          return;
        }
        PrefilterApply& pa = *p;
        st.prefilter_changed = pa.changed.size();
        PrefilterToTrie(pa);
        pst = PrefilterFinish(pa, maps, opts, &st.prefilter_host_compacted);
        st.prefilter_time = absl::Now() - tp;
        if (!pst.ok()) return;
        st.prefilter_host_overflow = pa.host_overflow;
        st.prefilter_hosts = pa.hosts_after;
        prefilter_ready = true;
      });
    }
    absl::Status tst;
    for (int fam = 0; fam < 2 && tst.ok(); ++fam) {
      const CompiledPolicy* a = opts.applied;
      absl::StatusOr<TrieResult> r =
          fam == 0 ? ApplyTrie(maps.watch_v4, policy.v4, a ? &a->v4 : nullptr, opts)
                   : ApplyTrie(maps.watch_v6, policy.v6, a ? &a->v6 : nullptr, opts);
      if (!r.ok()) {
        tst = r.status();
        break;
      }
      st.added += r->added;
      st.updated += r->updated;
      st.removed += r->removed;
      st.unchanged += r->unchanged;
      st.removed_first |= r->removed_first;
      st.read_time += r->read_time;
      st.write_time += r->write_time;
      (fam == 0 ? st.v4_entries : st.v6_entries) = r->final_size;
    }
    if (prefilter.joinable()) prefilter.join();
    if (!tst.ok()) return tst;
    if (!pst.ok()) return pst;
  }
  if (!opts.dry_run) {
    // The pre-filter is switched on once it holds the policy, and kept on by later config writes.
    auto cur = maps.ReadConfig();
    if (!cur.ok()) return cur.status();
    bool prefilter = prefilter_ready || (cur->flags & BW_CFG_PREFILTER);
    if (!opts.config && prefilter && !(cur->flags & BW_CFG_PREFILTER)) {
      bw_config c = *cur;
      c.flags |= BW_CFG_PREFILTER;
      if (auto s = maps.WriteConfig(c); !s.ok()) return s;
    }
    if (opts.ports && !(opts.applied && opts.applied->ports == policy.ports &&
                        opts.applied->proxy_ports == policy.proxy_ports))
      if (auto s = maps.SetWatchedPorts(policy.ports, policy.proxy_ports); !s.ok()) return s;
    if (opts.config) {
      bw_config c = policy.config;
      if (prefilter) c.flags |= BW_CFG_PREFILTER;
      if (auto s = maps.WriteConfig(c); !s.ok()) return s;
    }
  }
  st.elapsed = absl::Now() - t0;
  return st;
}

}  // namespace bw
