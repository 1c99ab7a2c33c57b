// DataPlane::Load on the running kernel: what it says when the kernel's verifier refuses a
// program (the program, the kernel, the variant, the end of the verifier's log; never a hint at
// the pin root when the pin root is not the cause), which variant it picks, and a trial load that
// pins nothing (`bannerwatch check`).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>

#include "bannerwatch_reject.skel.h"
#include "daemon/dataplane/kernel_probe.hpp"
#include "daemon/dataplane/loader.hpp"
#include "lib/bpf_harness.hpp"

namespace bw::test {
namespace {

struct PrivateRoot {
  std::string path = "/sys/fs/bpf/bwtest-loader-" + std::to_string(getpid());
  PrivateRoot() { std::filesystem::remove_all(path); }
  ~PrivateRoot() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  bool Empty() const {
    std::error_code ec;
    return !std::filesystem::exists(path, ec) || std::filesystem::is_empty(path, ec);
  }
};

TEST_CASE("load: a program the verifier refuses is reported as such, with the log's last lines") {
  auto k = ProbeKernel();
  REQUIRE(k.ok());
  PrivateRoot root;
  LoadOptions lo;
  lo.pin_root = root.path;
  // The full object built with BW_TEST_REJECT: its XDP program reads a packet byte unchecked.
  // Opened as the variant this kernel runs, so only that read can be the cause.
  lo.variant = k->Best();
  size_t size = 0;
  const void* elf = bannerwatch_reject__elf_bytes(&size);
  if (lo.variant == Variant::kCore) {
    std::printf("loader: kernel %s runs the core variant; the rejected object is the full one, "
                "so the verifier names the first thing it finds\n", k->release.c_str());
  }
  lo.object_override = absl::Span<const uint8_t>(static_cast<const uint8_t*>(elf), size);
  auto dp = DataPlane::Load(lo);
  REQUIRE_FALSE(dp.ok());
  std::string msg(dp.status().message());
  std::printf("loader: the error a refused program gives:\n%s\n", msg.c_str());
  CHECK(msg.find("the kernel's BPF verifier rejected program bw_xdp_ingress") != std::string::npos);
  CHECK(msg.find("on kernel " + k->release) != std::string::npos);
  CHECK(msg.find("Last lines of the verifier log:") != std::string::npos);
  if (lo.variant == Variant::kFull)
    CHECK(msg.find("invalid access to packet") != std::string::npos);  // the verifier's own words
  CHECK(msg.find("--verbose") != std::string::npos);
  CHECK(msg.find("detach") == std::string::npos);     // the pin root is fine
  CHECK(msg.find("pin root") == std::string::npos);
  CHECK(root.Empty());  // libbpf takes back the maps it pinned for the failed load
}

TEST_CASE("load: auto picks the variant the kernel runs, and full where it lacks helpers is refused") {
  auto k = ProbeKernel();
  REQUIRE(k.ok());
  std::printf("loader: %s\n", DescribeDataPlane(k->Best(), *k).c_str());
  PrivateRoot root;
  {
    LoadOptions lo;
    lo.pin_root = root.path;
    auto dp = DataPlane::Load(lo);
    REQUIRE(dp.ok());
    CHECK((*dp)->variant() == k->Best());
    CHECK((*dp)->features() == VariantFeatures(k->Best()));
    REQUIRE((*dp)->UnpinMaps().ok());
  }
  if (k->Best() == Variant::kFull) {
    // Where the full variant loads, so does the core one (it needs a subset).
    LoadOptions lo;
    lo.pin_root = root.path;
    lo.variant = Variant::kCore;
    auto dp = DataPlane::Load(lo);
    REQUIRE(dp.ok());
    CHECK((*dp)->features() == BW_FEATURES_CORE);
    REQUIRE((*dp)->UnpinMaps().ok());
    return;
  }
  // A kernel without what the full object needs (5.10, 5.15): forcing it is a verifier error that
  // names what the kernel lacks and the way out.
  LoadOptions lo;
  lo.pin_root = root.path;
  lo.variant = Variant::kFull;
  auto dp = DataPlane::Load(lo);
  REQUIRE_FALSE(dp.ok());
  std::string msg(dp.status().message());
  std::printf("loader: the full variant on this kernel:\n%s\n", msg.c_str());
  CHECK(msg.find("verifier rejected program") != std::string::npos);
  CHECK(msg.find("This kernel lacks") != std::string::npos);
  CHECK(msg.find("the core variant") != std::string::npos);
  CHECK(msg.find("detach") == std::string::npos);
  CHECK(root.Empty());
}

TEST_CASE("load: a trial load pins nothing and reports both programs") {
  // libbpf pins LIBBPF_PIN_BY_NAME maps right under /sys/fs/bpf when no pin root is given.
  auto listing = [] {
    std::set<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator("/sys/fs/bpf"))
      names.insert(e.path().filename().string());
    return names;
  };
  const std::set<std::string> before = listing();
  LoadOptions lo;
  lo.pin_root = "";
  lo.variant = TestVariant();
  auto dp = DataPlane::Load(lo);
  REQUIRE(dp.ok());
  CHECK_FALSE((*dp)->adopted());
  auto progs = (*dp)->Programs();
  REQUIRE(progs.size() == 2u);
  CHECK(progs[0].name == "bw_xdp_ingress");
  CHECK(progs[1].name == "bw_tc_egress");
  for (const ProgramInfo& p : progs) {
    std::printf("loader: %s %u instructions processed (0: not reported by this kernel), %u bytes "
                "translated\n", p.name.c_str(), p.verified_insns, p.xlated_bytes);
    CHECK(p.xlated_bytes > 0);
  }
  CHECK(listing() == before);
}

}  // namespace
}  // namespace bw::test
