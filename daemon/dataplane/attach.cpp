#include "daemon/dataplane/attach.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "daemon/dataplane/libbpf_log.hpp"
#include "maps/bannerwatch_abi.h"
#include "maps/maps.hpp"

namespace bw {

absl::StatusOr<XdpMode> ParseXdpMode(const std::string& s) {
  if (s == "auto") return XdpMode::kAuto;
  if (s == "native" || s == "drv") return XdpMode::kNative;
  if (s == "generic" || s == "skb") return XdpMode::kGeneric;
  return absl::InvalidArgumentError(
      absl::StrCat("--xdp-mode: '", s, "' is not one of auto, native, generic"));
}

std::string XdpLinkPin(const std::string& pin_root, const std::string& ifname) {
  return absl::StrCat(pin_root, "/link_xdp_", ifname);
}

std::string ProgramPin(const std::string& pin_root, uint32_t prog_id) {
  return absl::StrCat(pin_root, "/", kProgramPinPrefix, prog_id);
}

namespace {

// The id of the program (or link's program) behind an fd; 0 when it cannot be read. Reading an fd
// one holds needs no capability.
uint32_t ProgIdOf(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(prog_fd, &info, &len) == 0 ? info.id : 0;
}

// The ids of the programs pinned as prog_<id> under pin_root (each checked through its pin).
std::vector<uint32_t> PinnedProgramIds(const std::string& pin_root) {
  std::vector<uint32_t> ids;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(pin_root, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(kProgramPinPrefix, 0) != 0) continue;
    int fd = bpf_obj_get(e.path().c_str());
    if (fd < 0) continue;
    Fd prog(fd);
    if (uint32_t id = ProgIdOf(fd); id != 0) ids.push_back(id);
  }
  return ids;
}

}  // namespace

absl::Status PinPrograms(const std::string& pin_root, const std::vector<int>& prog_fds) {
  for (int fd : prog_fds) {
    const uint32_t id = ProgIdOf(fd);
    if (id == 0) return ErrnoStatus("program", "bpf_obj_get_info_by_fd", errno);
    const std::string pin = ProgramPin(pin_root, id);
    if (bpf_obj_pin(fd, pin.c_str()) != 0 && errno != EEXIST)
      return ErrnoStatus(pin, "bpf_obj_pin", errno);
  }
  return absl::OkStatus();
}

absl::Status UnpinProgramsExcept(const std::string& pin_root, const std::vector<int>& keep_fds) {
  std::vector<std::string> keep;
  for (int fd : keep_fds) keep.push_back(absl::StrCat(kProgramPinPrefix, ProgIdOf(fd)));
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(pin_root, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(kProgramPinPrefix, 0) != 0) continue;
    if (std::find(keep.begin(), keep.end(), n) != keep.end()) continue;
    if (::unlink(e.path().c_str()) != 0 && errno != ENOENT)
      return ErrnoStatus(e.path().string(), "unlink", errno);
  }
  return absl::OkStatus();
}

std::string XdpModeOf(int ifindex) {
  LIBBPF_OPTS(bpf_xdp_query_opts, q);
  if (bpf_xdp_query(ifindex, 0, &q) != 0) return "unknown";
  switch (q.attach_mode) {
    case XDP_ATTACHED_DRV:
      return "native";
    case XDP_ATTACHED_SKB:
      return "generic";
    case XDP_ATTACHED_HW:
      return "offload";
    case XDP_ATTACHED_MULTI:
      return "multi";
    default:
      return "none";
  }
}

