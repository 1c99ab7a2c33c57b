// prefilter_sum.hpp — the IPv4 pre-filter's summary (bw_v4_sum), read by the kernel before the
// byte per /24 (bw_v4_pre).
//
// Contract: the summary is a function of the bytes: a /24's 2-bit code is SumCode(its byte), a
// /22's level-0 bit is set when any of its /24 codes is non-zero. Code 3 (read the byte) is right for any
// byte, so a writer may set it at any time; codes 0..2 are written only once the byte says the
// same (and, for code 2, the host entries are in the table). With the apply order of apply.cpp (changed /24s: byte 15 then code 3; after the trie diff:
// final byte then its code), a reader sees an address's old or its new decision, never another.
// Most unlisted traffic is then answered by a 512 KiB bitmap or a 4 MiB array instead of a 16 MiB
// one; a /24 of the largest class without /32 exceptions needs no byte at all, nor does a /24 of
// single addresses only (code 2 sends the reader straight to the host table, so a writer changing
// such a /24's host entries first moves its code to 3, as for its byte).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "maps/maps.hpp"

namespace bw {

inline constexpr size_t kV4SumBytes = size_t{BW_V4_SUM_ELEMS} * 8;
// /24s per level-0 bit (a /22: 4).
inline constexpr uint32_t kV4SumL0Span = uint32_t{1} << (BW_V4_SUM_L0_SHIFT - 8);

// The code of a /24 whose bw_v4_pre byte is `b`: 0 and 1 as the byte, BW_V4_SUM_HOSTS for a /24
// of single addresses only (the byte is the hosts bit alone), else BW_V4_SUM_READ_PRE.
inline uint8_t SumCode(uint8_t b) {
  return b == 0 ? 0
         : b == 1 ? 1
         : b == BW_V4_PRE_HOSTS ? static_cast<uint8_t>(BW_V4_SUM_HOSTS)
                                : static_cast<uint8_t>(BW_V4_SUM_READ_PRE);
}

// A read/write shared mapping of bw_v4_sum.
class V4SumMapping {
 public:
  static absl::StatusOr<V4SumMapping> Map(const V4SumMap& m);
  volatile uint64_t* words() const { return p_; }

  // The code of /24 index i (host-order address >> 8) and the level-0 bit of index j (address >>
  // BW_V4_SUM_L0_SHIFT: a /22).
  uint8_t Code(uint32_t i) const;
  bool Bit0(uint32_t j) const;

  // Gives every /24 in `idx` the code `code_of(i)` (one 8-byte store per word touched), then sets
  // the level-0 bit of every /22 holding one of them from its /24 codes.
  template <typename F>
  void Write(const std::vector<uint32_t>& idx, F code_of) const;
  // The same with the codes given: codes[k] for idx[k].
  void WriteCodes(const std::vector<uint32_t>& idx, const std::vector<uint8_t>& codes) const {
    WriteWords(idx, codes);
  }

 private:
  explicit V4SumMapping(SharedMapping m) : m_(std::move(m)), p_(m_.as<uint64_t>()) {}
  void WriteWords(const std::vector<uint32_t>& idx, const std::vector<uint8_t>& codes) const;
  SharedMapping m_;
  volatile uint64_t* p_;
};

template <typename F>
void V4SumMapping::Write(const std::vector<uint32_t>& idx, F code_of) const {
  std::vector<uint8_t> codes(idx.size());
  for (size_t k = 0; k < idx.size(); ++k) codes[k] = code_of(idx[k]);
  WriteWords(idx, codes);
}

}  // namespace bw
