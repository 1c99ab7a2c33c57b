// bannerwatch — command-line entry point: the daemon (`run`) and the operator's subcommands.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "daemon/control.hpp"
#include "daemon/daemon.hpp"
#include "daemon/kernel_probe.hpp"
#include "daemon/libbpf_log.hpp"
#include "daemon/loader.hpp"
#include "daemon/policy.hpp"
#include "daemon/scan.hpp"

namespace {

using json = nlohmann::json;

constexpr const char* kUsage = R"(usage: bannerwatch <command> [options]

Daemon:
  run [--config FILE] [--iface IF]... [--xdp-mode auto|native|generic] [--pin-root DIR]
      [--eve FILE | --no-eve-file] [--eve-stdout] [--control SOCK] [--metrics ADDR|off]
      [--state FILE] [--bpf-variant auto|full|core] [--verbose]
        Load, attach (XDP ingress + TC egress) and serve. Defaults: policies/default.yaml,
        the interface of the default route, pin root /sys/fs/bpf/bannerwatch, the data-plane
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

Talking to a running daemon (--control SOCK, default /run/bannerwatch/control.sock):
  status [--json]
  block|watch|allow CIDR [--list NAME] [--reason TEXT] [--ttl DURATION]
  unlist CIDR
  query IP
  events [--follow] [--count N]
  reload

Exit status: 0 success, 1 failure, 2 usage error.
)";

int Usage(const std::string& why) {
  if (!why.empty()) std::fprintf(stderr, "bannerwatch: %s\n", why.c_str());
  std::fputs(kUsage, stderr);
  return 2;
}

std::string DefaultPolicy() {
  for (const char* p : {"/etc/bannerwatch/policy.yaml", BW_DEFAULT_POLICY})
    if (access(p, R_OK) == 0) return p;
  return BW_DEFAULT_POLICY;
}

// Minimal option parser: "--name value", "--name=value" and flags.
struct Args {
  std::vector<std::string> positional;
  std::multimap<std::string, std::string> opts;
  std::string error;

  // Options that may be given more than once (their values collect, e.g. --iface); any other
  // given twice is an error.
  static inline const std::vector<std::string> repeatable = {"iface"};

  Args(int argc, char** argv, int start, const std::vector<std::string>& with_value,
       const std::vector<std::string>& flags) {
    for (int i = start; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0 || a == "--") {
        positional.push_back(a);
        continue;
      }
      std::string name = a.substr(2), value;
      auto eq = name.find('=');
      bool has_eq = eq != std::string::npos;
      if (has_eq) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      bool takes = std::find(with_value.begin(), with_value.end(), name) != with_value.end();
      bool flag = std::find(flags.begin(), flags.end(), name) != flags.end();
      if (!takes && !flag) {
        error = absl::StrCat("unknown option --", name);
        return;
      }
      // Given twice, which one was meant? Only the options that collect (--iface) repeat.
      if (opts.count(name) &&
          std::find(repeatable.begin(), repeatable.end(), name) == repeatable.end()) {
        error = absl::StrCat("--", name, " given more than once");
        return;
      }
      if (takes && !has_eq) {
        if (i + 1 >= argc) {
          error = absl::StrCat("--", name, " needs a value");
          return;
        }
        value = argv[++i];
      }
      opts.emplace(name, flag ? "1" : value);
    }
  }
  bool has(const std::string& n) const { return opts.count(n) > 0; }
  std::string get(const std::string& n, const std::string& def = "") const {
    auto it = opts.find(n);
    return it == opts.end() ? def : it->second;
  }
  std::vector<std::string> all(const std::string& n) const {
    std::vector<std::string> out;
    auto [b, e] = opts.equal_range(n);
    for (auto it = b; it != e; ++it) out.push_back(it->second);
    return out;
  }
};

