// raw_server.hpp — a TCP server written by hand on a packet socket, for the evasion tests: it
// answers connections to an address its namespace does not hold and sends its data segments
// exactly as a test shapes them (sequence numbers before the stream's start, an urgent pointer,
// several segments), so that the client's real Linux stack decides what the application reads.
//
// How it stays out of the kernel's way: the host namespace reaches the address through a static
// neighbour entry pointing at the server's veth; the server namespace's own stack does not hold
// the address and does not forward, so it drops the flow's frames silently (no RST), while the
// packet socket sees them all.
//
// Contract: the constructor returns once the server is ready; the destructor stops its thread,
// closes its socket and removes the neighbour entry, also when a test fails.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "lib/topology.hpp"

namespace bw::test {

// A data segment the server sends once the handshake is done.
struct RawSegment {
  int32_t rel_seq = 0;  // its sequence number minus the stream's first (ISN + 1): -1 overlaps one
  std::string payload;
  int urg = -1;  // the urgent pointer, with URG set (-1: neither)
  // >= 0: sent as two IP fragments, the first holding the TCP header (24 bytes, with options) and
  // this many payload bytes (a multiple of 8; 0: RFC 1858's tiny first fragment), the second the
  // rest.
  int frag = -1;
};

class RawTcpServer {
 public:
  // Serves `addr` (IPv4 or IPv6, on the topology's /24 or /64, not held by either namespace) port
  // `port` on the server side of `t`'s veth, sending `segments` after each handshake.
  RawTcpServer(Topology& t, const std::string& addr, uint16_t port,
               std::vector<RawSegment> segments);
  ~RawTcpServer();
  RawTcpServer(const RawTcpServer&) = delete;
  RawTcpServer& operator=(const RawTcpServer&) = delete;

  int handshakes() const { return handshakes_; }

 private:
  void Serve();
  void Send(const uint8_t* peer_mac, const uint8_t* peer_ip, uint16_t peer_port, uint32_t seq,
            uint32_t ack, uint8_t flags, const std::string& payload, int urg, int frag = -1);
  // One IP packet (or fragment) carrying `l4`; `frag_off` in bytes, `more`: MF / M.
  void SendIp(const uint8_t* peer_mac, const uint8_t* peer_ip, const std::vector<uint8_t>& l4,
              bool fragment, size_t frag_off, bool more);

  Topology& t_;
  std::string addr_;
  bool v6_ = false;
  uint8_t ip_[16] = {};
  uint16_t port_;
  std::vector<RawSegment> segments_;
  int fd_ = -1, ifindex_ = 0;
  uint32_t ip_id_ = 0x4242;
  uint8_t mac_[6] = {};
  static constexpr uint32_t kIsn = 0x51000000;
  std::atomic<bool> stop_{false};
  std::atomic<int> handshakes_{0};
  std::thread thread_;
};

// A client in the host namespace: connects to addr:port and returns what the application reads
// (up to the first "\r\n" after "SSH-", or whatever arrived within timeout_ms).
std::string ReadBanner(Topology& t, const std::string& addr, uint16_t port, int timeout_ms = 5000);

}  // namespace bw::test
