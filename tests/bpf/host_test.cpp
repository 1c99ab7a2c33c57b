// The host-context object (bpf/host.bpf.c, daemon/host/host_programs.hpp) on the running kernel,
// with real processes: forked children with known names in a network namespace of their own
// (loopback only: no packet leaves) and, for refusal, in a test cgroup of their own.
//  - connect()/sendmsg() to a blocked remote fail with EPERM: TCP and UDP, IPv4, IPv6 and an IPv6
//    socket's IPv4-mapped address; never for a safelisted or unlisted remote, never with refusal
//    turned off, never for a process outside the cgroup; each refusal's event names the caller.
//  - a connection's process is recorded at connect and at accept, keyed as its packets show it.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "daemon/host/host_context.hpp"
#include "daemon/host/host_programs.hpp"
#include "lib/bpf_harness.hpp"

namespace bw::test {
namespace {

// A cgroup v2 directory of the test's own under the hierarchy's root; removed at the end (the
// children that joined it have exited by then).
struct TestCgroup {
  std::string path;
  TestCgroup() {
    std::string root = Cgroup2Mount();
    REQUIRE_FALSE(root.empty());
    path = root + "/bwtest-host-" + std::to_string(getpid());
    ::rmdir(path.c_str());
    REQUIRE(::mkdir(path.c_str(), 0755) == 0);
  }
  ~TestCgroup() { ::rmdir(path.c_str()); }
};

// Runs `body` in a forked child named `comm`, in a network namespace of its own with loopback up,
// and in `cgroup` when not empty. Returns what body returned (0..255), or -1 if the child failed.
int InChild(const std::string& comm, const std::string& cgroup, const std::function<int()>& body,
            pid_t* pid_out = nullptr) {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(p[0]);
    if (!cgroup.empty()) {
      std::ofstream procs(cgroup + "/cgroup.procs");
      procs << "0" << std::flush;
      if (!procs) ::_exit(201);
    }
    if (::unshare(CLONE_NEWNET) != 0) ::_exit(202);
    if (::system("ip link set lo up") != 0) ::_exit(203);
    ::prctl(PR_SET_NAME, comm.c_str());
    char go = 1;
    (void)!::write(p[1], &go, 1);
    ::_exit(body());
  }
  ::close(p[1]);
  char go = 0;
  (void)!::read(p[0], &go, 1);
  ::close(p[0]);
  if (pid_out) *pid_out = pid;
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// connect() or sendto() once, non-blocking (an unrefused call to an unreachable address fails at
// once with ENETUNREACH in the child's empty namespace); returns errno (0: it went through).
int Call(int family, int type, const std::string& addr, uint16_t port, bool sendto) {
  int s = ::socket(family, type | SOCK_NONBLOCK, 0);
  if (s < 0) return 250;
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    if (inet_pton(AF_INET, addr.c_str(), &a->sin_addr) != 1) return 251;
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    if (inet_pton(AF_INET6, addr.c_str(), &a->sin6_addr) != 1) return 251;
    len = sizeof(*a);
  }
  int r = sendto ? static_cast<int>(::sendto(s, "x", 1, 0, reinterpret_cast<sockaddr*>(&ss), len))
                 : ::connect(s, reinterpret_cast<sockaddr*>(&ss), len);
  int e = r < 0 ? errno : 0;
  ::close(s);
  return e;
}

std::vector<bw_sock_event> DrainSockEvents(int ring_fd) {
  static std::vector<bw_sock_event>* out;
  std::vector<bw_sock_event> v;
  out = &v;
  ring_buffer* rb = ring_buffer__new(
      ring_fd,
      [](void*, void* data, size_t size) {
        if (size == sizeof(bw_sock_event)) out->push_back(*static_cast<bw_sock_event*>(data));
        return 0;
      },
      nullptr, nullptr);
  REQUIRE(rb != nullptr);
  ring_buffer__consume(rb);
  ring_buffer__free(rb);
  return v;
}

struct Host {
  BpfHarness h;
  TestCgroup cg;
  std::unique_ptr<HostPrograms> hp;
  explicit Host(AttributionHooks hooks = AttributionHooks::kAuto) {
    HostOptions o;
    o.cgroup = cg.path;
    o.hooks = hooks;
    auto loaded = HostPrograms::Load(h.dataplane(), o);
    REQUIRE(loaded.ok());
    hp = std::move(*loaded);
    INFO("attribution off: " << hp->attribution_off() << "; refusal off: " << hp->refusal_off());
    REQUIRE(hp->attribution());
    REQUIRE(hp->refusal());
    std::printf("host: attribution through %s\n", hp->attribution_hooks().c_str());
    for (const ProgramInfo& pi : hp->Programs())
      std::printf("host: %-16s %7u instructions verified, %5u bytes jited\n", pi.name.c_str(),
                  pi.verified_insns, pi.jited_bytes);
    REQUIRE(hp->Configure(BW_HOST_REFUSE, 0).ok());
    h.AddPrefix("203.0.113.99/32", BW_ACTION_BLOCK, 3, 17);
    h.AddPrefix("203.0.113.98/32", BW_ACTION_SAFELIST, 4, 18);
    h.AddPrefix("2001:db8::99/128", BW_ACTION_BLOCK, 3, 19);
    h.AddPrefix("203.0.113.97/32", BW_ACTION_WATCH, 5, 20);
  }
  ~Host() {
    hp.reset();  // the links go before the cgroup is removed
  }
};

}  // namespace

