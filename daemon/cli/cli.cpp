#include "daemon/cli/cli.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "daemon/dataplane/attach.hpp"
#include "daemon/control/control.hpp"
#include "daemon/control/control_request.hpp"
#include "daemon/dataplane/kernel_probe.hpp"
#include "maps/bannerwatch_abi.h"

namespace bw {
namespace {

using json = nlohmann::json;

constexpr const char* kUsage = R"(usage: bannerwatch <command> [options]
       bannerwatch <command> --help        that command's options (or: bannerwatch help <command>)

Daemon:
  run [--config FILE] [--iface IF]... [--xdp-mode auto|native|generic] [--pin-root DIR]
      [--eve FILE | --no-eve-file] [--eve-stdout] [--control SOCK] [--metrics ADDR|off]
      [--state FILE] [--cgroup DIR] [--bpf-variant auto|full|core] [--verbose]
        Load, attach (XDP ingress + TC egress) and serve. Needs CAP_BPF, CAP_NET_ADMIN and
        CAP_PERFMON (root has them). Defaults: /etc/bannerwatch/policy.yaml (from a build
        tree: policies/default.yaml), the interface of the default route, pin root /sys/fs/bpf/bannerwatch, the data-plane
        variant this kernel runs best (full; core where the kernel lacks what full needs).
  detach [--pin-root DIR]
        Remove every attachment and pin a daemon left (refused while one runs).
  check [--config FILE]
        Validate a policy and its list files; print what would be loaded, and (as root) what
        this kernel supports: the data-plane variant, the detections it turns off, and
        whether the kernel's verifier accepts the programs.
  scan [--config FILE] [--local CIDR]... CAPTURE...
        Replay pcap/pcapng captures through the data plane (BPF_PROG_TEST_RUN): EVE lines on
        stdout, a summary on stderr. Frames from --local addresses run through TC egress, the
        rest through XDP. Block events are rate-limited on capture time. `scan --help` for more.

Talking to a running daemon (--control SOCK, default $BANNERWATCH_CONTROL, else the control_socket
of /etc/bannerwatch/policy.yaml, else /run/bannerwatch/control.sock; mode 0600 unless the policy
sets control_group; block, watch, allow, unlist and reload need root or control_admin_group):
  status [--json]
  block|watch|allow CIDR [--list NAME] [--reason TEXT] [--ttl DURATION]
        Again on an entry: --reason replaces its reason (kept when not given), --ttl sets
        a new expiry (without --ttl the entry never expires).
  unlist CIDR
  list [--json]
        The runtime entries (block, watch, allow): list, reason, when added, expiry.
  query IP
  events [--follow] [--count N] [--sid N]... [--ip CIDR]... [--since WHEN] [--list NAME] [--fast]
  reload

Exit status: 0 success, 1 failure, 2 usage error.
)";

constexpr const char* kScanDescription =
    R"(Runs every frame of the pcap / pcapng CAPTUREs ("-": stdin), in order, through the data plane's
own XDP and TC programs (BPF_PROG_TEST_RUN; needs root and bpffs) with the policy applied as
`run` applies it, and writes the alerts as EVE JSON lines on stdout, timestamped with the capture
times, pcap_filename = the CAPTURE as given (no in_iface). A summary (frames, verdicts, alerts by signature id,
malformed frames, kernel counters) goes to stderr.)";

constexpr const char* kScanFooter =
    R"(Block and watch events: the kernel's rate limiter runs on the kernel clock, which in a replay is
not the capture's, so the scan turns it off in the kernel and applies the policy's
block_event_interval itself on capture time (one such event per remote address per interval); the
per-second block_event_budget, a guard for a live ring buffer, does not apply to a scan. Other
time-dependent kernel state sees replay time. Link types: Ethernet, Linux cooked (SLL, SLL2).
Frames cut by the snaplen or longer than BPF_PROG_TEST_RUN takes run trimmed to the bytes
present. A capture taken on an interface bannerwatch guards lacks what it dropped there (XDP and
TC egress run before the capture taps), so alerts for dropped frames show only live; capture
upstream to see them.
Exit status: 0 success, 1 a capture (or the policy) could not be read, 2 usage error.)";

