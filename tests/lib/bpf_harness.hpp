// bpf_harness.hpp — loads the real data plane and runs frames through it with BPF_PROG_TEST_RUN.
//
// Contract: each harness loads the object variant BW_TEST_VARIANT names (auto, full, core; unset:
// auto, the best the kernel runs) unless its options name one, pins under its own directory (/sys/fs/bpf/bwtest-<pid>-<n>) and removes
// it on destruction, unless BW_KEEP_PINS is set in the environment (then the path is printed, so
// `bpftool map dump pinned ...` can be run on what a test left). Run*() return the program's
// return value and the events it wrote, read from the ring buffer right after the run.
#pragma once

#include <bpf/libbpf.h>

#include <memory>
#include <string>
#include <vector>

#include "daemon/dataplane/loader.hpp"
#include "lib/packet.hpp"
#include "maps/maps.hpp"

namespace bw::test {

// The variant BW_TEST_VARIANT asks for (kAuto when unset).
Variant TestVariant();

struct RunResult {
  uint32_t retval = 0;
  std::vector<bw_event> events;
};

class BpfHarness {
 public:
  explicit BpfHarness(LoadOptions opts = {});
  ~BpfHarness();

  RunResult RunXdp(const Bytes& frame);
  RunResult RunTc(const Bytes& frame);
  // Runs without draining the ring buffer (for the full-buffer case).
  uint32_t RunXdpNoDrain(const Bytes& frame);
  std::vector<bw_event> Drain();

  // Back to a clean state: empty lists/flows/limiter, zero counters, default config, ports {443}.
  void Reset();
  void SetBannerActions(bw_banner_action server, bw_banner_action client, uint8_t flags = 0);
  void SetPorts(const std::vector<uint16_t>& ports, const std::vector<uint16_t>& proxy = {});
  // Adds a prefix ("203.0.113.0/24", "2001:db8::/32") with an effective action.
  void AddPrefix(const std::string& cidr, uint8_t action, uint32_t list_id = 1,
                 uint32_t entry_ref = 0);
  CounterArray Counters(bw_direction dir);

  MapSet& maps() { return maps_; }
  DataPlane& dataplane() { return *dp_; }
  const std::string& pin_root() const { return pin_root_; }

 private:
  uint32_t Run(int prog_fd, const Bytes& frame, bool xdp);
  std::string pin_root_;
  std::unique_ptr<DataPlane> dp_;
  MapSet maps_;
  ring_buffer* rb_ = nullptr;
  std::vector<bw_event> pending_;
};

}  // namespace bw::test
