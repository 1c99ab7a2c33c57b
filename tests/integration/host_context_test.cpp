// Host context, live: the daemon names the local process behind its events, refuses connect()
// and sendmsg() to blocked addresses with EPERM, and finds a beaconing client. The clients are
// real programs (OpenSSH's ssh, bash's /dev/tcp, a forked sender) run in the test's namespace
// and in the test's cgroup (Topology::cgroup(), the daemon's --cgroup), with known pids.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "lib/netns.hpp"
#include "lib/probe.hpp"
#include "lib/test_util.hpp"
#include "lib/topology.hpp"

namespace bw::test {
namespace {

using json = nlohmann::json;

std::vector<json> AlertsWithSid(Daemon& d, int sid) {
  std::vector<json> out;
  for (const json& j : d.EveLines())
    if (j["alert"]["signature_id"] == sid) out.push_back(j);
  return out;
}

// `argv` run in the host namespace and the test cgroup, as the same process (sh execs it):
// Process::pid() is the program's pid.
std::unique_ptr<Process> InHost(Topology& t, const std::string& log,
                                const std::vector<std::string>& argv) {
  std::vector<std::string> full = {"sh", "-c",
                                   "echo $$ > " + t.cgroup() + "/cgroup.procs && exec \"$@\"",
                                   "sh"};
  full.insert(full.end(), argv.begin(), argv.end());
  return std::make_unique<Process>(&t.host(), full, log);
}

// A datagram sent with sendto() (no connect) from a forked child named `comm` in the host
// namespace and the test cgroup; returns the child's pid, *err its errno (0: sent).
pid_t SendtoFromChild(Topology& t, const char* comm, int family, const char* addr, int* err) {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(p[0]);
    {
      std::ofstream procs(t.cgroup() + "/cgroup.procs");
      procs << "0" << std::flush;
    }
    int ns = ::open(("/var/run/netns/" + t.host().name()).c_str(), O_RDONLY);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) ::_exit(1);
    ::prctl(PR_SET_NAME, comm);
    int s = ::socket(family, SOCK_DGRAM, 0);
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(5353);
      inet_pton(AF_INET, addr, &a->sin_addr);
      len = sizeof(*a);
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(5353);
      inet_pton(AF_INET6, addr, &a->sin6_addr);
      len = sizeof(*a);
    }
    int e = ::sendto(s, "x", 1, 0, reinterpret_cast<sockaddr*>(&ss), len) < 0 ? errno : 0;
    (void)!::write(p[1], &e, sizeof(e));
    ::_exit(0);
  }
  ::close(p[1]);
  REQUIRE(::read(p[0], err, sizeof(*err)) == sizeof(*err));
  ::close(p[0]);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

}  // namespace

TEST_CASE("host context: the SSH client that got a banner from :443 is named in 1000146 and 1000147") {
  Topology t;
  REQUIRE_FALSE(t.cgroup().empty());
  auto sshd = StartSshd(t, 443);
  Daemon d(t, kEmptyPolicy);
  d.Start();
  json host = d.Status()["host"];
  INFO(host.dump());
  REQUIRE(host["attribution"] == true);
  Settle(300);
  auto ssh = InHost(t, t.dir() + "/ssh.log",
                    {"ssh", "-p", "443", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                     "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
                     std::string("nobody@") + kServerV4, "true"});
  const pid_t pid = ssh->pid();
  ssh->Wait(15000);
  REQUIRE(WaitFor([&] { return !AlertsWithSid(d, 1000146).empty(); }, 5000));
  for (int sid : {1000146, 1000147}) {
    json a = AlertsWithSid(d, sid).at(0);
    INFO(a.dump());
    REQUIRE(a.contains("process"));
    CHECK(a["process"]["pid"] == pid);
    CHECK(a["process"]["name"] == "ssh");
    CHECK(a["process"]["executable"] == "/usr/bin/ssh");
    CHECK(a["process"]["user"]["id"] == getuid());
    CHECK(a["process"]["user"]["name"] == "root");
    CHECK(a["process"]["cgroup"]["path"].get<std::string>().find("/bwt-") != std::string::npos);
  }
  // The server's end is not this host's: no process on the events of the server's own packets
  // is needed; the status counts what was named.
  json s = d.Status();
  CHECK(s["host"]["events_named"].get<int>() >= 2);
  CHECK(d.Stop() == 0);
}

