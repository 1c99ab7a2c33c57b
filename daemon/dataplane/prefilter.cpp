// prefilter.cpp — see prefilter.hpp.
#include "daemon/dataplane/prefilter.hpp"

#include <algorithm>
#include <cstring>

namespace bw {
namespace {

uint64_t PairKey(uint8_t action, uint32_t list_id) { return (uint64_t{action} << 32) | list_id; }

}  // namespace

uint8_t ClassOf(const V4ClassTable& t, uint8_t action, uint32_t list_id) {
  for (uint32_t c = 1; c < BW_V4_PRE_TRIE; ++c)
    if (ClassUsed(t[c]) && t[c].action == action && t[c].list_id == list_id) return c;
  return BW_V4_PRE_TRIE;
}

V4ClassTable AssignClasses(const std::vector<KernelEntry>& v4, const V4ClassTable& old) {
  // Weight of a pair: the /24s (or /32s) it decides, roughly.
  // Consecutive entries mostly share their pair: one map update per run.
  absl::flat_hash_map<uint64_t, uint64_t> weight;
  uint64_t run_key = 0, run_w = 0;
  for (const KernelEntry& e : v4) {
    uint64_t w = e.prefix.len <= 24 ? (uint64_t{1} << (24 - e.prefix.len)) : 1;
    uint64_t k = PairKey(e.value.action, e.value.list_id);
    if (k != run_key && run_w) {
      weight[run_key] += run_w;
      run_w = 0;
    }
    run_key = k;
    run_w += w;
  }
  if (run_w) weight[run_key] += run_w;
  V4ClassTable t{};
  for (uint32_t c = 1; c < BW_V4_PRE_TRIE; ++c)
    if (ClassUsed(old[c]) && weight.erase(PairKey(old[c].action, old[c].list_id))) t[c] = old[c];
  std::vector<std::pair<uint64_t, uint64_t>> rest(weight.begin(), weight.end());
  std::sort(rest.begin(), rest.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  size_t r = 0;
  for (uint32_t c = 1; c < BW_V4_PRE_TRIE && r < rest.size(); ++c) {
    if (ClassUsed(t[c])) continue;
    t[c].action = static_cast<uint8_t>(rest[r].first >> 32);
    t[c].list_id = static_cast<uint32_t>(rest[r].first);
    ++r;
  }
  return t;
}

namespace {

// ClassOf for a run of entries: consecutive entries mostly share their decision's pair.
class ClassMemo {
 public:
  explicit ClassMemo(const V4ClassTable& t) : t_(t) {}
  uint8_t operator()(uint8_t action, uint32_t list_id) {
    if (!valid_ || action != action_ || list_id != list_id_) {
      action_ = action, list_id_ = list_id, valid_ = true;
      cls_ = ClassOf(t_, action, list_id);
    }
    return cls_;
  }

 private:
  const V4ClassTable& t_;
  bool valid_ = false;
  uint8_t action_ = 0, cls_ = 0;
  uint32_t list_id_ = 0;
};

// Prefixes from /28 to /31 inside a /24 become host entries (16 at most each), /25-/27s of another
// class than their /24 chunk entries (the class of each /27 they cover). Feeds carry few of
// either; the trie they would otherwise be left to costs about a microsecond per packet at a
// million prefixes.
constexpr unsigned kExpandLen = kV4ExpandLen;

// Pass 2 of BuildV4Prefilter for the /24 whose longer prefixes start at v4[i]: the /24's final
// byte given its class from the prefixes up to /24 (`base`), its /27s of another class (chunk
// entries) and its addresses of another class than their /27 (host entries). `*room` is what is
// left of the host map's capacity: a /24 whose entries do not fit goes to the trie.
uint8_t HostGroup(const std::vector<KernelEntry>& v4, size_t& i, uint8_t base, ClassMemo& cls,
                  std::vector<std::pair<V4HostKey, uint8_t>>& hosts, size_t* room) {
  const uint32_t idx = v4[i].prefix.v4() >> 8;
  size_t end = i;
  bool only32 = true;
  for (; end < v4.size() && (v4[end].prefix.v4() >> 8) == idx; ++end)
    only32 &= v4[end].prefix.len == 32 || v4[end].prefix.len <= 24;
  bool trie = base == BW_V4_PRE_TRIE;
  bool any_host = false, any_chunk = false;
  hosts.clear();
  if (only32) {
    for (; i < end; ++i) {
      const KernelEntry& e = v4[i];
      if (e.prefix.len <= 24) continue;  // cannot happen inside a group; kept for safety
      uint8_t c = cls(e.value.action, e.value.list_id);
      if (c != base) hosts.emplace_back(e.prefix.v4(), c);
    }
    any_host = !hosts.empty();
  } else {
    // Each address's class and each /27's, the more specific prefixes (later in sorted order)
    // overwriting: a /27's is that of the longest /25-/27 covering it, else the /24's.
    std::array<uint8_t, 256> at;
    std::array<uint8_t, 8> chunk;
    at.fill(base);
    chunk.fill(base);
    for (; i < end; ++i) {
      const KernelEntry& e = v4[i];
      if (e.prefix.len <= 24) continue;
      uint8_t c = cls(e.value.action, e.value.list_id);
      uint32_t first = e.prefix.v4() & 0xff;
      size_t n = size_t{1} << (32 - e.prefix.len);
      std::fill_n(at.begin() + first, n, c);
      if (e.prefix.len < kExpandLen) std::fill_n(chunk.begin() + first / 32, n / 32, c);
    }
    if (!trie) {
      for (uint32_t j = 0; j < 8; ++j)
        if (chunk[j] != base) {
          hosts.emplace_back(V4ChunkKeyOf((idx << 8) | (j * 32)), chunk[j]);
          any_chunk = true;
        }
      for (uint32_t k = 0; k < 256; ++k)
        if (at[k] != chunk[k / 32]) {
          hosts.emplace_back((idx << 8) | k, at[k]);
          any_host = true;
        }
    }
  }
  if (!trie && hosts.size() > *room) trie = true;  // the host map is full: the trie decides
  if (trie) {
    hosts.clear();  // the trie decides every address of the /24
    return BW_V4_PRE_TRIE;
  }
  *room -= hosts.size();
  return static_cast<uint8_t>(base | (any_host ? BW_V4_PRE_HOSTS : 0) |
                              (any_chunk ? BW_V4_PRE_CHUNKS : 0));
}

}  // namespace

V4Prefilter BuildV4Prefilter(const std::vector<KernelEntry>& v4, const V4ClassTable& classes,
                             size_t host_capacity) {
  V4Prefilter out;
  size_t room = host_capacity;
  out.bytes.assign(kV4PreBytes, 0);
  uint8_t* b = out.bytes.data();
  ClassMemo cls(classes);
  // Pass 1: prefixes up to /24 in sorted order: a prefix sorts before those it contains, so the
  // more specific ones overwrite their parents' bytes.
  for (const KernelEntry& e : v4) {
    if (e.prefix.len > 24) continue;
    uint32_t first = e.prefix.v4() >> 8;
    std::memset(b + first, cls(e.value.action, e.value.list_id), size_t{1} << (24 - e.prefix.len));
  }
  // Pass 2: the longer prefixes, grouped by /24 (contiguous in sorted order).
  std::vector<std::pair<V4HostKey, uint8_t>> hosts;
  for (size_t i = 0; i < v4.size();) {
    if (v4[i].prefix.len <= 24) {
      ++i;
      continue;
    }
    uint32_t idx = v4[i].prefix.v4() >> 8;
    b[idx] = HostGroup(v4, i, b[idx] & BW_V4_PRE_CLASS_MASK, cls, hosts, &room);
    for (const auto& [a, c] : hosts) out.hosts[a] = c;
  }
  return out;
}

V4Hosts BuildV4Hosts(const std::vector<KernelEntry>& v4, const V4ClassTable& classes,
                     size_t host_capacity) {
  V4Hosts out;
  size_t room = host_capacity;
  ClassMemo cls(classes);
  // The byte pass 1 would leave for a /24 is the class of the longest prefix up to /24 covering
  // it: the top of a stack of the covering prefixes, in sorted order.
  std::vector<std::pair<const Prefix*, uint8_t>> stack;
  std::vector<std::pair<V4HostKey, uint8_t>> hosts;
  for (size_t i = 0; i < v4.size();) {
    const Prefix& p = v4[i].prefix;
    while (!stack.empty() && !stack.back().first->contains(p)) stack.pop_back();
    if (p.len <= 24) {
      stack.emplace_back(&p, cls(v4[i].value.action, v4[i].value.list_id));
      ++i;
      continue;
    }
    uint8_t base = stack.empty() ? 0 : stack.back().second;
    HostGroup(v4, i, base, cls, hosts, &room);
    for (const auto& [a, c] : hosts) out[a] = c;
  }
  return out;
}

size_t HostBound(const std::vector<KernelEntry>& v4) {
  size_t n = 0;
  for (const KernelEntry& e : v4) n += HostSpan(e.prefix);
  return n;
}

V4PrefilterWalker::V4PrefilterWalker(const std::vector<KernelEntry>& v4, const V4ClassTable& classes)
    : v4_(v4), classes_(classes) {}

uint8_t V4PrefilterWalker::At(uint32_t idx, std::vector<std::pair<V4HostKey, uint8_t>>& hosts) {
  ClassMemo cls(classes_);
  size_t room = SIZE_MAX;
  // Up to the /24: prefixes up to /24 go on the stack of covering ranges; the longer prefixes of
  // /24s before it are passed over.
  while (i_ < v4_.size()) {
    const Prefix& p = v4_[i_].prefix;
    uint32_t first = p.v4() >> 8;
    if (first > idx || (first == idx && p.len > 24)) break;
    // A range that ends before this /24 covers neither it nor any later one: passed over (most
    // /24s of the table between two visited ones).
    if (p.len <= 24) {
      uint32_t hi = first + (uint32_t{1} << (24 - p.len)) - 1;
      if (hi >= idx) {
        while (!stack_.empty() && stack_.back().hi < first) stack_.pop_back();
        stack_.push_back({first, hi, cls(v4_[i_].value.action, v4_[i_].value.list_id)});
      }
    }
    ++i_;
  }
  while (!stack_.empty() && stack_.back().hi < idx) stack_.pop_back();
  uint8_t base = stack_.empty() ? 0 : stack_.back().cls;
  hosts.clear();
  if (i_ < v4_.size() && (v4_[i_].prefix.v4() >> 8) == idx && v4_[i_].prefix.len > 24)
    return HostGroup(v4_, i_, base, cls, hosts, &room);
  return base;
}

uint8_t PrefilterClass(const uint8_t* bytes, const V4Hosts& hosts, uint32_t addr) {
  uint8_t b = bytes[addr >> 8];
  uint8_t c = b & BW_V4_PRE_CLASS_MASK;
  if (b & BW_V4_PRE_CHUNKS)
    if (auto it = hosts.find(V4ChunkKeyOf(addr)); it != hosts.end()) c = it->second & BW_V4_PRE_CLASS_MASK;
  if (b & BW_V4_PRE_HOSTS)
    if (auto it = hosts.find(addr); it != hosts.end()) c = it->second & BW_V4_PRE_CLASS_MASK;
  return c;
}

absl::StatusOr<V4PreMapping> V4PreMapping::Map(const V4PreMap& m) {
  auto s = SharedMapping::Map(m.fd(), m.name(), kV4PreBytes);
  if (!s.ok()) return s.status();
  return V4PreMapping(std::move(*s));
}

absl::StatusOr<V4ClassTable> ReadClasses(const V4ClassMap& m) {
  V4ClassTable t{};
  for (uint32_t c = 0; c < BW_V4_CLASSES; ++c) {
    auto v = m.Lookup(c);
    if (!v.ok()) return v.status();
    if (v->has_value()) t[c] = **v;
  }
  return t;
}

}  // namespace bw
