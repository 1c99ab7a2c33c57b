// notify.hpp — the daemon's word to its service manager: sd_notify(3) messages, sent without
// libsystemd as one datagram each to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an
// abstract name written with a leading '@'). With no or an unusable $NOTIFY_SOCKET every send is
// a no-op: the daemon runs the same by hand, under systemd, or in a container.
//
// What the daemon sends (daemon.cpp): READY=1 once the policy is enforced on every interface;
// RELOADING=1 then READY=1 around a SIGHUP reload; STOPPING=1 at shutdown; STATUS= lines; and,
// when the manager set $WATCHDOG_USEC (for this pid), WATCHDOG=1 from the event loop's timer at
// least every half interval.
#pragma once
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "maps/maps.hpp"

namespace bw {

class Notifier {
 public:
  // Disabled: every call does nothing.
  Notifier() = default;
  // $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID as systemd sets them. An address that is
  // not absolute and not '@'-abstract, or too long for sun_path, disables the notifier; a
  // watchdog for another pid, or a WATCHDOG_USEC that is no positive number, is no watchdog.
  static Notifier FromEnvironment();
  // `address` as NOTIFY_SOCKET would hold it; `watchdog` zero for none.
  static Notifier ForAddress(absl::string_view address, absl::Duration watchdog);

  bool enabled() const { return sock_.valid(); }
  absl::Duration watchdog() const { return watchdog_; }

  // One datagram: newline-separated ASSIGNMENTS ("READY=1\nSTATUS=..."). Never blocks (a full
  // socket buffer drops the message) and never raises SIGPIPE; false when nothing was sent.
  bool Send(absl::string_view assignments) const;
  // WATCHDOG=1 when the watchdog is on and half its interval has passed since the last ping.
  void WatchdogTick(absl::Time now);

  // A STATUS= value made safe to send: newlines become spaces.
  static std::string StatusLine(absl::string_view status);

 private:
  Fd sock_;
  std::string addr_;  // sun_path bytes ('\0' first for an abstract name)
  absl::Duration watchdog_ = absl::ZeroDuration();
  absl::Time last_ping_ = absl::InfinitePast();
};

}  // namespace bw