int CmdRun(int argc, char** argv) {
  Args a(argc, argv, 2,
         {"config", "iface", "xdp-mode", "pin-root", "eve", "control", "metrics", "state",
          "bpf-variant"},
         {"no-eve-file", "eve-stdout", "verbose"});
  if (!a.error.empty()) return Usage(a.error);
  if (!a.positional.empty()) return Usage("run takes no positional arguments");
  bw::DaemonOptions o;
  o.config_path = a.get("config", DefaultPolicy());
  o.ifaces = a.all("iface");
  auto mode = bw::ParseXdpMode(a.get("xdp-mode", "auto"));
  if (!mode.ok()) return Usage(std::string(mode.status().message()));
  o.xdp_mode = *mode;
  if (!bw::ParseVariant(a.get("bpf-variant", "auto"), &o.bpf_variant))
    return Usage(absl::StrCat("--bpf-variant '", a.get("bpf-variant"), "': want auto, full or core"));
  o.verbose = a.has("verbose");
  if (a.has("pin-root")) o.pin_root = a.get("pin-root");
  if (a.has("eve")) o.eve_path = a.get("eve");
  if (a.has("no-eve-file")) o.eve_path = "";
  if (a.has("eve-stdout")) o.eve_stdout = true;
  if (a.has("control")) o.control_socket = a.get("control");
  if (a.has("metrics")) o.metrics_listen = a.get("metrics");
  if (a.has("state")) o.state_file = a.get("state");
  if (geteuid() != 0) {
    std::fprintf(stderr, "bannerwatch: run needs root (BPF programs, bpffs, interfaces)\n");
    return 1;
  }
  return bw::RunDaemon(o);
}

// `check`'s second half: what this kernel runs. Probes its BPF, then loads the variant it allows
// (maps of its own, nothing pinned or attached) to hear the verifier's answer. False when the
// programs do not load.
bool CheckKernel(const bw::Policy& p, const bw::CompiledPolicy& c) {
  if (geteuid() != 0) {
    std::printf("kernel: not probed (check as root to probe this kernel's BPF and load the "
                "programs)\n");
    return true;
  }
  bw::InstallLibbpfLog(false);
  auto k = bw::ProbeKernel();
  if (!k.ok()) {
    std::fprintf(stderr, "bannerwatch: probing the kernel: %s\n",
                 std::string(k.status().message()).c_str());
    return false;
  }
  std::printf("%s\n", bw::DescribeDataPlane(k->Best(), *k).c_str());
  std::printf("  bpf_loop %s, bpf_xdp_load_bytes %s, bpf_ktime_get_coarse_ns %s, pointer arguments "
              "of global functions %s\n",
              k->bpf_loop ? "yes" : "no", k->xdp_load_bytes ? "yes" : "no",
              k->ktime_coarse ? "yes" : "no", k->global_ptr_args ? "yes" : "no");
  if (!c.proxy_ports.empty() && !(bw::VariantFeatures(k->Best()) & BW_FEAT_CONNECT))
    std::printf("  note: the policy sets proxy_ports; CONNECT tunnels are not followed here\n");
  bw::LoadOptions lo;
  lo.pin_root = "";  // a trial: nothing pinned
  lo.variant = k->Best();
  lo.v4_entries = p.v4_entries;
  lo.v6_entries = p.v6_entries;
  auto dp = bw::DataPlane::Load(lo);
  if (!dp.ok()) {
    std::fprintf(stderr, "bannerwatch: %s\n", std::string(dp.status().message()).c_str());
    return false;
  }
  for (const bw::ProgramInfo& pi : (*dp)->Programs()) {
    std::string insns = pi.verified_insns
                            ? absl::StrCat(pi.verified_insns, " instructions processed")
                            : std::string("instructions processed not reported by this kernel");
    std::printf("  %-15s loads: %s, %u bytes translated\n", pi.name.c_str(), insns.c_str(),
                pi.xlated_bytes);
  }
  return true;
}

int CmdCheck(int argc, char** argv) {
  Args a(argc, argv, 2, {"config"}, {});
  if (!a.error.empty()) return Usage(a.error);
  std::string path = a.get("config", a.positional.empty() ? DefaultPolicy() : a.positional[0]);
  auto p = bw::LoadPolicyFile(path);
  if (!p.ok()) {
    std::fprintf(stderr, "bannerwatch: %s\n", std::string(p.status().message()).c_str());
    return 1;
  }
  auto c = bw::Compile(*p);
  if (!c.ok()) {
    std::fprintf(stderr, "bannerwatch: %s\n", std::string(c.status().message()).c_str());
    return 1;
  }
  std::printf("%s: ok: %zu lists, %zu entries -> %zu IPv4 and %zu IPv6 kernel prefixes\n",
              path.c_str(), c->lists.size(), c->entries.size(), c->v4.size(), c->v6.size());
  for (const bw::CompiledList& l : c->lists)
    std::printf("  %-24s %-8s %8zu entries%s\n", l.name.c_str(),
                std::string(bw::ListActionName(l.action)).c_str(), l.entries,
                l.expired ? " (expired)" : "");
  return CheckKernel(*p, *c) ? 0 : 1;
}

