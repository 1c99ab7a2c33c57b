#include "daemon/attach.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "daemon/libbpf_log.hpp"
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
  std::string pin = XdpLinkPin(pin_root, ifname);
  int ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  int fd = bpf_obj_get(pin.c_str());
  if (fd >= 0) {
    Fd link(fd);
    // Detach explicitly: other holders of the link (a crashed daemon's fds are gone, but a
    // concurrent `bpftool` may hold one) must not keep it attached.
    if (bpf_link_detach(link.get()) != 0 && errno != EINVAL)
      return ErrnoStatus(pin, "bpf_link_detach", errno);
    if (unlink(pin.c_str()) != 0) return ErrnoStatus(pin, "unlink", errno);
  }
  if (ifindex > 0) {
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_EGRESS);
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
    int err = bpf_tc_detach(&hook, &opts);
    if (err && err != -ENOENT && err != -EINVAL)
      return ErrnoStatus(ifname, "bpf_tc_detach(egress)", -err);
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
