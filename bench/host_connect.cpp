// host_connect.cpp — part 6: what the host-context programs (bpf/host.bpf.c, loaded and attached
// by daemon/host/host_programs.hpp) add to a TCP connection's setup.
//
// Method. One thread, pinned to one CPU, in a network namespace of its own (loopback only) and in
// a cgroup v2 directory of its own (under the cgroup2 mount), runs cycles of socket(), a blocking
// connect() to a listener on 127.0.0.1, accept(), and close() of both ends; the connecting end
// closes with SO_LINGER 0 (an RST), so that no TIME_WAIT is left behind and 100 000 cycles never
// run out of ports. Arms, interleaved round by round (the order reversed every other round, so
// that drift affects all of them alike):
//   baseline  nothing of the host context loaded (the data plane's object is loaded, attached
//             nowhere: it only owns the tries);
//   auto      HostPrograms::Load with the daemon's defaults: attribution with the hooks it picks
//             (fentry/fexit, else kprobes, else the cgroup sock_ops program), refusal (cgroup
//             connect4/6, sendmsg4/6) on the benchmark's cgroup, refusing ON, with --prefixes
//             feed-shaped BLOCK prefixes in the tries (none near 127/8: the lookup walks the trie
//             and finds nothing, as for an unlisted remote);
//   kprobe    the same with HostOptions::hooks = kKprobe, where the kernel takes kprobes (else
//             skipped, with the kernel's reason).
// Every loaded arm is loaded afresh for its round and destroyed after it (the loading is not
// timed), runs --warmup untimed cycles, then --cycles timed ones (wall clock, CLOCK_MONOTONIC);
// its counters are checked afterwards (every connect recorded, every accept where the hooks see
// accepts, no record errors), and one connect() to a blocked address must fail with EPERM.
// Figures: the median over rounds of ns per cycle; ratio and added ns are medians of the per-round
// ratio and difference against the baseline of the same round. Apart from the rounds, each loaded
// arm runs --cycles more with the kernel's BPF run-time statistics on (BPF_ENABLE_STATS): how
// often each program runs per cycle and its own time per run, which tells the programs' part of
// the added time from the hooks' (and is steadier than a difference of wall clocks under
// emulation).
//
// Then the LRU: bw_socks holds BW_SOCKS_DEFAULT connections. With a fresh auto arm,
// --lru_connections connections, each to a remote address of its own in 127/8 (so that no two
// share a key), are made; afterwards every connection's records (the connecting side's, and the
// accepting side's where the hooks record accepts) are looked up. A record found must be that
// connection's: this process and thread, the expected origin, a timestamp inside the
// connection's own cycle; anything else is counted as misnamed.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/lib/bpfbench.hpp"
#include "bench/lib/feeds.hpp"
#include "bench/lib/report.hpp"
#include "bench/lib/sys.hpp"
#include "daemon/dataplane/loader.hpp"
#include "daemon/host/host_programs.hpp"
#include "maps/maps.hpp"

ABSL_FLAG(std::string, out, "", "write the result fragment (JSON) here");
ABSL_FLAG(int, cycles, 100000, "timed connect+accept+close cycles per arm per round");
ABSL_FLAG(int, rounds, 5, "rounds (median)");
ABSL_FLAG(int, warmup, 1000, "untimed cycles before each arm's timed ones");
ABSL_FLAG(int, prefixes, 1000, "feed-shaped BLOCK prefixes in the tries while the programs run");
ABSL_FLAG(int, lru_connections, 100000,
          "connections of the bw_socks LRU check, each to its own address (0: skip the check)");
ABSL_FLAG(bool, kprobe, true, "also measure HostOptions::hooks = kKprobe where the kernel allows");
ABSL_FLAG(uint64_t, seed, 5, "seed of the prefix set");
ABSL_FLAG(int, cpu, -1, "CPU to run on (-1: the last one)");
ABSL_FLAG(bool, verbose, false, "libbpf debug output");

