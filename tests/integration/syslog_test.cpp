// EVE to syslog, received by a real rsyslog (Debian's rsyslogd, started by the test on a socket of
// its own with RFC 5424 parsing, writing what it parsed to a file), alongside the EVE file: the
// 1000146 alert of a real sshd on 443 arrives in both, the syslog one with the facility, level,
// APP-NAME, PROCID and MSGID rsyslog read from the header and the same JSON as the file's line.
// Then rsyslog stops: the daemon keeps alerting to its file, counts the syslog lines it could not
// send, and sends again once rsyslog is back.
#include <signal.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/test_util.hpp"
#include "lib/topology.hpp"

namespace bw::test {
namespace {

struct Rsyslog {
  Rsyslog(Topology& t) : dir(t.dir() + "/rsyslog") {
    std::filesystem::create_directories(dir);
    WriteFile(dir + "/rsyslog.conf", absl::StrCat(
        "global(workDirectory=\"", dir, "\")\n",
        "module(load=\"imuxsock\" SysSock.Use=\"off\")\n",
        // The regular parser chain (RFC 5424, then 3164), not imuxsock's local-socket shortcut.
        "input(type=\"imuxsock\" Socket=\"", dir, "/log\" UseSpecialParser=\"off\")\n",
        "template(name=\"fields\" type=\"string\" string=\"%syslogfacility-text%.%syslogseverity-"
        "text% app=%app-name% pid=%procid% msgid=%msgid% msg=%msg%\\n\")\n",
        "action(type=\"omfile\" file=\"", dir, "/received.log\" template=\"fields\")\n"));
    Start();
  }
  void Start() {
    proc = std::make_unique<Process>(
        nullptr,
        std::vector<std::string>{"rsyslogd", "-n", "-f", dir + "/rsyslog.conf", "-i", dir + "/pid"},
        dir + "/rsyslogd.log");
    REQUIRE(WaitFor([&] { return std::filesystem::exists(dir + "/log"); }, 5000));
  }
  void Stop() {
    proc->Signal(SIGTERM);
    proc->Wait(5000);
    proc.reset();
    std::filesystem::remove(dir + "/log");
  }
  std::vector<std::string> Lines() const {
    std::vector<std::string> v;
    for (absl::string_view l : absl::StrSplit(ReadFile(dir + "/received.log"), '\n', absl::SkipEmpty()))
      v.emplace_back(l);
    return v;
  }
  std::string dir;
  std::unique_ptr<Process> proc;
};

std::vector<std::string> WithSid(const std::vector<std::string>& lines, int sid) {
  std::vector<std::string> out;
  for (const std::string& l : lines)
    if (absl::StrContains(l, absl::StrCat("\"signature_id\":", sid))) out.push_back(l);
  return out;
}

TEST_CASE("syslog: EVE lines reach a real rsyslog as RFC 5424 messages, beside the EVE file",
          "[host-tools]") {
  if (Sh("command -v rsyslogd >/dev/null") != 0)
    FAIL("rsyslogd is needed (scripts/install-deps installs Debian's rsyslog)");
  Topology t;
  Rsyslog rs(t);
  auto sshd = StartSshd(t, 443);
  Daemon d(t, absl::StrCat("ports: [443]\nbanner:\n  server: alert\n  client: off\n",
                           "output:\n  syslog:\n    socket: ", rs.dir, "/log\n",
                           "    facility: local3\n    level: notice\n"));
  d.Start();
  INFO("daemon log:\n" << d.log());
  CHECK(absl::StrContains(d.log(), absl::StrCat("and syslog ", rs.dir, "/log")));

  std::string out;
  SshProbe(t, kServerV4, 443, 5, &out);
  REQUIRE(WaitFor([&] { return !WithSid(rs.Lines(), 1000146).empty(); }, 10000));
  const std::string got = WithSid(rs.Lines(), 1000146).at(0);
  INFO("rsyslog received: " << got);
  const int pid = d.Status()["pid"];
  CHECK(absl::StartsWith(got, absl::StrCat("local3.notice app=bannerwatch pid=", pid,
                                           " msgid=eve msg={")));
  // The message is the EVE file's line, byte for byte.
  const std::string json = got.substr(got.find("msg=") + 4);
  bool same = false;
  for (absl::string_view l : absl::StrSplit(ReadFile(d.eve_path()), '\n'))
    same |= l == json;
  CHECK(same);
  auto j = nlohmann::json::parse(json);
  CHECK(j["src_port"] == 443);
  CHECK(d.Status()["eve"]["syslog"]["sent"].get<uint64_t>() >= 1);

  // No receiver: the file still gets the alert, the syslog line is counted as dropped.
  rs.Stop();
  SshProbe(t, kServerV4, 443, 5, &out);
  REQUIRE(WaitFor([&] {
    return d.Status()["eve"]["syslog"]["dropped"].get<uint64_t>() >= 1;
  }, 10000));
  CHECK(WaitFor([&] {
    int n = 0;
    for (absl::string_view l : absl::StrSplit(ReadFile(d.eve_path()), '\n'))
      n += absl::StrContains(l, "\"signature_id\":1000146");
    return n >= 2;
  }, 5000));
  // rsyslog back (a new socket at the same path): lines flow again.
  rs.Start();
  Settle(1200);  // the sink tries the path again at most once a second
  SshProbe(t, kServerV4, 443, 5, &out);
  CHECK(WaitFor([&] { return WithSid(rs.Lines(), 1000146).size() >= 2; }, 10000));
  CHECK(d.Stop() == 0);
}

}  // namespace
}  // namespace bw::test
