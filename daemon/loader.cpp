#include "daemon/loader.hpp"

#include <algorithm>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "bannerwatch.skel.h"
#include <bpf/bpf.h>

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

namespace bw {

absl::Status EnsurePinRoot(const std::string& dir) {
  std::filesystem::path p(dir);
  std::filesystem::path parent = p.parent_path();
  struct statfs fs {};
  if (statfs(parent.empty() ? "/" : parent.c_str(), &fs) != 0)
    return ErrnoStatus(parent.string(), "statfs", errno);
  if (static_cast<unsigned long>(fs.f_type) != BPF_FS_MAGIC)
    return absl::FailedPreconditionError(
        absl::StrCat(parent.string(), " is not a bpffs mount (mount -t bpf bpf /sys/fs/bpf)"));
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoStatus(dir, "mkdir", errno);
  if (chmod(dir.c_str(), 0700) != 0) return ErrnoStatus(dir, "chmod", errno);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DataPlane>> DataPlane::Load(const LoadOptions& opts) {
  absl::Status st = EnsurePinRoot(opts.pin_root);
  if (!st.ok()) return st;

  std::unique_ptr<DataPlane> dp(new DataPlane());
  dp->pin_root_ = opts.pin_root;
  dp->adopted_ = access(absl::StrCat(opts.pin_root, "/", BW_MAP_WATCH_V4).c_str(), F_OK) == 0;

  LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = dp->pin_root_.c_str());
  dp->skel_ = bannerwatch__open_opts(&oo);
  if (!dp->skel_) return ErrnoStatus("bannerwatch.bpf.o", "bannerwatch__open_opts", errno);

  struct {
    bpf_map* map;
    uint32_t n;
  } sizes[] = {
      {dp->skel_->maps.bw_watch_v4, opts.v4_entries},
      {dp->skel_->maps.bw_watch_v6, opts.v6_entries},
      {dp->skel_->maps.bw_flows, opts.flows},
      {dp->skel_->maps.bw_events, opts.events_bytes},
  };
  for (const auto& s : sizes) {
    uint32_t n = s.n;
    // Adopting: a pinned map keeps the size it was made with (libbpf reuses only an identical
    // map); a policy that needs more is refused at apply time, not here.
    std::string pin = absl::StrCat(dp->pin_root_, "/", bpf_map__name(s.map));
    if (int pfd = bpf_obj_get(pin.c_str()); pfd >= 0) {
      bpf_map_info info{};
      uint32_t len = sizeof(info);
      if (bpf_obj_get_info_by_fd(pfd, &info, &len) == 0) n = info.max_entries;
      close(pfd);
    }
    if (int err = bpf_map__set_max_entries(s.map, n); err != 0)
      return ErrnoStatus(bpf_map__name(s.map), "bpf_map__set_max_entries", -err);
  }

  if (int err = bannerwatch__load(dp->skel_); err != 0) {
    return ErrnoStatus(
        "bannerwatch.bpf.o",
        absl::StrCat("bannerwatch__load (pin root ", dp->pin_root_,
                     "; maps pinned there with another size or layout cannot be reused: run "
                     "`bannerwatch detach` first)"),
        -err);
  }

  // A new config element is all zero: banners off, no interval. Give it the defaults once.
  if (!dp->adopted_) {
    auto maps = dp->Maps();
    if (!maps.ok()) return maps.status();
    bw_config cfg{};
    cfg.banner_action[BW_SIDE_SERVER] = BW_BANNER_ALERT;
    cfg.banner_action[BW_SIDE_CLIENT] = BW_BANNER_ALERT;
    cfg.block_event_interval_ns = BW_BLOCK_EVENT_INTERVAL_NS_DEFAULT;
    cfg.block_event_budget = BW_BLOCK_EVENT_BUDGET_DEFAULT;
    st = maps->WriteConfig(cfg);
    if (!st.ok()) return st;
    st = maps->SetWatchedPorts({443});
    if (!st.ok()) return st;
  }
  return dp;
}

DataPlane::~DataPlane() {
  if (skel_) bannerwatch__destroy(skel_);
}

int DataPlane::xdp_fd() const { return bpf_program__fd(skel_->progs.bw_xdp_ingress); }
int DataPlane::tc_fd() const { return bpf_program__fd(skel_->progs.bw_tc_egress); }
int DataPlane::events_fd() const { return bpf_map__fd(skel_->maps.bw_events); }
uint32_t DataPlane::v4_capacity() const { return bpf_map__max_entries(skel_->maps.bw_watch_v4); }
uint32_t DataPlane::v6_capacity() const { return bpf_map__max_entries(skel_->maps.bw_watch_v6); }

absl::StatusOr<MapSet> DataPlane::Maps() const {
  MapSet s;
  // The skeleton keeps its own fds; MapSet owns duplicates.
  auto dup_raw = [](bpf_map* m) -> absl::StatusOr<Fd> {
    int f = fcntl(bpf_map__fd(m), F_DUPFD_CLOEXEC, 0);
    if (f < 0) return ErrnoStatus(bpf_map__name(m), "fcntl(F_DUPFD_CLOEXEC)", errno);
    return Fd(f);
  };
#define BW_DUP(field, map)                                       \
  {                                                              \
    auto fd = dup_raw(skel_->maps.map);                          \
    if (!fd.ok()) return fd.status();                            \
    s.field = decltype(s.field)(std::move(*fd), #map);           \
  }
  BW_DUP(watch_v4, bw_watch_v4)
  BW_DUP(watch_v6, bw_watch_v6)
  BW_DUP(config, bw_config)
  BW_DUP(ports, bw_ports)
  BW_DUP(flows, bw_flows)
  BW_DUP(counters, bw_counters)
  BW_DUP(block_rl, bw_block_rl)
  BW_DUP(block_bud, bw_block_bud)
  BW_DUP(v4_pre, bw_v4_pre)
  BW_DUP(v4_sum, bw_v4_sum)
  BW_DUP(v4_host, bw_v4_host)
  BW_DUP(v4_class, bw_v4_class)
  BW_DUP(v4_cls_cnt, bw_v4_cls_cnt)
#undef BW_DUP
  auto ev = dup_raw(skel_->maps.bw_events);
  if (!ev.ok()) return ev.status();
  s.events = std::move(*ev);
  return s;
}

absl::Status DataPlane::UnpinMaps() {
  bpf_map* m;
  bpf_object__for_each_map(m, skel_->obj) {
    const char* path = bpf_map__pin_path(m);
    if (!path || access(path, F_OK) != 0) continue;
    if (int err = bpf_map__unpin(m, nullptr); err != 0)
      return ErrnoStatus(bpf_map__name(m), "bpf_map__unpin", -err);
  }
  if (rmdir(pin_root_.c_str()) != 0 && errno != ENOENT && errno != ENOTEMPTY)
    return ErrnoStatus(pin_root_, "rmdir", errno);
  return absl::OkStatus();
}

}  // namespace bw
