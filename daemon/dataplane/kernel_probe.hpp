// kernel_probe.hpp — what the running kernel's BPF can do, found by asking it, and which object
// variant of the data plane that allows (bannerwatch_abi.h, "object variants").
//
// Contract: ProbeKernel() loads tiny test programs (libbpf_probe_bpf_helper for helpers, a compiled
// probe object for global-function pointer arguments) and closes them again: nothing stays loaded,
// nothing is pinned. It needs the privileges a load needs; a probe that cannot run (EPERM) is an
// error, not a "no". Never decided by the kernel's version number: distribution kernels backport.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "maps/bannerwatch_abi.h"

namespace bw {

enum class Variant { kAuto, kFull, kCore };
const char* VariantName(Variant v);
// "auto", "full", "core"; false on anything else.
bool ParseVariant(const std::string& s, Variant* out);

struct KernelSupport {
  std::string release;           // uname -r
  bool bpf_loop = false;         // bpf_loop (5.17)
  bool xdp_load_bytes = false;   // bpf_xdp_load_bytes (5.18)
  bool ktime_coarse = false;     // bpf_ktime_get_coarse_ns (5.11)
  bool global_ptr_args = false;  // pointers as arguments of global functions (5.12)

  // kFull when the kernel has everything the full object uses, else kCore.
  Variant Best() const;
  // The helpers and verifier features the full object needs that this kernel lacks.
  std::vector<std::string> Missing() const;
};

absl::StatusOr<KernelSupport> ProbeKernel();

// enum bw_feature bits of a variant (kAuto is not a variant: 0).
uint32_t VariantFeatures(Variant v);

struct FeatureInfo {
  uint32_t bit;          // enum bw_feature
  const char* name;      // short, for logs, status and the metric's label
  const char* what;      // what an operator loses without it
};
// Every enum bw_feature, in bit order.
const std::vector<FeatureInfo>& AllFeatures();

// "prelines, connect" — the features of `all` not in `have`; "none" when nothing is off.
std::string FeaturesOff(uint32_t have);

// One line for logs and `check`: the kernel, the variant, and what is off and why, e.g.
// "kernel 5.10.0-46-amd64: core data plane (the kernel lacks bpf_loop, ...); off: prelines (...)".
std::string DescribeDataPlane(Variant loaded, const KernelSupport& k);

}  // namespace bw