TEST_CASE("host context: connect() and sendto() to a blocked /32 fail at once with EPERM; 1000148 names the caller") {
  Topology t;
  REQUIRE_FALSE(t.cgroup().empty());
  auto sshd = StartSshd(t, 443);
  Daemon d(t, kBlockServerPolicy);
  d.Start();
  REQUIRE(d.Status()["host"]["refusal"] == true);
  struct Case {
    const char* what;
    const char* addr;
  };
  for (const Case& c : {Case{"IPv4", kServerV4}, Case{"IPv6", kServerV6}}) {
    INFO(c.what);
    // TCP: bash's /dev/tcp connect() fails with EPERM at once (TC egress alone would leave it
    // waiting for a SYN-ACK until its timeout).
    auto t0 = std::chrono::steady_clock::now();
    auto bash = InHost(t, t.dir() + "/bash.log",
                       {"bash", "-c", std::string("exec 3<>/dev/tcp/") + c.addr + "/443"});
    const pid_t pid = bash->pid();
    int st = bash->Wait(10000);
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::string log = ReadFile(t.dir() + "/bash.log");
    INFO("bash: " << log << " (" << took << " s)");
    CHECK(st != 0);
    CHECK(log.find("Operation not permitted") != std::string::npos);
    // UDP: sendto() without connect().
    int err = 0;
    pid_t upid = SendtoFromChild(t, "bwtest-udp", c.addr[0] == '2' ? AF_INET6 : AF_INET, c.addr,
                                 &err);
    CHECK(err == EPERM);

    REQUIRE(WaitFor([&] {
      int n = 0;
      for (const json& b : AlertsWithSid(d, 1000148))
        n += b["bannerwatch"].contains("refused") && b["dest_ip"] == c.addr;
      return n >= 2;
    }, 5000));
    bool tcp = false, udp = false;
    for (const json& b : AlertsWithSid(d, 1000148)) {
      if (!b["bannerwatch"].contains("refused") || b["dest_ip"] != c.addr) continue;
      INFO(b.dump());
      CHECK(b["alert"]["action"] == "blocked");
      CHECK(b["bannerwatch"]["list"] == "test-block");
      CHECK(b["direction"] == "to_server");
      REQUIRE(b.contains("process"));
      if (b["proto"] == "TCP") {
        tcp = true;
        CHECK(b["bannerwatch"]["refused"] == "connect");
        CHECK(b["dest_port"] == 443);
        CHECK(b["process"]["pid"] == pid);
        CHECK(b["process"]["name"] == "bash");
        // bash exits on the error within a millisecond, before the daemon could read /proc:
        // the path is the one the refusing program recorded from the task.
        CHECK(b["process"]["executable"] == "/usr/bin/bash");
      } else {
        udp = true;
        CHECK(b["proto"] == "UDP");
        CHECK(b["bannerwatch"]["refused"] == "sendmsg");
        CHECK(b["dest_port"] == 5353);
        CHECK(b["process"]["pid"] == upid);
        CHECK(b["process"]["name"] == "bwtest-udp");
      }
    }
    CHECK(tcp);
    CHECK(udp);
  }
  json s = d.Status();
  CHECK(s["host"]["counters"]["refused_connect"] == 2);
  CHECK(s["host"]["counters"]["refused_sendmsg"] == 2);

  // host.refuse: false keeps TC egress alone: the connect is not refused, it times out.
  std::string p = std::string(kBlockServerPolicy) + "host: {refuse: false}\n";
  d.WritePolicy(p);
  REQUIRE(d.Cli("reload") == 0);
  auto bash = InHost(t, t.dir() + "/bash2.log",
                     {"timeout", "2", "bash", "-c", std::string("exec 3<>/dev/tcp/") + kServerV4 + "/443"});
  CHECK(bash->Wait(10000) == 124);  // timeout's status: the SYNs went unanswered
  CHECK(ReadFile(t.dir() + "/bash2.log").find("Operation not permitted") == std::string::npos);
  CHECK(d.Status()["host"]["refusal"] == false);
  CHECK(d.Stop() == 0);
}