TEST_CASE("host: connect() and sendmsg() to a blocked remote fail with EPERM, naming the caller") {
  Host host;
  /* Test that each refused call is EPERM at once and its event carries the caller. */
  struct Row {
    const char* what;
    int family, type;
    const char* addr;
    uint16_t port;
    bool sendto;
    int want;  // errno
    uint8_t hook, l4proto, family_ev;
  };
  const std::vector<Row> rows = {
      {"TCP connect, IPv4", AF_INET, SOCK_STREAM, "203.0.113.99", 443, false, EPERM,
       BW_HOOK_CONNECT, IPPROTO_TCP, BW_FAMILY_V4},
      {"UDP sendto, IPv4", AF_INET, SOCK_DGRAM, "203.0.113.99", 53, true, EPERM, BW_HOOK_SENDMSG,
       IPPROTO_UDP, BW_FAMILY_V4},
      {"UDP connect, IPv4", AF_INET, SOCK_DGRAM, "203.0.113.99", 53, false, EPERM,
       BW_HOOK_CONNECT, IPPROTO_UDP, BW_FAMILY_V4},
      {"TCP connect, IPv6", AF_INET6, SOCK_STREAM, "2001:db8::99", 443, false, EPERM,
       BW_HOOK_CONNECT, IPPROTO_TCP, BW_FAMILY_V6},
      {"UDP sendto, IPv6", AF_INET6, SOCK_DGRAM, "2001:db8::99", 53, true, EPERM,
       BW_HOOK_SENDMSG, IPPROTO_UDP, BW_FAMILY_V6},
      {"TCP connect, IPv6 socket to an IPv4-mapped address", AF_INET6, SOCK_STREAM,
       "::ffff:203.0.113.99", 443, false, EPERM, BW_HOOK_CONNECT, IPPROTO_TCP, BW_FAMILY_V4},
      {"TCP connect, safelisted", AF_INET, SOCK_STREAM, "203.0.113.98", 443, false, ENETUNREACH,
       0, 0, 0},
      {"TCP connect, watched only", AF_INET, SOCK_STREAM, "203.0.113.97", 443, false,
       ENETUNREACH, 0, 0, 0},
      {"UDP sendto, unlisted", AF_INET, SOCK_DGRAM, "198.51.100.7", 53, true, ENETUNREACH, 0, 0,
       0},
  };
  for (const Row& r : rows) {
    INFO(r.what);
    (void)DrainSockEvents(host.hp->events_fd());
    pid_t pid = 0;
    int got = InChild("bwtest-refused", host.cg.path,
                      [&] { return Call(r.family, r.type, r.addr, r.port, r.sendto); }, &pid);
    CHECK(got == r.want);
    std::vector<bw_sock_event> evs = DrainSockEvents(host.hp->events_fd());
    if (r.want != EPERM) {
      CHECK(evs.empty());
      continue;
    }
    REQUIRE(evs.size() == 1);
    const bw_sock_event& e = evs[0];
    CHECK(e.kind == BW_SEV_REFUSED);
    CHECK(e.hook == r.hook);
    CHECK(e.l4proto == r.l4proto);
    CHECK(e.family == r.family_ev);
    CHECK(ntohs(e.rport) == r.port);
    CHECK(e.list_id == 3);
    CHECK(e.list_action == BW_ACTION_BLOCK);
    CHECK(e.proc.origin == BW_PROC_SOCKADDR);
    // The caller, where this kernel gives cgroup programs its pid (every kernel tested does).
    if (e.proc.tgid != 0) {
      CHECK(e.proc.tgid == static_cast<uint32_t>(pid));
      CHECK(std::string(e.proc.comm) == "bwtest-refused");
    }
    CHECK(e.proc.uid == getuid());
    // The refused caller's executable, recorded by the refusing program itself.
    if (e.proc.tgid != 0 && e.proc.start_boottime_ns != 0) {
      bw_exe_key ek{};
      ek.start_boottime_ns = e.proc.start_boottime_ns;
      ek.tgid = e.proc.tgid;
      bw_exe x{};
      REQUIRE(bpf_map_lookup_elem(host.hp->exes_fd(), &ek, &x) == 0);
      char self[4096] = {};
      REQUIRE(::readlink("/proc/self/exe", self, sizeof(self) - 1) > 0);
      CHECK(ExePathOfRecord(x) == self);
    }
  }
  auto c = host.hp->Counters();
  REQUIRE(c.ok());
  CHECK((*c)[BW_HCNT_refused_connect] == 4);
  CHECK((*c)[BW_HCNT_refused_sendmsg] == 2);
}

