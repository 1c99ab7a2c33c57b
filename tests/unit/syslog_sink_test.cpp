// SyslogSink: the RFC 5424 message, and a socket the test binds as the receiver: lines arrive
// one datagram each; no receiver, or one that stops reading, drops and counts lines without ever
// blocking; a receiver that appears later gets the lines from then on.
#include "daemon/events/syslog_sink.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace bw {
namespace {

// A datagram socket bound at `path`, the way journald's and rsyslog's /dev/log are.
struct Receiver {
  explicit Receiver(const std::string& p, int rcvbuf = 0) : path(p) {
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path.c_str(), sizeof(sa.sun_path) - 1);
    ::unlink(path.c_str());
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
  }
  ~Receiver() {
    close(fd);
    ::unlink(path.c_str());
  }
  std::string Next() {
    char buf[65536];
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  std::string path;
  int fd = -1;
};

std::string TempSocket(const char* name) {
  return (std::filesystem::temp_directory_path() / absl::StrCat("bw-syslog-", getpid(), "-", name))
      .string();
}

TEST_CASE("syslog: an RFC 5424 message with the facility and level, the EVE line as MSG") {
  SyslogOptions o;
  o.hostname = "sensor-1";
  const absl::Time t = absl::FromUnixMicros(1796000000123456);
  CHECK(Rfc5424(o, t, 4242, "{\"event_type\":\"alert\"}") ==
        "<174>1 2026-11-30T00:53:20.123456Z sensor-1 bannerwatch 4242 eve - "
        "{\"event_type\":\"alert\"}");
  o.facility = SyslogFacility("daemon");
  o.severity = SyslogSeverity("notice");
  o.hostname = "a host";  // no spaces in HOSTNAME
  CHECK(absl::StartsWith(Rfc5424(o, t, 1, "x"), "<29>1 2026-11-30T00:53:20.123456Z a_host "));
  CHECK(SyslogFacility("local0") == 16);
  CHECK(SyslogFacility("local8") == -1);
  CHECK(SyslogSeverity("info") == 6);
  CHECK(SyslogSeverity("information") == -1);
}

TEST_CASE("syslog: every line is one datagram to the receiver") {
  Receiver r(TempSocket("a"));
  SyslogOptions o;
  o.socket = r.path;
  auto s = SyslogSink::Open(o);
  REQUIRE(s.ok());
  (*s)->Send("{\"n\":1}");
  (*s)->Send("{\"n\":2}");
  CHECK(absl::EndsWith(r.Next(), " bannerwatch " + std::to_string(getpid()) + " eve - {\"n\":1}"));
  CHECK(absl::EndsWith(r.Next(), "{\"n\":2}"));
  CHECK((*s)->sent() == 2);
  CHECK((*s)->dropped() == 0);
}

TEST_CASE("syslog: no receiver drops and counts; a receiver that appears later gets the lines") {
  const std::string path = TempSocket("b");
  ::unlink(path.c_str());
  SyslogOptions o;
  o.socket = path;
  auto s = SyslogSink::Open(o);
  REQUIRE(s.ok());  // a missing receiver is not an error
  (*s)->Send("lost");
  CHECK((*s)->dropped() == 1);
  Receiver r(path);
  // Connecting again is tried at most once a second.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  (*s)->Send("found");
  CHECK(absl::EndsWith(r.Next(), "eve - found"));
  CHECK((*s)->sent() == 1);
}

TEST_CASE("syslog: a receiver that does not read costs drops, never a blocked sender") {
  Receiver r(TempSocket("c"), 4096);
  SyslogOptions o;
  o.socket = r.path;
  auto s = SyslogSink::Open(o);
  REQUIRE(s.ok());
  const std::string line(1000, 'x');
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5000; ++i) (*s)->Send(line);
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK((*s)->dropped() > 0);
  CHECK((*s)->sent() + (*s)->dropped() == 5000);
  // A blocking send would wait here forever; 5000 non-blocking ones take milliseconds. The bound
  // only tells the two apart.
  CHECK(took < std::chrono::seconds(10));
}

TEST_CASE("syslog: bad options are refused") {
  SyslogOptions o;
  o.facility = 24;
  CHECK(!SyslogSink::Open(o).ok());
  o = SyslogOptions{};
  o.socket = std::string(200, 'a');
  CHECK(!SyslogSink::Open(o).ok());
}

}  // namespace
}  // namespace bw
