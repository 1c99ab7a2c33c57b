// capabilities.hpp — what `bannerwatch run` (and `scan`) need of the kernel's capabilities, checked
// before anything is loaded, instead of asking for root.
//
// Contract: the daemon needs CAP_NET_ADMIN (attaching XDP and TC programs, loading networking
// program types) and, for bpf() itself, CAP_BPF + CAP_PERFMON on kernels that have CAP_BPF (5.8
// and later; PERFMON lets the verifier accept the programs' pointer handling as it does for root)
// or CAP_SYS_ADMIN on older ones. CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON everywhere,
// as the kernel does. Root (full effective set) passes unchanged. The effective set is read with
// capget(2) (no libcap); whether the kernel knows CAP_BPF from /proc/sys/kernel/cap_last_cap.
// MissingCapabilities() is pure, for tests; CapabilityCheck() names what is missing and how to
// grant it (systemd's AmbientCapabilities=, setpriv, setcap).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bw {

// The process's effective capability set (bit N = capability N), from capget(2).
absl::StatusOr<uint64_t> EffectiveCapabilities();
// True when the running kernel has CAP_BPF (cap_last_cap >= 39).
bool KernelHasCapBpf();
// The names ("CAP_NET_ADMIN", ...) of the capabilities `effective` lacks for the daemon.
std::vector<std::string> MissingCapabilities(uint64_t effective, bool kernel_has_cap_bpf);
// OK, or FailedPrecondition: "<what> needs CAP_X, CAP_Y (missing from this process's effective
// capabilities); run as root or grant them: ..." — `what` is e.g. "run".
absl::Status CapabilityCheck(const std::string& what);

}  // namespace bw
