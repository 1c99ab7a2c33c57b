// traffic.hpp — the frames the benchmarks send, and per-source rewrite tables for them.
//
// Contract: a Traffic is one template frame (Ethernet + IPv4 without options + TCP/UDP, built with
// tests/lib/packet.hpp) plus one row per remote address: the address and the IPv4 and L4 checksums
// the frame needs with it. bench/bwbench.bpf.c writes a row into the frame before each run, so a
// run of N frames carries N different remotes: sources of ingress traffic, destinations of
// egress traffic (the remote end is the one a watchlist names, in either direction). With bad_l4_csum the L4 checksum of every row is
// wrong on purpose (the stack then drops the frame in TCP instead of answering with a RST).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lib/packet.hpp"

namespace bw::bench {

// Same layout as struct bwb_addr (bench/bwbench_abi.h); all fields in network order.
struct AddrRow {
  uint32_t addr;  // the remote address
  uint16_t ip_csum;
  uint16_t l4_csum;
  uint16_t dport = 0;  // network order; written when Traffic::dport_off is set
  uint16_t pad = 0;
};
static_assert(sizeof(AddrRow) == 12);

struct Traffic {
  std::string name;
  test::Bytes frame;
  uint32_t addr_off = 26;    // frame offset of the remote address: 26 source, 30 destination
  uint32_t l4_csum_off = 0;  // 0: no L4 checksum to rewrite
  uint32_t dport_off = 0;    // 0: the destination port stays the template's
  std::vector<AddrRow> rows;
};

// Which way a Traffic's frames go. Ingress: remote -> local 198.51.100.2, the remote (rewritten)
// is the source. Egress: the same conversation's other half, local 198.51.100.2 -> remote, the
// remote (rewritten) is the destination; the ports are those below either way, so the port named
// first is the local side's on egress (a local DNS server, web server, TLS or SSH server on 443
// answering remote clients), as it is the remote side's on ingress.
enum class Direction { kIngress, kEgress };

// The kinds of frame the benchmarks use (IPv4; source port -> destination port either way).
enum class Kind {
  kUdp,           // UDP 53 -> 41000 (a DNS answer)
  kTcpUnwatched,  // TCP 80 -> 41000, ACK|PSH, HTTP bytes
  kTcpClientPorts,  // as kTcpUnwatched, to a client port of its own per row (32768-60999, as
                    // Linux hands out ephemeral ports): what a host's inbound traffic looks like
  kTls443,        // TCP 443 -> 41000, a TLS ServerHello record header
  kSshBanner,     // TCP 443 -> 41000, "SSH-2.0-OpenSSH_9.2p1 ..." (alerts)
};

struct Macs {
  uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x02};
  uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x01};
};

// remotes: IPv4 addresses in host order (sources on ingress, destinations on egress).
Traffic MakeTraffic(const std::string& name, Kind kind, const std::vector<uint32_t>& remotes,
                    bool bad_l4_csum = false, const Macs& macs = {},
                    Direction dir = Direction::kIngress);

}  // namespace bw::bench
