// What an installed bannerwatch is made of and checked against the program itself: the man page
// and the bash completion name every command and option the CLI's --help has; the capability check
// asks for exactly what the daemon needs; the control-socket group keys parse; the default policy
// and control socket are found without any build path compiled in; the systemd unit passes
// `systemd-analyze verify` and rates at most 2.5 in `systemd-analyze security --offline`.
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "daemon/cli/capabilities.hpp"
#include "daemon/cli/cli.hpp"
#include "daemon/control/control.hpp"
#include "lib/test_util.hpp"
#include "lib/topology.hpp"

namespace bw::test {
namespace {

const std::vector<std::string> kCommands = {"run",   "detach", "check", "scan",  "status",
                                            "block", "watch",  "allow", "unlist", "list",
                                            "query", "events", "reload"};

std::string Help(const std::string& cmd) {
  std::vector<const char*> argv = {"bannerwatch", cmd.c_str(), "--help"};
  CommandLine c = ParseCommandLine(3, argv.data());
  REQUIRE(c.exit_code == 0);
  return c.text;
}

std::set<std::string> Options(const std::string& help) {
  std::set<std::string> out;
  std::regex opt("(--[a-z][a-z-]+)");
  for (auto it = std::sregex_iterator(help.begin(), help.end(), opt); it != std::sregex_iterator();
       ++it)
    out.insert((*it)[1]);
  out.erase("--help");
  return out;
}

// roff writes a "-" in an option as "\-".
std::string Unroff(std::string s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '-') continue;
    out.push_back(s[i]);
  }
  return out;
}

TEST_CASE("packaging: the man page and the completion name every command and option of --help") {
  const std::string man = Unroff(ReadFile(std::string(BW_SOURCE_DIR) + "/docs/bannerwatch.8"));
  const std::string comp =
      ReadFile(std::string(BW_SOURCE_DIR) + "/packaging/bannerwatch.bash-completion");
  REQUIRE(!man.empty());
  REQUIRE(!comp.empty());
  for (const std::string& cmd : kCommands) {
    INFO("command " << cmd);
    // On a bold line of its own (".B run", ".BR block | watch | allow ...").
    CHECK(std::regex_search(man, std::regex("(^|\n)\\.B[IR]? [^\n]*\\b" + cmd + "\\b")));
    CHECK(absl::StrContains(comp, cmd));
    for (const std::string& o : Options(Help(cmd))) {
      INFO("option " << o);
      CHECK(absl::StrContains(man, o));
      CHECK(absl::StrContains(comp, o));
    }
  }
  // The defaults the man page states are the program's.
  for (const char* path : {"/etc/bannerwatch/policy.yaml", "/run/bannerwatch/control.sock",
                           "/var/lib/bannerwatch/state.json", "/var/log/bannerwatch/eve.json",
                           "/sys/fs/bpf/bannerwatch"})
    CHECK(absl::StrContains(man, path));
  CHECK(absl::StrContains(man, kControlSocketDefault));
  CHECK(absl::StrContains(man, BW_PIN_ROOT_DEFAULT));
  // Every command the completion offers exists.
  std::smatch m;
  REQUIRE(std::regex_search(comp, m, std::regex("commands=\"([^\"]*)\"")));
  for (absl::string_view piece : absl::StrSplit(std::string(m[1]), ' ')) {
    const std::string w(piece);
    if (w == "help" || w == "version") continue;
    CHECK(std::find(kCommands.begin(), kCommands.end(), w) != kCommands.end());
  }
  CHECK(Sh("bash -n " + std::string(BW_SOURCE_DIR) + "/packaging/bannerwatch.bash-completion") == 0);
}

TEST_CASE("packaging: the capabilities run needs, and what stands in for them") {
  constexpr uint64_t kNetAdmin = 1ull << 12, kSysAdmin = 1ull << 21, kPerfmon = 1ull << 38,
                     kBpf = 1ull << 39;
  using V = std::vector<std::string>;
  CHECK(MissingCapabilities(~0ull, true).empty());  // root
  CHECK(MissingCapabilities(~0ull, false).empty());
  CHECK(MissingCapabilities(kBpf | kNetAdmin | kPerfmon, true).empty());
  CHECK(MissingCapabilities(kBpf | kPerfmon, true) == V{"CAP_NET_ADMIN"});
  CHECK(MissingCapabilities(kBpf | kNetAdmin, true) == V{"CAP_PERFMON"});
  CHECK(MissingCapabilities(kNetAdmin, true) == V{"CAP_BPF", "CAP_PERFMON"});
  CHECK(MissingCapabilities(0, true) == V{"CAP_NET_ADMIN", "CAP_BPF", "CAP_PERFMON"});
  CHECK(MissingCapabilities(kSysAdmin | kNetAdmin, true).empty());
  // A kernel before 5.8 has no CAP_BPF: CAP_SYS_ADMIN it is.
  CHECK(MissingCapabilities(kBpf | kNetAdmin | kPerfmon, false) == V{"CAP_SYS_ADMIN"});
  CHECK(MissingCapabilities(kSysAdmin | kNetAdmin, false).empty());
  // This process: a unit test run as root passes; as anyone else it is told what to grant.
  absl::Status st = CapabilityCheck("bannerwatch run");
  if (!st.ok()) {
    CHECK(absl::StrContains(st.message(), "CAP_"));
    CHECK(absl::StrContains(st.message(), "AmbientCapabilities="));
  }
}

