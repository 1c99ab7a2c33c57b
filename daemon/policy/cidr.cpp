// cidr.cpp — strict prefix parsing (see cidr.hpp for the contract).
#include "daemon/policy/cidr.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace bw {
namespace {

constexpr size_t kMaxQuoted = 80;

absl::Status Bad(absl::string_view text, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(QuoteForMessage(text), ": ", what));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Strict dotted quad: four decimal octets 0..255, no leading zeros, nothing else.
absl::Status ParseV4(absl::string_view whole, absl::string_view s, uint8_t out[4]) {
  size_t pos = 0;
  for (int i = 0; i < 4; ++i) {
    if (i > 0) {
      if (pos >= s.size() || s[pos] != '.')
        return Bad(whole, "not an IPv4 address: expected four decimal octets separated by dots");
      ++pos;
    }
    size_t start = pos;
    while (pos < s.size() && IsDigit(s[pos]) && pos - start < 4) ++pos;
    size_t n = pos - start;
    if (n == 0)
      return Bad(whole, "not an IPv4 address: expected four decimal octets separated by dots");
    absl::string_view oct = s.substr(start, n);
    if (n > 3) return Bad(whole, absl::StrCat("IPv4 octet '", oct, "...' is greater than 255"));
    if (n > 1 && oct[0] == '0')
      return Bad(whole, absl::StrCat("IPv4 octet '", oct,
                                     "' has a leading zero (octal or decimal? write it without)"));
    unsigned v = 0;
    for (char c : oct) v = v * 10 + static_cast<unsigned>(c - '0');
    if (v > 255) return Bad(whole, absl::StrCat("IPv4 octet ", v, " is greater than 255"));
    out[i] = static_cast<uint8_t>(v);
  }
  if (pos != s.size())
    return Bad(whole, "not an IPv4 address: expected four decimal octets separated by dots");
  return absl::OkStatus();
}

absl::Status ParseV6(absl::string_view whole, absl::string_view s, uint8_t out[16]) {
  if (s.size() > INET6_ADDRSTRLEN - 1) return Bad(whole, "not an IPv6 address: too long");
  for (char c : s) {
    bool ok = IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
    if (!ok) {
      if (c == '%') return Bad(whole, "IPv6 zone ids ('%...') are not allowed");
      return Bad(whole, absl::StrCat("not an IPv6 address: unexpected character '",
                                     std::string(1, c), "'"));
    }
  }
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  if (inet_pton(AF_INET6, buf, out) != 1) {
    // glibc rejects leading zeros in an embedded dotted quad; say so rather than "not an address".
    size_t colon = s.rfind(':');
    if (s.find('.') != absl::string_view::npos && colon != absl::string_view::npos) {
      uint8_t tmp[4];
      absl::Status st = ParseV4(whole, s.substr(colon + 1), tmp);
      if (!st.ok()) return st;
    }
    return Bad(whole, "not an IPv6 address");
  }
  return absl::OkStatus();
}

bool IsV4Mapped(const uint8_t a[16]) {
  static const uint8_t kPre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a, kPre, 12) == 0;
}

// Parses "LEN": decimal, no sign, no leading zero, no whitespace.
absl::StatusOr<unsigned> ParseLen(absl::string_view whole, absl::string_view s) {
  if (s.empty()) return Bad(whole, "missing prefix length after '/'");
  for (char c : s)
    if (!IsDigit(c))
      return Bad(whole, absl::StrCat("prefix length '", absl::CHexEscape(s),
                                     "' is not a decimal number"));
  if (s.size() > 1 && s[0] == '0')
    return Bad(whole, absl::StrCat("prefix length '", s, "' has a leading zero"));
  if (s.size() > 3) return Bad(whole, absl::StrCat("prefix length ", s, " is out of range"));
  unsigned v = 0;
  for (char c : s) v = v * 10 + static_cast<unsigned>(c - '0');
  return v;
}

