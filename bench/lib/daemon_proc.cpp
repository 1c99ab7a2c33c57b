#include "bench/lib/daemon_proc.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "bench/lib/bpfbench.hpp"
#include "bench/lib/sys.hpp"
#include "daemon/policy/feeds.hpp"
#include "maps/maps.hpp"

#ifndef BW_BANNERWATCH_BIN
#define BW_BANNERWATCH_BIN "bannerwatch"
#endif

namespace bw::bench {
namespace {

// A file's content, empty when it cannot be read (a log not yet written, a process gone).
std::string ReadAll(const std::string& path) { return ReadWholeFile(path).value_or(""); }

}  // namespace

std::string BannerwatchBinary() { return BW_BANNERWATCH_BIN; }

DaemonProc::~DaemonProc() {
  absl::Status st = Stop();
  if (!st.ok()) std::fprintf(stderr, "bannerwatch daemon: %s\n", st.ToString().c_str());
}

absl::Status DaemonProc::Start(const std::string& binary, const std::vector<std::string>& args,
                               const std::string& netns, int cpu, const std::string& log_path,
                               double ready_timeout_s) {
  if (pid_ > 0) return absl::FailedPreconditionError("daemon already started");
  log_path_ = log_path;
  // Everything the child needs is prepared before fork (the child only makes syscalls).
  std::vector<std::string> argv_s = {binary, "run"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) return ErrnoStatus(log_path, "open", errno);
  int ns_fd = -1;
  if (!netns.empty()) {
    std::string p = absl::StrCat("/var/run/netns/", netns);
    ns_fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns_fd < 0) {
      int e = errno;
      ::close(log_fd);
      return ErrnoStatus(p, "open", e);
    }
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu >= 0) CPU_SET(cpu, &set);
  pid_t parent = getpid();
  double t0 = MonotonicSeconds();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    ::close(log_fd);
    if (ns_fd >= 0) ::close(ns_fd);
    return ErrnoStatus("bannerwatch", "fork", e);
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(126);
    // The benchmark blocks no signals the daemon needs, but reset what a handler may have set.
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (ns_fd >= 0 && setns(ns_fd, CLONE_NEWNET) != 0) _exit(125);
    if (cpu >= 0) sched_setaffinity(0, sizeof(set), &set);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(log_fd);
  if (ns_fd >= 0) ::close(ns_fd);
  pid_ = pid;
  while (true) {
    if (Stopped()) return StoppedStatus();
    if (ReadAll(log_path).find("bannerwatch: running:") != std::string::npos) break;
    if (!Running())
      return absl::InternalError(absl::StrCat("bannerwatch run exited (status ", exit_status_,
                                              ") before it was running; its log:\n", LogTail()));
    if (MonotonicSeconds() - t0 > ready_timeout_s)
      return absl::DeadlineExceededError(absl::StrCat("bannerwatch run not running after ",
                                                      ready_timeout_s, " s; its log:\n", LogTail()));
    usleep(20000);
  }
  startup_s_ = MonotonicSeconds() - t0;
  return absl::OkStatus();
}

bool DaemonProc::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_status_ = status;
    pid_ = -1;
    return false;
  }
  return true;
}

absl::Status DaemonProc::Stop(double timeout_s) {
  if (pid_ <= 0) return absl::OkStatus();
  ::kill(pid_, SIGCONT);  // in case it was paused
  ::kill(pid_, SIGTERM);
  double t0 = MonotonicSeconds();
  while (Running()) {
    if (MonotonicSeconds() - t0 > timeout_s) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, &exit_status_, 0);
      pid_ = -1;
      return absl::DeadlineExceededError(
          absl::StrCat("bannerwatch run did not stop within ", timeout_s, " s (killed)"));
    }
    usleep(10000);
  }
  if (!WIFEXITED(exit_status_) || WEXITSTATUS(exit_status_) != 0)
    return absl::InternalError(absl::StrCat("bannerwatch run ended with status ", exit_status_,
                                            "; its log:\n", LogTail()));
  return absl::OkStatus();
}

absl::Status DaemonProc::Pause() {
  if (pid_ <= 0 || ::kill(pid_, SIGSTOP) != 0) return ErrnoStatus("bannerwatch", "kill(SIGSTOP)", errno);
  return absl::OkStatus();
}

absl::Status DaemonProc::Resume() {
  if (pid_ <= 0 || ::kill(pid_, SIGCONT) != 0) return ErrnoStatus("bannerwatch", "kill(SIGCONT)", errno);
  return absl::OkStatus();
}

absl::StatusOr<ProcMemory> DaemonProc::Memory() const {
  if (pid_ <= 0) return absl::FailedPreconditionError("daemon not running");
  std::string s = ReadAll(absl::StrCat("/proc/", pid_, "/status"));
  if (s.empty()) return absl::InternalError("cannot read /proc/PID/status");
  ProcMemory m;
  for (absl::string_view line : absl::StrSplit(s, '\n')) {
    auto field = [&](absl::string_view key, uint64_t* out) {
      if (!absl::ConsumePrefix(&line, key)) return;
      line = absl::StripAsciiWhitespace(line);
      absl::ConsumeSuffix(&line, "kB");
      line = absl::StripAsciiWhitespace(line);
      (void)absl::SimpleAtoi(line, out);
    };
    field("VmRSS:", &m.rss_kib);
    field("VmHWM:", &m.hwm_kib);
    field("RssAnon:", &m.rss_anon_kib);
    field("RssFile:", &m.rss_file_kib);
  }
  return m;
}

std::string DaemonProc::LogTail(size_t bytes) const {
  std::string s = ReadAll(log_path_);
  if (s.size() > bytes) s = s.substr(s.size() - bytes);
  return s;
}

}  // namespace bw::bench
