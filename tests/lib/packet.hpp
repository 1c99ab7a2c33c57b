// packet.hpp — a small builder of Ethernet frames for fixture tables, the fuzzer and benchmarks.
//
// Contract: build() lays out Ethernet, up to any number of VLAN tags, IPv4 (with options) or IPv6
// (with extension headers), then TCP (with options), UDP or ICMP, then the payload, with correct
// lengths and checksums unless a field is overridden on purpose (ihl, doff, tot_len, truncate) to
// make a malformed frame.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bw::test {

using Bytes = std::vector<uint8_t>;

// An address: family 4 or 6, bytes in network order (IPv4 in the first 4).
struct Addr {
  int family = 4;
  uint8_t b[16] = {};
  static Addr Parse(std::string_view text);  // aborts the test process on bad text
  std::string ToString() const;
};

// Internet checksum pieces: the one's-complement sum of big-endian 16-bit words (an odd last byte
// padded with zero) added to `sum`, and the folded complement that goes into a header.
uint32_t ChecksumAdd(const uint8_t* p, size_t n, uint32_t sum = 0);
uint16_t ChecksumFold(uint32_t sum);

enum TcpFlag : uint8_t {
  kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10, kUrg = 0x20,
};

inline constexpr uint8_t kIpprotoHopopts = 0, kIpprotoRouting = 43, kIpprotoFragment = 44,
                         kIpprotoDstopts = 60, kIpprotoAh = 51;

class PacketBuilder {
 public:
  PacketBuilder& vlan(uint16_t vid, uint16_t tpid = 0x8100);
  PacketBuilder& ethertype(uint16_t type);  // replaces the L3 EtherType (non-IP frames)
  PacketBuilder& ipv4(std::string_view src, std::string_view dst);
  PacketBuilder& ipv6(std::string_view src, std::string_view dst);
  PacketBuilder& ip(const Addr& src, const Addr& dst);
  PacketBuilder& ip_options(size_t bytes);              // IPv4 options (NOPs), multiple of 4
  PacketBuilder& ihl(uint8_t v);                        // IPv4 IHL override
  PacketBuilder& tot_len(uint16_t v);                   // IPv4 total / IPv6 payload length override
  PacketBuilder& version(uint8_t v);                    // IP version nibble override
  PacketBuilder& v6_ext(uint8_t type, size_t bytes = 8);  // hop-by-hop/routing/dstopts/AH
  PacketBuilder& fragment(uint16_t offset8, bool more);   // offset in 8-byte units
  PacketBuilder& tcp(uint16_t sport, uint16_t dport, uint8_t flags = kAck | kPsh);
  PacketBuilder& tcp_options(size_t bytes);              // NOPs, multiple of 4
  PacketBuilder& doff(uint8_t v);                        // TCP data offset override
  PacketBuilder& seq(uint32_t v);                        // TCP sequence number (default 0x11000000)
  PacketBuilder& urg(uint16_t ptr);                      // URG set, urgent pointer `ptr`
  PacketBuilder& udp(uint16_t sport, uint16_t dport);
  PacketBuilder& icmp();
  PacketBuilder& l4proto(uint8_t proto);                 // raw protocol number, no L4 header
  PacketBuilder& payload(std::string_view p);
  PacketBuilder& payload(const Bytes& p);
  PacketBuilder& pad_to(size_t frame_len, uint8_t fill = 0);  // Ethernet padding after the datagram
  PacketBuilder& truncate(size_t frame_len);             // cut the frame short

  Bytes build() const;

 private:
  struct Vlan { uint16_t tpid, vid; };
  struct Ext { uint8_t type; size_t bytes; };
  std::vector<Vlan> vlans_;
  std::optional<uint16_t> ethertype_;
  Addr src_, dst_;
  bool have_ip_ = false;
  size_t ip_opt_ = 0;
  std::optional<uint8_t> ihl_, doff_, version_;
  std::optional<uint16_t> tot_len_;
  std::vector<Ext> exts_;
  std::optional<std::pair<uint16_t, bool>> frag_;
  enum class L4 { kNone, kTcp, kUdp, kIcmp, kRaw } l4_ = L4::kNone;
  uint8_t raw_proto_ = 0;
  uint16_t sport_ = 0, dport_ = 0;
  uint8_t flags_ = 0;
  size_t tcp_opt_ = 0;
  uint32_t seq_ = 0x11000000;
  uint16_t urg_ = 0;
  Bytes payload_;
  size_t pad_to_ = 0;
  uint8_t pad_fill_ = 0;
  std::optional<size_t> truncate_;
};

}  // namespace bw::test