constexpr const char* kClientFooter =
    "Exit status: 0 success, 1 failure (no daemon, or it refused), 2 usage error.";

constexpr const char* kEtcPolicy = "/etc/bannerwatch/policy.yaml";
constexpr const char* kPolicyDefaultHelp =
    "(default /etc/bannerwatch/policy.yaml if readable,\nelse, for a binary run from its build "
    "tree, the source tree's\npolicies/default.yaml)";

}  // namespace

std::string BuildTreeSourceDir() {
  std::error_code ec;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  std::ifstream f(exe.parent_path() / "CMakeCache.txt");
  const std::string key = "bannerwatch_SOURCE_DIR:STATIC=";
  std::string line;
  while (std::getline(f, line))
    if (line.compare(0, key.size(), key) == 0) return line.substr(key.size());
  return "";
}

std::string DefaultPolicy() {
  if (access(kEtcPolicy, R_OK) == 0) return kEtcPolicy;
  if (std::string src = BuildTreeSourceDir(); !src.empty()) {
    std::string p = src + "/policies/default.yaml";
    if (access(p.c_str(), R_OK) == 0) return p;
  }
  return kEtcPolicy;
}

std::string DefaultControlSocket() {
  if (const char* env = std::getenv("BANNERWATCH_CONTROL"); env && *env) return env;
  if (access(kEtcPolicy, R_OK) == 0) {
    try {
      YAML::Node n = YAML::LoadFile(kEtcPolicy);
      if (n.IsMap() && n["control_socket"] && n["control_socket"].IsScalar()) {
        std::string s = n["control_socket"].as<std::string>();
        if (!s.empty()) return s;
      }
    } catch (const std::exception&) {
      // An unreadable or malformed policy: `bannerwatch check` says why; the default here.
    }
  }
  return kControlSocketDefault;
}

namespace {

absl::StatusOr<int64_t> ParseTtl(const std::string& s) {
  absl::Duration d;
  if (!absl::ParseDuration(s, &d) || d <= absl::ZeroDuration())
    return absl::InvalidArgumentError(
        absl::StrCat("--ttl '", s, "': want a positive duration such as 90s, 30m, 12h"));
  return absl::ToInt64Seconds(d);
}

CommandLine Text(int code, std::string text) {
  CommandLine c;
  c.exit_code = code;
  c.text = std::move(text);
  return c;
}

// One line: the command, the problem, where to look.
CommandLine UsageError(const std::string& cmd, const std::string& why) {
  if (cmd.empty())
    return Text(2, absl::StrCat("bannerwatch: ", why, "; see `bannerwatch --help`\n"));
  return Text(2, absl::StrCat("bannerwatch ", cmd, ": ", why, "; see `bannerwatch ", cmd,
                              " --help`\n"));
}

// An argument nothing took: an option no one knows, or a word too many.
std::string Unexpected(const std::string& arg, const std::string& takes) {
  if (arg.size() > 1 && arg[0] == '-')
    return absl::StrCat("unknown option ", arg.substr(0, arg.find('=')));
  if (takes.empty()) return absl::StrCat("unexpected argument '", arg, "'");
  return absl::StrCat("unexpected argument '", arg, "' (", takes, ")");
}

// CLI11's wording for an option without its value ("--ttl: 1 required DURATION missing") made
// plain; any other parse error as CLI11 says it.
std::string Plain(const CLI::ParseError& e) {
  std::string what = e.what();
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) && what.size() > 8 &&
      what.compare(what.size() - 8, 8, " missing") == 0) {
    auto colon = what.find(": ");
    if (colon != std::string::npos) return absl::StrCat(what.substr(0, colon), " needs a value");
  }
  return what;
}

struct Sub {
  CLI::App* app;
  std::string takes;  // what its positional arguments are, for the message about one too many
};

