// daemon_proc.hpp — a real `bannerwatch run` process for the benchmarks (issue 5 parts 2 and 3).
//
// Contract: DaemonProc::Start() forks and execs the bannerwatch binary with `args` after "run",
// inside network namespace `netns` (setns on /var/run/netns/NAME in the child: not `ip netns
// exec`, which remounts /sys and hides bpffs), pinned to `cpu` (-1: any), stdout and stderr to
// `log_path`, and with PR_SET_PDEATHSIG so it receives SIGTERM if the benchmark dies. It then waits
// until the daemon's log says "running:" (or the process exits: an error quoting the log's tail).
// Stop() sends SIGTERM (the daemon detaches and unpins) and waits, SIGKILL after a timeout; the
// destructor does the same. Pause()/Resume() are SIGSTOP/SIGCONT. Memory() reads /proc/PID/status.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bw::bench {

// The bannerwatch binary built beside the benchmarks (set by bench/CMakeLists.txt).
std::string BannerwatchBinary();

struct ProcMemory {
  uint64_t rss_kib = 0;  // VmRSS
  uint64_t hwm_kib = 0;  // VmHWM: peak RSS
  uint64_t rss_anon_kib = 0, rss_file_kib = 0;
};

class DaemonProc {
 public:
  DaemonProc() = default;
  ~DaemonProc();
  DaemonProc(const DaemonProc&) = delete;
  DaemonProc& operator=(const DaemonProc&) = delete;

  absl::Status Start(const std::string& binary, const std::vector<std::string>& args,
                     const std::string& netns, int cpu, const std::string& log_path,
                     double ready_timeout_s);
  absl::Status Stop(double timeout_s = 30);
  absl::Status Pause();
  absl::Status Resume();
  bool Running();
  pid_t pid() const { return pid_; }
  absl::StatusOr<ProcMemory> Memory() const;
  // The last `bytes` of the log.
  std::string LogTail(size_t bytes = 2000) const;
  // Seconds from fork to "running:" in the log.
  double startup_seconds() const { return startup_s_; }

 private:
  pid_t pid_ = -1;
  int exit_status_ = 0;
  std::string log_path_;
  double startup_s_ = 0;
};

}  // namespace bw::bench