namespace {

absl::Status AttachTc(int ifindex, const std::string& ifname, int prog_fd) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_EGRESS);
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE,
              .handle = kTcHandle, .priority = kTcPriority);
  // The clsact qdisc usually exists already (adoption, other tools): attach first, create the
  // hook only when the attach says it is missing.
  int err;
  {
    ScopedLibbpfQuiet quiet;  // "Parent Qdisc doesn't exist" is the expected answer on first use
    err = bpf_tc_attach(&hook, &opts);
  }
  if (err) {
    err = bpf_tc_hook_create(&hook);
    if (err && err != -EEXIST) return ErrnoStatus(ifname, "bpf_tc_hook_create(clsact)", -err);
    opts.prog_id = 0;
    err = bpf_tc_attach(&hook, &opts);
  }
  if (err) return ErrnoStatus(ifname, "bpf_tc_attach(egress)", -err);
  return absl::OkStatus();
}

absl::StatusOr<int> CreateXdpLink(int prog_fd, int ifindex, const std::string& ifname,
                                  XdpMode mode, std::string* used) {
  auto attempt = [&](uint32_t flags) {
    LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = flags);
    return bpf_link_create(prog_fd, ifindex, BPF_XDP, &lo);
  };
  int fd = -1;
  if (mode != XdpMode::kGeneric) {
    fd = attempt(XDP_FLAGS_DRV_MODE);
    if (fd >= 0) {
      *used = "native";
      return fd;
    }
    if (mode == XdpMode::kNative || errno == EBUSY || errno == EEXIST)
      return ErrnoStatus(ifname, "bpf_link_create(XDP, native)", errno);
  }
  fd = attempt(XDP_FLAGS_SKB_MODE);
  if (fd < 0) return ErrnoStatus(ifname, "bpf_link_create(XDP, generic)", errno);
  *used = "generic";
  return fd;
}

}  // namespace

namespace {

std::string ProgName(uint32_t id) {
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return errno == EPERM ? "name not readable without CAP_SYS_ADMIN" : "?";
  Fd owner(fd);
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return "?";
  return info.name;
}

struct PinnedLink {
  bool present = false;
  uint32_t ifindex = 0;  // 0: the interface is gone (the link with it)
  uint32_t prog_id = 0;
};

// The XDP link pinned for ifname under pin_root.
PinnedLink PinnedXdpLink(const std::string& pin_root, const std::string& ifname) {
  PinnedLink l;
  int fd = bpf_obj_get(XdpLinkPin(pin_root, ifname).c_str());
  if (fd < 0) return l;
  Fd link(fd);
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0 || info.type != BPF_LINK_TYPE_XDP) return l;
  l.present = true;
  l.ifindex = info.xdp.ifindex;
  l.prog_id = info.prog_id;
  return l;
}

// The XDP program ids on an interface of this network namespace (native, generic; 0 when none).
std::vector<uint32_t> XdpProgsOn(int ifindex) {
  LIBBPF_OPTS(bpf_xdp_query_opts, q);
  if (ifindex <= 0 || bpf_xdp_query(ifindex, 0, &q) != 0) return {};
  return {q.prog_id, q.drv_prog_id, q.skb_prog_id};
}

// The program at bannerwatch's TC egress handle on an interface of this namespace (0: none).
uint32_t TcEgressProg(int ifindex) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_EGRESS);
  LIBBPF_OPTS(bpf_tc_opts, q, .handle = kTcHandle, .priority = kTcPriority);
  ScopedLibbpfQuiet quiet;  // no clsact qdisc, or no such filter: the usual answer
  return bpf_tc_query(&hook, &q) == 0 ? q.prog_id : 0;
}

}  // namespace

