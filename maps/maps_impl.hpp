// maps_impl.hpp — template definitions for maps.hpp (included from it; do not include directly).
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

namespace bw {

template <typename K, typename V>
absl::Status Map<K, V>::Update(const K& key, const V& value, uint64_t flags) const {
  if (bpf_map_update_elem(fd_.get(), &key, &value, flags) != 0)
    return ErrnoStatus(name_, "bpf_map_update_elem", errno);
  return absl::OkStatus();
}

template <typename K, typename V>
absl::StatusOr<std::optional<V>> Map<K, V>::Lookup(const K& key) const {
  V v;
  if (bpf_map_lookup_elem(fd_.get(), &key, &v) != 0) {
    if (errno == ENOENT) return std::optional<V>();
    return ErrnoStatus(name_, "bpf_map_lookup_elem", errno);
  }
  return std::optional<V>(v);
}

template <typename K, typename V>
absl::StatusOr<bool> Map<K, V>::Delete(const K& key) const {
  if (bpf_map_delete_elem(fd_.get(), &key) != 0) {
    if (errno == ENOENT) return false;
    return ErrnoStatus(name_, "bpf_map_delete_elem", errno);
  }
  return true;
}

template <typename K, typename V>
absl::Status Map<K, V>::ForEachKey(const std::function<void(const K&)>& fn) const {
  K cur, next;
  const K* prev = nullptr;
  while (bpf_map_get_next_key(fd_.get(), prev, &next) == 0) {
    fn(next);
    cur = next;
    prev = &cur;
  }
  if (errno != ENOENT) return ErrnoStatus(name_, "bpf_map_get_next_key", errno);
  return absl::OkStatus();
}

template <typename K, typename V>
absl::StatusOr<std::vector<std::pair<K, V>>> Map<K, V>::Dump() const {
  std::vector<K> keys;
  absl::Status st = ForEachKey([&](const K& k) { keys.push_back(k); });
  if (!st.ok()) return st;
  std::vector<std::pair<K, V>> out;
  out.reserve(keys.size());
  for (const K& k : keys) {
    V v;
    if (bpf_map_lookup_elem(fd_.get(), &k, &v) == 0) out.emplace_back(k, v);
  }
  return out;
}

template <typename V>
PerCpuArray<V>::PerCpuArray(Fd fd, std::string name)
    : fd_(std::move(fd)), name_(std::move(name)), ncpus_(libbpf_num_possible_cpus()) {}

template <typename V>
absl::StatusOr<std::vector<V>> PerCpuArray<V>::LookupAll(uint32_t key) const {
  if (ncpus_ <= 0) return ErrnoStatus(name_, "libbpf_num_possible_cpus", -ncpus_);
  // The kernel copies per-CPU values in 8-byte-aligned slots.
  static_assert(sizeof(V) % 8 == 0, "per-CPU values must be 8-byte multiples");
  std::vector<V> vals(ncpus_);
  if (bpf_map_lookup_elem(fd_.get(), &key, vals.data()) != 0)
    return ErrnoStatus(name_, "bpf_map_lookup_elem", errno);
  return vals;
}

template <typename V>
absl::Status PerCpuArray<V>::Zero(uint32_t key) const {
  if (ncpus_ <= 0) return ErrnoStatus(name_, "libbpf_num_possible_cpus", -ncpus_);
  std::vector<V> vals(ncpus_);
  std::memset(static_cast<void*>(vals.data()), 0, vals.size() * sizeof(V));
  if (bpf_map_update_elem(fd_.get(), &key, vals.data(), 0) != 0)
    return ErrnoStatus(name_, "bpf_map_update_elem", errno);
  return absl::OkStatus();
}

template <typename M>
absl::Status MapSet::Clear(const M& m) {
  // Collect first: deleting while iterating restarts iteration on some map types.
  auto dump = m.Dump();
  if (!dump.ok()) return dump.status();
  for (const auto& [k, v] : *dump) {
    auto d = m.Delete(k);
    if (!d.ok()) return d.status();
  }
  return absl::OkStatus();
}

}  // namespace bw