absl::StatusOr<int64_t> ParseTtl(const std::string& s) {
  absl::Duration d;
  if (!absl::ParseDuration(s, &d) || d <= absl::ZeroDuration())
    return absl::InvalidArgumentError(
        absl::StrCat("--ttl '", s, "': want a positive duration such as 90s, 30m, 12h"));
  return absl::ToInt64Seconds(d);
}

void PrintStatus(const json& j) {
  std::printf("bannerwatch pid %d, up %llds, pin root %s%s\n", j.value("pid", 0),
              static_cast<long long>(j.value("uptime_s", int64_t{0})),
              j.value("pin_root", "").c_str(), j.value("adopted", false) ? " (adopted)" : "");
  std::printf("policy %s\n", j.value("policy", "").c_str());
  for (const auto& i : j["interfaces"])
    std::printf("  interface %-12s XDP %-8s TC egress %s\n", i.value("name", "").c_str(),
                i.value("xdp_mode", "").c_str(), i.value("tc_egress", false) ? "yes" : "no");
  std::string ports;
  for (const auto& p : j["ports"]) absl::StrAppend(&ports, ports.empty() ? "" : ",", p.get<int>());
  std::printf("watched ports %s; banner server=%s client=%s\n", ports.c_str(),
              j["banner"].value("server", "").c_str(), j["banner"].value("client", "").c_str());
  std::printf("lists (%llu IPv4 + %llu IPv6 kernel prefixes):\n",
              static_cast<unsigned long long>(j["prefixes"].value("v4", 0)),
              static_cast<unsigned long long>(j["prefixes"].value("v6", 0)));
  for (const auto& l : j["lists"])
    std::printf("  %-24s %-8s %8llu entries  hits %llu  drops %llu%s%s\n",
                l.value("name", "").c_str(), l.value("action", "").c_str(),
                static_cast<unsigned long long>(l.value("entries", 0)),
                static_cast<unsigned long long>(l.value("hits", 0)),
                static_cast<unsigned long long>(l.value("drops", 0)),
                l.contains("expires") ? (" expires " + l["expires"].get<std::string>()).c_str() : "",
                l.value("expired", false) ? " (expired)" : "");
  std::printf("counters:%32s %14s\n", "ingress", "egress");
  if (j.contains("counters")) {
    for (auto it = j["counters"]["ingress"].begin(); it != j["counters"]["ingress"].end(); ++it)
      std::printf("  %-30s %14llu %14llu\n", it.key().c_str(),
                  static_cast<unsigned long long>(it.value().get<uint64_t>()),
                  static_cast<unsigned long long>(j["counters"]["egress"].value(it.key(), uint64_t{0})));
  }
  const auto& e = j["eve"];
  std::printf("EVE %s: %llu lines written, %llu dropped\n", e.value("path", "").c_str(),
              static_cast<unsigned long long>(e.value("lines_written", 0)),
              static_cast<unsigned long long>(e.value("lines_dropped", 0)));
  if (j.contains("reload_buffers")) {
    const auto& b = j["reload_buffers"];
    std::printf("reload buffers: %.1f MiB held%s\n",
                static_cast<double>(b.value("held_bytes", uint64_t{0})) / (1024.0 * 1024.0),
                !b.value("keep", true) ? " (keep_reload_buffers: false)"
                : b.value("making", false) ? " (being made)" : "");
  }
  const auto& r = j["last_reload"];
  std::printf("last reload %s: %s%s\n", r.value("time", "").c_str(),
              r.value("ok", false) ? "ok, " : "FAILED: ",
              r.value("ok", false) ? r.value("summary", "").c_str() : r.value("error", "").c_str());
}

