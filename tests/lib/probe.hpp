// probe.hpp — traffic and events the live-daemon tests measure enforcement with: sockets made inside
// a namespace, a UDP receiver that counts datagrams, a UDP flood from a child process (a "prober"
// whose packets must not get through while it is blocked), and SSH banner events pushed through a
// running daemon's own XDP program.
//
// Contract: every object closes its socket or stops (and reaps) its child when destroyed, also
// when a test fails. Addresses are the topology's (documentation ranges only).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "lib/netns.hpp"
#include "lib/topology.hpp"
#include "maps/maps.hpp"

namespace bw::test {

// Runs `fn` with this thread in `ns`'s network namespace (sockets it makes stay there), then
// back in its own. `fn` must not throw (no REQUIRE inside): check its results after.
void InNetns(Netns& ns, const std::function<void()>& fn);

// A UDP socket bound to addr:port inside a namespace, owned by this process.
class UdpReceiver {
 public:
  UdpReceiver(Netns& ns, const char* addr, uint16_t port);
  ~UdpReceiver();
  UdpReceiver(const UdpReceiver&) = delete;
  UdpReceiver& operator=(const UdpReceiver&) = delete;
  // Datagrams waiting now (drains them).
  int Drain();

 private:
  int fd_ = -1;
};

// The live tests' two policies: the server's addresses blocked, and nothing listed.
inline constexpr const char* kBlockServerPolicy = R"(ports: [443]
banner: {server: alert, client: alert}
lists:
  - name: test-block
    action: block
    reason: "integration test"
    entries: [198.51.100.2/32, 2001:db8:100::2/128]
)";
inline constexpr const char* kEmptyPolicy = R"(ports: [443]
banner: {server: alert, client: alert}
lists: []
)";

// Datagrams that show a flood got through: the receiver is drained only after the flood, so its
// socket buffer caps the count (about 50 under software emulation). A blocked flood gets 0.
inline constexpr int kGetsThrough = 10;

// A child process in `ns` sending UDP datagrams to addr:port as fast as it can until stopped;
// Stop() returns how many it sent. `from`, when given, is the source address (bound first: an
// address the namespace holds besides its first).
class UdpFlood {
 public:
  UdpFlood(Netns& ns, const char* addr, uint16_t port, const std::string& count_file,
           const char* from = nullptr);
  ~UdpFlood() { Stop(); }
  UdpFlood(const UdpFlood&) = delete;
  UdpFlood& operator=(const UdpFlood&) = delete;
  uint64_t Stop();

 private:
  pid_t pid_ = -1;
  std::string count_file_;
};

// The XDP program a running (or killed) daemon left attached, from its pinned link: frames run
// through it with BPF_PROG_TEST_RUN see the maps the interface's traffic sees.
Fd LiveXdpProgram(Daemon& d);

// Runs an SSH banner from 203.0.113.7:443 to the host's port `dst_port` through the daemon's own
// XDP program (from its pinned link) `runs` times: each run is one 1000146 event offered to the
// ring buffer (`dst_port` tells batches apart in the EVE file).
void ProduceBannerEvents(Daemon& d, uint32_t runs, uint16_t dst_port = 41000);

}  // namespace bw::test
