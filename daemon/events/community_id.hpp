// community_id.hpp — the Community ID v1 flow hash (corelight/community-id-spec) for EVE's
// "community_id", the key Zeek, Suricata, Arkime and Elastic join flows on.
//
// Contract: "1:" + base64(SHA-1(seed . a_addr . b_addr . proto . 0 . a_port . b_port)), every
// value in network order: seed 2 bytes, addresses 4 (IPv4) or 16 (IPv6) bytes, proto 1 byte and a
// zero pad byte, ports 2 bytes each and only for protocols that have them (TCP, UDP, SCTP, and
// ICMP/ICMPv6 through their type/code mapping). The endpoints are ordered so that the smaller
// (address, port) comes first, making both directions of a flow hash alike; an ICMP message that
// has no counterpart type is one-way and keeps its order. Pure functions, thread-safe, no heap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace bw {

inline constexpr size_t kCommunityIdChars = 30;  // "1:" + 28 base64 characters of 20 bytes

// One flow endpoint pair as seen in a packet. `alen` is 4 or 16. Ports in host order.
struct CommunityIdTuple {
  const uint8_t* saddr;
  const uint8_t* daddr;
  size_t alen;
  uint8_t proto;
  bool has_ports;  // false: the hash ends after the pad byte (protocols without ports)
  uint16_t sport = 0;
  uint16_t dport = 0;
};

// Writes the kCommunityIdChars characters (no terminator) to `out`. For TCP/UDP/SCTP pass the
// ports; for ICMP/ICMPv6 use CommunityIdIcmp, which maps type/code to the ports first.
void CommunityIdV1(const CommunityIdTuple& t, uint16_t seed, char out[kCommunityIdChars]);

// ICMP (proto 1) / ICMPv6 (proto 58) port equivalents, as Zeek and pycommunityid define them: a
// request/reply type pairs with its counterpart (sport = type, dport = counterpart, two-way);
// any other type is one-way with sport = type, dport = code.
struct IcmpPortEquivalents {
  uint16_t sport;
  uint16_t dport;
  bool one_way;
};
IcmpPortEquivalents IcmpPorts(bool v6, uint8_t type, uint8_t code);

void CommunityIdIcmp(const uint8_t* saddr, const uint8_t* daddr, size_t alen, bool v6,
                     uint8_t type, uint8_t code, uint16_t seed, char out[kCommunityIdChars]);

// Convenience for tests and tools: the same as a std::string.
std::string CommunityIdString(const CommunityIdTuple& t, uint16_t seed);

}  // namespace bw
