#include "bench/lib/bpfbench.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "bwbench.skel.h"
#include "maps/maps.hpp"

namespace bw::bench {

double MonotonicSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

absl::StatusOr<std::unique_ptr<BenchProgs>> BenchProgs::Load() {
  std::unique_ptr<BenchProgs> p(new BenchProgs());
  p->skel_ = bwbench__open_and_load();
  if (!p->skel_) return ErrnoStatus("bwbench.bpf.o", "bwbench__open_and_load", errno);
  return p;
}

BenchProgs::~BenchProgs() {
  if (skel_) bwbench__destroy(skel_);
}

absl::Status BenchProgs::SetTargets(int base_prog_fd, int bw_prog_fd) {
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.bwb_tgt_base), &zero, &base_prog_fd, 0) != 0)
    return ErrnoStatus("bwb_tgt_base", "bpf_map_update_elem", errno);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.bwb_tgt_bw), &zero, &bw_prog_fd, 0) != 0)
    return ErrnoStatus("bwb_tgt_bw", "bpf_map_update_elem", errno);
  return absl::OkStatus();
}

absl::Status BenchProgs::SetTcTargets(int base_prog_fd, int bw_prog_fd) {
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.bwb_tgt_tc_base), &zero, &base_prog_fd, 0) != 0)
    return ErrnoStatus("bwb_tgt_tc_base", "bpf_map_update_elem", errno);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.bwb_tgt_tc_bw), &zero, &bw_prog_fd, 0) != 0)
    return ErrnoStatus("bwb_tgt_tc_bw", "bpf_map_update_elem", errno);
  return absl::OkStatus();
}

absl::Status BenchProgs::SetTraffic(const Traffic& t) {
  size_t n = t.rows.size();
  if (n == 0 || n > kAddrsMax || (n & (n - 1)) != 0)
    return absl::InvalidArgumentError(
        absl::StrCat(t.name, ": ", n, " rewrite rows; want a power of two <= ", kAddrsMax));
  static_assert(sizeof(skel_->bss->bwb_addrs[0]) == sizeof(AddrRow));
  std::memcpy(skel_->bss->bwb_addrs, t.rows.data(), n * sizeof(AddrRow));
  skel_->bss->bwb_mask = static_cast<uint32_t>(n - 1);
  skel_->bss->bwb_addr_off = t.addr_off;
  skel_->bss->bwb_l4_csum_off = t.l4_csum_off;
  skel_->bss->bwb_dport_off = t.dport_off;
  Rewind();
  return absl::OkStatus();
}

void BenchProgs::Rewind() { skel_->bss->bwb_next = 0; }
uint64_t BenchProgs::BadFrames() const { return skel_->bss->bwb_bad; }
int BenchProgs::wrap_base_fd() const { return bpf_program__fd(skel_->progs.bwb_wrap_base); }
int BenchProgs::wrap_bw_fd() const { return bpf_program__fd(skel_->progs.bwb_wrap_bw); }
int BenchProgs::gen_fd() const { return bpf_program__fd(skel_->progs.bwb_gen); }
int BenchProgs::tc_wrap_base_fd() const { return bpf_program__fd(skel_->progs.bwb_tc_wrap_base); }
int BenchProgs::tc_wrap_bw_fd() const { return bpf_program__fd(skel_->progs.bwb_tc_wrap_bw); }

namespace {
absl::StatusOr<RunOut> Run(int prog_fd, const test::Bytes& frame, uint32_t repeat, uint32_t flags,
                           int ifindex) {
  xdp_md ctx{};
  ctx.data_end = static_cast<uint32_t>(frame.size());  // the kernel wants data_end == size
  ctx.ingress_ifindex = static_cast<uint32_t>(ifindex);
  LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()), .ctx_in = &ctx,
              .ctx_size_in = sizeof(ctx), .repeat = static_cast<int>(repeat), .flags = flags);
  double t0 = MonotonicSeconds();
  int err = bpf_prog_test_run_opts(prog_fd, &o);
  double t1 = MonotonicSeconds();
  if (err != 0) return ErrnoStatus("xdp", "bpf_prog_test_run_opts", errno);
  return RunOut{o.retval, t1 - t0, o.duration};
}
}  // namespace

double NsPerRun(const RunOut& r, uint32_t repeat, bool* preempted) {
  double wall = r.seconds * 1e9 / static_cast<double>(repeat);
  *preempted = wall - static_cast<double>(r.kernel_ns) > 1.25;
  return *preempted ? r.kernel_ns + 0.5 : wall;
}

absl::StatusOr<RunOut> RunXdp(int prog_fd, const test::Bytes& frame, uint32_t repeat) {
  return Run(prog_fd, frame, repeat, 0, 1 /* lo: events name a real interface */);
}

