#include "daemon/host/host_programs.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bannerwatch.skel.h"
#include "bannerwatch_host.skel.h"
#include "daemon/dataplane/libbpf_log.hpp"
#include "daemon/dataplane/loader.hpp"
#include "daemon/host/process_context.hpp"

namespace bw {

namespace {

// inet_csk_accept's argument count in this kernel's BTF: 2 since Linux 6.10 (sk, arg), 4 before
// (sk, flags, err, kern); 0 when the kernel has no BTF or no such function.
int AcceptArgs() {
  btf* vmlinux = btf__load_vmlinux_btf();
  if (vmlinux == nullptr) return 0;
  int n = 0;
  int id = btf__find_by_name_kind(vmlinux, "inet_csk_accept", BTF_KIND_FUNC);
  if (id > 0) {
    const btf_type* fn = btf__type_by_id(vmlinux, id);
    const btf_type* proto = fn ? btf__type_by_id(vmlinux, fn->type) : nullptr;
    if (proto && btf_is_func_proto(proto)) n = btf_vlen(proto);
  }
  btf__free(vmlinux);
  return n;
}

std::string LastVerifierLines(const ScopedLibbpfCapture& capture) {
  if (capture.prog_logs().empty()) return {};
  const auto& pl = capture.prog_logs().front();
  std::vector<std::string> lines = absl::StrSplit(pl.log, '\n', absl::SkipEmpty());
  std::string out = absl::StrCat(" (program ", pl.prog, "; verifier: ");
  size_t from = lines.size() > 3 ? lines.size() - 3 : 0;
  for (size_t i = from; i < lines.size(); ++i) absl::StrAppend(&out, i > from ? " / " : "", lines[i]);
  return out + ")";
}

// The ways attribution can hook the kernel, in the order they are tried.
enum class Hooks { kTrampoline, kKprobe, kSockops, kNone };

const char* HooksName(Hooks h) {
  switch (h) {
    case Hooks::kTrampoline:
      return "fentry/fexit";
    case Hooks::kKprobe:
      return "kprobes";
    case Hooks::kSockops:
      return "sock_ops";
    default:
      return "none";
  }
}

// Opens the object with the data plane's tries, the attribution programs of `hooks` (and of them,
// the accept program for `accept_args`; 0: none), and the cgroup programs' use of the process
// helpers (`task`: bpf_get_current_pid_tgid, _comm, _task, _cgroup_id) on or off.
bannerwatch_host* Open(DataPlane& dp, Hooks hooks, int accept_args, bool task, std::string* err) {
  bannerwatch_host* s = bannerwatch_host__open();
  if (s == nullptr) {
    *err = absl::StrCat("opening the host-context object: ", std::strerror(errno));
    return nullptr;
  }
  s->rodata->bw_sa_pid = task;
  s->rodata->bw_sa_task = task;
  s->rodata->bw_sa_cgroup = task;
  const bool tramp = hooks == Hooks::kTrampoline, kp = hooks == Hooks::kKprobe;
  bpf_program__set_autoload(s->progs.bw_tcp_connect, tramp);
  bpf_program__set_autoload(s->progs.bw_accept, tramp && accept_args == 2);
  bpf_program__set_autoload(s->progs.bw_accept_old, tramp && accept_args == 4);
  bpf_program__set_autoload(s->progs.bw_kp_connect, kp);
  bpf_program__set_autoload(s->progs.bw_kp_accept, kp);
  bpf_program__set_autoload(s->progs.bw_sockops, hooks == Hooks::kSockops);
  bpf_program__set_autoload(s->progs.bw_sock_state, hooks != Hooks::kNone);
  // The data plane's tries, not copies and not pins of their own.
  struct {
    bpf_map* host;
    bpf_map* dataplane;
  } tries[] = {{s->maps.bw_watch_v4, dp.skel()->maps.bw_watch_v4},
               {s->maps.bw_watch_v6, dp.skel()->maps.bw_watch_v6}};
  for (auto& t : tries) {
    int e = bpf_map__set_pin_path(t.host, nullptr);
    if (e == 0) e = bpf_map__reuse_fd(t.host, bpf_map__fd(t.dataplane));
    if (e != 0) {
      *err = absl::StrCat("sharing ", bpf_map__name(t.host), " with the host-context object: ",
                          std::strerror(-e));
      bannerwatch_host__destroy(s);
      return nullptr;
    }
  }
  return s;
}

// Attaches the attribution programs `s` loaded (sock_ops to `cgroup_fd`); on failure destroys
// what it made and says why.
bool AttachAttribution(bannerwatch_host* s, int cgroup_fd, std::vector<bpf_link*>* links,
                       std::string* why) {
  bpf_program* progs[] = {s->progs.bw_tcp_connect, s->progs.bw_accept, s->progs.bw_accept_old,
                          s->progs.bw_kp_connect, s->progs.bw_kp_accept, s->progs.bw_sockops,
                          s->progs.bw_sock_state};
  for (bpf_program* p : progs) {
    if (!bpf_program__autoload(p)) continue;
    bpf_link* l = p == s->progs.bw_sockops ? bpf_program__attach_cgroup(p, cgroup_fd)
                                           : bpf_program__attach(p);
    if (l == nullptr) {
      *why = absl::StrCat("attaching ", bpf_program__name(p), ": ", std::strerror(errno));
      for (bpf_link* made : *links) bpf_link__destroy(made);
      links->clear();
      return false;
    }
    links->push_back(l);
  }
  return true;
}

// The cgroup v2 directory the cgroup programs attach to, opened; -1 with *why when it cannot be.
int OpenCgroup(const std::string& path, std::string* why) {
  if (path.empty()) {
    *why = "no cgroup v2 hierarchy is mounted";
    return -1;
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    *why = absl::StrCat(path, ": ", std::strerror(errno));
    return -1;
  }
  struct statfs sf {};
  if (fstatfs(fd, &sf) != 0 || sf.f_type != CGROUP2_SUPER_MAGIC) {
    *why = absl::StrCat(path, " is not a cgroup v2 directory");
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

std::string Cgroup2Mount() {
  std::ifstream in("/proc/self/mountinfo");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto m = FindCgroup2Mount(text);
  return m.ok() ? m->mount_point : std::string();
}

const char* HostCounterName(int i) {
  static const char* const kNames[] = {
#define BW_NAME(name) #name,
      BW_HOST_COUNTERS(BW_NAME)
#undef BW_NAME
  };
  return i >= 0 && i < BW_HCNT__MAX ? kNames[i] : "?";
}

absl::StatusOr<std::unique_ptr<HostPrograms>> HostPrograms::Load(DataPlane& dp,
                                                                  const HostOptions& opts) {
  std::unique_ptr<HostPrograms> hp(new HostPrograms());
  hp->cgroup_ = opts.cgroup.empty() ? Cgroup2Mount() : opts.cgroup;
  std::string cgroup_why;
  const int cgroup_fd = OpenCgroup(hp->cgroup_, &cgroup_why);

  std::vector<Hooks> ways;
  if (opts.attribution) {
    if (opts.hooks == AttributionHooks::kAuto) ways.push_back(Hooks::kTrampoline);
    ways.push_back(Hooks::kKprobe);
    if (cgroup_fd >= 0) ways.push_back(Hooks::kSockops);
  }
  ways.push_back(Hooks::kNone);
  const int accept_args = opts.attribution ? AcceptArgs() : 0;

  // Each way is a load of its own (a program the kernel refuses fails the whole object). The
  // cgroup programs ask for the caller's pid, name and cgroup where the kernel lets them; a kernel
  // that refuses those helpers to them gets the programs without (uid and gid only).
  std::vector<std::string> refused;  // why each way was not had
  bool task_helpers = true;
  for (size_t i = 0; i < ways.size() && hp->skel_ == nullptr;) {
    const Hooks hooks = ways[i];
    std::string err;
    bannerwatch_host* s = Open(dp, hooks, accept_args, task_helpers, &err);
    if (s == nullptr) {
      if (cgroup_fd >= 0) ::close(cgroup_fd);
      return absl::InternalError(err);
    }
    ScopedLibbpfCapture capture;
    int e = bannerwatch_host__load(s);
    if (e != 0) {
      std::string why = absl::StrCat(std::strerror(-e), LastVerifierLines(capture));
      const std::string failed = capture.prog_logs().empty() ? "" : capture.prog_logs().front().prog;
      bannerwatch_host__destroy(s);
      if (task_helpers && (absl::StartsWith(failed, "bw_connect") ||
                           absl::StartsWith(failed, "bw_sendmsg"))) {
        task_helpers = false;  // the same way again, the cgroup programs without them
        hp->sockaddr_note_ = absl::StrCat(
            "the kernel does not give cgroup socket programs the caller's pid (", why,
            "): refusal events carry its uid and gid only");
        continue;
      }
      if (hooks == Hooks::kNone) {
        if (cgroup_fd >= 0) ::close(cgroup_fd);
        return absl::FailedPreconditionError(
            absl::StrCat("loading the host-context object: ", why));
      }
      refused.push_back(absl::StrCat(HooksName(hooks), ": the kernel refused them (", why, ")"));
      ++i;
      continue;
    }
    std::string why;
    if (hooks != Hooks::kNone && !AttachAttribution(s, cgroup_fd, &hp->links_, &why)) {
      bannerwatch_host__destroy(s);
      refused.push_back(absl::StrCat(HooksName(hooks), ": ", why));
      ++i;
      continue;
    }
    hp->skel_ = s;
    switch (hooks) {
      case Hooks::kTrampoline:
        hp->attribution_hooks_ = "fentry tcp_connect";
        if (accept_args == 2)
          absl::StrAppend(&hp->attribution_hooks_, ", fexit inet_csk_accept(sk, arg)");
        else if (accept_args == 4)
          absl::StrAppend(&hp->attribution_hooks_, ", fexit inet_csk_accept(sk, flags, err, kern)");
        else
          absl::StrAppend(&hp->attribution_hooks_,
                          " (accepted connections unnamed: no inet_csk_accept of a known signature)");
        break;
      case Hooks::kKprobe:
        hp->attribution_hooks_ = "kprobe tcp_connect, kretprobe inet_csk_accept";
        break;
      case Hooks::kSockops:
        hp->attribution_hooks_ = absl::StrCat(
            "sock_ops TCP_CONNECT on cgroup ", hp->cgroup_,
            " (outbound only: accepted connections unnamed; processes outside the cgroup unnamed)");
        break;
      case Hooks::kNone:
        hp->attribution_off_ = opts.attribution ? absl::StrJoin(refused, "; ")
                                                : "off in the policy (host.attribution: false)";
        break;
    }
    if (hooks != Hooks::kNone && !refused.empty())
      absl::StrAppend(&hp->attribution_hooks_, "; not had: ", absl::StrJoin(refused, "; "));
  }

  if (!opts.refusal) {
    hp->refusal_off_ = "off in the policy (host.refuse: false)";
  } else if (cgroup_fd < 0) {
    hp->refusal_off_ = cgroup_why;
  } else {
    bpf_program* progs[] = {hp->skel_->progs.bw_connect4, hp->skel_->progs.bw_connect6,
                            hp->skel_->progs.bw_sendmsg4, hp->skel_->progs.bw_sendmsg6};
    std::vector<bpf_link*> cg;
    for (bpf_program* p : progs) {
      bpf_link* l = bpf_program__attach_cgroup(p, cgroup_fd);
      if (l == nullptr) {
        hp->refusal_off_ = absl::StrCat("attaching ", bpf_program__name(p), " to ", hp->cgroup_,
                                        ": ", std::strerror(errno));
        break;
      }
      cg.push_back(l);
    }
    // All four or none: a v4 refusal without the v6 one would be a hole that looks covered.
    if (!hp->refusal()) {
      for (bpf_link* l : cg) bpf_link__destroy(l);
    } else {
      hp->links_.insert(hp->links_.end(), cg.begin(), cg.end());
    }
  }
  if (cgroup_fd >= 0) ::close(cgroup_fd);
  return hp;
}

HostPrograms::~HostPrograms() {
  for (bpf_link* l : links_) bpf_link__destroy(l);
  if (skel_) bannerwatch_host__destroy(skel_);
}

absl::Status HostPrograms::Configure(uint32_t flags, uint32_t event_budget) {
  bw_host_cfg cfg{};
  cfg.flags = refusal() ? flags : (flags & ~uint32_t{BW_HOST_REFUSE});
  cfg.event_budget = event_budget;
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.bw_host_cfg), &zero, &cfg, BPF_ANY) != 0)
    return absl::InternalError(
        absl::StrCat("bpf_map_update_elem(bw_host_cfg): ", std::strerror(errno)));
  return absl::OkStatus();
}

int HostPrograms::socks_fd() const { return bpf_map__fd(skel_->maps.bw_socks); }
int HostPrograms::events_fd() const { return bpf_map__fd(skel_->maps.bw_sock_ev); }
std::vector<ProgramInfo> HostPrograms::Programs() const {
  std::vector<ProgramInfo> out;
  bpf_program* p;
  bpf_object__for_each_program(p, skel_->obj) {
    if (bpf_program__fd(p) >= 0) out.push_back(InfoOfProgram(p));
  }
  return out;
}

int HostPrograms::exes_fd() const { return bpf_map__fd(skel_->maps.bw_exes); }

absl::StatusOr<HostCounters> HostPrograms::Counters() const {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return absl::InternalError("libbpf_num_possible_cpus failed");
  std::vector<bw_host_counters> per(static_cast<size_t>(ncpu));
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.bw_host_cnt), &zero, per.data()) != 0)
    return absl::InternalError(
        absl::StrCat("bpf_map_lookup_elem(bw_host_cnt): ", std::strerror(errno)));
  HostCounters sum{};
  for (const bw_host_counters& c : per) {
    const uint64_t* v = reinterpret_cast<const uint64_t*>(&c);
    for (int i = 0; i < BW_HCNT__MAX; ++i) sum[i] += v[i];
  }
  return sum;
}

}  // namespace bw
