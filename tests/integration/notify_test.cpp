// The live daemon under a service manager's eye: a datagram socket of the test's own as
// $NOTIFY_SOCKET (a path: an abstract name would not reach the daemon's network namespace), and
// $WATCHDOG_USEC. What systemd itself makes of it is tests/vm/bw-vm service (systemd as PID 1).
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "lib/netns.hpp"
#include "lib/topology.hpp"
#include "maps/maps.hpp"

namespace bw::test {
namespace {

class NotifyReceiver {
 public:
  explicit NotifyReceiver(const std::string& path) {
    fd_ = Fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd_.valid());
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof(sa.sun_path));
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
  }
  // Every datagram that arrives within `ms`.
  std::vector<std::string> For(int ms) {
    std::vector<std::string> got;
    absl::Time end = absl::Now() + absl::Milliseconds(ms);
    while (absl::Now() < end)
      if (auto d = Next(end)) got.push_back(std::move(*d));
    return got;
  }
  // Datagrams until one contains `what` (true) or `ms` pass (false); all of them in `seen`.
  bool Until(const std::string& what, int ms, std::vector<std::string>* seen) {
    absl::Time end = absl::Now() + absl::Milliseconds(ms);
    while (absl::Now() < end) {
      auto d = Next(end);
      if (!d) continue;
      seen->push_back(std::move(*d));
      if (absl::StrContains(seen->back(), what)) return true;
    }
    return false;
  }
  // One datagram if one arrives before `end`.
  std::optional<std::string> Next(absl::Time end) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(end - absl::Now()))) <= 0)
      return std::nullopt;
    char buf[4096];
    ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n <= 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }

 private:
  Fd fd_;
};

int Count(const std::vector<std::string>& msgs, const std::string& what) {
  int n = 0;
  for (const std::string& m : msgs) n += absl::StrContains(m, what);
  return n;
}

TEST_CASE("a daemon under a service manager: READY=1 once attached, watchdog pings, RELOADING=1 "
          "and READY=1 around every reload (SIGHUP, control socket, changed file), STOPPING=1") {
  Topology t;
  std::string path = t.dir() + "/notify";
  NotifyReceiver r(path);
  // 400 ms: the loop pings at least every 200 ms (on its 100 ms timer: every 200 or 300 ms).
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  ::setenv("WATCHDOG_USEC", "400000", 1);
  ::unsetenv("WATCHDOG_PID");
  Daemon d(t, "ports: [443]\nbanner:\n  server: alert\n");
  d.Start();  // returns once the control socket answers: the loop runs, READY=1 was sent
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  std::vector<std::string> seen;
  REQUIRE(r.Until("READY=1", 2000 * TimeScale(), &seen));
  INFO("messages: " << absl::StrJoin(seen, " | "));
  CHECK(absl::StrContains(seen.back(), absl::StrCat("STATUS=enforcing ")));
  CHECK(absl::StrContains(seen.back(), absl::StrCat(" on ", kHostIf)));
  CHECK(d.Status()["interfaces"].size() == 1);

  // The watchdog: pings keep coming from the running loop.
  std::vector<std::string> two_s = r.For(2000);
  INFO("in 2 s: " << absl::StrJoin(two_s, " | "));
  CHECK(Count(two_s, "WATCHDOG=1") >= 4);
  CHECK(Count(two_s, "WATCHDOG=1") <= 11);

  int pid = d.Status()["pid"];
  REQUIRE(::kill(pid, SIGHUP) == 0);
  std::vector<std::string> reload;
  REQUIRE(r.Until("RELOADING=1", 5000 * TimeScale(), &reload));
  CHECK(absl::StrContains(reload.back(), "MONOTONIC_USEC="));
  REQUIRE(r.Until("READY=1", 5000 * TimeScale(), &reload));
  CHECK(absl::StrContains(reload.back(), "STATUS=enforcing "));

  // The control socket's reload, then a policy the daemon sees change on disk (one that does not
  // check out: the STATUS= that follows says the last reload was rejected).
  std::vector<std::string> control;
  REQUIRE(d.Cli("reload") == 0);
  REQUIRE(r.Until("RELOADING=1", 5000 * TimeScale(), &control));
  REQUIRE(r.Until("READY=1", 5000 * TimeScale(), &control));
  CHECK(absl::StrContains(control.back(), "STATUS=enforcing "));
  std::vector<std::string> changed;
  d.WritePolicy("ports: [443]\nbanner:\n  server: sideways\n");
  REQUIRE(r.Until("RELOADING=1", 10000 * TimeScale(), &changed));
  REQUIRE(r.Until("READY=1", 5000 * TimeScale(), &changed));
  INFO("after the change: " << absl::StrJoin(changed, " | "));
  CHECK(absl::StrContains(changed.back(), "last reload rejected"));

  CHECK(d.Stop() == 0);
  std::vector<std::string> stop;
  CHECK(r.Until("STOPPING=1", 2000, &stop));
}

}  // namespace
}  // namespace bw::test
