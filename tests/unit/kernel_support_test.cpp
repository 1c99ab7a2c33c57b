// What the daemon says about a kernel's BPF support (kernel_probe.hpp) and how the libbpf bridge
// keeps a failed program's verifier log apart from libbpf's other warnings (libbpf_log.hpp). The
// probes themselves load programs: tests/bpf/loader_test.cpp runs them on the real kernel.
#include <catch2/catch.hpp>
#include <string>

#include "daemon/dataplane/kernel_probe.hpp"
#include "daemon/dataplane/libbpf_log.hpp"

namespace bw::test {
namespace {

TEST_CASE("kernel support: the variant follows what the kernel lacks, and every lack is named") {
  KernelSupport k;
  k.release = "5.10.0-46-amd64";
  CHECK(k.Best() == Variant::kCore);
  CHECK(k.Missing().size() == 4u);
  k.bpf_loop = k.xdp_load_bytes = k.ktime_coarse = true;
  CHECK(k.Best() == Variant::kCore);  // pointer arguments of global functions still missing
  REQUIRE(k.Missing().size() == 1u);
  CHECK(k.Missing()[0] == "pointer arguments of global functions");
  k.global_ptr_args = true;
  CHECK(k.Best() == Variant::kFull);
  CHECK(k.Missing().empty());
}

TEST_CASE("kernel support: the start-up line names the kernel, the variant and what is off") {
  KernelSupport old;
  old.release = "5.10.0-46-amd64";
  std::string line = DescribeDataPlane(Variant::kCore, old);
  CHECK(line.rfind("kernel 5.10.0-46-amd64: core data plane (the kernel lacks bpf_loop, ", 0) == 0);
  for (const auto& f : AllFeatures()) CHECK(line.find(f.name) != std::string::npos);

  KernelSupport now = old;
  now.release = "6.12.118+deb13-amd64";
  now.bpf_loop = now.xdp_load_bytes = now.ktime_coarse = now.global_ptr_args = true;
  CHECK(DescribeDataPlane(Variant::kFull, now) ==
        "kernel 6.12.118+deb13-amd64: full data plane, every detection on");
  // Asked for the core variant on a kernel that runs the full one: said so.
  CHECK(DescribeDataPlane(Variant::kCore, now).find("asked for") != std::string::npos);

  CHECK(FeaturesOff(BW_FEATURES_FULL) == "none");
  CHECK(FeaturesOff(BW_FEATURES_CORE) == "prelines, connect, xdp_frags");
  CHECK(VariantFeatures(Variant::kFull) == BW_FEATURES_FULL);
  CHECK(VariantFeatures(Variant::kCore) == BW_FEATURES_CORE);
}

TEST_CASE("kernel support: --bpf-variant takes auto, full, core and nothing else") {
  Variant v = Variant::kFull;
  CHECK(ParseVariant("core", &v));
  CHECK(v == Variant::kCore);
  CHECK(ParseVariant("auto", &v));
  CHECK(v == Variant::kAuto);
  CHECK_FALSE(ParseVariant("Core", &v));
  CHECK_FALSE(ParseVariant("", &v));
  CHECK(v == Variant::kAuto);  // unchanged by a refusal
}

TEST_CASE("libbpf bridge: a failed program's log is kept whole, apart from other warnings") {
  ScopedLibbpfCapture c;
  c.Add("libbpf: prog 'bw_xdp_ingress': BPF program load failed: Permission denied\n");
  c.Add("libbpf: prog 'bw_xdp_ingress': -- BEGIN PROG LOAD LOG --\n"
        "0: (b7) r0 = 0\n"
        "invalid access to packet, off=100 size=1, R1(id=0,off=100,r=0)\n"
        "processed 25 insns (limit 1000000)\n"
        "-- END PROG LOAD LOG --\n");
  c.Add("libbpf: couldn't reuse pinned map at '/sys/fs/bpf/x/bw_v4_sum': parameter mismatch\n");
  REQUIRE(c.prog_logs().size() == 1u);
  CHECK(c.prog_logs()[0].prog == "bw_xdp_ingress");
  CHECK(c.prog_logs()[0].log ==
        "0: (b7) r0 = 0\n"
        "invalid access to packet, off=100 size=1, R1(id=0,off=100,r=0)\n"
        "processed 25 insns (limit 1000000)\n");
  REQUIRE(c.warnings().size() == 2u);
  CHECK(c.warnings()[0] ==
        "libbpf: prog 'bw_xdp_ingress': BPF program load failed: Permission denied");
  CHECK(c.warnings()[1].find("couldn't reuse pinned map") != std::string::npos);
}

}  // namespace
}  // namespace bw::test
