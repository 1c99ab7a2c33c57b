// prefilter_sum.cpp — see prefilter_sum.hpp.
#include "daemon/dataplane/prefilter_sum.hpp"

#include <algorithm>

namespace bw {

absl::StatusOr<V4SumMapping> V4SumMapping::Map(const V4SumMap& m) {
  auto s = SharedMapping::Map(m.fd(), m.name(), kV4SumBytes);
  if (!s.ok()) return s.status();
  return V4SumMapping(std::move(*s));
}

uint8_t V4SumMapping::Code(uint32_t i) const {
  uint64_t w = p_[BW_V4_SUM_L0_ELEMS + (i >> 5)];
  return static_cast<uint8_t>((w >> ((i & 31) * 2)) & 3);
}

bool V4SumMapping::Bit0(uint32_t j) const { return (p_[j >> 6] >> (j & 63)) & 1; }

void V4SumMapping::WriteWords(const std::vector<uint32_t>& idx,
                              const std::vector<uint8_t>& codes) const {
  // In /24 order, so each word is rewritten once, with one store. Apply passes them sorted (a
  // first apply, 14 M of them): only an unsorted list pays for sorting.
  const bool sorted = std::is_sorted(idx.begin(), idx.end());
  std::vector<uint32_t> order;
  if (!sorted) {
    order.resize(idx.size());
    for (uint32_t k = 0; k < order.size(); ++k) order[k] = k;
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return idx[a] < idx[b]; });
  }
  auto at = [&](size_t k) { return sorted ? k : size_t{order[k]}; };
  std::vector<uint32_t> words;  // level-1 words written
  for (size_t k = 0; k < idx.size();) {
    const uint32_t word = idx[at(k)] >> 5;
    uint64_t w = p_[BW_V4_SUM_L0_ELEMS + word];
    for (; k < idx.size() && (idx[at(k)] >> 5) == word; ++k) {
      const uint32_t shift = (idx[at(k)] & 31) * 2;
      w = (w & ~(uint64_t{3} << shift)) | (uint64_t{codes[at(k)] & 3u} << shift);
    }
    p_[BW_V4_SUM_L0_ELEMS + word] = w;
    words.push_back(word);
  }
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  // A level-0 unit is kV4SumL0Span /24s: 2 * kV4SumL0Span bits of a word of codes, so each word
  // written decides 32 / kV4SumL0Span level-0 bits.
  constexpr uint32_t kPerWord = 32 / kV4SumL0Span, kBits = 2 * kV4SumL0Span;
  constexpr uint64_t kMask = kBits == 64 ? ~uint64_t{0} : (uint64_t{1} << kBits) - 1;
  for (uint32_t word : words) {
    const uint64_t codes = p_[BW_V4_SUM_L0_ELEMS + word];
    for (uint32_t part = 0; part < kPerWord; ++part) {
      const uint32_t j = word * kPerWord + part;
      const bool any = ((codes >> (kBits * part)) & kMask) != 0;
      uint64_t w = p_[j >> 6];
      const uint64_t bit = uint64_t{1} << (j & 63);
      uint64_t nw = any ? (w | bit) : (w & ~bit);
      if (nw != w) p_[j >> 6] = nw;
    }
  }
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

}  // namespace bw