int CmdClient(const std::string& cmd, int argc, char** argv) {
  Args a(argc, argv, 2, {"control", "list", "reason", "ttl", "count"}, {"json", "follow"});
  if (!a.error.empty()) return Usage(a.error);
  std::string sock = a.get("control", bw::kControlSocketDefault);
  json req = {{"cmd", cmd}};
  if (cmd == "block" || cmd == "watch" || cmd == "allow" || cmd == "unlist") {
    if (a.positional.size() != 1) return Usage(absl::StrCat(cmd, " needs exactly one CIDR"));
    req["cidr"] = a.positional[0];
    if (cmd != "unlist") {
      if (a.has("list")) req["list"] = a.get("list");
      if (a.has("reason")) req["reason"] = a.get("reason");
      if (a.has("ttl")) {
        auto t = ParseTtl(a.get("ttl"));
        if (!t.ok()) return Usage(std::string(t.status().message()));
        req["ttl_seconds"] = *t;
      }
    }
  } else if (cmd == "query") {
    if (a.positional.size() != 1) return Usage("query needs exactly one IP address");
    req["ip"] = a.positional[0];
  } else if (!a.positional.empty()) {
    return Usage(absl::StrCat(cmd, " takes no positional arguments"));
  }
  if (cmd == "events") {
    req["follow"] = a.has("follow");
    if (a.has("count")) {
      size_t n;
      if (!absl::SimpleAtoi(a.get("count"), &n)) return Usage("--count wants a number");
      req["count"] = n;
    }
  }
  auto print_recent = [](const json& j) {
    for (const auto& l : j["recent"]) std::printf("%s\n", l.get<std::string>().c_str());
    std::fflush(stdout);
  };
  absl::StatusOr<json> resp;
  if (cmd == "events" && a.has("follow")) {
    // The recent lines first, then every new one as the daemon writes it.
    resp = bw::ControlCall(
        sock, req,
        [](const std::string& line) {
          std::printf("%s\n", line.c_str());
          std::fflush(stdout);
          return true;
        },
        print_recent);
    if (resp.ok() && resp->value("ok", false)) return 0;
  } else {
    resp = bw::ControlCall(sock, req);
  }
  if (!resp.ok()) {
    std::fprintf(stderr, "bannerwatch: %s\n", std::string(resp.status().message()).c_str());
    return 1;
  }
  const json& j = *resp;
  if (!j.value("ok", false)) {
    std::fprintf(stderr, "bannerwatch: %s\n", j.value("error", "failed").c_str());
    return 1;
  }
  if (a.has("json") || cmd == "events") {
    if (cmd == "events") {
      print_recent(j);
    } else {
      std::printf("%s\n", j.dump(2).c_str());
    }
    return 0;
  }
  if (cmd == "status") {
    PrintStatus(j);
  } else if (cmd == "query") {
    std::printf("%s", j.value("text", "").c_str());
    std::printf("effective action: %s\n", j.value("effective_action", "none").c_str());
  } else if (cmd == "unlist") {
    std::printf("removed %llu entr%s; %s\n", static_cast<unsigned long long>(j.value("removed", 0)),
                j.value("removed", 0) == 1 ? "y" : "ies", j.value("summary", "").c_str());
  } else if (cmd == "reload") {
    std::printf("reloaded: %s\n", j.value("summary", "").c_str());
  } else {
    std::printf("%s %s (list %s): %s\n", j.value("action", "").c_str(), j.value("cidr", "").c_str(),
                j.value("list", "").c_str(), j.value("summary", "").c_str());
  }
  if (j.contains("warning")) std::fprintf(stderr, "bannerwatch: warning: %s\n", j["warning"].get<std::string>().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage("");
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (cmd == "--version" || cmd == "version") {
    std::printf("bannerwatch 0.1.0\n");
    return 0;
  }
  if (cmd == "run") return CmdRun(argc, argv);
  if (cmd == "check") return CmdCheck(argc, argv);
  if (cmd == "scan") return bw::ScanMain(argc, argv);
  if (cmd == "detach") {
    Args a(argc, argv, 2, {"pin-root"}, {});
    if (!a.error.empty()) return Usage(a.error);
    return bw::DetachAll(a.get("pin-root", BW_PIN_ROOT_DEFAULT));
  }
  for (const char* c : {"status", "block", "watch", "allow", "unlist", "query", "events", "reload"})
    if (cmd == c) return CmdClient(cmd, argc, argv);
  return Usage(absl::StrCat("unknown command '", cmd, "'"));
}
