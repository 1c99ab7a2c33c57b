#include "bench/lib/sys.hpp"

#include <bpf/libbpf.h>
#include <nlohmann/json.hpp>
#include <dirent.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "maps/maps.hpp"

namespace bw::bench {
namespace {
std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

// fork + exec sh -c cmd, stdin from a pipe fed with `input`, stdout captured.
absl::StatusOr<std::string> Spawn(const std::string& cmd, const std::string* input) {
  int out[2], in[2] = {-1, -1};
  if (pipe2(out, O_CLOEXEC) != 0) return ErrnoStatus(cmd, "pipe2", errno);
  if (input && pipe2(in, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    return ErrnoStatus(cmd, "pipe2", errno);
  }
  pid_t pid = fork();
  if (pid < 0) return ErrnoStatus(cmd, "fork", errno);
  if (pid == 0) {
    // The child gets default signal handling back (our handler only sets a flag).
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    dup2(out[1], 1);
    if (input) dup2(in[0], 0);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  std::thread writer;
  if (input) {
    close(in[0]);
    // Feed stdin on a thread so a command that prints a lot cannot deadlock with us. A command
    // that exits early makes write() fail with EPIPE (SIGPIPE is ignored) and the thread ends.
    int wfd = in[1];
    writer = std::thread([wfd, input] {
      size_t off = 0;
      while (off < input->size()) {
        ssize_t n = write(wfd, input->data() + off, input->size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      close(wfd);
    });
  }
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = read(out[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  if (writer.joinable()) writer.join();
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return absl::InternalError(absl::StrCat(
        "`", cmd.size() > 200 ? cmd.substr(0, 200) + "..." : cmd, "` failed (",
        WIFEXITED(status) ? absl::StrCat("exit ", WEXITSTATUS(status))
                          : absl::StrCat("signal ", WTERMSIG(status)),
        ")"));
  return text;
}
}  // namespace

void InstallStopHandler() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

bool Stopped() { return g_stop.load(); }

bool SleepUnlessStopped(double seconds) {
  while (seconds > 0 && !Stopped()) {
    double step = seconds < 0.05 ? seconds : 0.05;
    usleep(static_cast<useconds_t>(step * 1e6));
    seconds -= step;
  }
  return !Stopped();
}

absl::Status StoppedStatus() {
  return Stopped() ? absl::CancelledError("stopped by a signal") : absl::OkStatus();
}

absl::StatusOr<std::string> Sh(const std::string& cmd) { return Spawn(cmd, nullptr); }

absl::StatusOr<std::string> ShInput(const std::string& cmd, const std::string& input) {
  return Spawn(cmd, &input);
}

void ShQuiet(const std::string& cmd) {
  (void)Spawn(absl::StrCat(cmd, " >/dev/null 2>&1"), nullptr);
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

std::string NsPrefix(const std::string& ns) {
  return absl::StrCat("nsenter --net=/var/run/netns/", ns, " ");
}

absl::Status InNetnsHere(const std::string& ns) {
  std::string path = absl::StrCat("/var/run/netns/", ns);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(path, "open", errno);
  int r = setns(fd, CLONE_NEWNET);
  int err = errno;
  close(fd);
  if (r != 0) return ErrnoStatus(path, "setns", err);
  return absl::OkStatus();
}

absl::Status InNetns(const std::string& ns, const std::function<absl::Status()>& fn) {
  absl::Status st;
  std::thread t([&] {
    st = InNetnsHere(ns);
    if (st.ok()) st = fn();
  });
  t.join();
  return st;
}

absl::StatusOr<std::unique_ptr<Netns>> Netns::Create(const std::string& role) {
  std::unique_ptr<Netns> n(new Netns());
  std::string name = absl::StrCat("bwb-", role, "-", getpid());
  auto r = bench::Sh(absl::StrCat("ip netns add ", name));
  if (!r.ok()) return r.status();
  n->name_ = name;
  return n;
}

Netns::~Netns() {
  if (!name_.empty()) ShQuiet(absl::StrCat("ip netns del ", name_));
}

absl::StatusOr<std::string> Netns::Sh(const std::string& cmd) const {
  return bench::Sh(absl::StrCat(NsPrefix(name_), "sh -c ", ShellQuote(cmd)));
}

absl::StatusOr<std::string> Netns::ShInput(const std::string& cmd, const std::string& input) const {
  return bench::ShInput(absl::StrCat(NsPrefix(name_), "sh -c ", ShellQuote(cmd)), input);
}

absl::StatusOr<int> IfIndexIn(const std::string& ns, const std::string& ifname) {
  int idx = 0;
  absl::Status st = InNetns(ns, [&]() -> absl::Status {
    idx = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (idx == 0) return ErrnoStatus(ifname, "if_nametoindex", errno);
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  return idx;
}

absl::Status AttachXdp(const std::string& ns, const std::string& ifname, int prog_fd) {
  return InNetns(ns, [&]() -> absl::Status {
    int idx = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (idx == 0) return ErrnoStatus(ifname, "if_nametoindex", errno);
    int err = prog_fd >= 0 ? bpf_xdp_attach(idx, prog_fd, XDP_FLAGS_DRV_MODE, nullptr)
                           : bpf_xdp_detach(idx, XDP_FLAGS_DRV_MODE, nullptr);
    if (err != 0) return ErrnoStatus(ifname, prog_fd >= 0 ? "bpf_xdp_attach" : "bpf_xdp_detach", -err);
    return absl::OkStatus();
  });
}

absl::Status PinThisThread(int cpu) { return PinTask(0, cpu); }

absl::Status PinTask(pid_t tid, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(tid, sizeof(set), &set) != 0)
    return ErrnoStatus(absl::StrCat("task ", tid, " -> cpu ", cpu), "sched_setaffinity", errno);
  return absl::OkStatus();
}

std::vector<pid_t> TasksByCommPrefix(const std::string& prefix) {
  std::vector<pid_t> out;
  std::string want = prefix.substr(0, 15);
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream f(absl::StrCat("/proc/", pid, "/comm"));
    std::string comm;
    if (!std::getline(f, comm)) continue;
    if (comm.compare(0, want.size(), want) == 0) out.push_back(pid);
  }
  closedir(d);
  return out;
}

std::string CpuModel() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      size_t c = line.find(':');
      if (c != std::string::npos)
        return std::string(absl::StripAsciiWhitespace(line.substr(c + 1)));
    }
  }
  return "unknown";
}

std::string KernelRelease() {
  utsname u{};
  uname(&u);
  return u.release;
}

absl::StatusOr<GenDutPair> MakeGenDutPair(const std::string& gen_if, const char* gen_mac,
                                          const std::string& dut_if, const char* dut_mac) {
  GenDutPair p;
  auto g = Netns::Create("gen");
  if (!g.ok()) return g.status();
  p.gen = std::move(*g);
  auto d = Netns::Create("dut");
  if (!d.ok()) return d.status();
  p.dut = std::move(*d);
  auto r = p.gen->Sh(absl::StrCat(
      "ip link add ", gen_if, " address ", gen_mac, " type veth peer name ", dut_if, " address ",
      dut_mac, " netns ", p.dut->name(), " && ip addr add 198.51.100.1/24 dev ", gen_if,
      " && ip link set lo up && ip link set ", gen_if, " up"));
  if (!r.ok()) return r.status();
  r = p.dut->Sh(absl::StrCat(
      "ip addr add 198.51.100.2/24 dev ", dut_if, " && ip link set lo up && ip link set ", dut_if,
      " up && sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 "
      "net.ipv4.conf.", dut_if, ".rp_filter=0"));
  if (!r.ok()) return r.status();
  auto idx = IfIndexIn(p.gen->name(), gen_if);
  if (!idx.ok()) return idx.status();
  p.gen_ifindex = *idx;
  return p;
}

absl::StatusOr<uint64_t> RxPackets(const Netns& ns, const std::string& ifname) {
  auto link = ns.Sh(absl::StrCat("ip -j -s link show dev ", ifname));
  if (!link.ok()) return link.status();
  try {
    auto j = nlohmann::json::parse(*link);
    return j.at(0).at("stats64").at("rx").at("packets").get<uint64_t>();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("ip -j -s link: ", e.what()));
  }
}

absl::StatusOr<uint64_t> TcpInCsumErrors(const Netns& ns) {
  auto snmp = ns.Sh("cat /proc/net/snmp");
  if (!snmp.ok()) return snmp.status();
  std::vector<std::string> tcp;
  for (absl::string_view line : absl::StrSplit(*snmp, '\n'))
    if (absl::StartsWith(line, "Tcp:")) tcp.emplace_back(line);
  uint64_t n = 0;
  if (tcp.size() == 2) {
    std::vector<std::string> k = absl::StrSplit(tcp[0], ' '), v = absl::StrSplit(tcp[1], ' ');
    for (size_t i = 0; i < k.size() && i < v.size(); ++i)
      if (k[i] == "InCsumErrors") (void)absl::SimpleAtoi(v[i], &n);
  }
  return n;
}

}  // namespace bw::bench
