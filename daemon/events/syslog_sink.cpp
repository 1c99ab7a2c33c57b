#include "daemon/events/syslog_sink.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace bw {
namespace {

struct Name {
  const char* name;
  int value;
};

// RFC 5424 6.2.1, with the names syslog.conf and Suricata use.
constexpr Name kFacilities[] = {
    {"kern", 0},     {"user", 1},     {"mail", 2},     {"daemon", 3},  {"auth", 4},
    {"syslog", 5},   {"lpr", 6},      {"news", 7},     {"uucp", 8},    {"cron", 9},
    {"authpriv", 10}, {"ftp", 11},    {"local0", 16},  {"local1", 17}, {"local2", 18},
    {"local3", 19},  {"local4", 20},  {"local5", 21},  {"local6", 22}, {"local7", 23}};
constexpr Name kSeverities[] = {{"emerg", 0}, {"alert", 1},  {"crit", 2}, {"err", 3},
                                {"warning", 4}, {"notice", 5}, {"info", 6}, {"debug", 7}};

template <size_t N>
int Lookup(const Name (&table)[N], std::string_view name) {
  for (const Name& n : table)
    if (name == n.name) return n.value;
  return -1;
}

// RFC 5424's HOSTNAME, APP-NAME...: printable US-ASCII without spaces, "-" when empty.
std::string Field(std::string_view s, size_t max) {
  std::string out;
  for (char c : s.substr(0, max)) out.push_back(c > 32 && c < 127 ? c : '_');
  return out.empty() ? "-" : out;
}

}  // namespace

int SyslogFacility(std::string_view name) { return Lookup(kFacilities, name); }
int SyslogSeverity(std::string_view name) { return Lookup(kSeverities, name); }

std::string Rfc5424(const SyslogOptions& o, absl::Time t, int pid, std::string_view msg) {
  std::string host = o.hostname;
  if (host.empty()) {
    char buf[256] = {};
    if (gethostname(buf, sizeof(buf) - 1) == 0) host = buf;
  }
  return absl::StrCat("<", o.facility * 8 + o.severity, ">1 ",
                      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone()), " ",
                      Field(host, 255), " bannerwatch ", pid, " eve - ",
                      absl::string_view(msg.data(), msg.size()));
}

absl::StatusOr<std::unique_ptr<SyslogSink>> SyslogSink::Open(const SyslogOptions& opts) {
  if (opts.facility < 0 || opts.facility > 23 || opts.severity < 0 || opts.severity > 7)
    return absl::InvalidArgumentError("syslog: facility 0..23 and severity 0..7");
  if (opts.socket.empty() || opts.socket.size() >= sizeof(sockaddr_un{}.sun_path))
    return absl::InvalidArgumentError(
        absl::StrCat("syslog: socket path '", opts.socket, "' is empty or too long"));
  std::unique_ptr<SyslogSink> s(new SyslogSink(opts));
  absl::MutexLock lock(&s->mu_);
  s->ConnectLocked(absl::Now());  // no receiver yet is not an error
  return s;
}

namespace {

// The options with the host name filled in once, not looked up for every message.
SyslogOptions WithHostname(SyslogOptions o) {
  if (o.hostname.empty()) {
    char buf[256] = {};
    if (gethostname(buf, sizeof(buf) - 1) == 0) o.hostname = buf;
  }
  return o;
}

}  // namespace

SyslogSink::SyslogSink(SyslogOptions opts) : opts_(WithHostname(std::move(opts))), pid_(getpid()) {}

SyslogSink::~SyslogSink() {
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) close(fd_);
}

bool SyslogSink::ConnectLocked(absl::Time now) {
  last_attempt_ = now;
  if (fd_ < 0) fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, opts_.socket.data(), opts_.socket.size());
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) return true;
  close(fd_);
  fd_ = -1;
  return false;
}

void SyslogSink::Send(std::string_view line) {
  const absl::Time now = absl::Now();
  const std::string msg = Rfc5424(opts_, now, pid_, line);
  absl::MutexLock lock(&mu_);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (fd_ < 0 && (now - last_attempt_ < absl::Seconds(1) || !ConnectLocked(now))) break;
    if (::send(fd_, msg.data(), msg.size(), MSG_NOSIGNAL) >= 0) {
      sent_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EMSGSIZE) break;
    // ECONNREFUSED, ENOTCONN...: the receiver went (journald or rsyslog restarted and bound a new
    // socket): connect to the one at the path now, once, then send again.
    close(fd_);
    fd_ = -1;
    last_attempt_ = absl::InfinitePast();
  }
  dropped_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace bw
