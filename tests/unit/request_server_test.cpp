// RequestServer (daemon/control/request_server.hpp), the connection handling under the control socket and
// the metrics endpoint: a client that sends slowly, or nothing, never holds up the caller nor the
// other clients; the connection limit, the request size limit, the deadline and the hand-over of a
// kept connection. Driven the way the daemon drives it: OnReadable() when the epoll fd is
// readable, ExpireDeadlines() from a timer. The live daemon with slow clients is
// tests/integration/daemon_test.cpp.
#include "daemon/control/request_server.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"

namespace bw::test {
namespace {

std::string SocketPath() {
  return "/tmp/bw-reqsrv-" + std::to_string(getpid()) + ".sock";
}

int ListenAt(const std::string& path) {
  ::unlink(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  REQUIRE(fd >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(::listen(fd, 256) == 0);
  return fd;
}

int ConnectTo(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  return fd;
}

// Everything the peer sent until it closed, or what arrived within `ms`.
std::string ReadAll(int fd, int ms = 2000) {
  std::string out;
  char buf[4096];
  while (true) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) <= 0) break;
    ssize_t r = ::recv(fd, buf, sizeof(buf), 0);
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

// Serves whatever is ready now, the way the daemon's loop does.
void Pump(RequestServer& s) {
  pollfd p{s.fd(), POLLIN, 0};
  while (::poll(&p, 1, 0) > 0) s.OnReadable();
}

// Line requests, echoed back upper-cased; "follow" asks to keep the connection.
struct Echo {
  std::string path = SocketPath();
  std::vector<int> kept;
  int handled = 0;
  std::unique_ptr<RequestServer> server;

  explicit Echo(RequestServer::Options o) {
    o.name = "test server";
    o.busy_response = "busy\n";
    o.too_large_response = "too large\n";
    server = std::make_unique<RequestServer>(
        ListenAt(path), std::move(o),
        [](std::string_view in, bool eof) -> size_t {
          size_t nl = in.find('\n');
          if (nl != std::string_view::npos) return nl + 1;
          return eof && !in.empty() ? in.size() : std::string_view::npos;
        },
        [this](std::string_view req) {
          ++handled;
          if (req == "big\n") return RequestServer::Response{std::string(8 << 20, 'x'), false};
          std::string out(req);
          for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
          return RequestServer::Response{out, req.substr(0, 6) == "follow"};
        },
        [this](int fd) { kept.push_back(fd); });
  }
  ~Echo() {
    for (int fd : kept) ::close(fd);
    ::unlink(path.c_str());
  }
};

TEST_CASE("request server: a client sending slowly holds up nobody, and is served when whole") {
  Echo e(RequestServer::Options{});
  int slow = ConnectTo(e.path);
  REQUIRE(::send(slow, "sta", 3, 0) == 3);
  Pump(*e.server);  // a partial request: nothing to answer, nothing waits for the rest
  int quick = ConnectTo(e.path);
  REQUIRE(::send(quick, "status\n", 7, 0) == 7);
  Pump(*e.server);
  CHECK(ReadAll(quick) == "STATUS\n");
  CHECK(e.handled == 1);
  REQUIRE(::send(slow, "tus\n", 4, 0) == 4);
  Pump(*e.server);
  CHECK(ReadAll(slow) == "STATUS\n");
  CHECK(e.server->open_connections() == 0);
  ::close(slow);
  ::close(quick);
}

TEST_CASE("request server: a silent client is closed at its deadline, counted") {
  RequestServer::Options o;
  o.deadline = absl::Milliseconds(100);
  Echo e(o);
  int silent = ConnectTo(e.path);
  Pump(*e.server);
  REQUIRE(e.server->open_connections() == 1);
  e.server->ExpireDeadlines(absl::Now());  // not yet
  CHECK(e.server->open_connections() == 1);
  e.server->ExpireDeadlines(absl::Now() + absl::Milliseconds(150));
  CHECK(e.server->open_connections() == 0);
  CHECK(e.server->timed_out() == 1);
  CHECK(ReadAll(silent) == "");  // closed without an answer
  ::close(silent);
}

TEST_CASE("request server: a request that arrived whole while the server was busy is answered") {
  RequestServer::Options o;
  o.deadline = absl::Milliseconds(100);
  Echo e(o);
  int c = ConnectTo(e.path);
  Pump(*e.server);  // accepted, nothing sent yet
  REQUIRE(::send(c, "status\n", 7, 0) == 7);
  // The loop was busy (a long reload) past the deadline and comes to the timer first.
  e.server->ExpireDeadlines(absl::Now() + absl::Milliseconds(150));
  CHECK(ReadAll(c) == "STATUS\n");
  CHECK(e.server->timed_out() == 0);
  ::close(c);
}

TEST_CASE("request server: at the limit a new connection closes the oldest idle one") {
  RequestServer::Options o;
  o.max_connections = 4;
  Echo e(o);
  std::vector<int> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(ConnectTo(e.path));
    Pump(*e.server);
  }
  REQUIRE(e.server->open_connections() == 4);
  // The oldest, with its request already waiting, is answered rather than closed.
  REQUIRE(::send(idle[0], "first\n", 6, 0) == 6);
  int next = ConnectTo(e.path);
  Pump(*e.server);
  CHECK(ReadAll(idle[0], 200) == "FIRST\n");
  CHECK(e.server->evicted() == 0);
  int later = ConnectTo(e.path);  // now idle[1] is the oldest waiting, and goes
  Pump(*e.server);
  CHECK(e.server->evicted() == 1);
  CHECK(ReadAll(idle[1], 200) == "");
  REQUIRE(::send(later, "y\n", 2, 0) == 2);
  Pump(*e.server);
  CHECK(ReadAll(later) == "Y\n");
  CHECK(e.server->refused_busy() == 0);
  for (int fd : idle) ::close(fd);
  ::close(next);
  ::close(later);
}

TEST_CASE("request server: when every connection is being answered, one more gets the busy answer") {
  RequestServer::Options o;
  o.max_connections = 2;
  Echo e(o);
  // Answers far larger than a socket buffer, never read: both connections stay in writing.
  std::vector<int> stuck;
  for (int i = 0; i < 2; ++i) {
    stuck.push_back(ConnectTo(e.path));
    REQUIRE(::send(stuck.back(), "big\n", 4, 0) == 4);
    Pump(*e.server);
  }
  REQUIRE(e.handled == 2);
  int extra = ConnectTo(e.path);
  Pump(*e.server);
  CHECK(ReadAll(extra) == "busy\n");
  CHECK(e.server->refused_busy() == 1);
  for (int fd : stuck) ::close(fd);
  ::close(extra);
}

TEST_CASE("request server: a request over the size limit is refused, not buffered") {
  RequestServer::Options o;
  o.max_request_bytes = 1024;
  Echo e(o);
  int c = ConnectTo(e.path);
  std::string big(4096, 'a');  // no newline
  REQUIRE(::send(c, big.data(), big.size(), 0) == static_cast<ssize_t>(big.size()));
  Pump(*e.server);
  CHECK(ReadAll(c) == "too large\n");
  CHECK(e.handled == 0);
  ::close(c);
}

TEST_CASE("request server: a peer that half-closes after a request without newline is answered") {
  Echo e(RequestServer::Options{});
  int c = ConnectTo(e.path);
  REQUIRE(::send(c, "status", 6, 0) == 6);
  ::shutdown(c, SHUT_WR);
  Pump(*e.server);
  CHECK(ReadAll(c) == "STATUS");
  ::close(c);
}

TEST_CASE("request server: a kept connection goes to the keeper once its answer is out") {
  Echo e(RequestServer::Options{});
  int c = ConnectTo(e.path);
  REQUIRE(::send(c, "follow\n", 7, 0) == 7);
  Pump(*e.server);
  CHECK(ReadAll(c, 200) == "FOLLOW\n");
  REQUIRE(e.kept.size() == 1);
  CHECK(e.server->open_connections() == 0);
  REQUIRE(::send(e.kept[0], "later\n", 6, MSG_NOSIGNAL) == 6);  // the keeper owns a live socket
  CHECK(ReadAll(c, 200) == "later\n");
  ::close(c);
}

}  // namespace
}  // namespace bw::test
