#include "lib/netns.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

namespace bw::test {

int Sh(const std::string& cmd) {
  int st = std::system(cmd.c_str());
  if (st == -1 || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

std::string ShOut(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    if (status) *status = -1;
    return out;
  }
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = pclose(p);
  if (status) *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

namespace {
void RemoveStaleNamespaces() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/var/run/netns", ec)) {
    std::string n = e.path().filename().string();
    if (n.rfind("bwt-", 0) != 0) continue;
    auto dash = n.rfind('-');
    int pid = std::atoi(n.c_str() + dash + 1);
    if (pid <= 0 || pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH) continue;
    Sh("ip netns del " + n + " 2>/dev/null");
  }
}
}  // namespace

Netns::Netns(const std::string& role) : name_("bwt-" + role + "-" + std::to_string(getpid())) {
  RemoveStaleNamespaces();
  Sh("ip netns del " + name_ + " 2>/dev/null");
  if (Sh("ip netns add " + name_) != 0) {
    std::fprintf(stderr, "ip netns add %s failed\n", name_.c_str());
    std::abort();
  }
  Run("ip link set lo up");
}

Netns::~Netns() {
  // Processes still inside would keep the namespace alive: kill them first.
  Sh("for p in $(ip netns pids " + name_ + " 2>/dev/null); do kill -9 $p; done");
  Sh("ip netns del " + name_);
}

std::string Netns::Prefix() const { return "nsenter --net=/var/run/netns/" + name_ + " --"; }

Veth::Veth(const VethEnd& a, const VethEnd& b) : a_(a) {
  Sh("ip link add " + a.ifname + " netns " + a.ns->name() + " type veth peer name " + b.ifname +
     " netns " + b.ns->name());
  for (const VethEnd* e : {&a, &b}) {
    if (!e->v4.empty()) e->ns->Run("ip addr add " + e->v4 + " dev " + e->ifname);
    if (!e->v6.empty()) e->ns->Run("ip addr add " + e->v6 + " dev " + e->ifname + " nodad");
    e->ns->Run("ip link set " + e->ifname + " up");
  }
}

Veth::~Veth() { a_.ns->Run("ip link del " + a_.ifname + " 2>/dev/null"); }

Process::Process(const Netns* ns, const std::vector<std::string>& argv, const std::string& log) {
  std::vector<std::string> full;
  if (ns) {
    full = {"nsenter", "--net=/var/run/netns/" + ns->name(), "--"};
  }
  full.insert(full.end(), argv.begin(), argv.end());
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    std::vector<char*> args;
    for (auto& s : full) args.push_back(const_cast<char*>(s.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
}

bool Process::Running() {
  if (reaped_) return false;
  int st;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    status_ = st;
    return false;
  }
  return true;
}

void Process::Signal(int sig) {
  if (reaped_) return;
  kill(pid_, sig);
  if (sig == SIGKILL) Wait(5000);
}

int Process::Wait(int timeout_ms) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ScaledMs(timeout_ms));
  while (Running()) {
    if (std::chrono::steady_clock::now() > end) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
}

Process::~Process() {
  if (pid_ <= 0 || !Running()) return;
  kill(pid_, SIGTERM);
  if (Wait(3000) < 0) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    Wait(3000);
  }
}

int TimeScale() {
  static const int scale = [] {
    const char* v = std::getenv("BW_TEST_TIME_SCALE");
    int n = v ? std::atoi(v) : 1;
    return n >= 1 ? n : 1;
  }();
  return scale;
}

int ScaledMs(int ms) { return ms * TimeScale(); }

void Settle(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ScaledMs(ms))); }

bool WaitFor(const std::function<bool()>& pred, int timeout_ms) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ScaledMs(timeout_ms));
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() > end) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace bw::test
