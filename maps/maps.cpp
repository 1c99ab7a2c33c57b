// maps.cpp — non-template parts of the typed map wrappers.
#include "maps/maps.hpp"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>
#include <optional>

#include "absl/strings/str_cat.h"

namespace bw {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<Fd> Fd::Dup() const {
  int f = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
  if (f < 0) return ErrnoStatus("fd", "fcntl(F_DUPFD_CLOEXEC)", errno);
  return Fd(f);
}

absl::Status ErrnoStatus(absl::string_view name, absl::string_view what, int err) {
  std::string msg = absl::StrCat(what, "(", name, "): ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(msg);
    case E2BIG:
    case ENOSPC:
    case ENOMEM:
      return absl::ResourceExhaustedError(msg);
    case EINVAL:
      return absl::InvalidArgumentError(msg);
    default:
      return absl::InternalError(msg);
  }
}

CounterArray ToArray(const bw_counters& c) {
  CounterArray a;
  std::memcpy(a.data(), &c, sizeof(c));
  return a;
}

absl::StatusOr<Fd> OpenPinnedObject(const std::string& path) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return ErrnoStatus(path, "bpf_obj_get", errno);
  return Fd(fd);
}

absl::StatusOr<MapSet> MapSet::OpenPinned(const std::string& pin_root) {
  MapSet s;
  auto open = [&](const char* name) { return OpenPinnedObject(absl::StrCat(pin_root, "/", name)); };
#define BW_OPEN(field, type, ident, abi_name)     \
  {                                                \
    auto fd = open(abi_name);                      \
    if (!fd.ok()) return fd.status();              \
    s.field = type(std::move(*fd), abi_name);      \
  }
  BW_MAPSET_MAPS(BW_OPEN)
#undef BW_OPEN
  return s;
}

absl::StatusOr<SharedMapping> SharedMapping::Map(int fd, absl::string_view name, size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return ErrnoStatus(name, "mmap", errno);
  return SharedMapping(p, bytes);
}

SharedMapping::~SharedMapping() {
  if (p_) munmap(p_, bytes_);
}

bool CompleteEventWith(
    bw_event* ev, absl::FunctionRef<std::optional<bw_list_value>(const uint8_t* addr4)> find) {
  if (!(ev->flags & BW_EVF_DETAIL)) return false;
  ev->flags &= static_cast<uint8_t>(~BW_EVF_DETAIL);
  if (ev->family != BW_FAMILY_V4) return true;  // the pre-filter decides IPv4 only
  std::optional<bw_list_value> v = find(ev->direction == BW_DIR_INGRESS ? ev->saddr : ev->daddr);
  if (v && v->list_id == ev->list_id && v->action == ev->list_action) {
    ev->entry_ref = v->entry_ref;
    ev->prefixlen = v->prefixlen;
  }
  return true;
}

std::optional<bw_list_value> LookupV4(const WatchV4Map& v4, const uint8_t* addr4) {
  bw_lpm_v4_key k{};
  k.prefixlen = 32;
  std::memcpy(k.addr, addr4, 4);
  auto v = v4.Lookup(k);
  if (!v.ok() || !v->has_value()) return std::nullopt;
  return **v;
}

bool CompleteEvent(const WatchV4Map& v4, bw_event* ev) {
  return CompleteEventWith(ev, [&](const uint8_t* addr4) { return LookupV4(v4, addr4); });
}

absl::StatusOr<CounterArray> MapSet::ReadCounters(bw_direction dir) const {
  auto per_cpu = counters.LookupAll(dir);
  if (!per_cpu.ok()) return per_cpu.status();
  CounterArray sum{};
  for (const bw_counters& c : *per_cpu) {
    CounterArray a = ToArray(c);
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += a[i];
  }
  return sum;
}

