// bannerwatch — command-line entry point: the daemon (`run`) and the operator's subcommands.
// The command line itself (subcommands, options, help) is daemon/cli/cli.cpp.
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "daemon/cli/capabilities.hpp"
#include "daemon/cli/cli.hpp"
#include "daemon/control/control.hpp"
#include "daemon/dataplane/pin_root.hpp"
#include "daemon/service/daemon.hpp"
#include "daemon/dataplane/kernel_probe.hpp"
#include "daemon/dataplane/libbpf_log.hpp"
#include "daemon/dataplane/loader.hpp"
#include "daemon/policy/policy.hpp"
#include "daemon/scan/scan.hpp"

namespace {

using json = nlohmann::json;

int CmdRun(const bw::DaemonOptions& o) {
  // The capabilities, not the user: root passes, and so does any user granted them.
  if (absl::Status st = bw::CapabilityCheck("bannerwatch run"); !st.ok()) {
    std::fprintf(stderr, "bannerwatch: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return bw::RunDaemon(o);
}

// `check`'s second half: what this kernel runs. Probes its BPF, then loads the variant it allows
// (maps of its own, nothing pinned or attached) to hear the verifier's answer. False when the
// programs do not load.
bool CheckKernel(const bw::Policy& p, const bw::CompiledPolicy& c) {
  if (!bw::CapabilityCheck("check").ok()) {
    std::printf("kernel: not probed (check as root, or with the capabilities `run` needs, to "
                "probe this kernel's BPF and load the programs)\n");
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

int CmdCheck(const std::string& path) {
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
  if (e.contains("syslog"))
    std::printf("EVE to syslog %s: %llu sent, %llu dropped\n",
                e["syslog"].value("socket", "").c_str(),
                static_cast<unsigned long long>(e["syslog"].value("sent", uint64_t{0})),
                static_cast<unsigned long long>(e["syslog"].value("dropped", uint64_t{0})));
  if (j.contains("reload_buffers")) {
    const auto& b = j["reload_buffers"];
    std::printf("reload buffers: %.1f MiB held%s\n",
                static_cast<double>(b.value("held_bytes", uint64_t{0})) / (1024.0 * 1024.0),
                !b.value("keep", true) ? " (keep_reload_buffers: false)"
                : b.value("making", false) ? " (being made)" : "");
  }
  if (j.contains("crowdsec")) {
    const auto& cs = j["crowdsec"];
    std::string last_ok = cs["last_ok"].is_string() ? cs["last_ok"].get<std::string>() : "never";
    std::printf("crowdsec %s: %s, %llu decisions held, last answer %s (%llu ok, %llu failed)%s%s\n",
                cs.value("url", "").c_str(), cs.value("up", false) ? "up" : "DOWN",
                static_cast<unsigned long long>(cs.value("decisions", uint64_t{0})), last_ok.c_str(),
                static_cast<unsigned long long>(cs.value("polls_ok", uint64_t{0})),
                static_cast<unsigned long long>(cs.value("polls_failed", uint64_t{0})),
                cs.value("last_error", "").empty() ? "" : ": ",
                cs.value("last_error", "").c_str());
  }
  const auto& r = j["last_reload"];
  std::printf("last reload %s: %s%s\n", r.value("time", "").c_str(),
              r.value("ok", false) ? "ok, " : "FAILED: ",
              r.value("ok", false) ? r.value("summary", "").c_str() : r.value("error", "").c_str());
}

int CmdClient(const bw::CommandLine& c) {
  const std::string& cmd = c.command;
  const std::string& sock = c.control;
  const json& req = c.request;
  // events: the lines that pass the filter, as JSON or (--fast) one line per alert.
  auto show = [&c](const std::string& line) {
    std::string out = c.events_fast ? bw::FastLine(line) : line;
    std::printf("%s\n", out.c_str());
  };
  auto print_recent = [&](const json& j) {
    std::vector<std::string> kept;
    for (const auto& l : j["recent"]) {
      std::string s = l.get<std::string>();
      if (c.events_filter.MatchLine(s)) kept.push_back(std::move(s));
    }
    const size_t from = kept.size() > c.events_count ? kept.size() - c.events_count : 0;
    for (size_t i = from; i < kept.size(); ++i) show(kept[i]);
    std::fflush(stdout);
  };
  absl::StatusOr<json> resp;
  if (cmd == "events" && req.value("follow", false)) {
    // The recent lines first, then every new one as the daemon writes it, until interrupted
    // (or stdout goes away). The daemon ending the stream is an error (ControlCall's).
    resp = bw::ControlCall(
        sock, req,
        [&](const std::string& line) {
          if (c.events_filter.MatchLine(line)) show(line);
          return std::fflush(stdout) == 0;
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
  if (c.json || cmd == "events") {
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
  } else if (cmd == "list") {
    std::fputs(bw::FormatRuntimeList(j, absl::Now()).c_str(), stdout);
  } else {
    // The entry as it now stands: a reason or list kept from before shows here.
    std::string what = absl::StrCat("list ", j.value("list", ""));
    if (!j.value("reason", "").empty()) absl::StrAppend(&what, ", reason \"", j.value("reason", ""), "\"");
    if (j.contains("expires"))
      absl::StrAppend(&what, j["expires"].is_string() ? ", expires " + j["expires"].get<std::string>()
                                                      : std::string(", no expiry"));
    std::printf("%s %s (%s): %s\n", j.value("action", "").c_str(), j.value("cidr", "").c_str(),
                what.c_str(), j.value("summary", "").c_str());
  }
  if (j.contains("warning")) std::fprintf(stderr, "bannerwatch: warning: %s\n", j["warning"].get<std::string>().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bw::CommandLine c = bw::ParseCommandLine(argc, argv);
  if (c.exit_code >= 0) {
    std::fputs(c.text.c_str(), c.exit_code == 0 ? stdout : stderr);
    return c.exit_code;
  }
  if (c.command == "run") return CmdRun(c.run);
  if (c.command == "check") return CmdCheck(c.config);
  if (c.command == "scan") return bw::ScanMain(std::move(c.scan), c.verbose);
  if (c.command == "detach") return bw::DetachAll(c.pin_root);
  return CmdClient(c);
}