bool ProgramOfPinRoot(uint32_t prog_id, const std::string& pin_root) {
  if (prog_id == 0) return false;
  const std::vector<uint32_t> pinned = PinnedProgramIds(pin_root);
  if (std::find(pinned.begin(), pinned.end(), prog_id) != pinned.end()) return true;
  // A pin root from before programs were pinned: the program is its own when it uses the maps
  // pinned there. bpf_prog_get_fd_by_id needs CAP_SYS_ADMIN; without it, the answer is no.
  int mfd = bpf_obj_get(absl::StrCat(pin_root, "/", BW_MAP_CONFIG).c_str());
  if (mfd < 0) return false;
  Fd map(mfd);
  bpf_map_info mi{};
  uint32_t mlen = sizeof(mi);
  if (bpf_obj_get_info_by_fd(mfd, &mi, &mlen) != 0) return false;
  int pfd = bpf_prog_get_fd_by_id(prog_id);
  if (pfd < 0) return false;
  Fd prog(pfd);
  bpf_prog_info pi{};
  uint32_t plen = sizeof(pi);
  if (bpf_obj_get_info_by_fd(pfd, &pi, &plen) != 0) return false;
  std::vector<uint32_t> ids(pi.nr_map_ids);
  if (ids.empty()) return false;
  bpf_prog_info again{};
  again.nr_map_ids = static_cast<uint32_t>(ids.size());
  again.map_ids = reinterpret_cast<uint64_t>(ids.data());
  plen = sizeof(again);
  if (bpf_obj_get_info_by_fd(pfd, &again, &plen) != 0) return false;
  ids.resize(std::min<size_t>(ids.size(), again.nr_map_ids));
  return std::find(ids.begin(), ids.end(), mi.id) != ids.end();
}

