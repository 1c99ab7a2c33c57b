// child_proc.hpp — a helper process the benchmarks start and stop: a CrowdSec Local API, a
// firewall bouncer, a `bannerwatch run` whose start is itself measured (bench/crowdsec_compare.cpp).
//
// Contract: Start() forks and execs argv[0] (a path, not looked up) inside network namespace
// `netns` (setns on /var/run/netns/NAME in the child, not `ip netns exec`, which remounts /sys and
// hides bpffs), stdout and stderr appended to `log_path`, stdin /dev/null, with PR_SET_PDEATHSIG
// so that it receives SIGTERM if the benchmark dies. It returns at once: readiness is the caller's
// business (LogHas(), a connection, packets). Call Start() from the main thread (the death signal
// follows the thread that forked). Stop() sends SIGTERM and waits, SIGKILL after the timeout; the
// destructor does the same. CpuSeconds() and RssKib() read /proc/PID/stat and /proc/PID/status
// while it runs (CPU time includes the children it has waited for: a bouncer's ipset commands).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace bw::bench {

class ChildProc {
 public:
  explicit ChildProc(std::string name) : name_(std::move(name)) {}
  ~ChildProc();
  ChildProc(const ChildProc&) = delete;
  ChildProc& operator=(const ChildProc&) = delete;

  absl::Status Start(const std::vector<std::string>& argv, const std::string& netns,
                     const std::string& log_path);
  // SIGTERM, then SIGKILL after `timeout_s`. An exit status other than 0 or death by SIGTERM is
  // not an error here: exit_status() keeps it.
  absl::Status Stop(double timeout_s = 15);
  bool Running();
  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  double started_at() const { return started_at_; }  // MonotonicSeconds() just before fork
  int exit_status() const { return exit_status_; }    // waitpid status, once it has ended
  std::string Log() const;
  bool LogHas(const std::string& needle) const { return Log().find(needle) != std::string::npos; }
  std::string LogTail(size_t bytes = 1500) const;
  double CpuSeconds() const;  // user + system, itself and its waited-for children; 0 if gone
  uint64_t RssKib() const;    // VmRSS; 0 if gone

 private:
  std::string name_;
  std::string log_path_;
  pid_t pid_ = -1;
  int exit_status_ = 0;
  double started_at_ = 0;
};

}  // namespace bw::bench