namespace bw::bench {
namespace {

constexpr char kComm[] = "bwb-hostconn";  // the measuring thread's name (bw_proc.comm)

uint64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // bpf_ktime_get_ns()'s clock
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// The hooks in a few words, for the table: attribution_hooks() up to its details.
std::string ShortHooks(const std::string& h) {
  size_t cut = h.size();
  for (const char* stop : {"; ", " (", " on cgroup"}) cut = std::min(cut, h.find(stop));
  return h.substr(0, cut);
}

struct Arm {
  std::string key;    // latest.json
  std::string label;  // the table's first column
  bool programs = false;
  AttributionHooks hooks = AttributionHooks::kAuto;
  std::string hooks_used;  // attribution_hooks() of the last load
  bool attributes = false;  // attribution on (else refusal alone: every way refused)
  bool records_accepts = false;
  std::vector<double> ns, ratio, added, load_ms;
};

// One connection's records in bw_socks, as the LRU check finds them.
struct Conn {
  bw_sock_key ck{}, ak{};  // the connecting side's key, the accepting side's
  uint64_t t0 = 0, t1 = 0;
};

class HostConnect {
 public:
  ~HostConnect() { Cleanup(); }
  absl::Status Run();
  Section section;

 private:
  absl::Status Setup();
  absl::Status JoinCgroup();
  void Cleanup();
  absl::StatusOr<std::unique_ptr<HostPrograms>> LoadArm(Arm& a);
  absl::Status Cycles(int n, bool* stop);
  absl::Status OneCycle(const sockaddr_in& dst, Conn* conn);
  absl::StatusOr<double> RunArm(Arm& a, int cycles);
  absl::Status CheckRefused(const char* who);
  absl::Status Lru(nlohmann::json* out);
  absl::Status ProgStats(Arm& a, int cycles, nlohmann::json* out);

