// Verifier statistics for each program of each object variant this kernel runs (bannerwatch_abi.h,
// "object variants"): how many instructions the verifier processed (its cost and its distance
// from the 1 M limit), printed for the record and bounded here so that a change that blows up
// verification is caught. The VM suite (tests/vm) runs this on every supported kernel; the lines
// it prints are the figures the README's kernel table quotes.
#include <bpf/libbpf.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "bannerwatch.skel.h"
#include "daemon/dataplane/kernel_probe.hpp"
#include "daemon/dataplane/loader.hpp"

namespace bw::test {
namespace {

// Loads variant v under a private pin root with level-4 (statistics) logs; prints and checks them.
void LoadAndMeasure(Variant v, const KernelSupport& k) {
  std::string root = "/sys/fs/bpf/bwtest-verifier-" + std::to_string(getpid());
  REQUIRE(EnsurePinRoot(root).ok());
  LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = root.c_str());
  bannerwatch* skel = OpenVariant(v, {}, &oo);
  REQUIRE(skel != nullptr);
  std::vector<char> xdp_log(1 << 20), tc_log(1 << 20);
  // Level 4: statistics only ("processed N insns ... peak_states ...").
  bpf_program__set_log_buf(skel->progs.bw_xdp_ingress, xdp_log.data(), xdp_log.size());
  bpf_program__set_log_level(skel->progs.bw_xdp_ingress, 4);
  bpf_program__set_log_buf(skel->progs.bw_tc_egress, tc_log.data(), tc_log.size());
  bpf_program__set_log_level(skel->progs.bw_tc_egress, 4);
  int err = bannerwatch__load(skel);
  struct {
    const char* name;
    bpf_program* prog;
    const char* log;
  } progs[] = {{"bw_xdp_ingress", skel->progs.bw_xdp_ingress, xdp_log.data()},
               {"bw_tc_egress", skel->progs.bw_tc_egress, tc_log.data()}};
  for (const auto& p : progs) {
    std::string log(p.log);
    if (err != 0) {
      std::printf("verifier: kernel %s, %s variant, %s NOT loaded:\n%s\n", k.release.c_str(),
                  VariantName(v), p.name, log.c_str());
      continue;
    }
    std::smatch sm;
    REQUIRE(std::regex_search(log, sm, std::regex("processed (\\d+) insns")));
    long processed = std::stol(sm[1]);
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    REQUIRE(bpf_obj_get_info_by_fd(bpf_program__fd(p.prog), &info, &len) == 0);
    std::printf("verifier: kernel %s, %s variant, %-15s processed %ld insns; %zu BPF insns in "
                "the object, %u bytes translated, %u bytes JITed\n  %s",
                k.release.c_str(), VariantName(v), p.name, processed,
                bpf_program__insn_cnt(p.prog), info.xlated_prog_len, info.jited_prog_len,
                log.c_str());
    CHECK(processed > 100);
    // Under a third of the verifier's 1 M limit: room to grow, and a blow-up is caught. Older
    // verifiers prune less (6.1 processes about 1.6 times what 6.18 does for the same object).
    CHECK(processed < 330000);
  }
  bannerwatch__destroy(skel);
  std::filesystem::remove_all(root);
  REQUIRE(err == 0);
}

TEST_CASE("verifier: the programs of every variant this kernel runs load, with the counts printed") {
  auto k = ProbeKernel();
  REQUIRE(k.ok());
  std::printf("verifier: %s\n", DescribeDataPlane(k->Best(), *k).c_str());
  // The core variant needs nothing the full one does not, so it loads wherever that one does.
  LoadAndMeasure(Variant::kCore, *k);
  if (k->Best() == Variant::kFull) LoadAndMeasure(Variant::kFull, *k);
}

}  // namespace
}  // namespace bw::test