// The options every client command has.
void ClientOptions(CLI::App* s, CommandLine* c) {
  s->add_option("--control", c->control,
                "the daemon's control socket (default $BANNERWATCH_CONTROL,\nelse the "
                "control_socket of /etc/bannerwatch/policy.yaml if readable,\nelse " +
                    std::string(kControlSocketDefault) + ")")
      ->type_name("SOCK");
  s->add_flag("--json", c->json, "print the daemon's reply as JSON");
  s->footer(kClientFooter);
}

}  // namespace

CommandLine ParseCommandLine(int argc, const char* const* argv) {
  std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
  if (args.empty()) return Text(2, kUsage);
  if (args[0] == "--help" || args[0] == "-h" || (args[0] == "help" && args.size() == 1))
    return Text(0, kUsage);
  if (args[0] == "--version" || args[0] == "version") return Text(0, "bannerwatch 0.1.0\n");
  if (args[0] == "help") args = {args[1], "--help"};  // help CMD: CMD --help
  // scan: everything after "--" is a capture (a file name may start with '-').
  std::vector<std::string> after_dashes;
  if (args[0] == "scan") {
    auto dd = std::find(args.begin() + 1, args.end(), "--");
    if (dd != args.end()) {
      after_dashes.assign(dd + 1, args.end());
      args.erase(dd, args.end());
    }
  }

  CommandLine c;
  CLI::App app("bannerwatch", "bannerwatch");
  app.require_subcommand(1);
  // Unknown options and extra words are collected rather than thrown, to be named below.
  app.allow_extras();
  std::vector<Sub> subs;
  auto sub = [&](const std::string& name, const std::string& description,
                 const std::string& takes = "") {
    CLI::App* s = app.add_subcommand(name, description + "\n");
    s->allow_extras();
    subs.push_back({s, takes});
    return s;
  };

  // ---- the daemon and the offline commands ----
  std::string xdp_mode = "auto", variant = "auto", pin_root, eve, control, metrics, state, cgroup;
  bool no_eve = false, eve_stdout = false, eve_syslog = false;
  CLI::App* run = sub("run",
                      "Load the data plane, attach it (XDP ingress + TC egress) and serve: EVE "
                      "events, the control\nsocket, metrics, reloads, expiry. Needs CAP_BPF, CAP_NET_ADMIN and "
                      "CAP_PERFMON\n(root has them).",
                      "run takes no arguments");
  run->add_option("--config", c.run.config_path,
                  absl::StrCat("the policy ", kPolicyDefaultHelp))
      ->type_name("FILE");
  run->add_option("--iface", c.run.ifaces,
                  "attach to IF (repeatable; default: the policy's interfaces,\nelse the "
                  "interface of the default route)")
      ->type_name("IF")
      ->allow_extra_args(false);
  run->add_option("--xdp-mode", xdp_mode, "how XDP attaches: auto (default), native or generic")
      ->type_name("auto|native|generic");
  run->add_option("--pin-root", pin_root,
                  "bpffs directory of the pins (default: the policy's pin_root,\n"
                  BW_PIN_ROOT_DEFAULT ")")
      ->type_name("DIR");
  run->add_option("--cgroup", cgroup,
                  "cgroup v2 directory whose processes' blocked connect()/sendmsg()\n"
                  "calls are refused (default: the policy's host.cgroup, else the\nroot)")
      ->type_name("DIR");
  run->add_option("--eve", eve, "the EVE file (default: the policy's output.eve)")
      ->type_name("FILE");
  run->add_flag("--no-eve-file", no_eve, "write no EVE file");
  run->add_flag("--eve-stdout", eve_stdout, "write the EVE lines to stdout too");
  run->add_flag("--eve-syslog", eve_syslog,
                "send the EVE lines to syslog too (RFC 5424; the policy's\noutput.syslog, "
                "default /dev/log, local5.info)");
  run->add_option("--control", control,
                  "the control socket (default: the policy's control_socket,\n" +
                      std::string(kControlSocketDefault) + ")")
      ->type_name("SOCK");
  run->add_option("--metrics", metrics,
                  "the Prometheus endpoint, or off (default: the policy's metrics,\n"
                  "127.0.0.1:9464)")
      ->type_name("ADDR|off");
  run->add_option("--state", state,
                  "the runtime state file (default: the policy's state_file,\n"
                  "/var/lib/bannerwatch/state.json)")
      ->type_name("FILE");
  run->add_option("--bpf-variant", variant,
                  "the data-plane object: auto (default: the best this kernel runs),\nfull or core")
      ->type_name("auto|full|core");
  run->add_flag("--verbose", c.run.verbose, "libbpf's debug log too");

  CLI::App* detach = sub("detach",
                         "Remove every attachment and pin a daemon left (refused while one runs).",
                         "detach takes no arguments");
  c.pin_root = BW_PIN_ROOT_DEFAULT;
  detach->add_option("--pin-root", c.pin_root, "the pin root (default " BW_PIN_ROOT_DEFAULT ")")
      ->type_name("DIR");

  std::string check_positional;
  CLI::App* check = sub(
      "check",
      "Validate a policy and its list files; print what would be loaded, and (as root) what this\n"
      "kernel supports: the data-plane variant, the detections it turns off, and whether the\n"
      "kernel's verifier accepts the programs.",
      "check takes one policy file");
  check->add_option("--config", c.config,
                    absl::StrCat("the policy ", kPolicyDefaultHelp))
      ->type_name("FILE");
  check->add_option("POLICY", check_positional, "the policy, as --config")->type_name("");

  std::vector<std::string> locals;
  std::string scan_pin_root, scan_variant = "auto";
  CLI::App* scan = sub("scan", kScanDescription);
  scan->add_option("--local", locals,
                   "frames FROM these addresses run through TC egress, all others through\nXDP "
                   "ingress (repeatable; without it every frame is ingress)")
      ->type_name("CIDR")
      ->allow_extra_args(false);
  scan->add_option("--config", c.scan.config_path,
                   "the policy (default: as for run); its runtime state file is not read")
      ->type_name("FILE");
  scan->add_option("--pin-root", scan_pin_root,
                   "private pin root, new or empty (default /sys/fs/bpf/bwscan-<pid>,\nremoved at "
                   "exit)")
      ->type_name("DIR");
  scan->add_option("--bpf-variant", scan_variant,
                   "the data-plane object (default auto: the best this kernel runs)")
      ->type_name("auto|full|core");
  scan->add_flag("--verbose", c.verbose, "libbpf's debug log too");
  scan->add_option("CAPTURE", c.scan.captures, "pcap or pcapng files, \"-\" for stdin, in order")
      ->type_name("");
  scan->footer(kScanFooter);

  // ---- talking to a running daemon ----
  CLI::App* status = sub("status",
                         "The daemon's interfaces, lists, counters, EVE output and last reload.",
                         "status takes no arguments");
  ClientOptions(status, &c);

  std::string cidr, list, reason, ttl, ip, count, since, ev_list;
  std::vector<std::string> ev_sids, ev_ips;
  bool follow = false, fast = false;
  struct Change {
    const char* name;
    const char* what;
  };
  for (Change k : {Change{"block", "Block CIDR (its packets dropped both ways)"},
                   Change{"watch", "Watch CIDR (its connections raise events)"},
                   Change{"allow", "Safelist CIDR (never blocked or watched, whatever lists it)"}}) {
    const std::string name = k.name;
    const std::string list_default = name == "allow" ? "runtime-safelist" : "runtime-" + name;
    CLI::App* s = sub(
        name,
        absl::StrCat(k.what, " until `unlist` or its --ttl;\nkept across restarts in the state "
                             "file. Again on an entry of the same CIDR (and list): --reason\n"
                             "replaces its reason, which is kept when not given; --ttl sets a new "
                             "expiry, and without\n--ttl the entry never expires."),
        absl::StrCat(name, " takes one CIDR"));
    s->add_option("CIDR", cidr, "an address or prefix (203.0.113.0/24, 2001:db8::/32)")
        ->type_name("")
        ->required();
    s->add_option("--list", list,
                  absl::StrCat("the runtime list (default: the entry's, else ", list_default,
                               ";\n1 to 64 of A-Z a-z 0-9 . _ -)"))
        ->type_name("NAME");
    s->add_option("--reason", reason,
                  "why, shown in events, query and list (replaces the entry's;\nkept when not "
                  "given)")
        ->type_name("TEXT");
    s->add_option("--ttl", ttl, "expire after DURATION (90s, 30m, 12h; default: never)")
        ->type_name("DURATION");
    ClientOptions(s, &c);
  }
  CLI::App* unlist = sub("unlist",
                         "Remove CIDR's runtime entries (block, watch, allow); entries of the "
                         "policy are edited in\ntheir files.",
                         "unlist takes one CIDR");
  unlist->add_option("CIDR", cidr, "the prefix, as listed")->type_name("")->required();
  ClientOptions(unlist, &c);
  CLI::App* listcmd = sub("list",
                          "The runtime entries (made by block, watch and allow), numbered as in "
                          "the state file:\ncidr, action, list, when added, expiry, reason.",
                          "list takes no arguments");
  ClientOptions(listcmd, &c);
  CLI::App* query = sub("query",
                        "Which entries cover IP, the one that decides (its list and where it is "
                        "written) and the\naction the kernel takes.",
                        "query takes one IP address");
  query->add_option("IP", ip, "an IPv4 or IPv6 address")->type_name("")->required();
  ClientOptions(query, &c);
  CLI::App* events = sub("events",
                         "The recent EVE lines; with --follow, then every new one as the daemon "
                         "writes it, until\ninterrupted (exit 1 when the daemon ends the stream).",
                         "events takes no arguments");
  events->add_flag("--follow", follow, "keep printing the new lines");
  events->add_option("--count", count,
                     "how many recent lines (default 50, at most 1000), of those\nthat match")
      ->type_name("N");
  events->add_option("--sid", ev_sids, "only alerts of this signature id (repeatable)")
      ->type_name("N")
      ->allow_extra_args(false);
  events->add_option("--ip", ev_ips,
                     "only events whose source or destination lies in CIDR\n(an address or a "
                     "prefix; repeatable)")
      ->type_name("CIDR")
      ->allow_extra_args(false);
  events->add_option("--since", since,
                     "only events from then on: a duration back from now (10m,\n1h30m) or an "
                     "RFC 3339 time (2026-12-02T23:00:00Z)")
      ->type_name("WHEN");
  events->add_option("--list", ev_list, "only events decided by list NAME")->type_name("NAME");
  events->add_flag("--fast", fast,
                   "one line per alert, as Suricata's fast.log (time, [gid:sid:rev],\nmessage, "
                   "classification, priority, {proto} flow, action, list,\nbanner); default: "
                   "the EVE JSON lines");
  ClientOptions(events, &c);
  events->get_option("--json")->description("no effect: the lines are JSON unless --fast");
  CLI::App* reload = sub("reload",
                         "Read the policy and its list files again and apply them (a policy that "
                         "does not check\nout is refused; the last good one stays).",
                         "reload takes no arguments");
  ClientOptions(reload, &c);

  // Given twice, which one was meant? Every option keeps all its values, so that the check after
  // parsing can name the one given twice (CLI11's own refusal reads "At Most 1 required").
  for (const Sub& x : subs)
    for (CLI::Option* o : x.app->get_options())
      if (!o->get_positional() && o->get_expected_max() == 1)
        o->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);

  // The overview for `bannerwatch --help` alone (subcommands keep CLI11's own format).
  app.formatter_fn([](const CLI::App*, std::string, CLI::AppFormatMode) { return kUsage; });

  std::vector<const char*> cargv = {"bannerwatch"};
  for (const std::string& a : args) cargv.push_back(a.c_str());
  auto selected = [&]() -> CLI::App* {
    auto s = app.get_subcommands();
    return s.empty() ? nullptr : s[0];
  };
  auto takes = [&](const CLI::App* s) {
    for (const Sub& x : subs)
      if (x.app == s) return x.takes;
    return std::string();
  };
  // The first argument nothing took, in the command or before it.
  auto first_unexpected = [&](const CLI::App* s) -> std::string {
    std::vector<std::string> r = s ? s->remaining() : std::vector<std::string>{};
    if (r.empty()) r = app.remaining();
    return r.empty() ? "" : Unexpected(r[0], s ? takes(s) : "");
  };

  if (args[0].empty() || args[0][0] != '-') {
    bool known = std::any_of(subs.begin(), subs.end(),
                             [&](const Sub& s) { return s.app->get_name() == args[0]; });
    if (!known) return UsageError("", absl::StrCat("unknown command '", args[0], "'"));
  } else {
    return UsageError("", absl::StrCat("give a command before the options (", args[0], ")"));
  }
  try {
    app.parse(static_cast<int>(cargv.size()), cargv.data());
  } catch (const CLI::CallForHelp&) {
    return Text(0, app.help());
  } catch (const CLI::RequiredError& e) {
    CLI::App* s = selected();
    std::string why = first_unexpected(s);
    return UsageError(s ? s->get_name() : "", why.empty() ? e.what() : why);
  } catch (const CLI::ParseError& e) {
    CLI::App* s = selected();
    return UsageError(s ? s->get_name() : "", Plain(e));
  }
  CLI::App* s = selected();
  if (!s) return UsageError("", "no command given");
  const std::string cmd = s->get_name();
  if (std::string why = first_unexpected(s); !why.empty()) return UsageError(cmd, why);
  // Given twice, which one was meant? Only the options that collect repeat.
  for (const CLI::Option* o : s->get_options()) {
    if (o->get_positional() || o->count() <= 1) continue;
    if (o->get_name() == "--iface" || o->get_name() == "--local" || o->get_name() == "--sid" ||
        o->get_name() == "--ip")
      continue;
    return UsageError(cmd, absl::StrCat(o->get_name(), " given more than once"));
  }
  c.command = cmd;

  if (cmd == "run") {
    if (c.run.config_path.empty()) c.run.config_path = DefaultPolicy();
    auto mode = ParseXdpMode(xdp_mode);
    if (!mode.ok()) return UsageError(cmd, std::string(mode.status().message()));
    c.run.xdp_mode = *mode;
    if (!ParseVariant(variant, &c.run.bpf_variant))
      return UsageError(cmd,
                        absl::StrCat("--bpf-variant '", variant, "': want auto, full or core"));
    if (run->count("--pin-root")) c.run.pin_root = pin_root;
    if (run->count("--cgroup")) c.run.cgroup = cgroup;
    if (run->count("--eve")) c.run.eve_path = eve;
    if (no_eve) c.run.eve_path = "";
    if (eve_stdout) c.run.eve_stdout = true;
    if (eve_syslog) c.run.eve_syslog = true;
    if (run->count("--control")) c.run.control_socket = control;
    if (run->count("--metrics")) c.run.metrics_listen = metrics;
    if (run->count("--state")) c.run.state_file = state;
    return c;
  }
  if (cmd == "check") {
    if (c.config.empty()) c.config = check_positional.empty() ? DefaultPolicy() : check_positional;
    return c;
  }
  if (cmd == "detach") return c;
  if (cmd == "scan") {
    c.scan.captures.insert(c.scan.captures.end(), after_dashes.begin(), after_dashes.end());
    if (c.scan.captures.empty()) return UsageError(cmd, "no capture files given");
    if (c.scan.config_path.empty()) c.scan.config_path = DefaultPolicy();
    c.scan.pin_root = scan_pin_root;
    if (!ParseVariant(scan_variant, &c.scan.variant))
      return UsageError(cmd,
                        absl::StrCat("--bpf-variant '", scan_variant, "': want auto, full or core"));
    for (const std::string& l : locals) {
      auto p = ParseLocalPrefix(l);
      if (!p.ok()) return UsageError(cmd, std::string(p.status().message()));
      c.scan.local.push_back(*p);
    }
    return c;
  }

  // A client command: the request, with the fields the operator gave and no others.
  if (c.control.empty()) c.control = DefaultControlSocket();
  c.request = {{"cmd", cmd}};
  if (cmd == "block" || cmd == "watch" || cmd == "allow" || cmd == "unlist") {
    c.request["cidr"] = cidr;
    if (cmd != "unlist") {
      if (s->count("--list")) {
        if (!ValidListName(list))
          return UsageError(cmd, absl::StrCat("--list '", list.substr(0, 80),
                                              "': want 1 to 64 characters of A-Z a-z 0-9 . _ -"));
        c.request["list"] = list;
      }
      // Absent and empty differ: absent keeps an existing entry's reason, "" clears it.
      if (s->count("--reason")) c.request["reason"] = reason;
      if (s->count("--ttl")) {
        auto t = ParseTtl(ttl);
        if (!t.ok()) return UsageError(cmd, std::string(t.status().message()));
        c.request["ttl_seconds"] = *t;
      }
    }
  } else if (cmd == "query") {
    c.request["ip"] = ip;
  } else if (cmd == "events") {
    c.request["follow"] = follow;
    if (s->count("--count")) {
      uint64_t n;
      if (!absl::SimpleAtoi(count, &n)) return UsageError(cmd, "--count wants a number");
      c.request["count"] = n;
      c.events_count = n;
    }
    EventFilter& f = c.events_filter;
    for (const std::string& v : ev_sids) {
      int64_t sid;
      if (!absl::SimpleAtoi(v, &sid) || sid <= 0)
        return UsageError(cmd, absl::StrCat("--sid: '", v, "' is not a signature id"));
      f.sids.push_back(sid);
    }
    for (const std::string& v : ev_ips) {
      auto p = ParseEventPrefix(v);
      if (!p.ok()) return UsageError(cmd, std::string(p.status().message()));
      f.prefixes.push_back(*p);
    }
    if (s->count("--since")) {
      auto t = ParseSince(since, absl::Now());
      if (!t.ok()) return UsageError(cmd, std::string(t.status().message()));
      f.since = *t;
    }
    f.list = ev_list;
    c.events_fast = fast;
    // Filtered: the daemon's whole recent ring, of which the last N that match are printed.
    if (!f.empty()) c.request["count"] = 1000;
  }
  return c;
}

