#include "daemon/dataplane/loader.hpp"

#include <algorithm>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bannerwatch.skel.h"
#include "bannerwatch_core.skel.h"
#include "daemon/dataplane/libbpf_log.hpp"
#include <bpf/bpf.h>

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

namespace bw {

namespace {

const char* ObjectName(Variant v) {
  return v == Variant::kCore ? "bannerwatch_core.bpf.o" : "bannerwatch.bpf.o";
}

}  // namespace

// Both variants have the same maps, programs and globals (bannerwatch_abi.h), so the full object's
// skeleton opens either: only the ELF image it hands to libbpf differs.
bannerwatch* OpenVariant(Variant v, absl::Span<const uint8_t> override_elf,
                         const bpf_object_open_opts* oo) {
  auto* obj = static_cast<bannerwatch*>(calloc(1, sizeof(bannerwatch)));
  if (!obj) {
    errno = ENOMEM;
    return nullptr;
  }
  int err = bannerwatch__create_skeleton(obj);
  if (err == 0) {
    if (!override_elf.empty()) {
      obj->skeleton->data = override_elf.data();
      obj->skeleton->data_sz = override_elf.size();
    } else if (v == Variant::kCore) {
      obj->skeleton->data = bannerwatch_core__elf_bytes(&obj->skeleton->data_sz);
    }
    err = bpf_object__open_skeleton(obj->skeleton, oo);
  }
  if (err != 0) {
    bannerwatch__destroy(obj);
    errno = -err;
    return nullptr;
  }
  return obj;
}

namespace {

// The last `n` non-empty lines of a verifier log, each indented.
std::string LogTail(const std::string& log, size_t n) {
  std::vector<std::string> lines = absl::StrSplit(log, '\n', absl::SkipEmpty());
  size_t from = lines.size() > n ? lines.size() - n : 0;
  std::string out;
  for (size_t i = from; i < lines.size(); ++i) absl::StrAppend(&out, "\n    ", lines[i]);
  return out;
}

// Why bannerwatch__load failed, from what libbpf said while it ran: the verifier refused a program
// (its log), a pinned map did not fit (the pin root), or something else (libbpf's own words).
absl::Status LoadError(const DataPlane& dp, const ScopedLibbpfCapture& capture, int err) {
  const char* object = ObjectName(dp.variant());
  if (!capture.prog_logs().empty()) {
    const auto& pl = capture.prog_logs().front();
    std::string msg = absl::StrCat(
        "the kernel's BPF verifier rejected program ", pl.prog, " of ", object, " (",
        VariantName(dp.variant()), " variant) on kernel ", dp.kernel().release, ": ",
        std::strerror(err), ". Last lines of the verifier log:", LogTail(pl.log, 12));
    std::vector<std::string> missing = dp.kernel().Missing();
    if (dp.variant() == Variant::kFull && !missing.empty())
      absl::StrAppend(&msg, "\n  This kernel lacks ", absl::StrJoin(missing, ", "),
                      ", which the full variant needs: the core variant (--bpf-variant auto or "
                      "core) loads here.");
    absl::StrAppend(&msg, LibbpfLogVerbose()
                              ? "\n  (the whole log is above)"
                              : "\n  The whole log: run again with --verbose.");
    return absl::FailedPreconditionError(msg);
  }
  for (const std::string& w : capture.warnings()) {
    if (w.find("couldn't reuse pinned map") != std::string::npos)
      return absl::FailedPreconditionError(absl::StrCat(
          object, ": ", w, " (pin root ", dp.pin_root(),
          "): maps pinned there by a build with another size or layout cannot be reused; run "
          "`bannerwatch detach` first"));
  }
  // Before 5.11 (no memcg accounting of BPF memory; bpf_ktime_get_coarse_ns came with it, and
  // libbpf probes it so too) maps and programs are charged to RLIMIT_MEMLOCK: a process that may
  // not raise it (no CAP_SYS_RESOURCE) gets EPERM from map creation with every capability BPF
  // itself needs.
  rlimit ml{};
  if (err == EPERM && !dp.kernel().ktime_coarse && getrlimit(RLIMIT_MEMLOCK, &ml) == 0 &&
      ml.rlim_cur != RLIM_INFINITY)
    return absl::FailedPreconditionError(absl::StrCat(
        object, ": creating the maps failed (", std::strerror(err), "): kernel ",
        dp.kernel().release, " charges BPF maps to RLIMIT_MEMLOCK (kernels before 5.11), which is ",
        ml.rlim_cur / 1024, " KiB here and cannot be raised without CAP_SYS_RESOURCE. Start it "
        "with the limit raised: LimitMEMLOCK=infinity in its systemd unit (the packaged one has "
        "it), `prlimit --memlock=unlimited -- bannerwatch run ...`, or `ulimit -l unlimited` as "
        "root before dropping privileges"));
  std::string said = absl::StrJoin(capture.warnings(), "; ");
  return ErrnoStatus(object, absl::StrCat("bannerwatch__load", said.empty() ? "" : " (libbpf: ",
                                          said, said.empty() ? "" : ")"),
                     err);
}

}  // namespace

std::vector<std::string> DataPlaneMapNames() {
  std::vector<std::string> names;
  bannerwatch* skel = bannerwatch__open();
  if (!skel) return names;
  bpf_map* m;
  bpf_object__for_each_map(m, skel->obj) names.push_back(bpf_map__name(m));
  bannerwatch__destroy(skel);
  return names;
}

absl::Status EnsurePinRoot(const std::string& dir, bool* created) {
  if (created) *created = false;
  std::filesystem::path p(dir);
  std::filesystem::path parent = p.parent_path();
  struct statfs fs {};
  if (statfs(parent.empty() ? "/" : parent.c_str(), &fs) != 0)
    return ErrnoStatus(parent.string(), "statfs", errno);
  if (static_cast<unsigned long>(fs.f_type) != BPF_FS_MAGIC)
    return absl::FailedPreconditionError(
        absl::StrCat(parent.string(), " is not a bpffs mount (mount -t bpf bpf /sys/fs/bpf)"));
  // mkdir's mode is masked by the umask: chmod what was made here; a directory that exists is
  // the operator's (or an earlier run's) and stays as it is.
  if (mkdir(dir.c_str(), 0700) == 0) {
    if (created) *created = true;
    if (chmod(dir.c_str(), 0700) != 0) return ErrnoStatus(dir, "chmod", errno);
  } else if (errno != EEXIST) {
    return ErrnoStatus(dir, "mkdir", errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DataPlane>> DataPlane::Load(const LoadOptions& opts) {
  const bool pinned = !opts.pin_root.empty();
  absl::Status st = pinned ? EnsurePinRoot(opts.pin_root) : absl::OkStatus();
  if (!st.ok()) return st;

  std::unique_ptr<DataPlane> dp(new DataPlane());
  dp->pin_root_ = opts.pin_root;
  dp->adopted_ =
      pinned && access(absl::StrCat(opts.pin_root, "/", BW_MAP_WATCH_V4).c_str(), F_OK) == 0;

  auto kernel = ProbeKernel();
  if (!kernel.ok()) return kernel.status();
  dp->kernel_ = *kernel;
  dp->variant_ = opts.variant == Variant::kAuto ? kernel->Best() : opts.variant;

  LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = pinned ? dp->pin_root_.c_str() : nullptr);
  dp->skel_ = OpenVariant(dp->variant_, opts.object_override, &oo);
  if (!dp->skel_) return ErrnoStatus(ObjectName(dp->variant_), "bpf_object__open_skeleton", errno);
  if (!pinned) {
    // A trial load (`check`): maps of its own, nothing pinned, nothing adopted.
    bpf_map* m;
    bpf_object__for_each_map(m, dp->skel_->obj) bpf_map__set_pin_path(m, nullptr);
  }

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
    if (int pfd = pinned ? bpf_obj_get(pin.c_str()) : -1; pfd >= 0) {
      bpf_map_info info{};
      uint32_t len = sizeof(info);
      if (bpf_obj_get_info_by_fd(pfd, &info, &len) == 0) n = info.max_entries;
      close(pfd);
    }
    if (int err = bpf_map__set_max_entries(s.map, n); err != 0)
      return ErrnoStatus(bpf_map__name(s.map), "bpf_map__set_max_entries", -err);
  }

  {
    ScopedLibbpfCapture capture;
    if (int err = bannerwatch__load(dp->skel_); err != 0) return LoadError(*dp, capture, -err);
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

ProgramInfo InfoOfProgram(const bpf_program* p) {
  ProgramInfo pi;
  pi.name = bpf_program__name(p);
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len) == 0) {
    // verified_insns lies past what kernels before 5.16 fill in: it stays 0 there.
    if (len >= offsetof(bpf_prog_info, verified_insns) + sizeof(info.verified_insns))
      pi.verified_insns = info.verified_insns;
    pi.xlated_bytes = info.xlated_prog_len;
    pi.jited_bytes = info.jited_prog_len;
  }
  return pi;
}

std::vector<ProgramInfo> DataPlane::Programs() const {
  return {InfoOfProgram(skel_->progs.bw_xdp_ingress), InfoOfProgram(skel_->progs.bw_tc_egress)};
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
#define BW_DUP(field, type, ident, abi_name)     \
  {                                               \
    auto fd = dup_raw(skel_->maps.ident);         \
    if (!fd.ok()) return fd.status();             \
    s.field = type(std::move(*fd), abi_name);     \
  }
  BW_MAPSET_MAPS(BW_DUP)
#undef BW_DUP
  return s;
}

absl::Status DataPlane::UnpinMaps() {
  bpf_map* m;
  bpf_object__for_each_map(m, skel_->obj) {
    const char* path = bpf_map__pin_path(m);
    // stat, not access(): access() checks with the real uid and, for a non-root one, without
    // the capabilities, so a daemon run as its own user with CAP_DAC_READ_SEARCH (the unit: systemd
    // mounts /sys/fs/bpf 0700) saw no pin and left every map pinned.
    struct stat st;
    if (!path || ::stat(path, &st) != 0) continue;
    if (int err = bpf_map__unpin(m, nullptr); err != 0)
      return ErrnoStatus(bpf_map__name(m), "bpf_map__unpin", -err);
  }
  // EBUSY, EROFS: the pin root is a mount point in the daemon's own namespace (the unit's
  // ReadWritePaths= bind mount); it stays, empty, for the next start (the package's postrm
  // removes it at purge).
  if (rmdir(pin_root_.c_str()) != 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EBUSY &&
      errno != EROFS)
    return ErrnoStatus(pin_root_, "rmdir", errno);
  return absl::OkStatus();
}

}  // namespace bw
