// udp_probe.hpp — is traffic from a source dropped right now? Answered with real packets.
//
// Contract: a UdpProbe owns two sockets: a raw IPv4 socket (IP_HDRINCL) made inside the sending
// namespace, which sends UDP datagrams with any source address, and a UDP socket bound to
// `port` inside the protected namespace, read by a thread of its own. Begin() starts a thread
// that sends one datagram every `interval` seconds to `dst`, cycling through `sources` (datagram
// k comes from sources[k % n]), each carrying a session number and k; End() stops it. A datagram
// arrives when every filter on the way (XDP, nftables, iptables) passed it; a filter that drops
// it is the only way for one to go missing on a veth inside two namespaces, apart from a
// receive buffer overflowing (counted: overflows()). The queries read the record of the current
// (or last) session and are safe while it runs. Times are MonotonicSeconds().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace bw::bench {

class UdpProbe {
 public:
  // dst: host order, an address of the protected namespace.
  static absl::StatusOr<std::unique_ptr<UdpProbe>> Create(const std::string& send_ns,
                                                           const std::string& recv_ns,
                                                           uint32_t dst, uint16_t port);
  ~UdpProbe();
  UdpProbe(const UdpProbe&) = delete;
  UdpProbe& operator=(const UdpProbe&) = delete;

  // Sources in host order. Ends a session still running first.
  void Begin(const std::vector<uint32_t>& sources, double interval_s);
  void End();

  // The send time of source i's first datagram after the last one of it that arrived, when
  // that datagram and every later one from i are missing and it was sent at least `quiet`
  // seconds ago (a drop that has lasted `quiet`); nullopt otherwise.
  std::optional<double> DroppedSince(size_t i, double quiet) const;
  // The send time of the first datagram from source i sent at or after `t` that arrived.
  std::optional<double> FirstArrivalSentAfter(size_t i, double t) const;
  uint64_t Arrivals(size_t i) const;  // datagrams from source i that arrived in this session
  uint64_t Sent() const;
  uint64_t overflows() const { return overflows_.load(); }
  std::string last_error() const;

 private:
  UdpProbe() = default;
  void SendLoop(uint64_t session, std::vector<uint32_t> sources, double interval_s);
  void RecvLoop();

  int send_fd_ = -1, recv_fd_ = -1;
  uint32_t dst_ = 0;
  uint16_t port_ = 0;
  std::thread sender_, receiver_;
  std::atomic<bool> stop_send_{false}, stop_recv_{false};
  std::atomic<uint64_t> overflows_{0};

  mutable std::mutex mu_;
  uint64_t sessions_ = 0;              // sessions begun
  uint64_t session_ = 0;               // the current one's number (in every datagram)
  size_t n_ = 0;                       // sources in the session
  std::vector<double> sent_at_;        // by datagram number
  std::vector<int64_t> last_arrived_;  // by source: its last datagram number that arrived, -1
  std::vector<std::vector<uint64_t>> arrived_;  // by source: datagram numbers, as they came
  std::string error_;
};

}  // namespace bw::bench
