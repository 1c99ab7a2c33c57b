// Strict prefix parsing (daemon/policy/cidr.hpp): every accepted form, every rejected one with the reason
// its message must give, IPv4-mapped IPv6, ordering, containment, kernel keys.
#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "daemon/policy/cidr.hpp"

namespace bw {
namespace {

std::string Canon(const std::string& s, bool allow_default = false) {
  auto p = ParsePrefix(s, PrefixOptions{.allow_default_route = allow_default});
  INFO(s << " -> " << p.status());
  REQUIRE(p.ok());
  return p->ToString();
}

std::string Err(const std::string& s, bool allow_default = false) {
  auto p = ParsePrefix(s, PrefixOptions{.allow_default_route = allow_default});
  INFO(s);
  REQUIRE_FALSE(p.ok());
  CHECK(p.status().code() == absl::StatusCode::kInvalidArgument);
  return std::string(p.status().message());
}

TEST_CASE("cidr: accepted forms are canonicalised") {
  struct Row {
    const char* in;
    const char* out;
  };
  const std::vector<Row> rows = {
      {"37.9.53.0/24", "37.9.53.0/24"},
      {"37.9.53.12", "37.9.53.12/32"},
      {"0.0.0.0/32", "0.0.0.0/32"},
      {"255.255.255.255", "255.255.255.255/32"},
      {"10.0.0.0/8", "10.0.0.0/8"},
      {"128.0.0.0/1", "128.0.0.0/1"},
      {"2001:db8::/32", "2001:db8::/32"},
      {"2001:DB8::/32", "2001:db8::/32"},
      {"2001:db8::1", "2001:db8::1/128"},
      {"2001:0db8:0000::/48", "2001:db8::/48"},  // hex groups may have leading zeros
      {"::1", "::1/128"},
      {"::/1", "::/1"},
      {"fe80::/10", "fe80::/10"},
      {"::ffff:37.9.53.12", "37.9.53.12/32"},      // IPv4-mapped -> IPv4
      {"::ffff:37.9.53.0/120", "37.9.53.0/24"},
      {"::ffff:0:0/96", "0.0.0.0/0"},              // with allow_default_route below
      {"::ffff:2509:350c/128", "37.9.53.12/32"},   // mapped written in hex
      {"::ffff:0:0/112", "0.0.0.0/16"},
      {"64:ff9b::/96", "64:ff9b::/96"},             // NAT64, not mapped: stays IPv6
      {"2001:db8::/127", "2001:db8::/127"},
  };
  for (const Row& r : rows) CHECK(Canon(r.in, true) == r.out);
  CHECK(ParsePrefix("::ffff:1.2.3.4")->is_v4());
  CHECK(ParsePrefix("64:ff9b::/96")->family == Family::kV6);
  CHECK(ParsePrefix("::/80", {.allow_default_route = true})->family == Family::kV6);
}

TEST_CASE("cidr: rejected input says what is wrong") {
  struct Row {
    const char* in;
    const char* says;
  };
  const std::vector<Row> rows = {
      {"010.0.0.1", "octet '010' has a leading zero"},
      {"10.0.0.01/32", "octet '01' has a leading zero"},
      {"256.0.0.1", "octet 256 is greater than 255"},
      {"1.2.3.999", "octet 999 is greater than 255"},
      {"1.2.3.1000", "greater than 255"},
      {"1.2.3", "expected four decimal octets"},
      {"1.2.3.4.5", "expected four decimal octets"},
      {"1..2.3", "expected four decimal octets"},
      {"1.2.3.4.", "expected four decimal octets"},
      {"a.b.c.d", "expected four decimal octets"},
      {"1.2.3.4/33", "prefix length 33 is out of range for IPv4 (0..32)"},
      {"2001:db8::/129", "prefix length 129 is out of range for IPv6 (0..128)"},
      {"1.2.3.0/+24", "prefix length '+24' is not a decimal number"},
      {"1.2.3.0/-1", "prefix length '-1' is not a decimal number"},
      {"1.2.3.0/ 24", "whitespace at offset 8"},
      {"1.2.3.0 /24", "whitespace at offset 7"},
      {" 1.2.3.0/24", "whitespace at offset 0"},
      {"1.2.3.0/24x", "prefix length '24x' is not a decimal number"},
      {"1.2.3.0/0x18", "is not a decimal number"},
      {"1.2.3.0/024", "prefix length '024' has a leading zero"},
      {"1.2.3.0/1000", "out of range"},
      {"1.2.3.0/", "missing prefix length after '/'"},
      {"/24", "missing address before '/'"},
      {"10.0.0.1/24", "host bits set: the network is 10.0.0.0/24"},
      {"37.9.53.12/24", "host bits set: the network is 37.9.53.0/24"},
      {"2001:db8::1/32", "host bits set: the network is 2001:db8::/32"},
      {"::ffff:1.2.3.4/120", "host bits set"},
      {"0.0.0.0/0", "a /0 prefix covers every IPv4 address; set allow_default_route: true"},
      {"::/0", "a /0 prefix covers every IPv6 address"},
      {"::ffff:0:0/96", "a /0 prefix covers every IPv4 address"},
      {"1.2.3.4\x01", "non-printable byte 0x01 at offset 7"},
      {"1.2.3.4\xff", "non-printable byte 0xff at offset 7"},
      {"\x80\x81", "non-printable byte 0x80"},
      {"2001:db8::g", "unexpected character 'g'"},
      {"fe80::1%eth0", "zone ids"},
      {"2001:db8:::1", "not an IPv6 address"},
      {"1:2:3:4:5:6:7:8:9", "not an IPv6 address"},
      {"::ffff:010.0.0.1", "octet '010' has a leading zero"},
      {"1.2.3.4/24/8", "is not a decimal number"},
      {"hello", "expected four decimal octets"},
  };
  for (const Row& r : rows) {
    std::string m = Err(r.in);
    INFO(r.in << " -> " << m);
    CHECK(m.find(r.says) != std::string::npos);
  }
  CHECK(Err("") == "empty prefix");
  // A NUL inside the text (binary data) is not silently cut.
  std::string with_nul("1.2.3.4\0", 8);
  CHECK(Err(with_nul).find("non-printable byte 0x00 at offset 7") != std::string::npos);
  // The input is quoted escaped, so a message never carries raw control bytes.
  CHECK(Err("1.2.3.4\n").find("'1.2.3.4\\n'") != std::string::npos);
  // Long junk is cut in the message.
  CHECK(Err(std::string(500, 'x')).size() < 200);
}

TEST_CASE("cidr: /0 only with allow_default_route") {
  CHECK(Canon("0.0.0.0/0", true) == "0.0.0.0/0");
  CHECK(Canon("::/0", true) == "::/0");
  CHECK_FALSE(ParsePrefix("0.0.0.0/0").ok());
}

TEST_CASE("cidr: ParseAddress takes addresses only") {
  auto a = ParseAddress("37.9.53.12");
  REQUIRE(a.ok());
  CHECK(a->ToString() == "37.9.53.12/32");
  CHECK(ParseAddress("::ffff:37.9.53.12")->ToString() == "37.9.53.12/32");
  CHECK(ParseAddress("0.0.0.0").ok());
  auto bad = ParseAddress("37.9.53.0/24");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("expected an address, not a prefix") != absl::string_view::npos);
}

TEST_CASE("cidr: containment, ordering, hashing, formatting") {
  Prefix p8 = *ParsePrefix("10.0.0.0/8"), p16 = *ParsePrefix("10.1.0.0/16"),
         h = *ParsePrefix("10.1.2.3"), other = *ParsePrefix("11.0.0.0/8"),
         v6 = *ParsePrefix("2001:db8::/32");
  CHECK(p8.contains(p16));
  CHECK(p8.contains(h));
  CHECK(p16.contains(h));
  CHECK(p8.contains(p8));
  CHECK_FALSE(p16.contains(p8));
  CHECK_FALSE(other.contains(h));
  CHECK_FALSE(v6.contains(h));
  CHECK(Prefix::Make(Family::kV4, p8.addr.data(), 0).contains(other));
  // Ordering: covering prefixes before what they cover; IPv4 before IPv6.
  CHECK(p8 < p16);
  CHECK(p16 < h);
  CHECK(h < other);
  CHECK(other < v6);
  CHECK(*ParsePrefix("10.0.0.0/8") < *ParsePrefix("10.0.0.0/9"));
  absl::flat_hash_set<Prefix> set = {p8, p16, *ParsePrefix("10.0.0.0/8")};
  CHECK(set.size() == 2);
  CHECK(std::hash<Prefix>()(p8) == std::hash<Prefix>()(*ParsePrefix("10.0.0.0/8")));
  CHECK(h.HumanString() == "10.1.2.3");
  CHECK(p8.HumanString() == "10.0.0.0/8");
  CHECK(v6.AddressString() == "2001:db8::");
  CHECK(Prefix::V4(0x25093500, 24).ToString() == "37.9.53.0/24");
  CHECK(Prefix::V4(0x2509350c, 24).ToString() == "37.9.53.0/24");  // Make masks
}

TEST_CASE("cidr: kernel keys round-trip, host bits in a stored key are masked") {
  Prefix p = *ParsePrefix("37.9.53.0/24");
  bw_lpm_v4_key k = ToV4Key(p);
  CHECK(k.prefixlen == 24u);
  CHECK(int(k.addr[0]) == 37);
  CHECK(int(k.addr[3]) == 0);
  CHECK(FromKey(k) == p);
  k.addr[3] = 12;
  CHECK(FromKey(k) == p);
  Prefix q = *ParsePrefix("2001:db8:1::/48");
  CHECK(FromKey(ToV6Key(q)) == q);
}

// IPv4 text goes a fast path (one pass) or, for anything unusual, the checks that word errors.
// Either way: an accepted string is exactly the canonical form of what it parsed to, and every
// canonical form is accepted.
TEST_CASE("cidr: IPv4 parsing accepts exactly the canonical forms") {
  std::mt19937 rng(2013);
  const std::string alphabet = "0123456789./";
  size_t accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string t;
    if (i % 2) {
      size_t n = 1 + rng() % 18;
      for (size_t k = 0; k < n; ++k) t += alphabet[rng() % alphabet.size()];
    } else {  // near-canonical: a random prefix, sometimes with one character changed
      Prefix q = Prefix::V4(static_cast<uint32_t>(rng()), rng() % 33);
      t = rng() % 2 ? q.ToString() : q.HumanString();
      if (rng() % 3 == 0) t[rng() % t.size()] = alphabet[rng() % alphabet.size()];
    }
    for (bool allow : {false, true}) {
      auto p = ParsePrefix(t, PrefixOptions{.allow_default_route = allow});
      if (!p.ok()) continue;
      ++accepted;
      INFO(t);
      CHECK(p->is_v4());
      CHECK((p->ToString() == t || (p->is_host() && p->AddressString() == t)));
      CHECK((allow || p->len > 0));
    }
  }
  CHECK(accepted > 100000);
  for (int i = 0; i < 20000; ++i) {
    Prefix q = Prefix::V4(static_cast<uint32_t>(rng()), 1 + rng() % 32);
    auto a = ParsePrefix(q.ToString());
    auto b = ParsePrefix(q.HumanString());
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(*a == q);
    CHECK(*b == q);
  }
  CHECK_FALSE(ParseAddress("198.51.100.0/24").ok());  // the fast path respects "no length"
  CHECK(*ParseAddress("0.0.0.0") == Prefix::V4(0, 32));
}

}  // namespace
}  // namespace bw