absl::StatusOr<RunOut> RunTc(int prog_fd, const test::Bytes& frame, uint32_t repeat) {
  // No context: the kernel puts the skb on the namespace's loopback device (ifindex 1, as RunXdp's
  // events name) and, for SCHED_CLS, leaves the Ethernet header in front of the data.
  LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()),
              .repeat = static_cast<int>(repeat));
  double t0 = MonotonicSeconds();
  int err = bpf_prog_test_run_opts(prog_fd, &o);
  double t1 = MonotonicSeconds();
  if (err != 0) return ErrnoStatus("tc", "bpf_prog_test_run_opts", errno);
  return RunOut{o.retval, t1 - t0, o.duration};
}

absl::StatusOr<RunOut> RunLive(int prog_fd, const test::Bytes& frame, uint32_t repeat,
                               int ifindex) {
  return Run(prog_fd, frame, repeat, BPF_F_TEST_XDP_LIVE_FRAMES, ifindex);
}

namespace {

// The maps both versions must share for an A/B comparison to mean anything: the lists, the
// pre-filter, the configuration and ports, the ring buffer.
constexpr absl::string_view kShared[] = {
    BW_MAP_WATCH_V4, BW_MAP_WATCH_V6, BW_MAP_V4_PRE, BW_MAP_V4_SUM, BW_MAP_V4_HOST,
    BW_MAP_V4_CLASS, BW_MAP_CONFIG,   BW_MAP_PORTS,  BW_MAP_EVENTS};

// Whether `map` (opened, not loaded) has a pin at its pin path with the same definition.
bool SameAsPinned(bpf_map* map) {
  int fd = bpf_obj_get(bpf_map__pin_path(map));
  if (fd < 0) return false;
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  bool same = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
              info.type == static_cast<uint32_t>(bpf_map__type(map)) &&
              info.key_size == bpf_map__key_size(map) &&
              info.value_size == bpf_map__value_size(map) &&
              info.max_entries == bpf_map__max_entries(map) &&
              info.map_flags == bpf_map__map_flags(map);
  close(fd);
  return same;
}

}  // namespace

absl::StatusOr<std::unique_ptr<OtherDataPlane>> OtherDataPlane::Load(const std::string& obj,
                                                                    const std::string& pin_root) {
  std::unique_ptr<OtherDataPlane> o(new OtherDataPlane());
  LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = pin_root.c_str());
  o->obj_ = bpf_object__open_file(obj.c_str(), &oo);
  if (!o->obj_) return ErrnoStatus(obj, "bpf_object__open_file", errno);
  bpf_map* map;
  bpf_object__for_each_map(map, o->obj_) {
    if (!bpf_map__pin_path(map)) continue;  // not pinned: its own anyway (.rodata, .bss)
    std::string name = bpf_map__name(map);
    if (SameAsPinned(map)) continue;  // libbpf reuses the pin: this build's map
    // The other build's definition differs (or this build has no such map): it keeps a map of
    // its own, never pinned. That is right for working state (counters, scratch, per-flow
    // tracking: each version keeps its own) and wrong for what the comparison must share.
    if (std::find(std::begin(kShared), std::end(kShared), name) != std::end(kShared))
      return absl::FailedPreconditionError(
          absl::StrCat(obj, ": its ", name, " differs from this build's: the two versions would "
                       "not see the same lists and configuration"));
    if (bpf_map__set_pin_path(map, nullptr) != 0)
      return ErrnoStatus(name, "bpf_map__set_pin_path", errno);
    o->own_maps_.push_back(name);
  }
  bpf_program* prog;
  bpf_object__for_each_program(prog, o->obj_) {
    std::string name = bpf_program__name(prog);
    bpf_program__set_autoload(prog, name == "bw_xdp_ingress" || name == "bw_tc_egress");
  }
  if (bpf_object__load(o->obj_) != 0) return ErrnoStatus(obj, "bpf_object__load", errno);
  for (auto [name, fd] : {std::pair{"bw_xdp_ingress", &o->xdp_fd_},
                          std::pair{"bw_tc_egress", &o->tc_fd_}}) {
    prog = bpf_object__find_program_by_name(o->obj_, name);
    if (!prog) return absl::NotFoundError(absl::StrCat(obj, ": no ", name));
    *fd = bpf_program__fd(prog);
  }
  return o;
}

OtherDataPlane::~OtherDataPlane() {
  if (obj_) bpf_object__close(obj_);
}

absl::Status LoadFreshDataPlane(const std::string& pin_root, std::unique_ptr<DataPlane>* dp,
                                MapSet* maps) {
  LoadOptions lo;
  lo.pin_root = pin_root;
  auto d = DataPlane::Load(lo);
  if (!d.ok()) return d.status();
  *dp = std::move(*d);
  if ((*dp)->adopted())
    return absl::FailedPreconditionError(
        absl::StrCat(pin_root, " already held maps: a stale benchmark? remove it and retry"));
  auto m = (*dp)->Maps();
  if (!m.ok()) return m.status();
  *maps = std::move(*m);
  return absl::OkStatus();
}

}  // namespace bw::bench
