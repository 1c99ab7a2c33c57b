// daemon.hpp — `bannerwatch run`: the long-running controller around the data plane.
//
// Contract: RunDaemon() takes the pin-root lock (a second daemon on the same root is refused) and
// the state file's, opens the control socket and metrics port, loads the policy (an invalid policy
// at start is fatal; later it only fails the reload), loads the programs reusing whatever is
// pinned (adoption after a crash), applies the policy as a diff, attaches XDP + TC egress to every
// interface, then serves: ring-buffer events to EVE on their own thread; the control socket,
// metrics, SIGHUP / file-change reloads and list expiry on the main one. SIGTERM / SIGINT detach
// and unpin unless the policy says keep_on_exit. Returns the process exit code.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "daemon/dataplane/attach.hpp"
#include "daemon/dataplane/kernel_probe.hpp"

namespace bw {

struct DaemonOptions {
  std::string config_path;          // policy YAML
  std::vector<std::string> ifaces;  // empty: policy's interfaces, else the default-route one
  XdpMode xdp_mode = XdpMode::kAuto;
  Variant bpf_variant = Variant::kAuto;  // which data-plane object (kernel_probe.hpp)
  bool verbose = false;
  // Overrides of the policy's daemon settings (unset: the policy's value).
  std::optional<std::string> pin_root;
  std::optional<std::string> eve_path;  // "" = no file
  std::optional<bool> eve_stdout;
  std::optional<bool> eve_syslog;  // to the policy's output.syslog socket (default /dev/log)
  std::optional<std::string> control_socket;
  std::optional<std::string> metrics_listen;  // "" or "off" = off
  std::optional<std::string> state_file;
  std::optional<std::string> cgroup;  // host.cgroup: where the refusal programs attach
};

int RunDaemon(const DaemonOptions& opts);

}  // namespace bw