TEST_CASE("host: refusal stays out of other cgroups and off when the policy turns it off") {
  Host host;
  // Outside the test cgroup: the programs are not there (TC egress would drop the packets).
  CHECK(InChild("bwtest-outside", "", [] {
          return Call(AF_INET, SOCK_STREAM, "203.0.113.99", 443, false);
        }) == ENETUNREACH);
  // In it, with host.refuse: false (the flag cleared): the call goes on to routing.
  REQUIRE(host.hp->Configure(0, 0).ok());
  CHECK(InChild("bwtest-off", host.cg.path, [] {
          return Call(AF_INET, SOCK_STREAM, "203.0.113.99", 443, false);
        }) == ENETUNREACH);
  CHECK(DrainSockEvents(host.hp->events_fd()).empty());
  // And on again.
  REQUIRE(host.hp->Configure(BW_HOST_REFUSE, 0).ok());
  CHECK(InChild("bwtest-on", host.cg.path, [] {
          return Call(AF_INET, SOCK_STREAM, "203.0.113.99", 443, false);
        }) == EPERM);
}

TEST_CASE("host: the event budget bounds refusal events, never the refusal") {
  Host host;
  REQUIRE(host.hp->Configure(BW_HOST_REFUSE, 5).ok());
  int refused = InChild("bwtest-flood", host.cg.path, [] {
    int n = 0;
    for (int i = 0; i < 50; ++i) n += Call(AF_INET, SOCK_DGRAM, "203.0.113.99", 53, true) == EPERM;
    return n;
  });
  CHECK(refused == 50);
  auto evs = DrainSockEvents(host.hp->events_fd());
  auto c = host.hp->Counters();
  REQUIRE(c.ok());
  // At most 5 a second per CPU: the child may have moved between CPUs, and the second may have
  // turned; never all 50.
  CHECK(evs.size() >= 5);
  CHECK(evs.size() < 50);
  CHECK((*c)[BW_HCNT_refused_sendmsg] == 50);
  CHECK((*c)[BW_HCNT_sock_events_budget] == 50 - evs.size());
}

