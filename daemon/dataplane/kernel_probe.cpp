#include "daemon/dataplane/kernel_probe.hpp"

#include <bpf/libbpf.h>
#include <sys/utsname.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/dataplane/libbpf_log.hpp"
#include "maps/maps.hpp"
#include "probe_global_args.skel.h"

namespace bw {

const char* VariantName(Variant v) {
  switch (v) {
    case Variant::kAuto:
      return "auto";
    case Variant::kFull:
      return "full";
    case Variant::kCore:
      return "core";
  }
  return "?";
}

bool ParseVariant(const std::string& s, Variant* out) {
  for (Variant v : {Variant::kAuto, Variant::kFull, Variant::kCore}) {
    if (s == VariantName(v)) {
      *out = v;
      return true;
    }
  }
  return false;
}

Variant KernelSupport::Best() const { return Missing().empty() ? Variant::kFull : Variant::kCore; }

std::vector<std::string> KernelSupport::Missing() const {
  std::vector<std::string> m;
  if (!bpf_loop) m.push_back("bpf_loop");
  if (!xdp_load_bytes) m.push_back("bpf_xdp_load_bytes");
  if (!ktime_coarse) m.push_back("bpf_ktime_get_coarse_ns");
  if (!global_ptr_args) m.push_back("pointer arguments of global functions");
  return m;
}

uint32_t VariantFeatures(Variant v) {
  switch (v) {
    case Variant::kFull:
      return BW_FEATURES_FULL;
    case Variant::kCore:
      return BW_FEATURES_CORE;
    case Variant::kAuto:
      break;
  }
  return 0;
}

const std::vector<FeatureInfo>& AllFeatures() {
  static const std::vector<FeatureInfo> k = {
      {BW_FEAT_PRELINES, "prelines",
       "a server's version line after other lines in its first payload (RFC 4253 4.2)"},
      {BW_FEAT_CONNECT, "connect", "SSH through HTTP CONNECT tunnels on proxy_ports"},
      {BW_FEAT_XDP_FRAGS, "xdp_frags",
       "banner bytes beyond the first buffer of a multi-buffer XDP frame"},
  };
  return k;
}

std::string FeaturesOff(uint32_t have) {
  std::vector<std::string> off;
  for (const auto& f : AllFeatures())
    if (!(have & f.bit)) off.push_back(f.name);
  return off.empty() ? "none" : absl::StrJoin(off, ", ");
}

std::string DescribeDataPlane(Variant loaded, const KernelSupport& k) {
  std::string out = absl::StrCat("kernel ", k.release, ": ", VariantName(loaded), " data plane");
  std::vector<std::string> missing = k.Missing();
  if (!missing.empty())
    absl::StrAppend(&out, " (the kernel lacks ", absl::StrJoin(missing, ", "), ")");
  else if (loaded != Variant::kFull)
    absl::StrAppend(&out, " (asked for; the kernel runs the full one)");
  uint32_t have = VariantFeatures(loaded);
  std::vector<std::string> off;
  for (const auto& f : AllFeatures())
    if (!(have & f.bit)) off.push_back(absl::StrCat(f.name, " (", f.what, ")"));
  if (off.empty())
    absl::StrAppend(&out, ", every detection on");
  else
    absl::StrAppend(&out, "; detections off: ", absl::StrJoin(off, "; "));
  return out;
}

namespace {

// 1 supported, 0 not; an error when the probe itself could not run.
absl::StatusOr<bool> ProbeHelper(bpf_prog_type type, bpf_func_id id, const char* name) {
  ScopedLibbpfQuiet quiet;  // a "no" is an answer, not a warning
  int r = libbpf_probe_bpf_helper(type, id, nullptr);
  if (r < 0) return ErrnoStatus(name, "libbpf_probe_bpf_helper", -r);
  return r == 1;
}

absl::StatusOr<bool> ProbeGlobalPtrArgs() {
  ScopedLibbpfQuiet quiet;
  probe_global_args* p = probe_global_args__open();
  if (!p) return ErrnoStatus("probe_global_args.bpf.o", "open", errno);
  int err = probe_global_args__load(p);
  probe_global_args__destroy(p);
  if (err == 0) return true;
  // The verifier's refusal is EINVAL (the argument type) or EACCES; missing rights are EPERM.
  if (err == -EPERM) return ErrnoStatus("probe_global_args.bpf.o", "load", -err);
  return false;
}

}  // namespace

absl::StatusOr<KernelSupport> ProbeKernel() {
  KernelSupport k;
  utsname u{};
  if (uname(&u) == 0) k.release = u.release;
  struct {
    bool* out;
    bpf_func_id id;
    const char* name;
  } helpers[] = {
      {&k.bpf_loop, BPF_FUNC_loop, "bpf_loop"},
      {&k.xdp_load_bytes, BPF_FUNC_xdp_load_bytes, "bpf_xdp_load_bytes"},
      {&k.ktime_coarse, BPF_FUNC_ktime_get_coarse_ns, "bpf_ktime_get_coarse_ns"},
  };
  for (const auto& h : helpers) {
    auto r = ProbeHelper(BPF_PROG_TYPE_XDP, h.id, h.name);
    if (!r.ok()) return r.status();
    *h.out = *r;
  }
  auto g = ProbeGlobalPtrArgs();
  if (!g.ok()) return g.status();
  k.global_ptr_args = *g;
  return k;
}

}  // namespace bw