absl::Status CheckInterfaceFree(const std::string& pin_root, const std::string& ifname) {
  int ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (ifindex == 0) return ErrnoStatus(ifname, "if_nametoindex", errno);
  for (uint32_t id : XdpProgsOn(ifindex)) {
    if (id == 0 || ProgramOfPinRoot(id, pin_root)) continue;
    std::string name = ProgName(id);
    return absl::FailedPreconditionError(absl::StrCat(
        ifname, " already has an XDP program (id ", id, ", ", name, ") that is not this pin "
        "root's (", pin_root, ")",
        name == "bw_xdp_ingress" ? ": another bannerwatch daemon guards it; stop that one, or "
                                   "run with its --pin-root"
                                 : ": bannerwatch does not replace another tool's program"));
  }
  if (uint32_t tc = TcEgressProg(ifindex); tc != 0 && !ProgramOfPinRoot(tc, pin_root)) {
    std::string name = ProgName(tc);
    return absl::FailedPreconditionError(absl::StrCat(
        ifname, " already has a TC egress filter at bannerwatch's handle (program id ", tc, ", ",
        name, ") that is not this pin root's (", pin_root, ")",
        name == "bw_tc_egress" ? ": another bannerwatch daemon guards it; stop that one, or run "
                                 "with its --pin-root (or `bannerwatch detach` if none runs)"
                               : ": bannerwatch does not replace another tool's filter"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Attachment> AttachInterface(const std::string& pin_root, int xdp_prog_fd,
                                           int tc_prog_fd, const std::string& ifname,
                                           XdpMode mode) {
  Attachment a;
  a.ifname = ifname;
  a.ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (a.ifindex == 0) return ErrnoStatus(ifname, "if_nametoindex", errno);

  // TC first: on adoption the egress filter is replaced atomically, as is the XDP link below.
  absl::Status st = AttachTc(a.ifindex, ifname, tc_prog_fd);
  if (!st.ok()) return st;

  std::string pin = XdpLinkPin(pin_root, ifname);
  int old = bpf_obj_get(pin.c_str());
  if (old >= 0) {
    Fd link(old);
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(link.get(), &info, &len) != 0)
      return ErrnoStatus(pin, "bpf_obj_get_info_by_fd", errno);
    if (info.type == BPF_LINK_TYPE_XDP && static_cast<int>(info.xdp.ifindex) == a.ifindex) {
      if (bpf_link_update(link.get(), xdp_prog_fd, nullptr) != 0)
        return ErrnoStatus(pin, "bpf_link_update", errno);
      a.xdp_adopted = true;
      a.xdp_mode = XdpModeOf(a.ifindex);
      return a;
    }
    // A stale pin (the interface was recreated): drop it and attach anew.
    unlink(pin.c_str());
  }
  auto fd = CreateXdpLink(xdp_prog_fd, a.ifindex, ifname, mode, &a.xdp_mode);
  if (!fd.ok()) return fd.status();
  Fd link(*fd);
  if (bpf_obj_pin(link.get(), pin.c_str()) != 0) return ErrnoStatus(pin, "bpf_obj_pin", errno);
  return a;
}

absl::Status DetachInterface(const std::string& pin_root, const std::string& ifname) {
  const std::string pin = XdpLinkPin(pin_root, ifname);
  const PinnedLink link = PinnedXdpLink(pin_root, ifname);
  const int ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  // The TC filter is found by interface, in this network namespace; the link's interface is the
  // same one when its program is the one on that interface here. A link on an interface of
  // another namespace (or a missing one of this name) leaves everything in place: the filter
  // could not be found from here, and the pins are how a detach there will.
  const bool gone = link.present && link.ifindex == 0;  // the device went, its filters with it
  if (link.present && !gone) {
    auto here = XdpProgsOn(ifindex);
    if (std::find(here.begin(), here.end(), link.prog_id) == here.end() || link.prog_id == 0)
      return absl::FailedPreconditionError(absl::StrCat(
          ifname, " (ifindex ", link.ifindex, ") is not in this network namespace: run "
          "`bannerwatch detach` inside that one (nsenter --net=...); nothing was removed"));
  }
  if (!gone && ifindex > 0) {
    if (uint32_t tc = TcEgressProg(ifindex); tc != 0) {
      if (!ProgramOfPinRoot(tc, pin_root))
        return absl::FailedPreconditionError(absl::StrCat(
            ifname, ": the TC egress filter at bannerwatch's handle (program id ", tc,
            ") is not this pin root's (", pin_root, "); left in place"));
      LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_EGRESS);
      LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
      int err = bpf_tc_detach(&hook, &opts);
      if (err && err != -ENOENT) return ErrnoStatus(ifname, "bpf_tc_detach(egress)", -err);
    }
  }
  if (link.present || access(pin.c_str(), F_OK) == 0) {
    int fd = bpf_obj_get(pin.c_str());
    if (fd >= 0) {
      Fd l(fd);
      // Detach explicitly: other holders of the link (a concurrent `bpftool` may hold one) must
      // not keep it attached.
      if (bpf_link_detach(l.get()) != 0 && errno != EINVAL)
        return ErrnoStatus(pin, "bpf_link_detach", errno);
    }
    if (unlink(pin.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(pin, "unlink", errno);
  }
  return absl::OkStatus();
}

std::vector<std::string> PinnedInterfaces(const std::string& pin_root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(pin_root, ec)) {
    std::string n = e.path().filename().string();
    if (n.rfind("link_xdp_", 0) == 0) out.push_back(n.substr(9));
  }
  return out;
}

absl::StatusOr<std::string> DefaultRouteInterface() {
  std::ifstream f("/proc/net/route");
  std::string line;
  std::getline(f, line);  // header
  while (std::getline(f, line)) {
    std::istringstream ss(line);
    std::string iface, dest, gw, flags, refcnt, use, metric, mask;
    ss >> iface >> dest >> gw >> flags >> refcnt >> use >> metric >> mask;
    if (dest == "00000000" && mask == "00000000") return iface;
  }
  std::ifstream f6("/proc/net/ipv6_route");
  while (std::getline(f6, line)) {
    std::istringstream ss(line);
    std::string dst, dlen, src, slen, next, metric, ref, use, flags, iface;
    ss >> dst >> dlen >> src >> slen >> next >> metric >> ref >> use >> flags >> iface;
    if (dst == std::string(32, '0') && dlen == "00" && iface != "lo") return iface;
  }
  return absl::NotFoundError("no interface carries a default route: name one with --iface");
}

}  // namespace bw
