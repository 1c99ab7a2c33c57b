// host_programs.hpp — the host-context object (bpf/host.bpf.c) beside the data plane: which
// process is behind a TCP connection, and connect()/sendmsg() refused for blocked remotes.
//
// Contract: Load() opens the object, hands it the data plane's watchlist tries, tells its cgroup
// programs which helpers this kernel lets them call (probed, not guessed from the version), picks
// the inet_csk_accept program that matches the kernel's signature of it (from the kernel's BTF),
// loads and attaches: fentry tcp_connect and fexit inet_csk_accept where the kernel takes tracing
// programs, else kprobe tcp_connect and kretprobe inet_csk_accept, else the cgroup sock_ops
// program's TCP_CONNECT callback (outbound connections of the cgroup only), else none. Attribution (fentry tcp_connect, fexit inet_csk_accept) and refusal (cgroup
// connect4/6 and sendmsg4/6 on one cgroup v2 directory) are each on, or off with a reason: a kernel
// or host that cannot have one keeps the other, and the data plane, which enforces blocks at TC
// egress either way. The links are this object's, not pinned: when the daemon exits the hooks go
// (TC egress keeps dropping what a kept-on-exit data plane blocks). Configure() may be called at
// any time (a reload): refusal and connect events are flags in a map the programs read.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/dataplane/loader.hpp"
#include "maps/bannerwatch_abi.h"

struct bannerwatch_host;  // the generated skeleton
struct bpf_link;

namespace bw {

// How attribution hooks the kernel: kAuto tries fentry/fexit (BPF trampolines), then kprobes
// (for kernels that refuse tracing programs), then sock_ops; kKprobe starts at kprobes (tests of
// the fallbacks).
enum class AttributionHooks { kAuto, kKprobe };

struct HostOptions {
  bool attribution = true;  // record the process at connect and accept
  AttributionHooks hooks = AttributionHooks::kAuto;
  bool refusal = true;      // attach the refusal programs (Configure turns refusing on and off)
  std::string cgroup;       // cgroup v2 directory they attach to; "" = the cgroup2 root
};

using HostCounters = std::array<uint64_t, BW_HCNT__MAX>;

class HostPrograms {
 public:
  // An error only when nothing of the object can be loaded; what could not be had is off, with
  // its reason (attribution_off(), refusal_off()).
  static absl::StatusOr<std::unique_ptr<HostPrograms>> Load(DataPlane& dp,
                                                            const HostOptions& opts);
  ~HostPrograms();
  HostPrograms(const HostPrograms&) = delete;
  HostPrograms& operator=(const HostPrograms&) = delete;

  bool attribution() const { return attribution_off_.empty(); }
  const std::string& attribution_off() const { return attribution_off_; }
  // The hooks in use, e.g. "fentry tcp_connect, fexit inet_csk_accept(sk, arg)".
  const std::string& attribution_hooks() const { return attribution_hooks_; }
  bool refusal() const { return refusal_off_.empty(); }
  const std::string& refusal_off() const { return refusal_off_; }
  const std::string& cgroup() const { return cgroup_; }
  // Non-empty when refusal events cannot name the caller beyond its uid (older kernels).
  const std::string& sockaddr_note() const { return sockaddr_note_; }

  // bw_host_cfg: enum bw_host_flags (BW_HOST_REFUSE is ignored while refusal() is false) and the
  // events-per-second-per-CPU budget.
  absl::Status Configure(uint32_t flags, uint32_t event_budget);

  int socks_fd() const;   // bw_socks (struct bw_sock_key -> struct bw_proc)
  int events_fd() const;  // bw_sock_ev (struct bw_sock_event records)
  int exes_fd() const;    // bw_exes (struct bw_exe_key -> struct bw_exe)
  // The programs loaded (attached or not), as the kernel reports them.
  std::vector<ProgramInfo> Programs() const;
  // bw_host_cnt summed over CPUs, indexed by enum bw_host_counter.
  absl::StatusOr<HostCounters> Counters() const;

 private:
  HostPrograms() = default;
  bannerwatch_host* skel_ = nullptr;
  std::vector<bpf_link*> links_;
  std::string attribution_off_, attribution_hooks_, refusal_off_, cgroup_, sockaddr_note_;
};

// enum bw_host_counter's names ("connects", "refused_connect", ...).
const char* HostCounterName(int i);

// The mount point of the cgroup v2 hierarchy ("/sys/fs/cgroup", "/sys/fs/cgroup/unified" on
// hybrid hosts), from /proc/self/mountinfo; "" when there is none.
std::string Cgroup2Mount();

}  // namespace bw
