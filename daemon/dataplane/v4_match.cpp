// v4_match.cpp — see v4_match.hpp.
#include "daemon/dataplane/v4_match.hpp"

#include <algorithm>

namespace bw {
namespace {

uint32_t LastAddress(uint32_t start, unsigned len) {
  return len == 0 ? UINT32_MAX : start | (len >= 32 ? 0u : (UINT32_MAX >> len));
}

}  // namespace

V4Match::V4Match(const std::vector<KernelEntry>& v4) : v4_(v4) {
  start_.reserve(v4.size());
  parent_.reserve(v4.size());
  std::vector<uint32_t> stack;  // the chain of prefixes containing the current one
  for (uint32_t i = 0; i < v4.size(); ++i) {
    uint32_t s = v4[i].prefix.v4();
    while (!stack.empty()) {
      const KernelEntry& top = v4[stack.back()];
      if (s <= LastAddress(top.prefix.v4(), top.prefix.len)) break;
      stack.pop_back();
    }
    start_.push_back(s);
    parent_.push_back(stack.empty() ? kNone : stack.back());
    stack.push_back(i);
  }
}

const KernelEntry* V4Match::Find(uint32_t a) const {
  auto it = std::upper_bound(start_.begin(), start_.end(), a);
  if (it == start_.begin()) return nullptr;
  uint32_t i = static_cast<uint32_t>(it - start_.begin()) - 1;
  while (i != kNone && a > LastAddress(start_[i], v4_[i].prefix.len)) i = parent_[i];
  return i == kNone ? nullptr : &v4_[i];
}

}  // namespace bw