  std::string pin_root_, cgroup_, orig_cgroup_;
  bool joined_ = false;
  std::unique_ptr<Netns> ns_;
  std::unique_ptr<DataPlane> dp_;
  MapSet maps_;
  std::unique_ptr<CompiledPolicy> applied_;
  std::vector<Prefix> prefixes_;
  uint32_t blocked_addr_ = 0;  // host order: inside one of the BLOCK prefixes
  std::unique_ptr<HostPrograms> hp_;  // the loaded arm's programs, while its round runs
  int listener_ = -1;
  uint16_t port_ = 0;  // the listener's, host order
  uint64_t cycles_run_ = 0;
};

absl::Status HostConnect::JoinCgroup() {
  const std::string mount = Cgroup2Mount();
  if (mount.empty()) return absl::FailedPreconditionError("no cgroup v2 hierarchy is mounted");
  // Where this process is now (the "0::" line), to go back there before the directory is removed.
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (absl::StartsWith(line, "0::")) orig_cgroup_ = mount + line.substr(3);
  if (orig_cgroup_.empty())
    return absl::FailedPreconditionError("/proc/self/cgroup has no cgroup v2 entry");
  if (absl::EndsWith(orig_cgroup_, "/")) orig_cgroup_.pop_back();
  const std::string dir = absl::StrCat(mount, "/bwbench-host-", getpid());
  if (::mkdir(dir.c_str(), 0755) != 0) return ErrnoStatus(dir, "mkdir", errno);
  cgroup_ = dir;
  std::ofstream procs(dir + "/cgroup.procs");
  procs << getpid() << std::flush;
  if (!procs) return absl::InternalError(absl::StrCat(dir, "/cgroup.procs: cannot join"));
  joined_ = true;
  return absl::OkStatus();
}

absl::Status HostConnect::Setup() {
  absl::Status st = JoinCgroup();
  if (!st.ok()) return st;
  pin_root_ = absl::StrCat("/sys/fs/bpf/bwbench-", getpid());
  st = LoadFreshDataPlane(pin_root_, &dp_, &maps_);
  if (!st.ok()) return st;
  const size_t n = static_cast<size_t>(absl::GetFlag(FLAGS_prefixes));
  prefixes_ = FeedPrefixes(n, absl::GetFlag(FLAGS_seed));
  if (n > 0) {
    ApplyStats as;
    st = ApplyAsPolicy(prefixes_, n, maps_, &applied_, &as);
    if (!st.ok()) return st;
    std::vector<uint32_t> b = CoveredSources(prefixes_, 1, absl::GetFlag(FLAGS_seed) + 1);
    if (!b.empty()) blocked_addr_ = b[0];
  }
  auto ns = Netns::Create("host");
  if (!ns.ok()) return ns.status();
  ns_ = std::move(*ns);
  auto r = ns_->Sh("ip link set lo up");
  if (!r.ok()) return r.status();
  return absl::OkStatus();
}

void HostConnect::Cleanup() {
  hp_.reset();  // its links go before the cgroup does
  if (listener_ >= 0) ::close(listener_);
  listener_ = -1;
  if (joined_) {
    std::ofstream back(orig_cgroup_ + "/cgroup.procs");
    back << getpid() << std::flush;
    if (!back) {
      // The cgroup we came from may be gone or refuse processes: the hierarchy's root takes any.
      std::ofstream root(Cgroup2Mount() + "/cgroup.procs");
      root << getpid() << std::flush;
    }
    joined_ = false;
  }
  if (!cgroup_.empty() && ::rmdir(cgroup_.c_str()) != 0)
    std::fprintf(stderr, "host_connect: rmdir %s: %s\n", cgroup_.c_str(), std::strerror(errno));
  cgroup_.clear();
  ns_.reset();
  if (dp_) {
    absl::Status st = dp_->UnpinMaps();
    if (!st.ok())
      std::fprintf(stderr, "host_connect: unpin %s: %s\n", pin_root_.c_str(), st.ToString().c_str());
    dp_.reset();
  }
}

absl::StatusOr<std::unique_ptr<HostPrograms>> HostConnect::LoadArm(Arm& a) {
  HostOptions o;
  o.hooks = a.hooks;
  o.cgroup = cgroup_;
  const uint64_t t0 = NowNs();
  auto hp = HostPrograms::Load(*dp_, o);
  if (!hp.ok()) return hp.status();
  a.load_ms.push_back(static_cast<double>(NowNs() - t0) / 1e6);
  if (!(*hp)->refusal())
    return absl::FailedPreconditionError(
        absl::StrCat(a.label, ": refusal is off: ", (*hp)->refusal_off()));
  absl::Status st = (*hp)->Configure(BW_HOST_REFUSE, 0);
  if (!st.ok()) return st;
  // Attribution off (every way refused): the arm measures refusal alone, and says so.
  a.attributes = (*hp)->attribution();
  a.hooks_used = a.attributes ? (*hp)->attribution_hooks()
                              : absl::StrCat("none (attribution off: ", (*hp)->attribution_off(), ")");
  // sock_ops sees the connecting side only; fentry/fexit and kprobes both sides.
  a.records_accepts = a.attributes && !absl::StartsWith(a.hooks_used, "sock_ops");
  return hp;
}

absl::Status HostConnect::OneCycle(const sockaddr_in& dst, Conn* conn) {
  static const linger kRst = {1, 0};
  if (conn) conn->t0 = NowNs();
  int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0) return ErrnoStatus("client", "socket", errno);
  if (::connect(c, reinterpret_cast<const sockaddr*>(&dst), sizeof(dst)) != 0) {
    int e = errno;
    ::close(c);
    return ErrnoStatus(absl::StrCat("127.x:", port_), "connect", e);
  }
  int a = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
  if (a < 0) {
    int e = errno;
    ::close(c);
    return ErrnoStatus("listener", "accept4", e);
  }
  if (conn) {
    conn->t1 = NowNs();
    // The keys as the programs write them: each side's own local and remote ends.
    sockaddr_in l{}, r{};
    socklen_t len = sizeof(l);
    ::getsockname(c, reinterpret_cast<sockaddr*>(&l), &len);
    len = sizeof(r);
    ::getpeername(c, reinterpret_cast<sockaddr*>(&r), &len);
    std::memcpy(conn->ck.laddr, &l.sin_addr, 4);
    std::memcpy(conn->ck.raddr, &r.sin_addr, 4);
    conn->ck.lport = l.sin_port;
    conn->ck.rport = r.sin_port;
    conn->ck.family = BW_FAMILY_V4;
    std::memcpy(conn->ak.laddr, &r.sin_addr, 4);
    std::memcpy(conn->ak.raddr, &l.sin_addr, 4);
    conn->ak.lport = r.sin_port;
    conn->ak.rport = l.sin_port;
    conn->ak.family = BW_FAMILY_V4;
  }
  ::setsockopt(c, SOL_SOCKET, SO_LINGER, &kRst, sizeof(kRst));
  ::close(c);
  ::close(a);
  return absl::OkStatus();
}

absl::Status HostConnect::Cycles(int n, bool* stop) {
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(port_);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < n; ++i) {
    if ((i & 1023) == 0 && Stopped()) {
      *stop = true;
      return StoppedStatus();
    }
    absl::Status st = OneCycle(dst, nullptr);
    if (!st.ok()) return st;
  }
  cycles_run_ += static_cast<uint64_t>(n);
  return absl::OkStatus();
}

