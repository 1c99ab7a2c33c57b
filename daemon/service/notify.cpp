#include "daemon/service/notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_replace.h"

namespace bw {

Notifier Notifier::FromEnvironment() {
  const char* addr = std::getenv("NOTIFY_SOCKET");
  absl::Duration wd = absl::ZeroDuration();
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  uint64_t us = 0, p = 0;
  bool for_us = pid == nullptr ||
                (absl::SimpleAtoi(pid, &p) && p == static_cast<uint64_t>(::getpid()));
  if (usec && absl::SimpleAtoi(usec, &us) && us > 0 && for_us) wd = absl::Microseconds(us);
  return addr ? ForAddress(addr, wd) : Notifier();
}

Notifier Notifier::ForAddress(absl::string_view address, absl::Duration watchdog) {
  Notifier n;
  sockaddr_un sa;
  // An abstract name has no terminating NUL, a path needs one.
  bool abstract = !address.empty() && address[0] == '@';
  if (address.size() < 2 || !(abstract || address[0] == '/')) return n;
  if (address.size() + (abstract ? 0 : 1) > sizeof(sa.sun_path)) return n;
  if (address.find('\0') != absl::string_view::npos) return n;
  n.addr_ = std::string(address);
  if (abstract) n.addr_[0] = '\0';
  n.sock_ = Fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (n.sock_.valid()) n.watchdog_ = watchdog;
  return n;
}

bool Notifier::Send(absl::string_view assignments) const {
  if (!sock_.valid()) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, addr_.data(), addr_.size());
  socklen_t len = offsetof(sockaddr_un, sun_path) + addr_.size() + (addr_[0] == '\0' ? 0 : 1);
  ssize_t n;
  do {
    n = ::sendto(sock_.get(), assignments.data(), assignments.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                 reinterpret_cast<const sockaddr*>(&sa), len);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(assignments.size());
}

void Notifier::WatchdogTick(absl::Time now) {
  if (watchdog_ <= absl::ZeroDuration() || now - last_ping_ < watchdog_ / 2) return;
  if (Send("WATCHDOG=1")) last_ping_ = now;
}

std::string Notifier::StatusLine(absl::string_view status) {
  return absl::StrReplaceAll(status, {{"\n", " "}});
}

}  // namespace bw