std::string FormatRuntimeList(const json& reply, absl::Time now) {
  const json empty = json::array();
  const json& entries =
      reply.contains("entries") && reply["entries"].is_array() ? reply["entries"] : empty;
  std::string state = reply.value("state_file", "");
  std::string out;
  if (entries.empty()) {
    absl::StrAppend(&out, "no runtime entries", state.empty() ? "" : " (state file ", state,
                    state.empty() ? "" : ")", "\n");
    return out;
  }
  absl::StrAppend(&out, entries.size(), " runtime entr", entries.size() == 1 ? "y" : "ies",
                  state.empty() ? "" : ", numbered as in ", state, ":\n");
  std::vector<std::vector<std::string>> rows = {
      {"#", "CIDR", "ACTION", "LIST", "ADDED", "EXPIRES", "REASON"}};
  for (const json& e : entries) {
    if (!e.is_object()) continue;
    std::string expires = "never";
    if (e.contains("expires") && e["expires"].is_string()) {
      expires = e["expires"].get<std::string>();
      absl::Time t;
      std::string err;
      if (absl::ParseTime(absl::RFC3339_full, expires, &t, &err)) {
        absl::Duration left = absl::Trunc(t - now, absl::Seconds(1));
        absl::StrAppend(&expires, left > absl::ZeroDuration()
                                      ? absl::StrCat(" (in ", absl::FormatDuration(left), ")")
                                      : std::string(" (due)"));
      }
    }
    rows.push_back({absl::StrCat(e.value("n", 0)), e.value("cidr", ""), e.value("action", ""),
                    e.value("list", ""), e.value("added", ""), expires, e.value("reason", "")});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  for (const auto& r : rows) {
    std::string line = absl::StrFormat("%*s", static_cast<int>(width[0]), r[0]);
    for (size_t i = 1; i < r.size(); ++i) {
      absl::StrAppend(&line, "  ", r[i]);
      if (i + 1 < r.size()) line.append(width[i] - r[i].size(), ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

}  // namespace bw