absl::Status HostConnect::CheckRefused(const char* who) {
  if (blocked_addr_ == 0) return absl::OkStatus();
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return ErrnoStatus("probe", "socket", errno);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(443);
  a.sin_addr.s_addr = htonl(blocked_addr_);
  int r = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  int e = r < 0 ? errno : 0;
  ::close(s);
  if (e != EPERM)
    return absl::InternalError(absl::StrCat(who, ": connect() to blocked ", Ipv4ToString(blocked_addr_),
                                            " gave ", e ? std::strerror(e) : "success",
                                            ", expected EPERM"));
  return absl::OkStatus();
}

absl::StatusOr<double> HostConnect::RunArm(Arm& a, int cycles) {
  if (a.programs) {
    auto hp = LoadArm(a);
    if (!hp.ok()) return hp.status();
    hp_ = std::move(*hp);
  }
  bool stop = false;
  const int warm = absl::GetFlag(FLAGS_warmup);
  absl::Status st = Cycles(warm, &stop);
  if (!st.ok()) return st;
  const uint64_t t0 = NowNs();
  st = Cycles(cycles, &stop);
  const uint64_t t1 = NowNs();
  if (!st.ok()) return st;
  if (a.programs) {
    auto c = hp_->Counters();
    if (!c.ok()) return c.status();
    const uint64_t want = static_cast<uint64_t>(warm) + static_cast<uint64_t>(cycles);
    // At least: fentry and kprobes also see connections of other processes (none in a VM).
    if ((a.attributes ? (*c)[BW_HCNT_connects] < want : (*c)[BW_HCNT_connects] != 0) ||
        (*c)[BW_HCNT_record_errors] != 0 || (a.records_accepts && (*c)[BW_HCNT_accepts] < want))
      return absl::InternalError(absl::StrFormat(
          "%s: counters after %llu cycles: connects %llu, accepts %llu, record_errors %llu",
          a.label, static_cast<unsigned long long>(want),
          static_cast<unsigned long long>((*c)[BW_HCNT_connects]),
          static_cast<unsigned long long>((*c)[BW_HCNT_accepts]),
          static_cast<unsigned long long>((*c)[BW_HCNT_record_errors])));
    st = CheckRefused(a.label.c_str());
    if (!st.ok()) return st;
    hp_.reset();
  }
  return static_cast<double>(t1 - t0) / cycles;
}

