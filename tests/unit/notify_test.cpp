// The sd_notify sender (daemon/service/notify.hpp): a datagram socket of the test's own stands in
// for systemd's, at a path and at an abstract name; an unusable or missing NOTIFY_SOCKET makes
// every send a no-op. The daemon's use of it under systemd as PID 1 is tests/vm/bw-vm service.
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/service/notify.hpp"
#include "lib/test_util.hpp"

namespace bw::test {
namespace {

// A bound SOCK_DGRAM socket; `name` a path, or '@' and an abstract name.
class Receiver {
 public:
  explicit Receiver(const std::string& name) {
    fd_ = Fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    REQUIRE(fd_.valid());
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, name.data(), name.size());
    bool abstract = name[0] == '@';
    if (abstract) sa.sun_path[0] = '\0';
    socklen_t len = offsetof(sockaddr_un, sun_path) + name.size() + (abstract ? 0 : 1);
    REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), len) == 0);
  }
  // The next datagram, "" when none is waiting.
  std::string Next() {
    char buf[4096];
    ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, n) : "";
  }

 private:
  Fd fd_;
};

// Sets or clears environment variables for one test, restoring them afterwards.
class Env {
 public:
  void Set(const char* name, const char* value) {
    const char* old = ::getenv(name);
    saved_.push_back({name, old ? std::optional<std::string>(old) : std::nullopt});
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~Env() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second) ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else ::unsetenv(it->first.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST_CASE("notify: messages arrive as one datagram each at a path socket") {
  TempDir dir("bw-notify");
  std::string path = dir.path() + "/notify";
  Receiver r(path);
  Notifier n = Notifier::ForAddress(path, absl::ZeroDuration());
  REQUIRE(n.enabled());
  CHECK(n.Send("READY=1\nSTATUS=enforcing"));
  CHECK(n.Send("STOPPING=1"));
  CHECK(r.Next() == "READY=1\nSTATUS=enforcing");
  CHECK(r.Next() == "STOPPING=1");
  CHECK(r.Next().empty());
}

TEST_CASE("notify: an abstract name ('@' in NOTIFY_SOCKET) is reached") {
  std::string name = absl::StrCat("@bw-notify-test-", ::getpid());
  Receiver r(name);
  Env env;
  env.Set("NOTIFY_SOCKET", name.c_str());
  env.Set("WATCHDOG_USEC", nullptr);
  Notifier n = Notifier::FromEnvironment();
  REQUIRE(n.enabled());
  CHECK(n.watchdog() == absl::ZeroDuration());
  CHECK(n.Send("READY=1"));
  CHECK(r.Next() == "READY=1");
}

TEST_CASE("notify: a missing, bad or unreachable NOTIFY_SOCKET is ignored") {
  Env env;
  env.Set("NOTIFY_SOCKET", nullptr);
  Notifier none = Notifier::FromEnvironment();
  CHECK_FALSE(none.enabled());
  CHECK_FALSE(none.Send("READY=1"));
  std::vector<std::string> bads = {"", "@", "relative/path", "x", std::string(200, '/')};
  for (const std::string& bad : bads) {
    INFO(bad);
    env.Set("NOTIFY_SOCKET", bad.c_str());
    Notifier n = Notifier::FromEnvironment();
    CHECK_FALSE(n.enabled());
    CHECK_FALSE(n.Send("READY=1"));
  }
  TempDir dir("bw-notify");
  // Well-formed, but nobody listens (no such file; a file that is no socket).
  Notifier gone = Notifier::ForAddress(dir.path() + "/nobody", absl::ZeroDuration());
  CHECK(gone.enabled());
  CHECK_FALSE(gone.Send("READY=1"));
  Notifier file = Notifier::ForAddress(dir.Write("plain", "x"), absl::ZeroDuration());
  CHECK_FALSE(file.Send("READY=1"));
  file.WatchdogTick(absl::Now());  // no watchdog: nothing, and no crash
}

TEST_CASE("notify: WATCHDOG_USEC turns the watchdog on for this pid only") {
  Env env;
  env.Set("NOTIFY_SOCKET", "@bw-notify-test-wd");
  env.Set("WATCHDOG_USEC", "20000000");
  env.Set("WATCHDOG_PID", nullptr);
  CHECK(Notifier::FromEnvironment().watchdog() == absl::Seconds(20));
  std::string me = std::to_string(::getpid()), other = std::to_string(::getpid() + 1);
  env.Set("WATCHDOG_PID", me.c_str());
  CHECK(Notifier::FromEnvironment().watchdog() == absl::Seconds(20));
  env.Set("WATCHDOG_PID", other.c_str());
  CHECK(Notifier::FromEnvironment().watchdog() == absl::ZeroDuration());
  env.Set("WATCHDOG_PID", nullptr);
  for (const char* bad : {"0", "-5", "soon", ""}) {
    INFO(bad);
    env.Set("WATCHDOG_USEC", bad);
    CHECK(Notifier::FromEnvironment().watchdog() == absl::ZeroDuration());
  }
}

TEST_CASE("notify: the watchdog pings at most once per half interval, and again after it") {
  TempDir dir("bw-notify");
  std::string path = dir.path() + "/notify";
  Receiver r(path);
  Notifier n = Notifier::ForAddress(path, absl::Seconds(10));
  absl::Time t0 = absl::FromUnixSeconds(1000);
  n.WatchdogTick(t0);  // the first tick pings
  CHECK(r.Next() == "WATCHDOG=1");
  for (int ms = 100; ms < 5000; ms += 100) n.WatchdogTick(t0 + absl::Milliseconds(ms));
  CHECK(r.Next().empty());
  n.WatchdogTick(t0 + absl::Seconds(5));
  CHECK(r.Next() == "WATCHDOG=1");
  CHECK(r.Next().empty());
}

TEST_CASE("notify: a STATUS= value stays one line") {
  CHECK(Notifier::StatusLine("policy rejected:\nline 3: bad") == "policy rejected: line 3: bad");
}

}  // namespace
}  // namespace bw::test
