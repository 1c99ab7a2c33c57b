// sys.hpp — processes, namespaces, CPUs and signals for the benchmarks.
//
// Contract: InstallStopHandler() makes SIGINT/SIGTERM/SIGHUP set a flag instead of killing the
// process, so benchmarks stop at the next check and their destructors remove what they created
// (bench/run also cleans up by name if a benchmark dies). Shell commands run through /bin/sh;
// commands inside a namespace use `nsenter --net=/var/run/netns/NAME` (not `ip netns exec`, which
// remounts /sys and hides bpffs). InNetns() runs a function on a thread that has joined a
// namespace (setns is per thread), e.g. for bpf_xdp_attach or BPF_F_TEST_XDP_LIVE_FRAMES.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bw::bench {

void InstallStopHandler();
bool Stopped();
// Sleeps up to `seconds`; false if stopped meanwhile.
bool SleepUnlessStopped(double seconds);
absl::Status StoppedStatus();  // CancelledError when stopped, else OK

// Runs `sh -c cmd`; stdout is returned, stderr goes to ours. Non-zero exit is an error that
// carries the command and its status.
absl::StatusOr<std::string> Sh(const std::string& cmd);
// The same, with stdin fed from `input` (large inputs such as `nft -f -`, `ipset restore`).
absl::StatusOr<std::string> ShInput(const std::string& cmd, const std::string& input);
// Runs and ignores failure (cleanup paths); output discarded.
void ShQuiet(const std::string& cmd);

std::string NsPrefix(const std::string& ns);
std::string ShellQuote(const std::string& s);  // one shell word  // "nsenter --net=/var/run/netns/NS "

absl::Status InNetns(const std::string& ns, const std::function<absl::Status()>& fn);
// Moves the calling thread into namespace `ns` (for threads that stay there, e.g. a generator).
absl::Status InNetnsHere(const std::string& ns);

// A network namespace bwb-<role>-<pid>, deleted (with every interface, nftables table, iptables
// rule and ipset inside it) on destruction.
class Netns {
 public:
  static absl::StatusOr<std::unique_ptr<Netns>> Create(const std::string& role);
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;
  const std::string& name() const { return name_; }
  // Runs `sh -c cmd` inside the namespace.
  absl::StatusOr<std::string> Sh(const std::string& cmd) const;
  absl::StatusOr<std::string> ShInput(const std::string& cmd, const std::string& input) const;

 private:
  Netns() = default;
  std::string name_;
};

// The veth pair of the benchmarks that send frames at a protected end: namespaces bwb-gen-<pid>
// (198.51.100.1/24 on `gen_if`, MAC `gen_mac`) and bwb-dut-<pid> (198.51.100.2/24 on `dut_if`,
// MAC `dut_mac`, reverse-path filtering off: the sources are not routable from there and must
// still reach the stack), both up with their loopbacks.
struct GenDutPair {
  std::unique_ptr<Netns> gen, dut;
  int gen_ifindex = 0;
};
absl::StatusOr<GenDutPair> MakeGenDutPair(const std::string& gen_if, const char* gen_mac,
                                          const std::string& dut_if, const char* dut_mac);

// Packets `ifname` in `ns` has received (`ip -j -s link`: stats64.rx.packets).
absl::StatusOr<uint64_t> RxPackets(const Netns& ns, const std::string& ifname);
// TCP's InCsumErrors in `ns` (/proc/net/snmp): how the benchmarks count frames that reached TCP.
absl::StatusOr<uint64_t> TcpInCsumErrors(const Netns& ns);

// Attaches an XDP program in native (driver) mode to `ifname` inside `ns`; prog_fd -1 detaches.
absl::Status AttachXdp(const std::string& ns, const std::string& ifname, int prog_fd);
absl::StatusOr<int> IfIndexIn(const std::string& ns, const std::string& ifname);

absl::Status PinThisThread(int cpu);
absl::Status PinTask(pid_t tid, int cpu);
// Kernel threads whose comm starts with `prefix` (comm is cut at 15 characters).
std::vector<pid_t> TasksByCommPrefix(const std::string& prefix);

std::string CpuModel();    // /proc/cpuinfo "model name"
std::string KernelRelease();

}  // namespace bw::bench
