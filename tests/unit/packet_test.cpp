// The packet builder the fixture tables, the fuzzer and the benchmarks rely on: lengths, offsets,
// checksums and the deliberate breakages come out as asked.
#include <catch2/catch.hpp>
#include <cstdint>

#include "lib/packet.hpp"

namespace bw::test {
namespace {

uint16_t Get16(const Bytes& b, size_t off) { return static_cast<uint16_t>(b[off] << 8 | b[off + 1]); }

// One's-complement sum over [off, off+len) plus `seed`; a correct checksum makes it 0xffff.
uint16_t Sum(const Bytes& b, size_t off, size_t len, uint32_t seed = 0) {
  uint32_t s = seed;
  for (size_t i = 0; i + 1 < len; i += 2) s += Get16(b, off + i);
  if (len & 1) s += b[off + len - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}

TEST_CASE("packet: IPv4/TCP layout, lengths and both checksums") {
  Bytes f = PacketBuilder().ipv4("203.0.113.10", "198.51.100.20").tcp(443, 51000).payload("SSH-2.0-x").build();
  REQUIRE(f.size() == 14u + 20 + 20 + 9);
  CHECK(Get16(f, 12) == 0x0800);
  CHECK(f[14] == 0x45);
  CHECK(Get16(f, 16) == 20 + 20 + 9);  // total length
  CHECK(f[23] == 6);
  CHECK(Sum(f, 14, 20) == 0xffff);  // header checksum
  CHECK(Get16(f, 34) == 443);
  CHECK(Get16(f, 36) == 51000);
  CHECK((f[46] >> 4) == 5);  // doff
  // TCP checksum over the pseudo header.
  uint32_t pseudo = Get16(f, 26) + Get16(f, 28) + Get16(f, 30) + Get16(f, 32) + 6 + (20 + 9);
  CHECK(Sum(f, 34, 29, pseudo) == 0xffff);
  CHECK(std::string(f.begin() + 54, f.end()) == "SSH-2.0-x");
}

TEST_CASE("packet: VLAN tags, IPv4 options, TCP options") {
  Bytes f = PacketBuilder().vlan(10, 0x88a8).vlan(20).ipv4("203.0.113.10", "198.51.100.20")
                .ip_options(8).tcp(443, 1).tcp_options(12).payload("x").build();
  CHECK(Get16(f, 12) == 0x88a8);
  CHECK(Get16(f, 14) == 10);
  CHECK(Get16(f, 16) == 0x8100);
  CHECK(Get16(f, 18) == 20);
  CHECK(Get16(f, 20) == 0x0800);
  CHECK(f[22] == 0x47);  // IHL 7
  CHECK(Sum(f, 22, 28) == 0xffff);
  CHECK((f[22 + 28 + 12] >> 4) == 8);  // doff 8
  CHECK(f.size() == 22u + 28 + 32 + 1);
}

TEST_CASE("packet: IPv6 extension header chain and fragment header") {
  Bytes f = PacketBuilder().ipv6("2001:db8:1::10", "2001:db8:2::20").v6_ext(kIpprotoHopopts)
                .v6_ext(kIpprotoRouting, 24).fragment(100, true).tcp(443, 1).payload("SSH-").build();
  CHECK(Get16(f, 12) == 0x86dd);
  CHECK((f[14] >> 4) == 6);
  CHECK(Get16(f, 18) == 8 + 24 + 8 + 20 + 4);  // payload length
  CHECK(f[20] == kIpprotoHopopts);              // next header
  size_t h = 54;
  CHECK(f[h] == kIpprotoRouting);
  CHECK(f[h + 1] == 0);  // (8 / 8) - 1
  h += 8;
  CHECK(f[h] == kIpprotoFragment);
  CHECK(f[h + 1] == 2);  // (24 / 8) - 1
  h += 24;
  CHECK(f[h] == 6);
  CHECK(Get16(f, h + 2) == (100 << 3 | 1));
  CHECK(Get16(f, h + 8) == 443);
}

TEST_CASE("packet: IPv4 fragments and deliberate breakage") {
  Bytes frag = PacketBuilder().ipv4("203.0.113.10", "198.51.100.20").l4proto(6).payload("abc")
                   .fragment(185, true).build();
  CHECK(Get16(frag, 20) == (0x2000 | 185));
  CHECK(frag.size() == 14u + 20 + 3);

  Bytes bad = PacketBuilder().ipv4("203.0.113.10", "198.51.100.20").ihl(4).tot_len(999)
                  .tcp(1, 2).doff(3).build();
  CHECK((bad[14] & 0x0f) == 4);
  CHECK(Get16(bad, 16) == 999);
  CHECK((bad[46] >> 4) == 3);
  CHECK(PacketBuilder().ipv4("203.0.113.10", "198.51.100.20").tcp(1, 2).truncate(30).build().size() == 30u);
  Bytes padded = PacketBuilder().ipv4("203.0.113.10", "198.51.100.20").tcp(1, 2).payload("SSH")
                     .pad_to(80, '-').build();
  CHECK(padded.size() == 80u);
  CHECK(Get16(padded, 16) == 43);  // the IP length ignores the padding
  CHECK(padded.back() == '-');
}

TEST_CASE("packet: addresses parse and print in both families") {
  CHECK(Addr::Parse("37.9.53.12").family == 4);
  CHECK(Addr::Parse("37.9.53.12").ToString() == "37.9.53.12");
  CHECK(Addr::Parse("2001:db8::1").family == 6);
  CHECK(Addr::Parse("::ffff:37.9.53.12").ToString() == "::ffff:37.9.53.12");
}

}  // namespace
}  // namespace bw::test
