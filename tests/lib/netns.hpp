// netns.hpp — network namespaces, veth pairs and processes for integration tests.
//
// Contract: every object removes what it created when destroyed (namespace, veth, process), also
// when a test fails. Commands run inside a namespace through `nsenter --net=/var/run/netns/NAME`
// (not `ip netns exec`, which remounts /sys and hides bpffs). Names carry the test's pid so
// parallel or leftover runs do not collide; Netns removes stale namespaces of dead test processes.
#pragma once

#include <sys/types.h>

#include <functional>

#include <string>
#include <vector>

namespace bw::test {

// Runs `sh -c cmd`; returns the exit status (or -1). Output goes to the test's stderr.
int Sh(const std::string& cmd);
// Runs `sh -c cmd` and returns its stdout.
std::string ShOut(const std::string& cmd, int* status = nullptr);

class Netns {
 public:
  explicit Netns(const std::string& role);  // name: bwt-<role>-<pid>
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;
  const std::string& name() const { return name_; }
  // The shell prefix that runs a command inside this namespace.
  std::string Prefix() const;
  int Run(const std::string& cmd) const { return Sh(Prefix() + " sh -c '" + cmd + "'"); }
  std::string Out(const std::string& cmd, int* st = nullptr) const {
    return ShOut(Prefix() + " sh -c '" + cmd + "'", st);
  }

 private:
  std::string name_;
};

// A veth pair between two namespaces, addressed and up.
struct VethEnd {
  const Netns* ns;
  std::string ifname;
  std::string v4;  // "198.51.100.1/24"
  std::string v6;  // "2001:db8:100::1/64"
};
class Veth {
 public:
  Veth(const VethEnd& a, const VethEnd& b);
  ~Veth();

 private:
  VethEnd a_;
};

// A background process inside a namespace (or in the root namespace when ns is null), its
// stdout+stderr to `log`. Destroying it sends SIGTERM, then SIGKILL after 3 s, and reaps it.
class Process {
 public:
  Process(const Netns* ns, const std::vector<std::string>& argv, const std::string& log);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  pid_t pid() const { return pid_; }
  bool Running();
  // Sends a signal; for SIGKILL waits for the process to be gone.
  void Signal(int sig);
  // Waits up to timeout_ms (scaled) for exit; returns the exit status or -1 on timeout.
  int Wait(int timeout_ms);

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

// The tests' deadlines and settling pauses are set for a machine like the build host. The
// environment's BW_TEST_TIME_SCALE (a whole number, default 1) stretches every one of them, for
// slow runs such as the VM suite under software emulation (tests/vm). Waits still end as soon as
// what they wait for has happened.
int TimeScale();
int ScaledMs(int ms);
// Sleeps ms (scaled): time for something asynchronous (events to be written) to settle.
void Settle(int ms);

// Polls `pred` every 50 ms until true or the (scaled) timeout; returns the last value.
bool WaitFor(const std::function<bool()>& pred, int timeout_ms);

}  // namespace bw::test
