#include "bench/lib/child_proc.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "bench/lib/bpfbench.hpp"
#include "bench/lib/sys.hpp"
#include "maps/maps.hpp"

namespace bw::bench {

ChildProc::~ChildProc() {
  absl::Status st = Stop();
  if (!st.ok()) std::fprintf(stderr, "%s: %s\n", name_.c_str(), st.ToString().c_str());
}

absl::Status ChildProc::Start(const std::vector<std::string>& argv_in, const std::string& netns,
                              const std::string& log_path) {
  if (pid_ > 0) return absl::FailedPreconditionError(absl::StrCat(name_, " already started"));
  if (argv_in.empty()) return absl::InvalidArgumentError("empty argv");
  log_path_ = log_path;
  // Everything the child needs is prepared before fork (the child only makes syscalls).
  std::vector<std::string> argv_s = argv_in;
  std::vector<char*> argv;
  for (std::string& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
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
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t parent = getpid();
  started_at_ = MonotonicSeconds();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    ::close(log_fd);
    if (ns_fd >= 0) ::close(ns_fd);
    if (null_fd >= 0) ::close(null_fd);
    return ErrnoStatus(name_, "fork", e);
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(126);
    // Default handling back for what the benchmark's stop handler caught or ignored.
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (ns_fd >= 0 && setns(ns_fd, CLONE_NEWNET) != 0) _exit(125);
    // The benchmark's threads may be pinned; the helper runs anywhere.
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; ++c) CPU_SET(c, &all);
    sched_setaffinity(0, sizeof(all), &all);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    if (null_fd >= 0) dup2(null_fd, 0);
    execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(log_fd);
  if (ns_fd >= 0) ::close(ns_fd);
  if (null_fd >= 0) ::close(null_fd);
  pid_ = pid;
  exit_status_ = 0;
  return absl::OkStatus();
}

bool ChildProc::Running() {
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

absl::Status ChildProc::Stop(double timeout_s) {
  if (!Running()) return absl::OkStatus();
  ::kill(pid_, SIGCONT);
  ::kill(pid_, SIGTERM);
  double t0 = MonotonicSeconds();
  while (Running()) {
    if (MonotonicSeconds() - t0 > timeout_s) {
      ::kill(pid_, SIGKILL);
      while (waitpid(pid_, &exit_status_, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
      return absl::DeadlineExceededError(
          absl::StrCat(name_, " did not stop within ", timeout_s, " s of SIGTERM (killed)"));
    }
    usleep(10000);
  }
  return absl::OkStatus();
}

std::string ChildProc::Log() const {
  std::ifstream f(log_path_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string ChildProc::LogTail(size_t bytes) const {
  std::string s = Log();
  return s.size() > bytes ? s.substr(s.size() - bytes) : s;
}

double ChildProc::CpuSeconds() const {
  if (pid_ <= 0) return 0;
  std::ifstream f(absl::StrCat("/proc/", pid_, "/stat"));
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces: fields are counted after its closing ')'.
  size_t close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> f3 = absl::StrSplit(s.substr(close + 2), ' ', absl::SkipEmpty());
  // f3[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
  if (f3.size() < 15) return 0;
  double ticks = 0;
  for (int i = 11; i <= 14; ++i) {
    double v = 0;
    (void)absl::SimpleAtod(f3[i], &v);
    ticks += v;
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

uint64_t ChildProc::RssKib() const {
  if (pid_ <= 0) return 0;
  std::ifstream f(absl::StrCat("/proc/", pid_, "/status"));
  std::string line;
  while (std::getline(f, line)) {
    absl::string_view l = line;
    if (!absl::ConsumePrefix(&l, "VmRSS:")) continue;
    l = absl::StripAsciiWhitespace(l);
    absl::ConsumeSuffix(&l, "kB");
    uint64_t v = 0;
    (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(l), &v);
    return v;
  }
  return 0;
}

}  // namespace bw::bench
