// The CLI's side of the control socket (ControlCall, control.hpp): what the operator is told when
// no daemon is there, when the socket is not theirs to use, and when a followed event stream ends.
// A small in-process server stands in for the daemon; the live daemon is
// tests/integration/daemon_test.cpp.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "daemon/control/control.hpp"
#include "lib/test_util.hpp"

namespace bw::test {
namespace {

using json = nlohmann::json;

int Listening(const std::string& path, bool listen_too = true) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  if (listen_too) REQUIRE(listen(fd, 4) == 0);
  return fd;
}

// One connection: reads the request line, writes `lines`, then closes (after the client has
// closed, when `wait_for_client`).
class FakeDaemon {
 public:
  FakeDaemon(const std::string& path, std::vector<std::string> lines, bool wait_for_client)
      : fd_(Listening(path)) {
    thread_ = std::thread([this, lines = std::move(lines), wait_for_client] {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      std::string got;
      while (got.find('\n') == std::string::npos) {
        ssize_t r = recv(c, buf, sizeof(buf), 0);
        if (r <= 0) break;
        got.append(buf, static_cast<size_t>(r));
      }
      for (const std::string& l : lines) (void)!send(c, (l + "\n").data(), l.size() + 1, MSG_NOSIGNAL);
      if (wait_for_client)
        while (recv(c, buf, sizeof(buf), 0) > 0) {
        }
      close(c);
    });
  }
  ~FakeDaemon() {
    thread_.join();
    close(fd_);
  }

 private:
  int fd_;
  std::thread thread_;
};

TEST_CASE("control client: a followed event stream the daemon ends is an error and not a normal end") {
  // `events --follow` once exited 0 without a word when the daemon died.
  TempDir dir;
  const std::string sock = dir.path() + "/control.sock";
  const json req = {{"cmd", "events"}, {"follow", true}};
  std::vector<std::string> seen;
  json first;
  {
    FakeDaemon d(sock, {R"({"ok":true,"recent":["old"]})", "line 1", "line 2"}, false);
    auto r = ControlCall(
        sock, req,
        [&](const std::string& l) {
          seen.push_back(l);
          return true;
        },
        [&](const json& j) { first = j; });
    REQUIRE(!r.ok());
    CHECK(r.status().code() == absl::StatusCode::kUnavailable);
    CHECK(r.status().message() == "the daemon closed the event stream (stopped?)");
    CHECK(seen == std::vector<std::string>{"line 1", "line 2"});
    CHECK(first["recent"][0] == "old");
  }
  unlink(sock.c_str());
  // The reader stopping (its output went away) is the normal end: the response comes back.
  seen.clear();
  {
    FakeDaemon d(sock, {R"({"ok":true,"recent":[]})", "line 1", "line 2"}, true);
    auto r = ControlCall(sock, req, [&](const std::string& l) {
      seen.push_back(l);
      return false;
    });
    REQUIRE(r.ok());
    CHECK((*r)["ok"] == true);
    CHECK(seen == std::vector<std::string>{"line 1"});
  }
  unlink(sock.c_str());
  // A refused follow request is the daemon's answer, returned as it is.
  {
    FakeDaemon d(sock, {R"({"ok":false,"error":"no"})"}, false);
    auto r = ControlCall(sock, req, [&](const std::string&) { return true; });
    REQUIRE(r.ok());
    CHECK((*r)["error"] == "no");
  }
}

// ControlCall(sock) as uid/gid 65534 (nobody) in a child process when this test runs as root, as
// this user otherwise; the error message, or "ok".
std::string CallAsOtherUser(const std::string& sock) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    if (geteuid() == 0 && (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0))
      _exit(3);
    auto r = ControlCall(sock, json{{"cmd", "status"}});
    std::string m = r.ok() ? "ok" : std::string(r.status().message());
    (void)!write(p[1], m.data(), m.size());
    _exit(0);
  }
  close(p[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
  return out;
}

TEST_CASE("control client: no daemon asks whether it runs and a socket not this user's says so") {
  TempDir dir;
  REQUIRE(chmod(dir.path().c_str(), 0755) == 0);
  const std::string sock = dir.path() + "/control.sock";

  // Nothing there, or a socket nobody serves (a killed daemon's): is the daemon running?
  auto r = ControlCall(sock, json{{"cmd", "status"}});
  REQUIRE(!r.ok());
  CHECK(absl::StrContains(r.status().message(), sock));
  CHECK(absl::StrContains(r.status().message(), "is `bannerwatch run` running?"));
  int dead = Listening(sock, /*listen_too=*/false);
  r = ControlCall(sock, json{{"cmd", "status"}});
  close(dead);
  REQUIRE(!r.ok());
  CHECK(absl::StrContains(r.status().message(), "is `bannerwatch run` running?"));
  unlink(sock.c_str());

  // A live socket of mode 0600 (the daemon's), tried by another user (EACCES on connect): that
  // was once reported as "is `bannerwatch run` running?".
  int live = Listening(sock);
  const bool root = geteuid() == 0;
  REQUIRE(chmod(sock.c_str(), root ? 0600 : 0000) == 0);
  std::string m = CallAsOtherUser(sock);
  INFO(m);
  CHECK(absl::StartsWith(m, "permission denied on " + sock + ": the control socket is "));
  if (root) CHECK(m == "permission denied on " + sock + ": the control socket is root's (mode 0600); run as root");
  CHECK(!absl::StrContains(m, "running?"));
  if (root) {
    // The daemon's own directory (mode 0700) keeps others from even seeing the socket.
    REQUIRE(chmod(dir.path().c_str(), 0700) == 0);
    m = CallAsOtherUser(sock);
    CHECK(m == "permission denied on " + sock + ": its directory is closed to this user; run as root");
  }
  close(live);
}

}  // namespace
}  // namespace bw::test
