#include "lib/bpf_harness.hpp"

#include <bpf/bpf.h>
#include <sched.h>
#include <signal.h>

#include <filesystem>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "daemon/dataplane/prog_test_run.hpp"

namespace bw::test {
namespace {
std::atomic<int> g_seq{0};

int OnEvent(void* ctx, void* data, size_t size) {
  auto* out = static_cast<std::vector<bw_event>*>(ctx);
  REQUIRE(size == sizeof(bw_event));
  bw_event ev;
  std::memcpy(&ev, data, sizeof(ev));
  out->push_back(ev);
  return 0;
}
}  // namespace

Variant TestVariant() {
  const char* v = std::getenv("BW_TEST_VARIANT");
  Variant out = Variant::kAuto;
  if (v && *v && !ParseVariant(v, &out))
    FAIL("BW_TEST_VARIANT='" << v << "': want auto, full or core");
  return out;
}

// Pins left by a test process that died (a crash skips destructors) are removed by the next one.
static void RemoveStalePins() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/fs/bpf", ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("bwtest-", 0) != 0) continue;
    int pid = std::atoi(name.c_str() + 7);
    if (pid <= 0 || pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::filesystem::remove_all(e.path(), ec);
  }
}

BpfHarness::BpfHarness(LoadOptions opts) {
  RemoveStalePins();
  // Per-CPU state (counters, the block-event limiter) must see every run on one CPU.
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
  sched_setaffinity(0, sizeof(one), &one);
  pin_root_ = absl::StrCat("/sys/fs/bpf/bwtest-", getpid(), "-", g_seq++);
  opts.pin_root = pin_root_;
  if (opts.variant == Variant::kAuto) opts.variant = TestVariant();
  auto dp = DataPlane::Load(opts);
  if (!dp.ok()) FAIL("DataPlane::Load: " << dp.status());
  dp_ = std::move(*dp);
  auto m = dp_->Maps();
  REQUIRE(m.ok());
  maps_ = std::move(*m);
  rb_ = ring_buffer__new(dp_->events_fd(), OnEvent, &pending_, nullptr);
  REQUIRE(rb_ != nullptr);
}

BpfHarness::~BpfHarness() {
  if (rb_) ring_buffer__free(rb_);
  if (std::getenv("BW_KEEP_PINS")) {
    std::fprintf(stderr, "BW_KEEP_PINS: maps left pinned under %s\n", pin_root_.c_str());
    return;
  }
  if (dp_) {
    absl::Status st = dp_->UnpinMaps();
    if (!st.ok()) std::fprintf(stderr, "unpin %s: %s\n", pin_root_.c_str(), st.ToString().c_str());
  }
}

uint32_t BpfHarness::Run(int prog_fd, const Bytes& frame, bool xdp) {
  auto r = RunFrame(prog_fd, xdp, frame);
  if (!r.ok()) FAIL(r.status().ToString());
  return *r;
}

uint32_t BpfHarness::RunXdpNoDrain(const Bytes& frame) { return Run(dp_->xdp_fd(), frame, true); }

std::vector<bw_event> BpfHarness::Drain() {
  ring_buffer__consume(rb_);
  std::vector<bw_event> out;
  out.swap(pending_);
  // As the daemon's reader does: events the pre-filter decided get their entry from the trie.
  for (bw_event& ev : out) CompleteEvent(maps_.watch_v4, &ev);
  return out;
}

RunResult BpfHarness::RunXdp(const Bytes& frame) {
  RunResult r;
  r.retval = Run(dp_->xdp_fd(), frame, true);
  r.events = Drain();
  return r;
}

RunResult BpfHarness::RunTc(const Bytes& frame) {
  RunResult r;
  r.retval = Run(dp_->tc_fd(), frame, false);
  r.events = Drain();
  return r;
}

void BpfHarness::Reset() {
  REQUIRE(MapSet::Clear(maps_.watch_v4).ok());
  REQUIRE(MapSet::Clear(maps_.watch_v6).ok());
  REQUIRE(MapSet::Clear(maps_.flows).ok());
  for (const char* name : {BW_MAP_STREAM, BW_MAP_PARTIAL, BW_MAP_TUNNELS, BW_MAP_FRAGS}) {
    auto fd = OpenPinnedObject(pin_root_ + "/" + name);
    REQUIRE(fd.ok());
    uint8_t k[64], next[64];  // any of their keys
    while (bpf_map_get_next_key(fd->get(), nullptr, next) == 0) {
      std::memcpy(k, next, sizeof(k));
      bpf_map_delete_elem(fd->get(), k);
    }
  }
  for (uint32_t i = 0; i < BW_BLOCK_RL_SLOTS; ++i) REQUIRE(maps_.block_rl.Zero(i).ok());
  REQUIRE(maps_.block_bud.Zero(0).ok());
  REQUIRE(maps_.ZeroCounters().ok());
  SetBannerActions(BW_BANNER_ALERT, BW_BANNER_ALERT);
  SetPorts({443});
  Drain();
}

void BpfHarness::SetBannerActions(bw_banner_action server, bw_banner_action client,
                                  uint8_t flags) {
  bw_config cfg{};
  cfg.flags = flags;
  cfg.banner_action[BW_SIDE_SERVER] = server;
  cfg.banner_action[BW_SIDE_CLIENT] = client;
  cfg.block_event_interval_ns = BW_BLOCK_EVENT_INTERVAL_NS_DEFAULT;
  REQUIRE(maps_.WriteConfig(cfg).ok());
}

void BpfHarness::SetPorts(const std::vector<uint16_t>& ports, const std::vector<uint16_t>& proxy) {
  REQUIRE(maps_.SetWatchedPorts(ports, proxy).ok());
}

void BpfHarness::AddPrefix(const std::string& cidr, uint8_t action, uint32_t list_id,
                           uint32_t entry_ref) {
  std::vector<std::string> parts = absl::StrSplit(cidr, '/');
  REQUIRE(parts.size() == 2);
  Addr a = Addr::Parse(parts[0]);
  uint32_t len = 0;
  REQUIRE(absl::SimpleAtoi(parts[1], &len));
  bw_list_value v{};
  v.list_id = list_id;
  v.entry_ref = entry_ref;
  v.action = action;
  v.prefixlen = static_cast<uint8_t>(len);
  if (a.family == 4) {
    bw_lpm_v4_key k{};
    k.prefixlen = len;
    std::memcpy(k.addr, a.b, 4);
    absl::Status st = maps_.watch_v4.Update(k, v);
    INFO(st);
    REQUIRE(st.ok());
  } else {
    bw_lpm_v6_key k{};
    k.prefixlen = len;
    std::memcpy(k.addr, a.b, 16);
    absl::Status st = maps_.watch_v6.Update(k, v);
    INFO(st);
    REQUIRE(st.ok());
  }
}

CounterArray BpfHarness::Counters(bw_direction dir) {
  auto c = maps_.ReadCounters(dir);
  REQUIRE(c.ok());
  return *c;
}

}  // namespace bw::test
