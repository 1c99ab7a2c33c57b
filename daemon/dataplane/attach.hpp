// attach.hpp — puts the loaded programs on interfaces and takes them off again.
//
// Contract: XDP is attached through a bpf_link pinned at <pin root>/link_xdp_<ifname>, so it
// survives the daemon (crash, kill -9). When that pin exists, AttachInterface() swaps the new
// program into the existing link (bpf_link_update: atomic, no moment without enforcement) instead
// of attaching a second time. TC egress uses a clsact qdisc and one direct-action filter at a fixed
// handle/priority, replaced atomically (BPF_TC_F_REPLACE); netlink filters outlive the process.
// DetachInterface() removes both and the pin. The programs a pin root's daemon attaches are pinned
// there too (prog_<id>), so that it, its successor and `bannerwatch detach` recognise them with
// file access alone (bpf_prog_get_fd_by_id, the other way, needs CAP_SYS_ADMIN).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace bw {

enum class XdpMode { kAuto, kNative, kGeneric };

absl::StatusOr<XdpMode> ParseXdpMode(const std::string& s);

struct Attachment {
  std::string ifname;
  int ifindex = 0;
  std::string xdp_mode;      // "native" or "generic" as the kernel reports it
  bool xdp_adopted = false;  // an existing pinned link was updated in place
};

// TC filter identity on the egress hook.
inline constexpr unsigned kTcHandle = 0xb4;
inline constexpr unsigned kTcPriority = 0xc000;

std::string XdpLinkPin(const std::string& pin_root, const std::string& ifname);

// Programs pinned under a pin root: <pin root>/prog_<program id>.
inline constexpr const char* kProgramPinPrefix = "prog_";
std::string ProgramPin(const std::string& pin_root, uint32_t prog_id);

// Pins each program (by fd) at its ProgramPin, before it is attached anywhere; one already pinned
// is left as it is.
absl::Status PinPrograms(const std::string& pin_root, const std::vector<int>& prog_fds);

// Removes the program pins under pin_root but those of keep_fds' programs: the programs of an
// earlier daemon once this one's have taken their place on every interface, or (keep_fds empty)
// all of them once everything is detached.
absl::Status UnpinProgramsExcept(const std::string& pin_root, const std::vector<int>& keep_fds);

// A program is a pin root's when it is pinned there (ProgramPin), or, for a pin root from before
// programs were pinned, when it uses the maps pinned there (this needs CAP_SYS_ADMIN): how a
// daemon tells its own attachments (a restart adopts them) from another daemon's or another tool's.
bool ProgramOfPinRoot(uint32_t prog_id, const std::string& pin_root);

// OK when no program on the interface (XDP, or TC egress at bannerwatch's handle) is another
// pin root's or another tool's; otherwise an error naming what is there, so that a second daemon
// refuses before it loads or attaches anything.
absl::Status CheckInterfaceFree(const std::string& pin_root, const std::string& ifname);

absl::StatusOr<Attachment> AttachInterface(const std::string& pin_root, int xdp_prog_fd,
                                           int tc_prog_fd, const std::string& ifname,
                                           XdpMode mode);

// Removes the TC filter (only if it is this pin root's) and the XDP link pin (detaching it).
// Missing pieces are not errors. Refuses, removing nothing, when the pinned link's interface is
// not in the caller's network namespace (its TC filter cannot be found from there).
absl::Status DetachInterface(const std::string& pin_root, const std::string& ifname);

// Interfaces with a pinned XDP link under pin_root.
std::vector<std::string> PinnedInterfaces(const std::string& pin_root);

// "native" / "generic" / "none" for an interface, from the kernel.
std::string XdpModeOf(int ifindex);

// The interface that carries the IPv4 (else IPv6) default route.
absl::StatusOr<std::string> DefaultRouteInterface();

}  // namespace bw
