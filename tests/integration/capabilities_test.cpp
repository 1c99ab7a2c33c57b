// Least privilege, for real: `bannerwatch run` as an unprivileged user (uid 65534) holding only
// ambient capabilities, in the test's namespace; a missing capability named before anything is
// loaded; and the control socket opened to a group, read-only for it, mutating for an admin group.
// The capability set found necessary on the test machine's kernel: CAP_BPF CAP_NET_ADMIN
// CAP_PERFMON load, attach, detect, detach, and take over what a previous daemon left attached (it
// recognises its own filters through the programs it pins, not by program id, which would need
// CAP_SYS_ADMIN), with RLIMIT_MEMLOCK unlimited, which kernels before 5.11 (Debian 11's 5.10)
// charge BPF maps to. The VM suite runs this file on Debian's 5.10, 6.1 and 6.12.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/dataplane/kernel_probe.hpp"
#include "lib/topology.hpp"

namespace bw::test {
namespace {

constexpr const char* kNobody = "65534";

// A work directory and a pin root the unprivileged user owns; the pin root is removed (with
// whatever a failed run pinned) at the end.
struct NobodyFiles {
  explicit NobodyFiles(Topology& t) {
    dir = t.dir() + "/nobody";
    cgroup = t.cgroup();
    pin_root = "/sys/fs/bpf/bwt-cap-" + std::to_string(getpid());
    std::filesystem::create_directories(dir);
    std::filesystem::create_directories(pin_root);
    REQUIRE(Sh("chown " + std::string(kNobody) + ":" + kNobody + " " + dir + " " + pin_root) == 0);
    WriteFile(dir + "/policy.yaml", "ports: [443]\nbanner:\n  server: alert\n");
  }
  ~NobodyFiles() {
    std::error_code ec;
    std::filesystem::remove_all(pin_root, ec);
  }
  std::vector<std::string> RunArgs() const {
    return {BannerwatchBinary(), "run",        "--config", dir + "/policy.yaml",
            "--iface",           kHostIf,      "--pin-root", pin_root,
            "--eve",             dir + "/eve.json", "--control", dir + "/control.sock",
            "--state",           dir + "/state.json", "--metrics", "off",
            "--cgroup",          cgroup};
  }
  std::string dir, pin_root, cgroup;
};

// As the packaged unit starts it: RLIMIT_MEMLOCK raised first (LimitMEMLOCK=infinity), which
// kernels before 5.11 charge BPF maps to, then only the capabilities. A test machine whose root
// may not raise it (no CAP_SYS_RESOURCE) passes on the highest it has.
std::string MemlockMax() {
  const rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
  if (setrlimit(RLIMIT_MEMLOCK, &unlimited) == 0) return "unlimited";  // root with CAP_SYS_RESOURCE
  rlimit r{};
  getrlimit(RLIMIT_MEMLOCK, &r);
  return r.rlim_max == RLIM_INFINITY ? "unlimited" : std::to_string(r.rlim_max);
}

std::vector<std::string> Setpriv(const std::string& caps, std::vector<std::string> args) {
  std::vector<std::string> v = {"prlimit", "--memlock=" + MemlockMax(), "--",
                                "setpriv", absl::StrCat("--reuid=", kNobody),
                                absl::StrCat("--regid=", kNobody), "--clear-groups",
                                "--inh-caps=" + caps, "--ambient-caps=" + caps};
  v.insert(v.end(), args.begin(), args.end());
  return v;
}

// Runs the daemon as nobody with `caps` until it serves, probes it with ssh to a server on 443
// that answers with its SSH banner, stops it; returns its log.
std::string RunAndProbe(Topology& t, NobodyFiles& f, const std::string& caps, bool* alerted) {
  auto sshd = StartSshd(t, 443);
  const std::string log = f.dir + "/daemon.log";
  Process d(&t.host(), Setpriv(caps, f.RunArgs()), log);
  bool up = WaitFor(
      [&] {
        return !d.Running() || Sh(BannerwatchBinary() + " status --control " + f.dir +
                                  "/control.sock >/dev/null 2>&1") == 0;
      },
      15000);
  INFO("daemon log:\n" << ReadFile(log));
  REQUIRE(up);
  REQUIRE(d.Running());
  std::string out;
  SshProbe(t, kServerV4, 443, 5, &out);
  *alerted = WaitFor([&] { return absl::StrContains(ReadFile(f.dir + "/eve.json"), "1000146"); },
                     5000);
  d.Signal(SIGTERM);
  CHECK(d.Wait(10000) == 0);
  return ReadFile(log);
}

std::string TcEgress(Topology& t) {
  return t.host().Out(std::string("tc filter show dev ") + kHostIf + " egress");
}

TEST_CASE("capabilities: run as uid 65534 with CAP_BPF CAP_NET_ADMIN CAP_PERFMON only") {
  Topology t;
  NobodyFiles f(t);
  bool alerted = false;
  std::string log = RunAndProbe(t, f, "+bpf,+net_admin,+perfmon", &alerted);
  INFO(log);
  CHECK(alerted);
  CHECK(absl::StrContains(log, "attached to bwh0"));
  CHECK(!absl::StrContains(log, "warning"));
  // The host context too: its hooks attach with the same capabilities.
  CHECK(absl::StrContains(log, "process attribution: "));
  CHECK(absl::StrContains(log, "connect-time refusal: cgroup " + t.cgroup()));
  // A clean stop: nothing attached, nothing pinned.
  CHECK(!absl::StrContains(TcEgress(t), "bw_tc_egress"));
  CHECK(!absl::StrContains(t.host().Out(std::string("ip link show dev ") + kHostIf), "xdp"));
  CHECK((!std::filesystem::exists(f.pin_root) || std::filesystem::is_empty(f.pin_root)));
}

TEST_CASE("capabilities: without CAP_SYS_ADMIN a restart takes over what keep_on_exit left, "
          "and `detach` removes it") {
  Topology t;
  NobodyFiles f(t);
  WriteFile(f.dir + "/policy.yaml", "ports: [443]\nbanner:\n  server: alert\nkeep_on_exit: true\n");
  bool alerted = false;
  std::string first = RunAndProbe(t, f, "+bpf,+net_admin,+perfmon", &alerted);
  INFO("first run:\n" << first);
  CHECK(alerted);
  REQUIRE(absl::StrContains(TcEgress(t), "bw_tc_egress"));  // kept on exit
  // The second daemon recognises the first one's filter and link as its pin root's and swaps its
  // own programs in; the first one's program pin goes once they are off every interface.
  std::filesystem::remove(f.dir + "/eve.json");
  std::string second = RunAndProbe(t, f, "+bpf,+net_admin,+perfmon", &alerted);
  INFO("second run:\n" << second);
  CHECK(alerted);
  CHECK(absl::StrContains(second, "took over bwh0"));
  CHECK(!absl::StrContains(second, "not this pin root's"));
  CHECK(!absl::StrContains(second, "warning"));
  int prog_pins = 0;
  for (const auto& e : std::filesystem::directory_iterator(f.pin_root))
    prog_pins += e.path().filename().string().rfind("prog_", 0) == 0;
  CHECK(prog_pins == 2);  // this daemon's XDP and TC programs, the first one's gone
  // `bannerwatch detach` as the same user, with the same capabilities.
  const std::string out = f.dir + "/detach.log";
  Process d(&t.host(), Setpriv("+bpf,+net_admin,+perfmon",
                               {BannerwatchBinary(), "detach", "--pin-root", f.pin_root}),
            out);
  CHECK(d.Wait(10000) == 0);
  INFO("detach:\n" << ReadFile(out));
  CHECK(!absl::StrContains(TcEgress(t), "bw_tc_egress"));
  CHECK(!absl::StrContains(t.host().Out(std::string("ip link show dev ") + kHostIf), "xdp"));
  CHECK(!std::filesystem::exists(f.pin_root));
}

TEST_CASE("capabilities: RLIMIT_MEMLOCK matters before 5.11 only, and then the error says so") {
  // The default limit of a session (64 KiB), which the user cannot raise.
  Topology t;
  NobodyFiles f(t);
  auto kernel = ProbeKernel();
  REQUIRE(kernel.ok());
  std::vector<std::string> args = Setpriv("+bpf,+net_admin,+perfmon", f.RunArgs());
  args[1] = "--memlock=65536";
  const std::string log = f.dir + "/memlock.log";
  Process d(&t.host(), args, log);
  if (kernel->ktime_coarse) {
    // 5.11 and later charge BPF memory to the cgroup: the limit is not in the way.
    REQUIRE(WaitFor([&] { return absl::StrContains(ReadFile(log), "running: policy"); }, 15000));
    d.Signal(SIGTERM);
    CHECK(d.Wait(10000) == 0);
  } else {
    CHECK(d.Wait(15000) == 1);
    INFO(ReadFile(log));
    CHECK(absl::StrContains(ReadFile(log), "charges BPF maps to RLIMIT_MEMLOCK"));
    CHECK(absl::StrContains(ReadFile(log), "LimitMEMLOCK=infinity"));
  }
}

TEST_CASE("capabilities: a missing capability is named, with how to grant it") {
  Topology t;
  NobodyFiles f(t);
  struct Case {
    const char* caps;
    const char* missing;
  };
  for (Case c : {Case{"+bpf,+perfmon", "CAP_NET_ADMIN"}, Case{"+net_admin,+perfmon", "CAP_BPF"},
                 Case{"+bpf,+net_admin", "CAP_PERFMON"}}) {
    INFO(c.caps);
    const std::string log = f.dir + "/missing.log";
    Process d(&t.host(), Setpriv(c.caps, f.RunArgs()), log);
    int st = d.Wait(10000);
    std::string out = ReadFile(log);
    INFO(out);
    CHECK(st == 1);
    CHECK(absl::StrContains(out, std::string("bannerwatch run needs ") + c.missing));
    CHECK(absl::StrContains(out, "AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON"));
    CHECK(absl::StrContains(out, "--ambient-caps="));
    CHECK(!absl::StrContains(out, "attached"));
    std::filesystem::remove(log);
  }
  CHECK(std::filesystem::is_empty(f.pin_root));  // refused before anything was loaded
}

TEST_CASE("capabilities: the control socket's group reads; its admin group changes") {
  Topology t;
  // nogroup (65534) and staff (50) exist on every Debian system.
  Daemon d(t, "ports: [443]\ncontrol_group: nogroup\ncontrol_admin_group: staff\n");
  d.Start();
  struct stat st {};
  REQUIRE(stat(d.control_path().c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0660);
  CHECK(st.st_gid == 65534u);
  const std::string bin = BannerwatchBinary();
  const std::string sock = " --control " + d.control_path();
  auto as = [&](const std::string& ids, const std::string& args, std::string* out) {
    int s = 0;
    *out = ShOut("setpriv --reuid=65534 " + ids + " " + bin + " " + args + sock + " 2>&1", &s);
    return s;
  };
  std::string out;
  // A member of the socket's group: the read-only commands.
  CHECK(as("--regid=65534 --clear-groups", "status", &out) == 0);
  CHECK(as("--regid=65534 --clear-groups", "query 203.0.113.7", &out) == 0);
  CHECK(as("--regid=65534 --clear-groups", "list", &out) == 0);
  CHECK(as("--regid=65534 --clear-groups", "events --count 1", &out) == 0);
  for (const char* m : {"block 203.0.113.7", "watch 203.0.113.8", "allow 203.0.113.9",
                        "unlist 203.0.113.7", "reload"}) {
    INFO(m << ": " << out);
    CHECK(as("--regid=65534 --clear-groups", m, &out) != 0);
    CHECK(absl::StrContains(out, "control_admin_group"));
    CHECK(absl::StrContains(out, "'staff'"));
  }
  // In the admin group (as a supplementary group, and as the primary one): everything.
  CHECK(as("--regid=65534 --groups=50", "block 203.0.113.7 --reason test", &out) == 0);
  INFO(out);
  CHECK(as("--regid=65534 --groups=50", "unlist 203.0.113.7", &out) == 0);
  // Not in the socket's group: the file mode keeps it out.
  CHECK(as("--regid=50 --clear-groups", "status", &out) != 0);
  CHECK(absl::StrContains(out, "permission denied"));
  // Root, as ever.
  CHECK(d.Cli("block 203.0.113.10") == 0);
  CHECK(d.Stop() == 0);
}

TEST_CASE("capabilities: without control_group the socket is 0600 and only root changes state") {
  Topology t;
  Daemon d(t, "ports: [443]\n");
  d.Start();
  struct stat st {};
  REQUIRE(stat(d.control_path().c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(d.Cli("block 203.0.113.10") == 0);
  // A non-root peer that gets in anyway (here: the socket opened by hand) reads, and is refused
  // changes, naming what would allow them.
  REQUIRE(chmod(d.control_path().c_str(), 0666) == 0);
  int s = 0;
  std::string out = ShOut("setpriv --reuid=65534 --regid=65534 --clear-groups " +
                              BannerwatchBinary() + " block 203.0.113.11 --control " +
                              d.control_path() + " 2>&1",
                          &s);
  INFO(out);
  CHECK(s != 0);
  CHECK(absl::StrContains(out, "needs root"));
  CHECK(absl::StrContains(out, "control_admin_group"));
  CHECK(ShOut("setpriv --reuid=65534 --regid=65534 --clear-groups " + BannerwatchBinary() +
                  " status --control " + d.control_path() + " >/dev/null 2>&1; echo $?") == "0\n");
  CHECK(d.Stop() == 0);
}

}  // namespace
}  // namespace bw::test
