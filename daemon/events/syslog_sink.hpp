// syslog_sink.hpp — EVE lines to the local syslog socket, one RFC 5424 message each, so that
// journald or rsyslog on the host take them (and forward them off it, as they are set up to).
//
// Contract: Send() never blocks the caller (the event thread): the socket is non-blocking, and a
// message the receiver cannot take now (its queue full: EAGAIN), or that finds no receiver (no
// socket, nobody listening), is dropped and counted. Without a receiver the sink tries to connect
// again at most once a second, so a receiver that starts (or restarts) later gets the lines from
// then on. A message is "<PRI>1 TIMESTAMP HOSTNAME bannerwatch PID eve - LINE": PRI from the
// configured facility and severity, TIMESTAMP RFC 3339 in UTC with microseconds, no structured
// data, the EVE JSON line as MSG. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace bw {

struct SyslogOptions {
  std::string socket = "/dev/log";
  int facility = 21;  // local5, Suricata's default for its EVE syslog output
  int severity = 6;   // info
  std::string hostname;  // empty: the host's name
};

// "local5" -> 21, "daemon" -> 3, ...; -1 when not a facility name.
int SyslogFacility(std::string_view name);
// "info" -> 6, "notice" -> 5, ...; -1 when not a severity name.
int SyslogSeverity(std::string_view name);

// One RFC 5424 message (without a trailing newline): exposed for tests.
std::string Rfc5424(const SyslogOptions& o, absl::Time t, int pid, std::string_view msg);

class SyslogSink {
 public:
  // Fails only on a bad option; a missing receiver is not an error (see the contract).
  static absl::StatusOr<std::unique_ptr<SyslogSink>> Open(const SyslogOptions& opts);
  ~SyslogSink();
  SyslogSink(const SyslogSink&) = delete;
  SyslogSink& operator=(const SyslogSink&) = delete;

  void Send(std::string_view line);

  const std::string& socket() const { return opts_.socket; }
  uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  explicit SyslogSink(SyslogOptions opts);
  bool ConnectLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SyslogOptions opts_;
  const int pid_;
  absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  absl::Time last_attempt_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace bw