TEST_CASE("host context: a client connecting every 100 ms +-10 % raises a beacon alert; random intervals do not") {
  Topology t;
  REQUIRE_FALSE(t.cgroup().empty());
  // Both remotes watched; the per-source event interval off so that every connection start is
  // seen (a beacon faster than block_event_interval is seen through `beacon.connections: all`).
  Daemon d(t, std::string(R"(ports: [443]
block_event_interval: 0s
lists:
  - name: c2
    action: watch
    entries: [)") + kServerV4 + "/32, " + kServerV6 + R"(/128]
beacon: {min_connections: 10, threshold: 0.8}
)");
  d.Start();
  // 30 connection attempts each (nothing listens on 8081: each is a SYN and a reset), the sleeps
  // drawn by awk from fixed seeds: the beacon's 100 ms * (0.9 .. 1.1), the control's exponential
  // with a mean of 200 ms (Poisson arrivals). Each start also waits for a process to start, a
  // constant that makes any series more regular (tens of ms under emulation): the control's mean
  // is large enough that it stays random with it (with 100 ms it scored 0.8 once in a VM).
  auto client = [&](const std::string& name, const char* addr, const std::string& sleeps) {
    return InHost(t, t.dir() + "/" + name + ".log",
                  {"bash", "-c",
                   "for s in $(" + sleeps + "); do (exec 3<>/dev/tcp/" + addr +
                       "/8081) 2>/dev/null; sleep $s; done"});
  };
  auto beacon = client("beacon", kServerV4,
                       "awk 'BEGIN { srand(7); for (i = 0; i < 30; i++) printf \"%.4f \", 0.1 * (0.9 + 0.2 * rand()) }'");
  auto control = client("control", kServerV6,
                        "awk 'BEGIN { srand(11); for (i = 0; i < 30; i++) printf \"%.4f \", -0.2 * log(1 - rand()) }'");
  const pid_t beacon_pid = beacon->pid();
  CHECK(beacon->Wait(60000) == 0);
  CHECK(control->Wait(60000) == 0);
  Settle(500);
  auto alerts = AlertsWithSid(d, 1000152);
  INFO("status: " << d.Status()["host"].dump());
  REQUIRE(alerts.size() == 1);
  const json& a = alerts[0];
  INFO(a.dump());
  CHECK(a["dest_ip"] == kServerV4);
  CHECK(a["dest_port"] == 8081);
  CHECK(a["src_ip"] == kHostV4);
  CHECK(a["alert"]["signature"] == "BANNERWATCH periodic connections to one remote address likely beaconing");
  CHECK(a["bannerwatch"]["kind"] == "beacon");
  CHECK(a["bannerwatch"]["list"] == "c2");
  const json& b = a["bannerwatch"]["beacon"];
  CHECK(b["score"].get<double>() >= 0.8);
  CHECK(b["connections"].get<int>() >= 10);
  CHECK(b["median_interval_s"].get<double>() > 0.09);
  CHECK(b["median_interval_s"].get<double>() < 0.2);  // the sleep plus a process start or two
  // The process behind it: bash's subshells, each a child of the client script.
  REQUIRE(a.contains("process"));
  CHECK(a["process"]["name"] == "bash");
  CHECK(a["process"]["parent"]["pid"] == beacon_pid);
  // Every start of both was seen (none held back), so the control's silence is a finding.
  json s = d.Status()["host"];
  CHECK(s["beacon_pairs"] == 2);
  CHECK(d.Stop() == 0);
}

}  // namespace bw::test

namespace bw::test {

TEST_CASE("host context: a --cgroup that is no cgroup v2 directory leaves refusal off and says so; TC egress still drops") {
  Topology t;
  auto sshd = StartSshd(t, 443);
  // The test's work directory: a directory, not a cgroup.
  Daemon d(t, kBlockServerPolicy, {"--cgroup", t.dir()});
  d.Start();
  json host = d.Status()["host"];
  INFO(host.dump() << "\nlog:\n" << d.log());
  CHECK(host["refusal"] == false);
  CHECK(host["refusal_off"].get<std::string>().find("is not a cgroup v2 directory") !=
        std::string::npos);
  CHECK(d.log().find("connect-time refusal off") != std::string::npos);
  CHECK(d.log().find("blocks are enforced at TC egress") != std::string::npos);
  // Enforcement itself is unchanged: the connect is not refused, its SYNs are dropped.
  auto bash = std::make_unique<Process>(
      &t.host(),
      std::vector<std::string>{"timeout", "2", "bash", "-c",
                               std::string("exec 3<>/dev/tcp/") + kServerV4 + "/443"},
      t.dir() + "/bash.log");
  CHECK(bash->Wait(10000) == 124);
  CHECK(d.Status()["counters"]["egress"]["block_drops"].get<int>() > 0);
  CHECK(d.Stop() == 0);
}

}  // namespace bw::test