// The kernel's own run time of each program of arm `a` over `cycles` cycles (BPF_ENABLE_STATS:
// run_cnt and run_time_ns per program, counted only while the stats fd is open, which costs two
// clock reads per run: this phase is apart from the timed rounds). The arm's programs are the
// loaded ones that use its bw_socks (the attribution programs) or its bw_sock_ev ring (the
// refusal programs), found by id.
absl::Status HostConnect::ProgStats(Arm& a, int cycles, nlohmann::json* out) {
  auto hp = LoadArm(a);
  if (!hp.ok()) return hp.status();
  hp_ = std::move(*hp);
  a.load_ms.pop_back();  // the rounds' loads only
  std::vector<uint32_t> ours;  // the two maps' ids
  for (int fd : {hp_->socks_fd(), hp_->events_fd()}) {
    bpf_map_info mi{};
    uint32_t len = sizeof(mi);
    if (bpf_obj_get_info_by_fd(fd, &mi, &len) != 0)
      return ErrnoStatus("bw_socks/bw_sock_ev", "bpf_obj_get_info_by_fd", errno);
    ours.push_back(mi.id);
  }
  struct Prog {
    std::string name;
    int fd;
    uint64_t cnt0, ns0, cnt = 0, ns = 0;
  };
  std::vector<Prog> progs;
  auto read = [](int fd, bpf_prog_info* info, std::vector<uint32_t>* maps) {
    *info = {};
    uint32_t l = sizeof(*info);
    if (bpf_obj_get_info_by_fd(fd, info, &l) != 0) return false;
    if (maps == nullptr) return true;
    maps->assign(info->nr_map_ids, 0);
    const uint32_t n = info->nr_map_ids;
    *info = {};
    info->nr_map_ids = n;
    info->map_ids = reinterpret_cast<uint64_t>(maps->data());
    l = sizeof(*info);
    return bpf_obj_get_info_by_fd(fd, info, &l) == 0;
  };
  const int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (stats_fd < 0) {
    const int e = errno;
    hp_.reset();
    *out = {{"unavailable", std::strerror(e)}};
    section.notes.push_back(absl::StrCat("per-program run time: BPF_ENABLE_STATS refused (",
                                         std::strerror(e), ")"));
    return absl::OkStatus();
  }
  uint32_t id = 0;
  while (bpf_prog_get_next_id(id, &id) == 0) {
    const int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_prog_info info{};
    std::vector<uint32_t> maps;
    if (read(fd, &info, &maps) && std::any_of(maps.begin(), maps.end(), [&](uint32_t m) {
          return std::find(ours.begin(), ours.end(), m) != ours.end();
        })) {
      progs.push_back({info.name, fd, info.run_cnt, info.run_time_ns});
    } else {
      ::close(fd);
    }
  }
  bool stop = false;
  absl::Status st = Cycles(cycles, &stop);
  for (Prog& p : progs) {
    bpf_prog_info info{};
    if (read(p.fd, &info, nullptr)) {
      p.cnt = info.run_cnt - p.cnt0;
      p.ns = info.run_time_ns - p.ns0;
    }
    ::close(p.fd);
  }
  ::close(stats_fd);
  hp_.reset();
  if (!st.ok()) return st;
  std::sort(progs.begin(), progs.end(), [](const Prog& x, const Prog& y) { return x.name < y.name; });
  nlohmann::json pj = nlohmann::json::array();
  std::string summary;
  double total = 0;
  for (const Prog& p : progs) {
    if (p.cnt == 0) continue;
    const double per_run = static_cast<double>(p.ns) / static_cast<double>(p.cnt);
    const double runs = static_cast<double>(p.cnt) / cycles;
    const double per_cycle = static_cast<double>(p.ns) / cycles;
    total += per_cycle;
    pj.push_back({{"program", p.name},
                  {"runs_per_cycle", runs},
                  {"ns_per_run", per_run},
                  {"ns_per_cycle", per_cycle}});
    absl::StrAppend(&summary, summary.empty() ? "" : ", ",
                    absl::StrFormat("%s %.2f runs x %.0f ns", p.name, runs, per_run));
  }
  *out = {{"cycles", cycles}, {"programs", pj}, {"ns_per_cycle_total", total}};
  section.notes.push_back(absl::StrFormat(
      "%s: the programs' own run time (the kernel's BPF_ENABLE_STATS, %d cycles apart from the "
      "timed rounds): %.0f ns per cycle in all (%s); the rest of the added time is the hooks' "
      "own cost (trampoline, kprobe or cgroup dispatch)",
      a.key, cycles, total, summary.empty() ? "no program ran" : summary));
  std::fprintf(stderr, "host_connect: %s programs: %.0f ns per cycle (%s)\n", a.key.c_str(), total,
               summary.c_str());
  return absl::OkStatus();
}