absl::StatusOr<Prefix> ParseImpl(absl::string_view text, bool allow_len,
                                 const PrefixOptions& opts) {
  if (std::optional<Prefix> p = ParseV4Canonical(text, allow_len, opts)) return *p;
  if (text.empty()) return absl::InvalidArgumentError("empty prefix");
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == ' ' || c == '\t')
      return Bad(text, absl::StrCat("whitespace at offset ", i, " (write ADDR or ADDR/LEN)"));
    if (c < 0x20 || c >= 0x7f)
      return Bad(text, absl::StrCat("non-printable byte 0x", absl::Hex(c, absl::kZeroPad2),
                                    " at offset ", i));
  }
  size_t slash = text.find('/');
  absl::string_view addr = text.substr(0, slash);
  std::optional<unsigned> len;
  if (slash != absl::string_view::npos) {
    if (!allow_len) return Bad(text, "expected an address, not a prefix");
    if (addr.empty()) return Bad(text, "missing address before '/'");
    auto l = ParseLen(text, text.substr(slash + 1));
    if (!l.ok()) return l.status();
    len = *l;
  }
  Prefix p;
  bool v6 = addr.find(':') != absl::string_view::npos;
  if (v6) {
    uint8_t b[16];
    absl::Status st = ParseV6(text, addr, b);
    if (!st.ok()) return st;
    unsigned l = len.value_or(128);
    if (l > 128) return Bad(text, absl::StrCat("prefix length ", l, " is out of range for IPv6 (0..128)"));
    if (IsV4Mapped(b) && l >= 96) {
      p = Prefix::Make(Family::kV4, b + 12, l - 96);
      if (std::memcmp(p.addr.data(), b + 12, 4) != 0)
        return Bad(text, absl::StrCat("host bits set: the network is ::ffff:", p.AddressString(),
                                      "/", l, " (IPv4 ", p.ToString(), ")"));
    } else {
      p = Prefix::Make(Family::kV6, b, l);
      if (std::memcmp(p.addr.data(), b, 16) != 0)
        return Bad(text, absl::StrCat("host bits set: the network is ", p.ToString()));
    }
  } else {
    uint8_t b[4];
    absl::Status st = ParseV4(text, addr, b);
    if (!st.ok()) return st;
    unsigned l = len.value_or(32);
    if (l > 32) return Bad(text, absl::StrCat("prefix length ", l, " is out of range for IPv4 (0..32)"));
    p = Prefix::Make(Family::kV4, b, l);
    if (std::memcmp(p.addr.data(), b, 4) != 0)
      return Bad(text, absl::StrCat("host bits set: the network is ", p.ToString()));
  }
  if (p.len == 0 && !opts.allow_default_route)
    return Bad(text, absl::StrCat("a /0 prefix covers every ", p.is_v4() ? "IPv4" : "IPv6",
                                  " address; set allow_default_route: true to allow it"));
  return p;
}

}  // namespace

Prefix Prefix::Make(Family f, const uint8_t* bytes, unsigned len) {
  Prefix p;
  p.family = f;
  unsigned width = f == Family::kV4 ? 32 : 128;
  if (len > width) len = width;
  p.len = static_cast<uint8_t>(len);
  unsigned nbytes = width / 8;
  std::memcpy(p.addr.data(), bytes, nbytes);
  unsigned full = len / 8, rem = len % 8;
  if (full < nbytes) {
    p.addr[full] &= static_cast<uint8_t>(rem == 0 ? 0 : 0xff << (8 - rem));
    for (unsigned i = full + 1; i < nbytes; ++i) p.addr[i] = 0;
  }
  return p;
}

Prefix Prefix::V4(uint32_t a, unsigned len) {
  uint8_t b[4] = {static_cast<uint8_t>(a >> 24), static_cast<uint8_t>(a >> 16),
                  static_cast<uint8_t>(a >> 8), static_cast<uint8_t>(a)};
  return Make(Family::kV4, b, len);
}

bool Prefix::contains(const Prefix& o) const {
  if (family != o.family || len > o.len) return false;
  unsigned full = len / 8, rem = len % 8;
  if (std::memcmp(addr.data(), o.addr.data(), full) != 0) return false;
  if (rem == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rem));
  return (addr[full] & mask) == (o.addr[full] & mask);
}

std::string Prefix::AddressString() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(is_v4() ? AF_INET : AF_INET6, addr.data(), buf, sizeof(buf));
  return buf;
}

std::string Prefix::ToString() const { return absl::StrCat(AddressString(), "/", len); }

std::string Prefix::HumanString() const { return is_host() ? AddressString() : ToString(); }

absl::StatusOr<Prefix> ParsePrefix(absl::string_view text, const PrefixOptions& opts) {
  return ParseImpl(text, true, opts);
}

absl::StatusOr<Prefix> ParseAddress(absl::string_view text) {
  return ParseImpl(text, false, PrefixOptions{.allow_default_route = true});
}

bw_lpm_v4_key ToV4Key(const Prefix& p) {
  bw_lpm_v4_key k{};
  k.prefixlen = p.len;
  std::memcpy(k.addr, p.addr.data(), 4);
  return k;
}

bw_lpm_v6_key ToV6Key(const Prefix& p) {
  bw_lpm_v6_key k{};
  k.prefixlen = p.len;
  std::memcpy(k.addr, p.addr.data(), 16);
  return k;
}

Prefix FromKey(const bw_lpm_v4_key& k) { return Prefix::Make(Family::kV4, k.addr, k.prefixlen); }
Prefix FromKey(const bw_lpm_v6_key& k) { return Prefix::Make(Family::kV6, k.addr, k.prefixlen); }

std::string QuoteForMessage(absl::string_view text) {
  bool cut = text.size() > kMaxQuoted;
  if (cut) text = text.substr(0, kMaxQuoted);
  return absl::StrCat("'", absl::CHexEscape(text), cut ? "...'" : "'");
}

}  // namespace bw
