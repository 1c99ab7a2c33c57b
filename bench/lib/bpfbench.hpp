// bpfbench.hpp — the benchmarks' own XDP and TC programs (bench/bwbench.bpf.c) and
// BPF_PROG_TEST_RUN.
//
// Contract: BenchProgs owns the loaded bwbench skeleton. SetTraffic() copies a Traffic's rewrite
// rows into the programs' table (a power of two of them, at most kAddrsMax) and rewinds it;
// SetTargets() fills the two XDP wrappers' tail-call slots, SetTcTargets() the two TC wrappers'.
// RunXdp() runs a program `repeat` times on one frame and returns the time it took; the frame's
// data_end equals its length, as the kernel requires when a context is passed. RunTc() runs a
// SCHED_CLS program `repeat` times on one skb that the kernel builds from the frame (Ethernet
// header included, all of it linear, on the loopback device). RunLive() runs BPF_F_TEST_XDP_LIVE_FRAMES (frames
// really transmitted on XDP_TX) with ingress_ifindex `ifindex` of the calling thread's netns.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/bwbench_abi.h"
#include "bench/lib/traffic.hpp"
#include "daemon/dataplane/loader.hpp"
#include "maps/maps.hpp"

struct bwbench;  // generated skeleton
struct bpf_object;

namespace bw::bench {

inline constexpr uint32_t kAddrsMax = BWB_ADDRS_MAX;

class BenchProgs {
 public:
  static absl::StatusOr<std::unique_ptr<BenchProgs>> Load();
  ~BenchProgs();
  BenchProgs(const BenchProgs&) = delete;
  BenchProgs& operator=(const BenchProgs&) = delete;

  absl::Status SetTargets(int base_prog_fd, int bw_prog_fd);
  absl::Status SetTcTargets(int base_prog_fd, int bw_prog_fd);
  absl::Status SetTraffic(const Traffic& t);
  void Rewind();
  uint64_t BadFrames() const;

  int wrap_base_fd() const;
  int wrap_bw_fd() const;
  int gen_fd() const;
  int tc_wrap_base_fd() const;
  int tc_wrap_bw_fd() const;

 private:
  BenchProgs() = default;
  bwbench* skel_ = nullptr;
};

// This build's data plane loaded under `pin_root`, and its maps. *dp is set before the check, so the
// caller's cleanup unpins; a pin root that already held maps (a stale benchmark) is an error.
absl::Status LoadFreshDataPlane(const std::string& pin_root, std::unique_ptr<DataPlane>* dp,
                                MapSet* maps);

// Another build's data plane for A/B runs (--against): `obj` (a bannerwatch.bpf.o) opened under
// `pin_root`, where this build pinned its maps, so that its maps (pinned by name) are this build's
// where their definitions agree: the lists, pre-filter, configuration, ports and ring buffer must
// (an error otherwise); maps that differ or that this build lacks (counters, scratch and per-flow
// state of an older or newer version) are its own, unpinned. Only its bw_xdp_ingress and
// bw_tc_egress are loaded. The fds of those programs
// live as long as the object.
class OtherDataPlane {
 public:
  static absl::StatusOr<std::unique_ptr<OtherDataPlane>> Load(const std::string& obj,
                                                              const std::string& pin_root);
  ~OtherDataPlane();
  OtherDataPlane(const OtherDataPlane&) = delete;
  OtherDataPlane& operator=(const OtherDataPlane&) = delete;
  int xdp_fd() const { return xdp_fd_; }
  int tc_fd() const { return tc_fd_; }
  // The maps it keeps to itself (its definition differs from this build's, or this build has no
  // such map), by name.
  const std::vector<std::string>& own_maps() const { return own_maps_; }
  bool shares(const std::string& map) const {
    return std::find(own_maps_.begin(), own_maps_.end(), map) == own_maps_.end();
  }

 private:
  OtherDataPlane() = default;
  std::vector<std::string> own_maps_;
  ::bpf_object* obj_ = nullptr;
  int xdp_fd_ = -1;
  int tc_fd_ = -1;
};

struct RunOut {
  uint32_t retval = 0;
  double seconds = 0;       // wall time of the bpf_prog_test_run_opts call
  uint32_t kernel_ns = 0;   // the kernel's own figure: ns per run, rounded down
};

// Nanoseconds per run of one RunXdp call. The wall time is precise (the kernel's figure is
// rounded down to whole ns) but also counts time the thread was preempted (the kernel's leaves it
// out): the wall figure is used unless it exceeds the kernel's by more than the rounding can
// explain, then the kernel's + 0.5. Sets *preempted in that case.
// Note: the wall time is only meaningful for a program attached to some interface; otherwise
// every call with repeat > 1 rebuilds the kernel's XDP dispatcher (milliseconds).
double NsPerRun(const RunOut& r, uint32_t repeat, bool* preempted);

absl::StatusOr<RunOut> RunXdp(int prog_fd, const test::Bytes& frame, uint32_t repeat);
absl::StatusOr<RunOut> RunTc(int prog_fd, const test::Bytes& frame, uint32_t repeat);
absl::StatusOr<RunOut> RunLive(int prog_fd, const test::Bytes& frame, uint32_t repeat,
                               int ifindex);

double MonotonicSeconds();

}  // namespace bw::bench