absl::Status HostConnect::Lru(nlohmann::json* out) {
  const int n = absl::GetFlag(FLAGS_lru_connections);
  Arm a;
  a.key = "lru";
  a.label = "LRU check";
  a.programs = true;
  auto hp = LoadArm(a);
  if (!hp.ok()) return hp.status();
  hp_ = std::move(*hp);
  std::vector<Conn> conns(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    if ((i & 1023) == 0 && Stopped()) return StoppedStatus();
    // A remote address of its own per connection: 127.1.0.1 on, skipping .0 and .255.
    const uint32_t k = static_cast<uint32_t>(i);
    const uint32_t addr = (127u << 24) + (1u << 16) + (k / 254) * 256 + (k % 254) + 1;
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(port_);
    dst.sin_addr.s_addr = htonl(addr);
    absl::Status st = OneCycle(dst, &conns[static_cast<size_t>(i)]);
    if (!st.ok()) return st;
  }
  // What a record must say to be this connection's.
  const uint32_t me = static_cast<uint32_t>(getpid()), tid = static_cast<uint32_t>(gettid());
  auto ours = [&](const bw_proc& p, const Conn& c, uint8_t origin) {
    return p.tgid == me && p.tid == tid && p.origin == origin && p.ts_ns >= c.t0 &&
           p.ts_ns <= c.t1 && std::strncmp(p.comm, kComm, sizeof(p.comm)) == 0;
  };
  struct Range {
    const char* key;
    std::string label;
    int from, to;  // connections [from, to)
    uint64_t connect_found = 0, accept_found = 0, misnamed = 0;
    int oldest_named = -1;  // the first connection of the range with a record found (0-based)
  };
  const int cap = static_cast<int>(BW_SOCKS_DEFAULT);
  const int last = std::min(n, cap), half = std::min(n, cap / 2);
  std::vector<Range> ranges = {
      {"first", absl::StrCat("the first ", n - last), 0, n - last},
      {"last_65536", absl::StrCat("the last ", last), n - last, n},
      {"last_32768", absl::StrCat("the last ", half), n - half, n},
  };
  for (Range& r : ranges) {
    for (int i = r.from; i < r.to; ++i) {
      const Conn& c = conns[static_cast<size_t>(i)];
      bw_proc p{};
      bool named = false;
      if (bpf_map_lookup_elem(hp_->socks_fd(), &c.ck, &p) == 0) {
        if (ours(p, c, BW_PROC_CONNECT)) ++r.connect_found, named = true;
        else ++r.misnamed;
      }
      if (bpf_map_lookup_elem(hp_->socks_fd(), &c.ak, &p) == 0) {
        if (ours(p, c, BW_PROC_ACCEPT)) ++r.accept_found, named = true;
        else ++r.misnamed;
      }
      if (named && r.oldest_named < 0) r.oldest_named = i;
    }
  }
  uint64_t entries = 0;
  bw_sock_key k{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(hp_->socks_fd(), prev, &next) == 0) {
    ++entries;
    k = next;
    prev = &k;
  }
  auto c = hp_->Counters();
  if (!c.ok()) return c.status();
  nlohmann::json rj = nlohmann::json::array();
  std::string summary;
  const int oldest = ranges[1].oldest_named;  // in the last BW_SOCKS_DEFAULT connections
  for (const Range& r : ranges) {
    rj.push_back({{"range", r.key},
                  {"connections", r.to - r.from},
                  {"connect_records_found", r.connect_found},
                  {"accept_records_found", r.accept_found},
                  {"misnamed", r.misnamed},
                  {"oldest_named", r.oldest_named < 0 ? nlohmann::json() : nlohmann::json(r.oldest_named + 1)}});
    absl::StrAppend(&summary, summary.empty() ? "" : "; ", r.label, ": ", r.connect_found,
                    " connect records", a.records_accepts ? absl::StrCat(", ", r.accept_found,
                                                                         " accept records")
                                                          : "",
                    ", ", r.misnamed, " misnamed");
  }
  if (oldest >= 0)
    absl::StrAppend(&summary, "; the oldest connection still named: number ", oldest + 1,
                    " (the ", n - oldest, "th from the end)");
  *out = {{"connections", n},
          {"capacity", BW_SOCKS_DEFAULT},
          {"hooks", a.hooks_used},
          {"records_per_connection", a.records_accepts ? 2 : 1},
          {"entries_at_end", entries},
          {"connects_counted", (*c)[BW_HCNT_connects]},
          {"accepts_counted", (*c)[BW_HCNT_accepts]},
          {"record_errors", (*c)[BW_HCNT_record_errors]},
          {"ranges", rj}};
  section.notes.push_back(absl::StrFormat(
      "bw_socks LRU (%u entries) after %d connections, each to its own address in 127/8, %d "
      "record(s) each (%s): %llu entries in the map at the end; %s. A record found is checked "
      "to be its own connection's (this thread, its origin, a timestamp inside that cycle): an "
      "evicted connection is unnamed, never misnamed",
      BW_SOCKS_DEFAULT, n, a.records_accepts ? 2 : 1, ShortHooks(a.hooks_used),
      static_cast<unsigned long long>(entries), summary));
  std::fprintf(stderr, "host_connect: LRU: %llu entries; %s\n",
               static_cast<unsigned long long>(entries), summary.c_str());
  hp_.reset();
  return absl::OkStatus();
}