TEST_CASE("packaging: control_group and control_admin_group parse and are checked") {
  auto p = ParsePolicy("control_group: bannerwatch\ncontrol_admin_group: bw-admin\n", "p.yaml");
  REQUIRE(p.ok());
  CHECK(p->control_group == "bannerwatch");
  CHECK(p->control_admin_group == "bw-admin");
  auto d = ParsePolicy("ports: [443]\n", "p.yaml");
  REQUIRE(d.ok());
  CHECK(d->control_group.empty());
  CHECK(d->control_admin_group.empty());
  for (const char* bad : {"control_group: \"-x\"\n", "control_group: \"a b\"\n",
                          "control_admin_group: \"1000\"\n", "control_group: [a]\n",
                          "control_admin_group: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n"}) {
    INFO(bad);
    auto b = ParsePolicy(bad, "p.yaml");
    REQUIRE(!b.ok());
    CHECK(absl::StrContains(b.status().message(), "p.yaml:1"));
  }
  CHECK(ReadOnlyControlCommand("status"));
  CHECK(ReadOnlyControlCommand("query"));
  CHECK(ReadOnlyControlCommand("events"));
  CHECK(ReadOnlyControlCommand("list"));
  for (const char* m : {"block", "watch", "allow", "unlist", "reload", "anything-else"})
    CHECK(!ReadOnlyControlCommand(m));
}

TEST_CASE("packaging: the default policy and control socket come from no compiled-in path") {
  // This test binary runs from the build tree: its CMakeCache.txt names the source tree.
  CHECK(BuildTreeSourceDir() == std::string(BW_SOURCE_DIR));
  if (access("/etc/bannerwatch/policy.yaml", R_OK) != 0)
    CHECK(DefaultPolicy() == std::string(BW_SOURCE_DIR) + "/policies/default.yaml");
  const char* old = getenv("BANNERWATCH_CONTROL");
  std::string saved = old ? old : "";
  setenv("BANNERWATCH_CONTROL", "/tmp/elsewhere.sock", 1);
  CHECK(DefaultControlSocket() == "/tmp/elsewhere.sock");
  std::vector<const char*> argv = {"bannerwatch", "status"};
  CHECK(ParseCommandLine(2, argv.data()).control == "/tmp/elsewhere.sock");
  unsetenv("BANNERWATCH_CONTROL");
  if (access("/etc/bannerwatch/policy.yaml", R_OK) != 0)
    CHECK(DefaultControlSocket() == kControlSocketDefault);
  if (old) setenv("BANNERWATCH_CONTROL", saved.c_str(), 1);
}

TEST_CASE("packaging: the systemd unit verifies and rates at most 2.5 exposed") {
  if (Sh("command -v systemd-analyze >/dev/null") != 0) {
    WARN("no systemd-analyze: the unit is not checked");
    return;
  }
  const std::string unit = std::string(BW_SOURCE_DIR) + "/packaging/bannerwatch.service";
  // verify wants the ExecStart binary where the unit says it is; security --offline does not.
  int st = 0;
  std::string out = ShOut("systemd-analyze security --offline=true --no-pager " + unit + " 2>&1", &st);
  INFO(out);
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex("Overall exposure level for bannerwatch.service: ([0-9.]+)")));
  CHECK(std::stod(m[1]) <= 2.5);
  std::string v = ShOut("systemd-analyze verify --man=no " + unit + " 2>&1", &st);
  INFO(v);
  // The only complaint allowed: the binary is not installed on the machine running the test.
  for (absl::string_view piece : absl::StrSplit(v, '\n')) {
    const std::string line(piece);
    if (line.empty() || absl::StrContains(line, "/usr/sbin/bannerwatch") ||
        absl::StrContains(line, "bannerwatch.service: Failed to create"))
      continue;
    FAIL_CHECK(line);
  }
}

}  // namespace
}  // namespace bw::test
