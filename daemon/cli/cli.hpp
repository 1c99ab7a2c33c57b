// cli.hpp — bannerwatch's command line: every subcommand with its options and its own --help
// (CLI11), parsed into what main() runs; and the text of the replies main() prints.
//
// Contract: ParseCommandLine() prints nothing and never exits. It returns either a command to run
// (`exit_code` -1) with its options filled in, defaults applied and values checked — for the
// commands that talk to a daemon, the control request to send (control_request.hpp), with only
// the fields the operator gave — or what to print and the exit status instead: help (stdout, 0;
// `bannerwatch --help` the overview, `bannerwatch CMD --help` or `bannerwatch help CMD` one
// command's options), the version (stdout, 0), or a usage error (stderr, 2): one line naming the
// command and the problem. An option given twice is a usage error, except --iface (run) and
// --local (scan), which collect.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "absl/time/time.h"
#include "daemon/service/daemon.hpp"
#include "daemon/cli/events_view.hpp"
#include "daemon/scan/scan.hpp"

namespace bw {

struct CommandLine {
  // run check scan detach, or a client command: status block watch allow unlist list query events
  // reload. Empty when there is nothing to run (exit_code >= 0).
  std::string command;
  int exit_code = -1;  // >= 0: print `text` (stdout when 0, stderr otherwise) and exit with it
  std::string text;

  DaemonOptions run;       // run
  std::string config;      // check: the policy file
  ScanOptions scan;        // scan
  bool verbose = false;    // scan: libbpf's debug log
  std::string pin_root;    // detach
  std::string control;     // client commands: the daemon's control socket
  bool json = false;       // client commands: print the reply as JSON
  nlohmann::json request;  // client commands: the request to send
  EventFilter events_filter;  // events: which lines to print
  bool events_fast = false;   // events: one fast.log-like line per alert instead of the JSON
  size_t events_count = 50;   // events: how many of the recent lines that match
};

CommandLine ParseCommandLine(int argc, const char* const* argv);

// The policy `run`, `check` and `scan` read without --config: /etc/bannerwatch/policy.yaml if
// readable; else, for a binary run from its build tree (a CMakeCache.txt beside the executable
// names the source tree: BuildTreeSourceDir), the source tree's policies/default.yaml; else the
// /etc path (whose absence the command then reports). No build path is compiled in.
std::string DefaultPolicy();
std::string BuildTreeSourceDir();  // "" unless the executable runs from a bannerwatch build tree
// The control socket of the client commands without --control: $BANNERWATCH_CONTROL, else the
// control_socket of /etc/bannerwatch/policy.yaml when readable, else kControlSocketDefault.
std::string DefaultControlSocket();

// `bannerwatch list`: the reply's runtime entries as a table (number, cidr, action, list, added,
// expiry or "never", reason); `now` for the time left.
std::string FormatRuntimeList(const nlohmann::json& reply, absl::Time now);

}  // namespace bw
