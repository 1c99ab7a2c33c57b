// cidr.hpp — strict IPv4/IPv6 address and prefix parsing, and the Prefix value type.
//
// Contract: ParsePrefix accepts exactly "ADDR" or "ADDR/LEN" (no whitespace, no signs, no leading
// zeros in IPv4 octets or in LEN, no host bits set, printable ASCII only) and returns a canonical
// Prefix; anything else is an InvalidArgument status whose message quotes the input (escaped) and
// says what is wrong. "/0" needs allow_default_route. IPv4-mapped IPv6 (::ffff:a.b.c.d/len, len >= 96)
// becomes the IPv4 prefix a.b.c.d/(len-96), because the data plane looks such addresses up in the
// IPv4 trie. Messages carry no file or line: callers (feeds, policy) prefix them with "file:line: ".
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>

#include "absl/hash/hash.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "maps/bannerwatch_abi.h"

namespace bw {

enum class Family : uint8_t { kV4 = 4, kV6 = 6 };

// A network prefix. IPv4 uses addr[0..3] (the rest stays zero). Host bits are always zero in a
// Prefix built by the parsers; Make() masks them. Ordering is (family, address, length), so a prefix
// sorts before every prefix it contains: a sweep with a stack of covering prefixes needs no more.
struct Prefix {
  Family family = Family::kV4;
  std::array<uint8_t, 16> addr{};
  uint8_t len = 0;

  // Masks host bits; `len` is clamped to the family's width.
  static Prefix Make(Family f, const uint8_t* bytes, unsigned len);
  static Prefix V4(uint32_t host_order_addr, unsigned len);

  unsigned max_len() const { return family == Family::kV4 ? 32 : 128; }
  bool is_v4() const { return family == Family::kV4; }
  bool is_host() const { return len == max_len(); }
  // True when every address of `other` is in this prefix (same family, len <= other.len).
  bool contains(const Prefix& other) const;
  // An IPv4 prefix's address as a host-order number.
  uint32_t v4() const { return static_cast<uint32_t>(word(0) >> 32); }
  // Bit `i` (0 = most significant) of the address.
  bool bit(unsigned i) const { return (addr[i / 8] >> (7 - i % 8)) & 1; }

  std::string ToString() const;         // "10.0.0.0/8", "2001:db8::/32": always with the length
  std::string AddressString() const;    // the address alone
  std::string HumanString() const;      // the address alone for a host, else ToString()

  // The defaulted (family, addr, len) order, with the address compared as two big-endian words
  // instead of a memcmp call: sorting and diffing a million prefixes spends its time here.
  friend std::strong_ordering operator<=>(const Prefix& a, const Prefix& b) {
    if (a.family != b.family) return a.family <=> b.family;
    if (uint64_t x = a.word(0), y = b.word(0); x != y) return x <=> y;
    if (uint64_t x = a.word(1), y = b.word(1); x != y) return x <=> y;
    return a.len <=> b.len;
  }
  friend bool operator==(const Prefix& a, const Prefix& b) {
    return a.family == b.family && a.len == b.len && a.word(0) == b.word(0) && a.word(1) == b.word(1);
  }
  // Address bytes [8 * i, 8 * i + 8) as a big-endian number.
  uint64_t word(int i) const {
    uint64_t w;
    std::memcpy(&w, addr.data() + 8 * i, 8);
    return __builtin_bswap64(w);
  }
  template <typename H>
  friend H AbslHashValue(H h, const Prefix& p) {
    return H::combine(std::move(h), static_cast<uint8_t>(p.family), p.addr, p.len);
  }
};

struct PrefixOptions {
  bool allow_default_route = false;  // accept 0.0.0.0/0 and ::/0
};

// "ADDR" (a host: /32 or /128) or "ADDR/LEN".
absl::StatusOr<Prefix> ParsePrefix(absl::string_view text, const PrefixOptions& opts = {});
// An address only ("/LEN" is an error); IPv4-mapped IPv6 becomes IPv4.
absl::StatusOr<Prefix> ParseAddress(absl::string_view text);

// The common case of a list file, "a.b.c.d" or "a.b.c.d/len" written canonically, in one pass,
// inline for the list parsers' loops. It accepts a subset of what ParsePrefix accepts (ParseAddress
// when !allow_len), with the same result; nullopt for anything else, including every error (the
// caller then takes the long way, which words the message).
inline std::optional<Prefix> ParseV4Canonical(absl::string_view s, bool allow_len,
                                              const PrefixOptions& opts) {
  const char* p = s.data();
  const char* end = p + s.size();
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  uint32_t addr = 0;
  for (int i = 0; i < 4; ++i) {
    if (i > 0) {
      if (p == end || *p != '.') return std::nullopt;
      ++p;
    }
    const char* start = p;
    unsigned v = 0;
    while (p < end && digit(*p) && p - start < 3) v = v * 10 + static_cast<unsigned>(*p++ - '0');
    size_t n = static_cast<size_t>(p - start);
    if (n == 0 || v > 255 || (n > 1 && *start == '0')) return std::nullopt;
    addr = addr << 8 | v;
  }
  unsigned len = 32;
  if (p != end) {
    if (*p != '/' || !allow_len) return std::nullopt;
    ++p;
    const char* start = p;
    len = 0;
    while (p < end && digit(*p) && p - start < 2) len = len * 10 + static_cast<unsigned>(*p++ - '0');
    size_t n = static_cast<size_t>(p - start);
    if (p != end || n == 0 || len > 32 || (n > 1 && *start == '0')) return std::nullopt;
  }
  uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
  if ((addr & ~mask) != 0 || (len == 0 && !opts.allow_default_route)) return std::nullopt;
  Prefix out;  // host bits are zero already: no masking needed
  out.addr[0] = static_cast<uint8_t>(addr >> 24);
  out.addr[1] = static_cast<uint8_t>(addr >> 16);
  out.addr[2] = static_cast<uint8_t>(addr >> 8);
  out.addr[3] = static_cast<uint8_t>(addr);
  out.len = static_cast<uint8_t>(len);
  return out;
}

// Kernel keys (maps/bannerwatch_abi.h). The key must match the prefix's family.
bw_lpm_v4_key ToV4Key(const Prefix& p);
bw_lpm_v6_key ToV6Key(const Prefix& p);
// Host bits in a key read back from a trie are masked.
Prefix FromKey(const bw_lpm_v4_key& k);
Prefix FromKey(const bw_lpm_v6_key& k);

// The input quoted for a message: printable ASCII as is, anything else C-escaped, long input cut.
std::string QuoteForMessage(absl::string_view text);

}  // namespace bw

template <>
struct std::hash<bw::Prefix> {
  size_t operator()(const bw::Prefix& p) const { return absl::Hash<bw::Prefix>()(p); }
};
