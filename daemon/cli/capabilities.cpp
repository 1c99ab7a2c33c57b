#include "daemon/cli/capabilities.hpp"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace bw {
namespace {

// Numbers from <linux/capability.h>; CAP_BPF and CAP_PERFMON spelled out for older headers.
constexpr int kCapNetAdmin = 12;
constexpr int kCapSysAdmin = 21;
constexpr int kCapPerfmon = 38;
constexpr int kCapBpf = 39;

bool Has(uint64_t set, int cap) { return (set >> cap) & 1; }

}  // namespace

absl::StatusOr<uint64_t> EffectiveCapabilities() {
  __user_cap_header_struct hdr{};
  hdr.version = _LINUX_CAPABILITY_VERSION_3;
  hdr.pid = 0;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &hdr, data) != 0)
    return absl::InternalError(absl::StrCat("capget: ", std::strerror(errno)));
  return static_cast<uint64_t>(data[0].effective) | (static_cast<uint64_t>(data[1].effective) << 32);
}

bool KernelHasCapBpf() {
  std::ifstream f("/proc/sys/kernel/cap_last_cap");
  int last = 0;
  if (!(f >> last)) return true;  // unknown: assume a current kernel
  return last >= kCapBpf;
}

std::vector<std::string> MissingCapabilities(uint64_t eff, bool kernel_has_cap_bpf) {
  std::vector<std::string> missing;
  if (!Has(eff, kCapNetAdmin)) missing.push_back("CAP_NET_ADMIN");
  if (Has(eff, kCapSysAdmin)) return missing;  // stands in for CAP_BPF and CAP_PERFMON
  if (!kernel_has_cap_bpf) {
    missing.push_back("CAP_SYS_ADMIN");
    return missing;
  }
  if (!Has(eff, kCapBpf)) missing.push_back("CAP_BPF");
  if (!Has(eff, kCapPerfmon)) missing.push_back("CAP_PERFMON");
  return missing;
}

absl::Status CapabilityCheck(const std::string& what) {
  auto eff = EffectiveCapabilities();
  if (!eff.ok()) return eff.status();
  bool has_bpf = KernelHasCapBpf();
  std::vector<std::string> missing = MissingCapabilities(*eff, has_bpf);
  if (missing.empty()) return absl::OkStatus();
  std::string set = has_bpf ? "CAP_BPF CAP_NET_ADMIN CAP_PERFMON" : "CAP_SYS_ADMIN CAP_NET_ADMIN";
  std::string lower = has_bpf ? "+bpf,+net_admin,+perfmon" : "+sys_admin,+net_admin";
  return absl::FailedPreconditionError(absl::StrCat(
      what, " needs ", absl::StrJoin(missing, ", "),
      " (missing from this process's effective capabilities; it needs ", set,
      "). Run it as root, or grant them: AmbientCapabilities=", set,
      " in its systemd unit, or setpriv --inh-caps=", lower, " --ambient-caps=", lower,
      " when starting it as another user"));
}

}  // namespace bw