absl::Status HostConnect::Run() {
  const int cycles = absl::GetFlag(FLAGS_cycles), rounds = absl::GetFlag(FLAGS_rounds);
  if (cycles <= 0 || rounds <= 0 || absl::GetFlag(FLAGS_warmup) < 0 ||
      absl::GetFlag(FLAGS_prefixes) < 0 || absl::GetFlag(FLAGS_lru_connections) < 0 ||
      absl::GetFlag(FLAGS_lru_connections) > 254 * 65536)
    return absl::InvalidArgumentError("--cycles and --rounds > 0; --warmup, --prefixes, "
                                      "--lru_connections >= 0 (the last one <= 254*65536)");
  int cpu = absl::GetFlag(FLAGS_cpu);
  if (cpu < 0) cpu = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)) - 1;
  absl::Status st = Setup();
  if (!st.ok()) return st;

  std::vector<Arm> arms(3);
  arms[0].key = "baseline";
  arms[0].label = "baseline: no host-context programs";
  arms[1].key = "auto";
  arms[1].label = "host context, hooks as HostPrograms picks them";
  arms[1].programs = true;
  arms[2].key = "kprobe";
  arms[2].label = "host context, HostOptions::hooks = kKprobe";
  arms[2].programs = true;
  arms[2].hooks = AttributionHooks::kKprobe;
  std::string kprobe_skipped;
  nlohmann::json lru, prog_stats = nlohmann::json::object();

  // Everything that opens sockets runs on one thread in the namespace, pinned.
  st = InNetns(ns_->name(), [&]() -> absl::Status {
    absl::Status s = PinThisThread(cpu);
    if (!s.ok()) return s;
    ::prctl(PR_SET_NAME, kComm);
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener_ < 0) return ErrnoStatus("listener", "socket", errno);
    int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_ANY);  // 127.0.0.1 and the LRU check's other 127/8 addresses
    any.sin_port = htons(8080);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&any), sizeof(any)) != 0)
      return ErrnoStatus("listener", "bind", errno);
    if (::listen(listener_, 128) != 0) return ErrnoStatus("listener", "listen", errno);
    port_ = 8080;

    // Which hooks each loaded arm gets; the kprobe arm only where it means kprobes.
    for (size_t i = 1; i < arms.size(); ++i) {
      if (Stopped()) return StoppedStatus();
      auto hp = LoadArm(arms[i]);
      if (!hp.ok()) return hp.status();
      arms[i].load_ms.clear();
      std::fprintf(stderr, "host_connect: %s: %s\n", arms[i].key.c_str(),
                   arms[i].hooks_used.c_str());
    }
    if (!absl::GetFlag(FLAGS_kprobe)) {
      kprobe_skipped = "not asked for (--kprobe=false)";
    } else if (!arms[2].attributes || !absl::StartsWith(arms[2].hooks_used, "kprobe")) {
      const std::string& h = arms[2].hooks_used;
      size_t at = h.find("kprobes: ");
      kprobe_skipped = absl::StrCat("the kernel refused kprobes (",
                                    at == std::string::npos ? h : h.substr(at), ")");
    } else if (absl::StartsWith(arms[1].hooks_used, "kprobe")) {
      kprobe_skipped = "the auto arm already runs on kprobes";
    }
    if (!kprobe_skipped.empty()) arms.pop_back();

    // One unrecorded round (a tenth of the cycles) warms every arm up.
    for (int r = -1; r < rounds; ++r) {
      const int n = r < 0 ? std::max(1000, cycles / 10) : cycles;
      std::vector<size_t> order(arms.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      if (r & 1) std::reverse(order.begin(), order.end());
      std::vector<double> got(arms.size());
      for (size_t i : order) {
        auto ns = RunArm(arms[i], n);
        if (!ns.ok()) return ns.status();
        got[i] = *ns;
      }
      if (r < 0) {
        for (Arm& a : arms) a.load_ms.clear();
        continue;
      }
      std::string line;
      for (size_t i = 0; i < arms.size(); ++i) {
        arms[i].ns.push_back(got[i]);
        arms[i].ratio.push_back(got[i] / got[0]);
        arms[i].added.push_back(got[i] - got[0]);
        absl::StrAppendFormat(&line, "  %s %.0f ns", arms[i].key, got[i]);
      }
      std::fprintf(stderr, "host_connect: round %d:%s\n", r + 1, line.c_str());
    }
    for (size_t i = 1; i < arms.size(); ++i) {
      s = ProgStats(arms[i], cycles, &prog_stats[arms[i].key]);
      if (!s.ok()) return s;
    }
    if (absl::GetFlag(FLAGS_lru_connections) == 0) return absl::OkStatus();
    if (!arms[1].attributes) {
      section.notes.push_back("bw_socks LRU check not run: attribution is off");
      return absl::OkStatus();
    }
    return Lru(&lru);
  });
  if (!st.ok()) return st;
  // The notes of what was measured (programs' run time, the LRU) after those of the method.
  std::vector<std::string> measured = std::move(section.notes);
  section.notes.clear();

  section.part = 6;
  section.key = "host_connect";
  section.title =
      "Host context: loopback TCP connect()+accept()+close() with the host-context programs "
      "attached vs none";
  section.columns = {"configuration", "attribution hooks", "ns per cycle", "ratio", "added ns"};
  nlohmann::json results = nlohmann::json::array();
  for (const Arm& a : arms) {
    const double ns = Median(a.ns), ratio = Median(a.ratio), added = Median(a.added);
    section.rows.push_back({a.label, a.programs ? ShortHooks(a.hooks_used) : "-", Fixed(ns, 0),
                            absl::StrCat(Fixed(ratio, 2), "x"),
                            a.programs ? absl::StrFormat("%+.0f", added) : ""});
    nlohmann::json j = {{"arm", a.key},
                        {"ns_per_cycle", ns},
                        {"ratio", ratio},
                        {"added_ns", added},
                        {"rounds_ns", a.ns},
                        {"rounds_ratio", a.ratio}};
    if (a.programs) {
      j["hooks"] = a.hooks_used;
      j["load_ms_median"] = Median(a.load_ms);
      j["check"] = "ok";
    }
    results.push_back(j);
  }
  if (!kprobe_skipped.empty())
    section.rows.push_back({"host context, HostOptions::hooks = kKprobe", "not run", "", "", ""});
  for (size_t i = 1; i < arms.size(); ++i)
    section.notes.push_back(absl::StrFormat(
        "%s: %s; HostPrograms::Load took %.0f ms (median, not timed)", arms[i].key,
        arms[i].hooks_used, Median(arms[i].load_ms)));
  if (!kprobe_skipped.empty())
    section.notes.push_back(absl::StrCat("kprobe arm not run: ", kprobe_skipped));
  section.notes.push_back(absl::StrFormat(
      "median of %d rounds of %d cycles per arm (arms interleaved, the order reversed every other "
      "round; %d untimed cycles before each arm's); a cycle: socket(), blocking connect() to a "
      "listener on 127.0.0.1, accept(), close() of both (the connecting end with SO_LINGER 0, an "
      "RST: no TIME_WAIT), one thread pinned to CPU %d in a namespace and cgroup v2 directory "
      "of its own; ratio and added ns: medians of the per-round figures against that round's "
      "baseline",
      rounds, cycles, absl::GetFlag(FLAGS_warmup), cpu));
  section.notes.push_back(absl::StrFormat(
      "loaded arms: attribution and refusal (cgroup connect4/6, sendmsg4/6) on the benchmark's "
      "cgroup, refusing on, %d feed-shaped BLOCK prefixes in the tries (the connect4 lookup of "
      "127.0.0.1 walks the trie and finds nothing); each loaded afresh per round; after each: "
      "every connect (and accept, where the hooks see accepts) counted, no record errors, and a "
      "connect() to a blocked address refused with EPERM",
      absl::GetFlag(FLAGS_prefixes)));
  for (std::string& n : measured) section.notes.push_back(std::move(n));
  section.results = {{"arms", results},
                     {"lru", lru},
                     {"program_run_time", prog_stats},
                     {"settings",
                      {{"cycles", cycles},
                       {"rounds", rounds},
                       {"warmup", absl::GetFlag(FLAGS_warmup)},
                       {"prefixes", absl::GetFlag(FLAGS_prefixes)},
                       {"lru_connections", absl::GetFlag(FLAGS_lru_connections)},
                       {"cpu", cpu},
                       {"cgroup", cgroup_},
                       {"kprobe_skipped", kprobe_skipped},
                       {"cycles_run", cycles_run_}}}};
  return absl::OkStatus();
}

}  // namespace
}  // namespace bw::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return bw::bench::BenchMainOf<bw::bench::HostConnect>(
      "host_connect", "BPF programs, cgroups, namespaces", argc, argv,
      absl::GetFlag(FLAGS_verbose), absl::GetFlag(FLAGS_out));
}