TEST_CASE("host: a TCP connection's process is recorded at connect and at accept") {
  // Both ways the kernel may be hooked: the first it takes (fentry/fexit where it runs tracing
  // programs), and kprobes, the fallback, on every kernel.
  auto hooks = GENERATE(AttributionHooks::kAuto, AttributionHooks::kKprobe);
  Host host(hooks);
  struct Case {
    const char* what;
    int family;
    const char* listen_addr;
    const char* connect_addr;
    uint8_t key_family;
    const char* key_addr;  // both ends, as the packets show them
  };
  const std::vector<Case> cases = {
      {"IPv4", AF_INET, "127.0.0.1", "127.0.0.1", BW_FAMILY_V4, "127.0.0.1"},
      {"IPv6", AF_INET6, "::1", "::1", BW_FAMILY_V6, "::1"},
      {"IPv6 socket, IPv4-mapped", AF_INET6, "::", "::ffff:127.0.0.1", BW_FAMILY_V4, "127.0.0.1"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    // The child listens, forks a client that connects (named bwtest-client), accepts (as
    // bwtest-server), and reports the client's pid and both ports.
    int report[2];
    REQUIRE(::pipe(report) == 0);
    int st = InChild("bwtest-server", host.cg.path, [&] {
      int l = ::socket(c.family, SOCK_STREAM, 0);
      int zero = 0;
      if (c.family == AF_INET6) ::setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
      sockaddr_storage ss{};
      socklen_t len;
      if (c.family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        inet_pton(AF_INET, c.listen_addr, &a->sin_addr);
        len = sizeof(*a);
      } else {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, c.listen_addr, &a->sin6_addr);
        len = sizeof(*a);
      }
      if (::bind(l, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(l, 4) != 0) return 1;
      ::getsockname(l, reinterpret_cast<sockaddr*>(&ss), &len);
      uint16_t port = c.family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                          : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port;
      pid_t client = ::fork();
      if (client == 0) {
        ::prctl(PR_SET_NAME, "bwtest-client");
        int s = ::socket(c.family, SOCK_STREAM, 0);
        sockaddr_storage d{};
        socklen_t dl;
        if (c.family == AF_INET) {
          auto* a = reinterpret_cast<sockaddr_in*>(&d);
          a->sin_family = AF_INET;
          a->sin_port = port;
          inet_pton(AF_INET, c.connect_addr, &a->sin_addr);
          dl = sizeof(*a);
        } else {
          auto* a = reinterpret_cast<sockaddr_in6*>(&d);
          a->sin6_family = AF_INET6;
          a->sin6_port = port;
          inet_pton(AF_INET6, c.connect_addr, &a->sin6_addr);
          dl = sizeof(*a);
        }
        if (::connect(s, reinterpret_cast<sockaddr*>(&d), dl) != 0) ::_exit(1);
        sockaddr_storage me{};
        socklen_t ml = sizeof(me);
        ::getsockname(s, reinterpret_cast<sockaddr*>(&me), &ml);
        uint16_t cport = c.family == AF_INET ? reinterpret_cast<sockaddr_in*>(&me)->sin_port
                                             : reinterpret_cast<sockaddr_in6*>(&me)->sin6_port;
        uint32_t msg[3] = {static_cast<uint32_t>(::getpid()), port, cport};
        (void)!::write(report[1], msg, sizeof(msg));
        char b;
        (void)!::read(s, &b, 1);  // until the server closes
        ::_exit(0);
      }
      int a = ::accept(l, nullptr, nullptr);
      int status = 0;
      ::close(a);
      ::waitpid(client, &status, 0);
      return a >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 2;
    });
    REQUIRE(st == 0);
    uint32_t msg[3] = {};
    REQUIRE(::read(report[0], msg, sizeof(msg)) == sizeof(msg));
    ::close(report[0]);
    ::close(report[1]);

    bw_sock_key k{};
    k.family = c.key_family;
    REQUIRE(inet_pton(c.key_family == BW_FAMILY_V4 ? AF_INET : AF_INET6, c.key_addr, k.laddr) ==
            1);
    std::memcpy(k.raddr, k.laddr, 16);
    // The client's end: local port = the client's.
    k.lport = static_cast<uint16_t>(msg[2]);
    k.rport = static_cast<uint16_t>(msg[1]);
    bw_proc rec{};
    REQUIRE(bpf_map_lookup_elem(host.hp->socks_fd(), &k, &rec) == 0);
    CHECK(rec.origin == BW_PROC_CONNECT);
    CHECK(rec.tgid == msg[0]);
    CHECK(std::string(rec.comm) == "bwtest-client");
    CHECK(rec.start_boottime_ns != 0);
    CHECK(rec.cgroup_id != 0);
    {
      // Its executable, from the task: this test binary (the child is a fork of it).
      bw_exe_key ek{};
      ek.start_boottime_ns = rec.start_boottime_ns;
      ek.tgid = rec.tgid;
      bw_exe e{};
      REQUIRE(bpf_map_lookup_elem(host.hp->exes_fd(), &ek, &e) == 0);
      char self[4096] = {};
      REQUIRE(::readlink("/proc/self/exe", self, sizeof(self) - 1) > 0);
      CHECK(ExePathOfRecord(e) == self);
    }
    // The server's end: what it accepted (sock_ops, the last resort, sees no accept).
    std::swap(k.lport, k.rport);
    if (absl::StartsWith(host.hp->attribution_hooks(), "sock_ops")) {
      CHECK(bpf_map_lookup_elem(host.hp->socks_fd(), &k, &rec) != 0);
      std::swap(k.lport, k.rport);
      REQUIRE(bpf_map_lookup_elem(host.hp->socks_fd(), &k, &rec) == 0);
    } else {
      REQUIRE(bpf_map_lookup_elem(host.hp->socks_fd(), &k, &rec) == 0);
      CHECK(rec.origin == BW_PROC_ACCEPT);
      CHECK(std::string(rec.comm) == "bwtest-server");
    }

    // The daemon's join: an event of that connection as TC egress saw the client's SYN.
    bw_event ev{};
    ev.ts_ns = rec.ts_ns + 1;
    ev.kind = BW_EV_WATCH;
    ev.direction = BW_DIR_EGRESS;
    ev.family = c.key_family;
    ev.l4proto = IPPROTO_TCP;
    std::memcpy(ev.saddr, k.laddr, 16);
    std::memcpy(ev.daddr, k.raddr, 16);
    ev.sport = static_cast<uint16_t>(msg[2]);
    ev.dport = static_cast<uint16_t>(msg[1]);
    HostContext ctx(host.hp->socks_fd(), {});
    const ProcessContext* pc = ctx.ProcessFor(ev);
    REQUIRE(pc != nullptr);
    CHECK(pc->pid == msg[0]);
    CHECK(pc->name == "bwtest-client");
    // A record newer than the event belongs to a later connection: not used.
    ev.ts_ns = 1;
    CHECK(ctx.ProcessFor(ev) == nullptr);
    CHECK(ctx.stats().stale == 1);

    // The connection has closed (both processes are gone): its record says when, and an event
    // after that is another connection's on the same addresses and ports, never this process's.
    k.lport = static_cast<uint16_t>(msg[2]);
    k.rport = static_cast<uint16_t>(msg[1]);
    bw_proc crec{};
    for (int i = 0; i < 200 && crec.closed_ns == 0; ++i) {
      REQUIRE(bpf_map_lookup_elem(host.hp->socks_fd(), &k, &crec) == 0);
      if (crec.closed_ns == 0) ::usleep(10000);
    }
    REQUIRE(crec.closed_ns != 0);
    CHECK(crec.closed_ns > crec.ts_ns);
    ev.ts_ns = crec.closed_ns + 1;
    CHECK(ctx.ProcessFor(ev) == nullptr);
    CHECK(ctx.stats().stale == 2);
    ev.ts_ns = crec.closed_ns;  // its own last moments: still its process
    CHECK(ctx.ProcessFor(ev) != nullptr);
  }
}

}  // namespace bw::test