absl::Status MapSet::ZeroCounters() const {
  for (uint32_t d = 0; d < BW_DIR__MAX; ++d) {
    absl::Status st = counters.Zero(d);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::StatusOr<bw_config> MapSet::ReadConfig() const {
  auto v = config.Lookup(0);
  if (!v.ok()) return v.status();
  if (!v->has_value()) return absl::NotFoundError("bw_config: element 0 missing");
  return **v;
}

absl::Status MapSet::WriteConfig(const bw_config& cfg) const { return config.Update(0, cfg); }

bool BatchUnsupported(int err, bool first_call) {
  return err == 524 /* ENOTSUPP */ || err == EOPNOTSUPP || (err == EINVAL && first_call);
}

namespace {
using PortFlags = std::array<uint8_t, BW_PORTS_MAX>;

// Every port's flags: one BPF_MAP_LOOKUP_BATCH syscall (or a few), or, where the kernel has no
// batch operations for arrays, a lookup per port (64 Ki syscalls, tens of ms on a busy host).
absl::StatusOr<PortFlags> ReadPortFlags(const PortsMap& ports) {
  PortFlags flags{};
  std::vector<uint32_t> keys(BW_PORTS_MAX);
  std::vector<uint8_t> vals(BW_PORTS_MAX);
  uint32_t token = 0;
  size_t got = 0;
  bool first = true;
  while (got < BW_PORTS_MAX) {
    uint32_t count = static_cast<uint32_t>(BW_PORTS_MAX - got);
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    int err = bpf_map_lookup_batch(ports.fd(), first ? nullptr : &token, &token, &keys[got],
                                   &vals[got], &count, &opts);
    int e = err < 0 ? errno : 0;
    first = false;
    if (err < 0 && e != ENOENT) {
      if (BatchUnsupported(e, got == 0)) break;  // a lookup per port, below
      return ErrnoStatus(ports.name(), "BPF_MAP_LOOKUP_BATCH", e);
    }
    got += count;
    if (err < 0) break;  // ENOENT: the last batch
  }
  if (got == BW_PORTS_MAX) {
    for (size_t i = 0; i < got; ++i)
      if (keys[i] < BW_PORTS_MAX) flags[keys[i]] = vals[i];
    return flags;
  }
  for (uint32_t p = 0; p < BW_PORTS_MAX; ++p) {
    auto v = ports.Lookup(p);
    if (!v.ok()) return v.status();
    flags[p] = v->has_value() ? **v : 0;
  }
  return flags;
}

absl::StatusOr<std::vector<uint16_t>> PortsWith(const PortsMap& ports, uint8_t flag) {
  auto flags = ReadPortFlags(ports);
  if (!flags.ok()) return flags.status();
  std::vector<uint16_t> out;
  for (uint32_t p = 0; p < BW_PORTS_MAX; ++p)
    if ((*flags)[p] & flag) out.push_back(static_cast<uint16_t>(p));
  return out;
}
}  // namespace

absl::Status MapSet::SetWatchedPorts(const std::vector<uint16_t>& want,
                                     const std::vector<uint16_t>& proxy) const {
  PortFlags flags{};
  for (uint16_t p : want) flags[p] |= BW_PORT_WATCHED;
  for (uint16_t p : proxy) flags[p] |= BW_PORT_PROXY;
  // Only the ports whose flags differ are written, one at a time: nothing is briefly unwatched
  // that stays watched. Apply skips this when the ports did not change.
  auto cur = ReadPortFlags(ports);
  if (!cur.ok()) return cur.status();
  for (uint32_t p = 0; p < BW_PORTS_MAX; ++p) {
    if ((*cur)[p] == flags[p]) continue;
    absl::Status st = ports.Update(p, flags[p]);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint16_t>> MapSet::WatchedPorts() const {
  return PortsWith(ports, BW_PORT_WATCHED);
}

absl::StatusOr<std::vector<uint16_t>> MapSet::ProxyPorts() const {
  return PortsWith(ports, BW_PORT_PROXY);
}

}  // namespace bw
