// crowdsec_compare.cpp — three enforcers of the same CrowdSec decisions, side by side: how fast
// each acts on a real CrowdSec Local API, and how fast it drops what it blocks.
//
// The enforcers: crowdsec-firewall-bouncer in nftables mode, the same bouncer in iptables mode
// (an ipset of the decisions and an iptables INPUT rule that drops its members: "iptables +
// ipset"), and bannerwatch with a list fed by the API (`source: crowdsec`). Each is measured
// alone, one after the other, against one Local API holding the same --decisions (100 k) decisions.
//
// Topology (two namespaces of our own; nothing leaves them):
//   bwb-gen-<pid>: bwb-g<pid> 198.51.100.1  ==veth==  bwb-d<pid> 198.51.100.2 :bwb-dut-<pid>
// The protected end bwb-dut-<pid> runs everything CrowdSec: the Local API (`crowdsec -no-cs` on
// its own 127.0.0.1, so no enforcer needs the host's loopback), cscli, and the enforcer under
// test, so that the bouncer's nftables table, ipsets and iptables rules exist in that namespace
// only (ipsets are per network namespace: the host's `ipset list -n` is compared before and
// after). Every enforcer polls the API every --poll seconds (1 s).
//
// What is measured, always by packets and never by reading a set:
//  (a) start -> enforced: --probe_sources addresses of 203.0.113.128/25 are decisions among the
//      100 k (spread through the import order, the last of them the last decision imported).
//      UDP datagrams from each of them (bench/lib/udp_probe.hpp: a raw socket in the generator
//      namespace, 4000 a second in all) go to a socket on the protected end; the enforcer starts;
//      a source is enforced from its first datagram that never arrives. (a) is the time from the
//      enforcer's fork to the last source's; the median source's and the enforcer's CPU time
//      (children included: the bouncer's ipset commands) are recorded too.
//  (b) add -> dropped: a fresh address X of 203.0.113.0/25 (never a decision) sends a datagram
//      every millisecond; `cscli decisions add --ip X --duration 1h` starts at t0; (b) is the send
//      time of X's first datagram that never arrives, minus t0 (cscli's own run time included;
//      a random wait of up to one poll period before each add spreads the phase of the poll).
//  (c) delete -> passes: `cscli decisions delete --ip X` at t1; (c) is the send time of the first
//      datagram sent after t1 that arrives, minus t1.
//  (d) blocked-packet rate: as bench/veth_peers.cpp (part 4): BPF_PROG_TEST_RUN live frames
//      (XDP_TX) from --addrs sources drawn from the IPv4 decisions, TCP with a bad checksum to
//      198.51.100.2, the protected end's threaded NAPI pinned to --rx_cpu; frames it processed
//      per second, and per second of that thread's CPU time. Baselines in the same run, before
//      and after the enforcers: no enforcer (a counting XDP_PASS: the stack drops the frames in
//      TCP for their checksum), a trivial XDP_DROP, and XDP_DROP after a /24 byte-array read.
// (a) is the later of the probes' answer and the enforcer's own log line saying the whole set is
// in force (the nftables bouncer adds in no particular order: 128 probe sources see ~99 % of it).
// It runs --startup_rounds times where one start took less than --startup_cheap seconds, once
// otherwise, always cold (bannerwatch without the decisions file it keeps across restarts; one
// warm restart is timed apart); (b), (c) run --latency_rounds times, (d) --rounds times.
// Figures are medians; nothing is asserted.
#include <arpa/inet.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "baseline.skel.h"
#include "bench/lib/bpfbench.hpp"
#include "bench/lib/child_proc.hpp"
#include "bench/lib/crowdsec_lapi.hpp"
#include "bench/lib/daemon_proc.hpp"
#include "bench/lib/feeds.hpp"
#include "bench/lib/report.hpp"
#include "bench/lib/sys.hpp"
#include "bench/lib/traffic.hpp"
#include "bench/lib/udp_probe.hpp"
#include "maps/maps.hpp"

ABSL_FLAG(std::string, out, "", "write the result fragment (JSON) here");
ABSL_FLAG(int, decisions, 100000, "decisions imported into the Local API");
ABSL_FLAG(double, v6_share, 0.02, "share of the decisions that are IPv6 addresses (2001:db8::/32)");
ABSL_FLAG(int, probe_sources, 128, "decisions of 203.0.113.128/25 that probe (a) (at most 128)");
ABSL_FLAG(std::string, enforcers, "bannerwatch,ipset,nftables", "enforcers to measure, in order");
ABSL_FLAG(int, rounds, 3, "rounds of (d) per enforcer, and of each baseline before and after");
ABSL_FLAG(int, latency_rounds, 5, "rounds of (b) and (c) per enforcer");
ABSL_FLAG(int, startup_rounds, 3, "rounds of (a) for an enforcer whose first start was cheap");
ABSL_FLAG(double, startup_cheap, 30, "seconds: a first start slower than this is not repeated");
ABSL_FLAG(double, startup_timeout, 600, "seconds an enforcer may take to enforce every probe source");
ABSL_FLAG(double, latency_timeout, 30, "seconds an add or a delete may take to show");
ABSL_FLAG(double, startup_interval, 0.00025, "seconds between two datagrams of (a) (all sources)");
ABSL_FLAG(double, latency_interval, 0.001, "seconds between two datagrams of (b) and (c)");
ABSL_FLAG(double, poll, 1, "seconds between two polls of the API, every enforcer");
ABSL_FLAG(double, seconds, 2, "length of one rate measurement");
ABSL_FLAG(double, warmup, 0.5, "generator running before a rate measurement starts");
ABSL_FLAG(int, addrs, 65536, "distinct sources of the blocked traffic (a power of two)");
ABSL_FLAG(int, ipset_size, 0,
          "the bouncer's ipset_size (maxelem); 0: twice --decisions, at least its default 65536");
ABSL_FLAG(std::string, bannerwatch, "", "the bannerwatch binary (default: this build's)");
ABSL_FLAG(std::string, bouncer, "/usr/bin/crowdsec-firewall-bouncer", "the firewall bouncer");
ABSL_FLAG(std::string, crowdsec, "/usr/bin/crowdsec", "crowdsec (its Local API)");
ABSL_FLAG(std::string, cscli, "/usr/bin/cscli", "cscli");
ABSL_FLAG(uint64_t, seed, 7, "seed of the decisions, the traffic and the phases");
ABSL_FLAG(int, gen_cpu, 0, "CPU of the generator");
ABSL_FLAG(int, rx_cpu, 1, "CPU of the protected veth's NAPI thread");
ABSL_FLAG(bool, warm_restart, true,
          "also time one bannerwatch restart that keeps its saved decisions (crowdsec-decisions.json)");
ABSL_FLAG(bool, keep_dir, false, "keep the temporary directory (configurations, logs)");
ABSL_FLAG(bool, verbose, false, "libbpf debug output; every (b)/(c) round as it ends");

namespace bw::bench {
namespace {

constexpr uint32_t kDut = 0xc6336402;       // 198.51.100.2
constexpr uint32_t kDocNet = 0xcb007100;    // 203.0.113.0/24
constexpr uint16_t kLapiPort = 18080;       // in the protected namespace's own loopback
constexpr uint16_t kProbePort = 9;          // the probe socket on the protected end
constexpr uint32_t kGenChunk = 1U << 18;    // frames per live-frames call
const char kDutMac[] = "02:00:00:00:c5:02";
const char kGenMac[] = "02:00:00:00:c5:01";

struct EnforcerDef {
  const char* key;
  const char* label;
  const char* log_done;  // a line of its log once the startup set is in force
};
const EnforcerDef kEnforcers[] = {
    {"bannerwatch", "bannerwatch (XDP; list `source: crowdsec`)", "applied (crowdsec:"},
    {"ipset", "firewall bouncer, mode iptables (ipset + iptables INPUT)", "decisions added"},
    {"nftables", "firewall bouncer, mode nftables", "decisions added"},
};
const EnforcerDef* Def(const std::string& key) {
  for (const EnforcerDef& d : kEnforcers)
    if (key == d.key) return &d;
  return nullptr;
}

struct Startup {
  bool done = false;
  double enforced_s = 0;  // the later of all_s and log_s: the whole set in force
  double all_s = 0;       // fork -> the last probe source enforced
  double half_s = 0;      // fork -> the median probe source enforced
  double log_s = -1;      // fork -> its log said the set was in force (50 ms resolution), -1: never
  double cpu_s = 0;       // the enforcer's CPU time (children included) when all were enforced
  double lapi_cpu_s = 0;  // the Local API's CPU time meanwhile
  uint64_t rss_kib = 0;
  size_t enforced = 0;    // probe sources enforced (all of them when done)
};

struct Latency {
  std::optional<double> add_s, del_s;  // nullopt: not seen within --latency_timeout
  double cscli_add_s = 0, cscli_del_s = 0;
};

struct Rate {
  double pps = 0, offered_pps = 0, rx_busy = 0, pps_per_cpu = 0, tcp_share = 0;
  double rule_share = -1;  // the iptables rule's own counter / frames (ipset only)
};

struct EnforcerResult {
  std::string skipped;  // why it did not run
  std::string failed;   // why a part stopped
  std::vector<Startup> startups;
  std::optional<Startup> warm;  // bannerwatch restarted with its saved decisions
  std::vector<Latency> latencies;
  std::vector<Rate> rates;
  std::string left_behind;  // what a stopped enforcer left in the namespace
};

uint64_t TaskCpuNs(pid_t tid) {
  std::ifstream f(absl::StrCat("/proc/", tid, "/schedstat"));
  uint64_t ns = 0;
  f >> ns;
  return ns;
}

std::string Seconds(double s, int digits = 2) { return Fixed(s, digits); }
// Seconds as the table prints them: two decimals below 10 s, one above.
std::string Secs(double s) { return Fixed(s, s < 10 ? 2 : 1); }

class CrowdsecBench {
 public:
  ~CrowdsecBench() { Cleanup(); }
  absl::Status Run();
  Section section;

 private:
  absl::Status Setup();
  absl::Status FindNapi();
  absl::Status MakeDecisions();
  absl::Status StartLapiAndImport();
  std::string CheckBannerwatch();
  absl::Status StartEnforcer(const std::string& e, ChildProc* p, bool warm);
  void StopEnforcer(const std::string& e, ChildProc* p, EnforcerResult* res);
  void CleanEnforcer(const std::string& e);
  absl::StatusOr<Startup> MeasureStartup(const std::string& e, ChildProc* p, bool warm = false);
  absl::StatusOr<Latency> MeasureLatency(const std::string& e, ChildProc* p, uint32_t x);
  absl::StatusOr<Rate> MeasureRate(const std::string& config);
  absl::Status Baselines(const char* when);
  void Report();
  void Cleanup();
  void Log(const std::string& s) const { std::fprintf(stderr, "crowdsec: %s\n", s.c_str()); }

  pid_t pid_ = getpid();
  std::string dir_, gen_if_, dut_if_, pin_root_, bannerwatch_bin_;
  std::unique_ptr<Netns> gen_, dut_;
  baseline* base_ = nullptr;
  std::unique_ptr<BenchProgs> progs_;
  std::unique_ptr<UdpProbe> probe_;
  std::unique_ptr<CrowdsecLapi> lapi_;
  int gen_ifindex_ = 0;
  pid_t napi_tid_ = 0;
  Rng rng_{1};

  std::vector<std::string> csv_lines_;   // the decisions, in import order
  std::vector<uint32_t> v4_public_;      // the IPv4 decisions outside 203.0.113.0/24
  std::vector<uint32_t> probe_sources_;  // the decisions of 203.0.113.128/25
  size_t v6_count_ = 0;
  Traffic blocked_;

  double import_s_ = 0;
  std::string import_said_;
  double startup_stream_s_ = -1;
  std::string host_ipsets_before_, host_nft_before_;
  std::string versions_;
  std::vector<std::string> order_;
  std::map<std::string, EnforcerResult> results_;
  std::map<std::string, std::vector<Rate>> baselines_;  // nofilter, xdpdrop
  std::map<std::string, int> starts_;                   // by enforcer: starts so far (log names)
};

absl::Status Check(const absl::StatusOr<std::string>& r) { return r.status(); }

absl::Status CrowdsecBench::Setup() {
  gen_if_ = absl::StrCat("bwb-g", pid_);
  dut_if_ = absl::StrCat("bwb-d", pid_);
  pin_root_ = absl::StrCat("/sys/fs/bpf/bwbench-cs-", pid_);
  dir_ = absl::StrCat("/tmp/bwbench-cs-", pid_);
  if (auto r = Sh(absl::StrCat("rm -rf ", dir_, " && mkdir -m 0700 ", dir_)); !r.ok()) return r.status();
  auto pair = MakeGenDutPair(gen_if_, kGenMac, dut_if_, kDutMac);
  if (!pair.ok()) return pair.status();
  gen_ = std::move(pair->gen);
  dut_ = std::move(pair->dut);
  gen_ifindex_ = pair->gen_ifindex;

  base_ = baseline__open();
  if (!base_) return ErrnoStatus("baseline.bpf.o", "baseline__open", errno);
  // The byte-array floor reads a 16 MiB array, as large as bannerwatch's bw_v4_pre (part 4).
  bpf_map__set_max_entries(base_->maps.base_v4_bytes, BW_V4_PRE_ELEMS);
  if (baseline__load(base_) != 0) return ErrnoStatus("baseline.bpf.o", "baseline__load", errno);
  auto p = BenchProgs::Load();
  if (!p.ok()) return p.status();
  progs_ = std::move(*p);
  // The protected end has an XDP program whenever bannerwatch does not (a veth takes XDP_TX
  // frames only then): the counting XDP_PASS.
  absl::Status st = AttachXdp(dut_->name(), dut_if_, bpf_program__fd(base_->progs.bw_base_count));
  if (!st.ok()) return st;
  st = Check(Sh(absl::StrCat("ip netns exec ", dut_->name(), " sh -c ",
                             ShellQuote(absl::StrCat("echo 1 > /sys/class/net/", dut_if_, "/threaded")))));
  if (!st.ok()) return st;
  if (st = FindNapi(); !st.ok()) return st;

  auto pr = UdpProbe::Create(gen_->name(), dut_->name(), kDut, kProbePort);
  if (!pr.ok()) return pr.status();
  probe_ = std::move(*pr);
  return absl::OkStatus();
}

// The protected end's NAPI thread, pinned to --rx_cpu. It is made again whenever the veth's XDP
// program goes away and comes back (bannerwatch attaches its own).
absl::Status CrowdsecBench::FindNapi() {
  std::string prefix = absl::StrCat("napi/", dut_if_, "-").substr(0, 15);
  for (int i = 0; i < 100; ++i) {
    std::vector<pid_t> t = TasksByCommPrefix(prefix);
    if (!t.empty()) {
      napi_tid_ = *std::max_element(t.begin(), t.end());
      return PinTask(napi_tid_, absl::GetFlag(FLAGS_rx_cpu));
    }
    usleep(20000);
  }
  return absl::InternalError(absl::StrCat("no NAPI thread ", prefix, "*"));
}

// The decisions: public-looking IPv4 addresses (they exist only in the Local API's database and
// in the packets inside our namespaces, as the prefixes of part 4 do), the probe sources of
// 203.0.113.128/25 spread through them, and --v6_share IPv6 addresses of 2001:db8::/32.
absl::Status CrowdsecBench::MakeDecisions() {
  const size_t n = static_cast<size_t>(absl::GetFlag(FLAGS_decisions));
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  size_t k = static_cast<size_t>(std::clamp(absl::GetFlag(FLAGS_probe_sources), 1, 128));
  v6_count_ = static_cast<size_t>(std::llround(static_cast<double>(n) * absl::GetFlag(FLAGS_v6_share)));
  if (n < k + v6_count_ + 1) return absl::InvalidArgumentError("--decisions too small");
  size_t v4_public = n - k - v6_count_;
  // CleanSources never returns documentation space; duplicates are dropped here.
  absl::flat_hash_set<uint32_t> seen;
  V4Index none;
  for (uint64_t s = seed; v4_public_.size() < v4_public; s += 1000003) {
    for (uint32_t a : CleanSources(none, v4_public - v4_public_.size(), s))
      if (seen.insert(a).second) v4_public_.push_back(a);
  }
  for (size_t i = 0; i < k; ++i) probe_sources_.push_back(kDocNet | static_cast<uint32_t>(128 + i));
  Rng rng(seed + 11);
  std::vector<std::string> v6;
  absl::flat_hash_set<std::string> seen6;
  while (v6.size() < v6_count_) {
    uint64_t r = rng.Next(), q = rng.Next();
    std::string a = absl::StrFormat("2001:db8:%x:%x::%x:%x", (r >> 48) & 0xffff, (r >> 32) & 0xffff,
                                    (q >> 16) & 0xffff, (q & 0xffff) | 1);
    if (seen6.insert(a).second) v6.push_back(a);
  }
  // Import order: every (n / k)-th decision a probe source, the last decision the last probe
  // source; the IPv6 addresses spread evenly among the others.
  std::vector<std::string> rest;
  rest.reserve(v4_public + v6.size());
  const size_t m = v4_public + v6.size();
  size_t vi = 0, v6i = 0;
  for (size_t j = 0; j < m; ++j) {
    bool six = (j + 1) * v6.size() / m > j * v6.size() / m;
    if (six) rest.push_back(v6[v6i++]);
    else rest.push_back(Ipv4ToString(v4_public_[vi++]));
  }
  csv_lines_.reserve(n);
  size_t pi = 0, ri = 0;
  for (size_t i = 0; i < n; ++i) {
    bool probe_slot = pi < k && (i + 1) * k >= (pi + 1) * n;
    csv_lines_.push_back(absl::StrCat(
        "24h,ip,", probe_slot ? Ipv4ToString(probe_sources_[pi++]) : rest[ri++]));
  }
  std::ofstream f(absl::StrCat(dir_, "/decisions.csv"));
  f << "duration,scope,value\n";
  for (const std::string& l : csv_lines_) f << l << "\n";
  if (!f) return absl::InternalError("write decisions.csv");

  // The blocked traffic: --addrs sources drawn from the public IPv4 decisions.
  size_t addrs = static_cast<size_t>(absl::GetFlag(FLAGS_addrs));
  std::vector<uint32_t> src;
  src.reserve(addrs);
  Rng pick(seed + 2);
  for (size_t i = 0; i < addrs; ++i) src.push_back(v4_public_[pick.Below(v4_public_.size())]);
  Macs macs;
  std::sscanf(kDutMac, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &macs.dst[0], &macs.dst[1], &macs.dst[2],
              &macs.dst[3], &macs.dst[4], &macs.dst[5]);
  std::sscanf(kGenMac, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &macs.src[0], &macs.src[1], &macs.src[2],
              &macs.src[3], &macs.src[4], &macs.src[5]);
  blocked_ = MakeTraffic("blocked", Kind::kTcpUnwatched, src, true, macs);
  return absl::OkStatus();
}

absl::Status CrowdsecBench::StartLapiAndImport() {
  LapiOptions o;
  o.dir = absl::StrCat(dir_, "/lapi");
  o.netns = dut_->name();
  o.port = kLapiPort;
  o.crowdsec = absl::GetFlag(FLAGS_crowdsec);
  o.cscli = absl::GetFlag(FLAGS_cscli);
  for (const std::string& e : order_) o.bouncers.push_back(absl::StrCat("bwbench-", e));
  o.bouncers.push_back("bwbench-curl");
  if (auto r = Sh(absl::StrCat("mkdir -p ", o.dir)); !r.ok()) return r.status();
  auto l = CrowdsecLapi::Start(o);
  if (!l.ok()) return l.status();
  lapi_ = std::move(*l);
  Log(absl::StrFormat("Local API listening in %s after %.1f s", dut_->name(), lapi_->ready_seconds()));
  double t0 = MonotonicSeconds();
  auto r = lapi_->Cscli(absl::StrCat("decisions import -i ", dir_, "/decisions.csv"));
  import_s_ = MonotonicSeconds() - t0;
  if (!r.ok()) return r.status();
  for (absl::string_view line : absl::StrSplit(*r, '\n'))
    if (absl::StrContains(line, "imported")) {
      size_t m = line.find("msg=");
      import_said_ = std::string(m == absl::string_view::npos ? line : line.substr(m + 4));
      absl::StripAsciiWhitespace(&import_said_);
    }
  Log(absl::StrFormat("imported %zu decisions in %.1f s (%s)", csv_lines_.size(), import_s_, import_said_));
  // The startup stream every enforcer starts with, once, for the record (curl, if installed).
  if (Sh("command -v curl >/dev/null").ok()) {
    t0 = MonotonicSeconds();
    auto c = dut_->Sh(absl::StrCat("curl -sS -o /dev/null -w '%{http_code} %{size_download}' -H 'X-Api-Key: ",
                                   lapi_->key("bwbench-curl"), "' '", lapi_->url(),
                                   "v1/decisions/stream?startup=true'"));
    if (c.ok()) {
      startup_stream_s_ = MonotonicSeconds() - t0;
      Log(absl::StrFormat("a startup stream: %.2f s (HTTP status, bytes: %s)", startup_stream_s_, *c));
    }
  }
  return absl::OkStatus();
}

// Does this bannerwatch know `crowdsec:`? "" if so, else why not.
std::string CrowdsecBench::CheckBannerwatch() {
  if (access(bannerwatch_bin_.c_str(), X_OK) != 0)
    return absl::StrCat("not run: no bannerwatch binary at ", bannerwatch_bin_);
  std::string key_file = absl::StrCat(dir_, "/bannerwatch.key");
  {
    std::ofstream k(key_file);
    k << lapi_->key("bwbench-bannerwatch");
  }
  chmod(key_file.c_str(), 0600);
  std::ofstream p(absl::StrCat(dir_, "/bannerwatch.yaml"));
  p << "# bench/crowdsec_compare.cpp: one list fed by the CrowdSec Local API\n"
    << "ports: [443]\n"
    << "crowdsec:\n"
    << "  url: " << lapi_->url() << "\n"
    << "  key_file: " << key_file << "\n"
    << "  poll: " << absl::GetFlag(FLAGS_poll) << "s\n"
    << "  scopes: [ip, range]\n"
    << "lists:\n"
    << "  - name: crowdsec\n"
    << "    action: block\n"
    << "    source: crowdsec\n"
    << "    types: [ban]\n";
  p.close();
  auto r = Sh(absl::StrCat(bannerwatch_bin_, " check --config ", dir_, "/bannerwatch.yaml > ", dir_,
                           "/bannerwatch-check.log 2>&1"));
  if (!r.ok()) {
    std::ifstream f(absl::StrCat(dir_, "/bannerwatch-check.log"));
    std::string first;
    std::getline(f, first);
    return absl::StrCat("not run: feature not yet in the build (`bannerwatch check`: ", first, ")");
  }
  return "";
}

absl::Status CrowdsecBench::StartEnforcer(const std::string& e, ChildProc* p, bool warm) {
  // A log per start, so that "its log says the set is in force" is this start's.
  std::string log = absl::StrCat(dir_, "/", e, "-", ++starts_[e], ".log");
  if (e == "bannerwatch") {
    // bannerwatch attaches XDP through a link, which the counting program's netlink attachment
    // would refuse.
    if (absl::Status st = AttachXdp(dut_->name(), dut_if_, -1); !st.ok()) return st;
    // A cold start: without the decisions a stopping daemon saves beside its state file (it
    // enforces them at its next start until the API answers) unless `warm`.
    (void)Sh(absl::StrCat("rm -f ", dir_, "/bannerwatch-state.json",
                          warm ? "" : absl::StrCat(" ", dir_, "/crowdsec-decisions.json")));
    return p->Start({bannerwatch_bin_, "run", "--config", absl::StrCat(dir_, "/bannerwatch.yaml"),
                     "--iface", dut_if_, "--pin-root", pin_root_, "--control",
                     absl::StrCat(dir_, "/bannerwatch.sock"), "--state",
                     absl::StrCat(dir_, "/bannerwatch-state.json"), "--no-eve-file", "--metrics", "off"},
                    dut_->name(), log);
  }
  int decisions = absl::GetFlag(FLAGS_decisions);
  int ipset_size = absl::GetFlag(FLAGS_ipset_size);
  if (ipset_size <= 0) ipset_size = std::max(65536, 2 * decisions);
  std::string conf = absl::StrCat(dir_, "/bouncer-", e, ".yaml");
  std::ofstream f(conf);
  // The package's /etc/crowdsec/bouncers/crowdsec-firewall-bouncer.yaml, with the API, the mode,
  // the poll period, logs to stdout, no prometheus, and an ipset big enough for the decisions.
  f << "mode: " << (e == "ipset" ? "iptables" : "nftables") << "\n"
    << "pid_dir: " << dir_ << "/\n"
    << "update_frequency: " << absl::GetFlag(FLAGS_poll) << "s\n"
    << "daemonize: false\n"
    << "log_mode: stdout\n"
    << "log_level: info\n"
    << "api_url: " << lapi_->url() << "\n"
    << "api_key: " << lapi_->key(absl::StrCat("bwbench-", e)) << "\n"
    << "insecure_skip_verify: false\n"
    << "disable_ipv6: false\n"
    << "deny_action: DROP\n"
    << "deny_log: false\n"
    << "supported_decisions_types:\n  - ban\n"
    << "blacklists_ipv4: crowdsec-blacklists\n"
    << "blacklists_ipv6: crowdsec6-blacklists\n"
    << "ipset_type: nethash\n"
    << "ipset_size: " << ipset_size << "\n"
    << "iptables_chains:\n  - INPUT\n"
    << "nftables:\n"
    << "  ipv4:\n    enabled: true\n    set-only: false\n    table: crowdsec\n    chain: crowdsec-chain\n"
    << "  ipv6:\n    enabled: true\n    set-only: false\n    table: crowdsec6\n    chain: crowdsec6-chain\n"
    << "prometheus:\n  enabled: false\n  listen_addr: 127.0.0.1\n  listen_port: 60601\n";
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("write ", conf));
  return p->Start({absl::GetFlag(FLAGS_bouncer), "-c", conf}, dut_->name(), log);
}

// What a stopped enforcer left in the protected namespace.
void CrowdsecBench::StopEnforcer(const std::string& e, ChildProc* p, EnforcerResult* res) {
  absl::Status st = p->Stop();
  if (!st.ok()) Log(st.ToString());
  if (e == "bannerwatch") return;
  std::vector<std::string> left;
  if (auto t = dut_->Sh("nft list tables 2>/dev/null | grep crowdsec || true"); t.ok())
    for (absl::string_view l : absl::StrSplit(*t, '\n', absl::SkipEmpty())) left.emplace_back(l);
  if (auto s = dut_->Sh("ipset list -n 2>/dev/null | grep crowdsec || true"); s.ok())
    for (absl::string_view l : absl::StrSplit(*s, '\n', absl::SkipEmpty()))
      left.push_back(absl::StrCat("ipset ", l));
  if (auto r = dut_->Sh("iptables -S INPUT 2>/dev/null | grep -c crowdsec || true"); r.ok()) {
    std::string n(absl::StripAsciiWhitespace(*r));
    if (n != "0" && !n.empty()) left.push_back(absl::StrCat(n, " iptables INPUT rule(s)"));
  }
  if (res->left_behind.empty() && !left.empty())
    res->left_behind = absl::StrCat("after SIGTERM: ", absl::StrJoin(left, ", "));
}

void CrowdsecBench::CleanEnforcer(const std::string& e) {
  if (e == "bannerwatch") {
    (void)Sh(absl::StrCat("rm -rf ", pin_root_));
    (void)AttachXdp(dut_->name(), dut_if_, -1);
    absl::Status st = AttachXdp(dut_->name(), dut_if_, bpf_program__fd(base_->progs.bw_base_count));
    if (st.ok()) st = FindNapi();
    if (!st.ok()) Log(st.ToString());
    return;
  }
  // What the bouncer makes (its logs say so), removed as its own shutdown would.
  (void)dut_->Sh(
      "nft delete table ip crowdsec 2>/dev/null; nft delete table ip6 crowdsec6 2>/dev/null; "
      "while iptables -D INPUT -m set --match-set crowdsec-blacklists src -j DROP 2>/dev/null; do :; done; "
      "while ip6tables -D INPUT -m set --match-set crowdsec6-blacklists src -j DROP 2>/dev/null; do :; done; "
      "ipset destroy crowdsec-blacklists 2>/dev/null; ipset destroy crowdsec6-blacklists 2>/dev/null; true");
}

absl::StatusOr<Startup> CrowdsecBench::MeasureStartup(const std::string& e, ChildProc* p, bool warm) {
  const EnforcerDef* def = Def(e);
  const double quiet = 0.5;
  probe_->Begin(probe_sources_, absl::GetFlag(FLAGS_startup_interval));
  if (!SleepUnlessStopped(0.4)) return StoppedStatus();
  for (size_t i = 0; i < probe_sources_.size(); ++i)
    if (probe_->Arrivals(i) == 0) {
      probe_->End();
      return absl::InternalError(absl::StrCat(
          "before ", e, " started, no datagram from ", Ipv4ToString(probe_sources_[i]),
          " arrived (", probe_->Sent(), " sent; ", probe_->last_error(), ")"));
    }
  double lapi_cpu0 = lapi_->proc().CpuSeconds();
  absl::Status st = StartEnforcer(e, p, warm);
  if (!st.ok()) {
    probe_->End();
    return st;
  }
  const double t0 = p->started_at();
  Startup s;
  double timeout = absl::GetFlag(FLAGS_startup_timeout);
  double next_note = t0 + 30;
  std::vector<double> at;
  bool confirming = false;
  double confirm_at = 0;
  for (;;) {
    if (Stopped()) {
      probe_->End();
      return StoppedStatus();
    }
    double now = MonotonicSeconds();
    if (!p->Running()) {
      probe_->End();
      return absl::InternalError(absl::StrCat(e, " exited; its log:\n", p->LogTail()));
    }
    if (s.log_s < 0 && p->LogHas(def->log_done)) s.log_s = now - t0;
    at.clear();
    for (size_t i = 0; i < probe_sources_.size(); ++i)
      if (auto t = probe_->DroppedSince(i, quiet)) at.push_back(*t);
    s.enforced = at.size();
    if (at.size() == probe_sources_.size()) {
      // Once more a second later: a source that passed again meanwhile was not enforced yet.
      if (!confirming) {
        confirming = true;
        confirm_at = now + 1;
      } else if (now >= confirm_at) {
        s.done = true;
        break;
      }
    } else {
      confirming = false;
    }
    if (now - t0 > timeout) break;
    if (now > next_note) {
      Log(absl::StrFormat("%s: %.0f s after its start, %zu of %zu probe sources dropped (CPU %.0f s)",
                          e, now - t0, at.size(), probe_sources_.size(), p->CpuSeconds()));
      next_note += 30;
    }
    usleep(50000);
  }
  probe_->End();
  if (!at.empty()) {
    std::sort(at.begin(), at.end());
    s.all_s = at.back() - t0;
    s.half_s = at[at.size() / 2] - t0;
  }
  if (s.done && s.log_s < 0) {
    // The probe sources are a sample of the set; the enforcer's own word that all of it is in
    // force can come later (the nftables bouncer adds in no particular order): wait for it as
    // long again as the probes took, at least 10 s.
    double now = MonotonicSeconds();
    double until = std::min(t0 + timeout, now + std::max(10.0, now - t0));
    while (s.log_s < 0 && MonotonicSeconds() < until && p->Running() && !Stopped()) {
      if (p->LogHas(def->log_done)) s.log_s = MonotonicSeconds() - t0;
      else usleep(50000);
    }
  }
  s.enforced_s = std::max(s.all_s, s.log_s);
  s.cpu_s = p->CpuSeconds();
  s.lapi_cpu_s = lapi_->proc().CpuSeconds() - lapi_cpu0;
  s.rss_kib = p->RssKib();
  return s;
}

absl::StatusOr<Latency> CrowdsecBench::MeasureLatency(const std::string& e, ChildProc* p, uint32_t x) {
  const double poll = absl::GetFlag(FLAGS_poll), timeout = absl::GetFlag(FLAGS_latency_timeout);
  const std::string xs = Ipv4ToString(x);
  Latency l;
  probe_->Begin({x}, absl::GetFlag(FLAGS_latency_interval));
  auto fail = [&](absl::Status st) {
    probe_->End();
    (void)lapi_->Cscli(absl::StrCat("decisions delete --ip ", xs));
    return st;
  };
  // A random part of a poll period first, so that the rounds see the poll at different phases.
  if (!SleepUnlessStopped(0.3 + rng_.Unit() * poll)) return fail(StoppedStatus());
  if (probe_->Arrivals(0) == 0 || probe_->DroppedSince(0, 0.1))
    return fail(absl::InternalError(absl::StrCat("datagrams from ", xs, " do not arrive before the add")));
  double t0 = MonotonicSeconds();
  auto r = lapi_->Cscli(absl::StrCat("decisions add --ip ", xs, " --duration 1h --reason bwbench"));
  l.cscli_add_s = MonotonicSeconds() - t0;
  if (!r.ok()) return fail(r.status());
  const double quiet = 0.3;
  for (;;) {
    if (Stopped()) return fail(StoppedStatus());
    if (!p->Running()) return fail(absl::InternalError(absl::StrCat(e, " exited; its log:\n", p->LogTail())));
    if (auto t = probe_->DroppedSince(0, quiet)) {
      // Still dropped a little later: the drop holds.
      if (!SleepUnlessStopped(0.3)) return fail(StoppedStatus());
      if (auto t2 = probe_->DroppedSince(0, quiet); t2 && *t2 == *t) {
        l.add_s = *t - t0;
        break;
      }
      continue;
    }
    if (MonotonicSeconds() - t0 > timeout) break;
    usleep(10000);
  }
  if (!SleepUnlessStopped(0.2 + rng_.Unit() * poll)) return fail(StoppedStatus());
  double t1 = MonotonicSeconds();
  r = lapi_->Cscli(absl::StrCat("decisions delete --ip ", xs));
  l.cscli_del_s = MonotonicSeconds() - t1;
  if (!r.ok()) return fail(r.status());
  for (;;) {
    if (Stopped()) return fail(StoppedStatus());
    if (auto t = probe_->FirstArrivalSentAfter(0, t1)) {
      l.del_s = *t - t1;
      break;
    }
    if (MonotonicSeconds() - t1 > timeout) break;
    usleep(10000);
  }
  probe_->End();
  if (absl::GetFlag(FLAGS_verbose))
    Log(absl::StrFormat("%s: %s add -> dropped %s s, delete -> passes %s s (cscli %.2f / %.2f s)", e, xs,
                        l.add_s ? Seconds(*l.add_s, 3) : "-", l.del_s ? Seconds(*l.del_s, 3) : "-",
                        l.cscli_add_s, l.cscli_del_s));
  return l;
}

absl::StatusOr<Rate> CrowdsecBench::MeasureRate(const std::string& config) {
  struct Snap {
    double t = 0;
    uint64_t rx = 0, csum = 0, rule = 0, cpu_ns = 0;
  };
  auto read = [&]() -> absl::StatusOr<Snap> {
    Snap s;
    auto rx = RxPackets(*dut_, dut_if_);
    s.t = MonotonicSeconds();
    s.cpu_ns = TaskCpuNs(napi_tid_);
    if (!rx.ok()) return rx.status();
    s.rx = *rx;
    auto csum = TcpInCsumErrors(*dut_);
    if (!csum.ok()) return csum.status();
    s.csum = *csum;
    // The bouncer's iptables rule counts what it drops (listing an nftables set of 100 k
    // elements, by contrast, costs a second of CPU inside the measurement: not read).
    if (config == "ipset") {
      auto r = dut_->Sh("iptables -L INPUT -v -x -n");
      if (!r.ok()) return r.status();
      for (absl::string_view line : absl::StrSplit(*r, '\n')) {
        std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
        uint64_t n;
        if (f.size() > 2 && f[2] == "DROP" && absl::SimpleAtoi(f[0], &n)) s.rule += n;
      }
    }
    return s;
  };
  if (absl::Status st = progs_->SetTraffic(blocked_); !st.ok()) return st;
  (void)PinTask(napi_tid_, absl::GetFlag(FLAGS_rx_cpu));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> sent{0};
  absl::Status gen_st;
  std::string gen_ns = gen_->name();
  int gen_cpu = absl::GetFlag(FLAGS_gen_cpu), gen_fd = progs_->gen_fd(), ifindex = gen_ifindex_;
  const Traffic& t = blocked_;
  std::thread gen([&] {
    gen_st = InNetnsHere(gen_ns);
    if (gen_st.ok()) gen_st = PinThisThread(gen_cpu);
    while (gen_st.ok() && !stop.load() && !Stopped()) {
      auto r = RunLive(gen_fd, t.frame, kGenChunk, ifindex);
      if (!r.ok()) gen_st = r.status();
      else sent += kGenChunk;
    }
  });
  absl::StatusOr<Snap> a = absl::CancelledError("stopped"), b = a;
  uint64_t sent0 = 0, sent1 = 0;
  if (SleepUnlessStopped(absl::GetFlag(FLAGS_warmup))) {
    a = read();
    sent0 = sent.load();
    if (a.ok() && SleepUnlessStopped(absl::GetFlag(FLAGS_seconds))) {
      sent1 = sent.load();
      b = read();
    }
  }
  stop = true;
  gen.join();
  if (!gen_st.ok()) return gen_st;
  if (Stopped()) return StoppedStatus();
  if (!a.ok()) return a.status();
  if (!b.ok()) return b.status();
  Rate m;
  double dt = b->t - a->t, rx = static_cast<double>(b->rx - a->rx);
  double cpu = static_cast<double>(b->cpu_ns - a->cpu_ns) * 1e-9;
  m.pps = rx / dt;
  m.offered_pps = static_cast<double>(sent1 - sent0) / dt;
  m.rx_busy = cpu / dt;
  m.pps_per_cpu = cpu > 0 ? rx / cpu : 0;
  m.tcp_share = rx > 0 ? static_cast<double>(b->csum - a->csum) / rx : 0;
  if (config == "ipset") m.rule_share = rx > 0 ? static_cast<double>(b->rule - a->rule) / rx : 0;
  Log(absl::StrFormat("rate %-11s %6.3f Mpps (offered %5.2f, rx CPU %3.0f%%, %6.3f Mpps per rx CPU), "
                      "reached TCP %.3f",
                      config, m.pps / 1e6, m.offered_pps / 1e6, 100 * m.rx_busy, m.pps_per_cpu / 1e6,
                      m.tcp_share));
  return m;
}

absl::Status CrowdsecBench::Baselines(const char* when) {
  Log(absl::StrCat("baselines ", when, ": no enforcer (counting XDP_PASS), trivial XDP_DROP, "
                   "XDP_DROP after a /24 byte-array read"));
  for (int r = 0; r < absl::GetFlag(FLAGS_rounds); ++r) {
    auto m = MeasureRate("nofilter");
    if (!m.ok()) return m.status();
    baselines_["nofilter"].push_back(*m);
    // Replacing the attached program keeps the veth's NAPI thread.
    for (auto [key, prog] : {std::pair{"xdpdrop", base_->progs.bw_base_drop},
                             std::pair{"xdpbyte", base_->progs.bw_base_byte_drop}}) {
      absl::Status st = AttachXdp(dut_->name(), dut_if_, bpf_program__fd(prog));
      if (!st.ok()) return st;
      m = MeasureRate(key);
      st = AttachXdp(dut_->name(), dut_if_, bpf_program__fd(base_->progs.bw_base_count));
      if (!m.ok()) return m.status();
      if (!st.ok()) return st;
      baselines_[key].push_back(*m);
    }
  }
  return absl::OkStatus();
}

absl::Status CrowdsecBench::Run() {
  order_ = absl::StrSplit(absl::GetFlag(FLAGS_enforcers), ',', absl::SkipEmpty());
  for (const std::string& e : order_)
    if (!Def(e)) return absl::InvalidArgumentError(absl::StrCat("--enforcers: unknown ", e));
  bannerwatch_bin_ = absl::GetFlag(FLAGS_bannerwatch);
  if (bannerwatch_bin_.empty()) bannerwatch_bin_ = BannerwatchBinary();
  for (const std::string& tool : {absl::GetFlag(FLAGS_crowdsec), absl::GetFlag(FLAGS_cscli)})
    if (access(tool.c_str(), X_OK) != 0)
      return absl::FailedPreconditionError(absl::StrCat(tool, " not found (Debian: crowdsec)"));
  rng_ = Rng(absl::GetFlag(FLAGS_seed) + 5);

  auto hi = Sh("ipset list -n 2>/dev/null || true");
  host_ipsets_before_ = hi.ok() ? *hi : "";
  auto hn = Sh("nft list tables 2>/dev/null || true");
  host_nft_before_ = hn.ok() ? *hn : "";
  auto ver = Sh("dpkg-query -W -f '${Package} ${Version}\\n' crowdsec crowdsec-firewall-bouncer 2>/dev/null || true");
  versions_ = ver.ok() ? std::string(absl::StripAsciiWhitespace(*ver)) : "";
  absl::StrReplaceAll({{"\n", ", "}}, &versions_);

  if (absl::Status st = Setup(); !st.ok()) return st;
  if (absl::Status st = MakeDecisions(); !st.ok()) return st;
  if (absl::Status st = StartLapiAndImport(); !st.ok()) return st;
  for (const std::string& e : order_) {
    EnforcerResult& res = results_[e];
    if (e == "bannerwatch") res.skipped = CheckBannerwatch();
    else if (access(absl::GetFlag(FLAGS_bouncer).c_str(), X_OK) != 0)
      res.skipped = absl::StrCat("not run: no ", absl::GetFlag(FLAGS_bouncer),
                                 " (Debian: crowdsec-firewall-bouncer)");
    if (!res.skipped.empty()) Log(absl::StrCat(e, ": ", res.skipped));
  }
  if (absl::Status st = Baselines("before"); !st.ok()) return st;

  const int rounds = absl::GetFlag(FLAGS_rounds);
  for (size_t ei = 0; ei < order_.size(); ++ei) {
    const std::string& e = order_[ei];
    EnforcerResult& res = results_[e];
    if (!res.skipped.empty()) continue;
    ChildProc proc(e);
    CleanEnforcer(e);
    // (a)
    int startup_rounds = std::max(1, absl::GetFlag(FLAGS_startup_rounds));
    for (int r = 0; r < startup_rounds; ++r) {
      Log(absl::StrFormat("%s: (a) start %d", e, r + 1));
      auto s = MeasureStartup(e, &proc);
      if (!s.ok()) {
        StopEnforcer(e, &proc, &res);
        CleanEnforcer(e);
        if (Stopped()) return s.status();
        res.failed = absl::StrCat("(a): ", s.status().message());
        break;
      }
      res.startups.push_back(*s);
      Log(absl::StrFormat("%s: (a) %s after %.2f s (half the probe sources %.2f s; its log: %s; CPU %.1f s)",
                          e, s->done ? "every probe source dropped" : "NOT all probe sources dropped",
                          s->all_s, s->half_s, s->log_s >= 0 ? Seconds(s->log_s) + " s" : "-", s->cpu_s));
      if (!s->done) {
        res.failed = absl::StrFormat("(a): %zu of %zu probe sources dropped after %.0f s",
                                     s->enforced, probe_sources_.size(), absl::GetFlag(FLAGS_startup_timeout));
        break;
      }
      bool last = r + 1 == startup_rounds || s->all_s > absl::GetFlag(FLAGS_startup_cheap);
      if (last) break;
      StopEnforcer(e, &proc, &res);
      CleanEnforcer(e);
    }
    if (!res.failed.empty()) {
      StopEnforcer(e, &proc, &res);
      CleanEnforcer(e);
      continue;
    }
    if (e == "bannerwatch" && absl::GetFlag(FLAGS_warm_restart)) {
      StopEnforcer(e, &proc, &res);
      CleanEnforcer(e);
      Log(absl::StrFormat("%s: (a) a restart with its saved decisions", e));
      auto s = MeasureStartup(e, &proc, /*warm=*/true);
      if (!s.ok()) {
        if (Stopped()) return s.status();
        res.failed = absl::StrCat("(a) restart: ", s.status().message());
        StopEnforcer(e, &proc, &res);
        CleanEnforcer(e);
        continue;
      }
      res.warm = *s;
      Log(absl::StrFormat("%s: (a) restart: every probe source dropped after %.2f s (its log: %s)", e,
                          s->all_s, s->log_s >= 0 ? Seconds(s->log_s) + " s" : "-"));
    }
    // (b), (c)
    // X = 203.0.113.(1 + round + 40 * enforcer): 40 rounds at most.
    const int latency_rounds = std::clamp(absl::GetFlag(FLAGS_latency_rounds), 1, 40);
    for (int r = 0; r < latency_rounds && res.failed.empty(); ++r) {
      uint32_t x = kDocNet | static_cast<uint32_t>(1 + r + 40 * ei);
      auto l = MeasureLatency(e, &proc, x);
      if (!l.ok()) {
        if (Stopped()) return l.status();
        res.failed = absl::StrCat("(b)/(c): ", l.status().message());
        break;
      }
      res.latencies.push_back(*l);
    }
    // (d)
    if (e == "bannerwatch") {
      if (absl::Status st = FindNapi(); !st.ok()) return st;
    }
    for (int r = 0; r < rounds && res.failed.empty(); ++r) {
      auto m = MeasureRate(e);
      if (!m.ok()) {
        if (Stopped()) return m.status();
        res.failed = absl::StrCat("(d): ", m.status().message());
        break;
      }
      res.rates.push_back(*m);
    }
    StopEnforcer(e, &proc, &res);
    CleanEnforcer(e);
  }
  if (absl::Status st = Baselines("after"); !st.ok()) return st;
  Report();
  return absl::OkStatus();
}

void CrowdsecBench::Report() {
  const size_t n = csv_lines_.size();
  const int rounds = absl::GetFlag(FLAGS_rounds);
  const double poll = absl::GetFlag(FLAGS_poll);
  section.part = 5;
  section.key = "crowdsec_compare";
  section.title = absl::StrFormat(
      "CrowdSec: %s decisions from a real Local API, poll every %g s: bannerwatch vs "
      "crowdsec-firewall-bouncer (nftables; iptables + ipset)",
      SizeLabel(n), poll);
  section.columns = {"enforcer",
                     "(a) start → all enforced, s",
                     "(a) CPU s",
                     "(b) add → dropped, s",
                     "(c) delete → passes, s",
                     "(d) blocked Mpps",
                     "Mpps per rx CPU",
                     "÷ no enforcer (wall / per CPU)",
                     "÷ XDP_DROP (wall / per CPU)",
                     "verdict"};
  auto med = [](const std::vector<Rate>& v, double Rate::*f) {
    std::vector<double> x;
    for (const Rate& r : v) x.push_back(r.*f);
    return Median(x);
  };
  std::vector<Rate> all_nofilter = baselines_["nofilter"], all_drop = baselines_["xdpdrop"];
  const double base_pps = med(all_nofilter, &Rate::pps), drop_pps = med(all_drop, &Rate::pps);
  const double base_ppc = med(all_nofilter, &Rate::pps_per_cpu), drop_ppc = med(all_drop, &Rate::pps_per_cpu);
  // "1.23x / 1.10x": a median's ratio to a baseline's median, of Mpps and of Mpps per rx CPU.
  auto ratio = [](double pps, double base, double ppc, double base_c) {
    if (base <= 0 || base_c <= 0) return std::string();
    return absl::StrCat(Fixed(pps / base, 2), "x / ", Fixed(ppc / base_c, 2), "x");
  };
  auto verdict = [](double tcp) {
    return absl::StrFormat("%s (%.0f%% reached TCP)", tcp < 0.5 ? "dropped" : "passed", 100 * tcp);
  };
  nlohmann::json out = nlohmann::json::object();
  for (const std::string& e : order_) {
    const EnforcerResult& r = results_[e];
    const EnforcerDef* def = Def(e);
    nlohmann::json j = {{"label", def->label}};
    if (!r.skipped.empty()) {
      section.rows.push_back({def->label, r.skipped, "", "", "", "", "", "", "", ""});
      j["skipped"] = r.skipped;
      out[e] = j;
      continue;
    }
    std::vector<double> all, probes_all, half, cpu, logv, lapi_cpu, rss;
    nlohmann::json starts = nlohmann::json::array();
    bool done = !r.startups.empty();
    for (const Startup& s : r.startups) {
      done = done && s.done;
      if (s.done) {
        all.push_back(s.enforced_s);
        probes_all.push_back(s.all_s);
        half.push_back(s.half_s);
        cpu.push_back(s.cpu_s);
        lapi_cpu.push_back(s.lapi_cpu_s);
        rss.push_back(static_cast<double>(s.rss_kib) / 1024);
        if (s.log_s >= 0) logv.push_back(s.log_s);
      }
      starts.push_back({{"done", s.done}, {"enforced_s", s.enforced_s}, {"probes_all_s", s.all_s}, {"half_s", s.half_s},
                        {"log_done_s", s.log_s}, {"cpu_s", s.cpu_s}, {"lapi_cpu_s", s.lapi_cpu_s},
                        {"rss_kib", s.rss_kib}, {"probe_sources_enforced", s.enforced}});
    }
    std::vector<double> add, del, cadd, cdel;
    size_t add_missing = 0, del_missing = 0;
    nlohmann::json lats = nlohmann::json::array();
    for (const Latency& l : r.latencies) {
      if (l.add_s) add.push_back(*l.add_s);
      else ++add_missing;
      if (l.del_s) del.push_back(*l.del_s);
      else ++del_missing;
      cadd.push_back(l.cscli_add_s);
      cdel.push_back(l.cscli_del_s);
      lats.push_back({{"add_to_dropped_s", l.add_s ? nlohmann::json(*l.add_s) : nlohmann::json()},
                      {"delete_to_passes_s", l.del_s ? nlohmann::json(*l.del_s) : nlohmann::json()},
                      {"cscli_add_s", l.cscli_add_s},
                      {"cscli_delete_s", l.cscli_del_s}});
    }
    auto lat_cell = [&](const std::vector<double>& v, size_t missing) {
      if (v.empty() && missing == 0) return std::string("-");
      if (v.empty()) return absl::StrFormat("> %g (never)", absl::GetFlag(FLAGS_latency_timeout));
      std::string c = Secs(Median(v));
      if (v.size() > 1) absl::StrAppend(&c, " (", Secs(*std::min_element(v.begin(), v.end())), "–",
                                        Secs(*std::max_element(v.begin(), v.end())), ")");
      if (missing) absl::StrAppend(&c, ", ", missing, " never");
      return c;
    };
    std::string a_cell;
    if (!done && !r.startups.empty())
      a_cell = absl::StrFormat("> %.0f (%zu of %zu probe sources)", absl::GetFlag(FLAGS_startup_timeout),
                               r.startups.back().enforced, probe_sources_.size());
    else if (all.empty())
      a_cell = "-";
    else
      a_cell = all.size() > 1 ? absl::StrFormat("%s (%zu starts)", Secs(Median(all)), all.size())
                              : Secs(Median(all));
    std::vector<double> pps, ratio_base, ratio_drop, ppc, tcp, rule, busy;
    nlohmann::json rates = nlohmann::json::array();
    for (const Rate& m : r.rates) {
      pps.push_back(m.pps);
      ppc.push_back(m.pps_per_cpu);
      tcp.push_back(m.tcp_share);
      busy.push_back(m.rx_busy);
      if (m.rule_share >= 0) rule.push_back(m.rule_share);
      rates.push_back({{"mpps", m.pps / 1e6}, {"offered_mpps", m.offered_pps / 1e6},
                       {"rx_cpu_busy", m.rx_busy}, {"mpps_per_rx_cpu", m.pps_per_cpu / 1e6},
                       {"reached_tcp_share", m.tcp_share},
                       {"rule_counter_drop_share", m.rule_share >= 0 ? nlohmann::json(m.rule_share) : nlohmann::json()}});
    }
    std::string d_cell = "-", rb = "", rd = "", ppc_cell = "", v_cell = "";
    if (!pps.empty()) {
      d_cell = Fixed(Median(pps) / 1e6, 3);
      rb = ratio(Median(pps), base_pps, Median(ppc), base_ppc);
      rd = ratio(Median(pps), drop_pps, Median(ppc), drop_ppc);
      ppc_cell = Fixed(Median(ppc) / 1e6, 3);
      v_cell = verdict(Median(tcp));
    }
    std::string label = def->label;
    if (!r.failed.empty()) v_cell = absl::StrCat(v_cell.empty() ? "" : v_cell + "; ", "stopped: ", r.failed);
    section.rows.push_back({label, a_cell, cpu.empty() ? "-" : Fixed(Median(cpu), 1),
                            lat_cell(add, add_missing), lat_cell(del, del_missing), d_cell, ppc_cell,
                            rb, rd, v_cell});
    j["startup"] = {{"enforced_s", all.empty() ? nlohmann::json() : nlohmann::json(Median(all))},
                    {"probes_all_s", probes_all.empty() ? nlohmann::json() : nlohmann::json(Median(probes_all))},
                    {"half_enforced_s", half.empty() ? nlohmann::json() : nlohmann::json(Median(half))},
                    {"log_done_s", logv.empty() ? nlohmann::json() : nlohmann::json(Median(logv))},
                    {"cpu_s", cpu.empty() ? nlohmann::json() : nlohmann::json(Median(cpu))},
                    {"lapi_cpu_s", lapi_cpu.empty() ? nlohmann::json() : nlohmann::json(Median(lapi_cpu))},
                    {"rss_mib", rss.empty() ? nlohmann::json() : nlohmann::json(Median(rss))},
                    {"rounds", starts}};
    j["latency"] = {{"add_to_dropped_s", add.empty() ? nlohmann::json() : nlohmann::json(Median(add))},
                    {"delete_to_passes_s", del.empty() ? nlohmann::json() : nlohmann::json(Median(del))},
                    {"cscli_add_s", Median(cadd)},
                    {"cscli_delete_s", Median(cdel)},
                    {"rounds", lats}};
    j["rate"] = {{"mpps", pps.empty() ? nlohmann::json() : nlohmann::json(Median(pps) / 1e6)},
                 {"ratio_no_enforcer", base_pps > 0 && !pps.empty() ? nlohmann::json(Median(pps) / base_pps) : nlohmann::json()},
                 {"ratio_xdp_drop", drop_pps > 0 && !pps.empty() ? nlohmann::json(Median(pps) / drop_pps) : nlohmann::json()},
                 {"ratio_no_enforcer_per_rx_cpu", base_ppc > 0 && !ppc.empty() ? nlohmann::json(Median(ppc) / base_ppc) : nlohmann::json()},
                 {"ratio_xdp_drop_per_rx_cpu", drop_ppc > 0 && !ppc.empty() ? nlohmann::json(Median(ppc) / drop_ppc) : nlohmann::json()},
                 {"mpps_per_rx_cpu", ppc.empty() ? nlohmann::json() : nlohmann::json(Median(ppc) / 1e6)},
                 {"rx_cpu_busy", busy.empty() ? nlohmann::json() : nlohmann::json(Median(busy))},
                 {"reached_tcp_share", tcp.empty() ? nlohmann::json() : nlohmann::json(Median(tcp))},
                 {"rule_counter_drop_share", rule.empty() ? nlohmann::json() : nlohmann::json(Median(rule))},
                 {"rounds", rates}};
    if (!r.failed.empty()) j["failed"] = r.failed;
    if (r.warm)
      j["warm_restart"] = {{"done", r.warm->done}, {"all_s", r.warm->all_s}, {"half_s", r.warm->half_s},
                           {"log_done_s", r.warm->log_s}, {"cpu_s", r.warm->cpu_s}};
    if (!r.left_behind.empty()) j["left_behind"] = r.left_behind;
    out[e] = j;
  }
  for (const auto& [key, label] : std::vector<std::pair<std::string, std::string>>{
           {"nofilter", "baseline: no enforcer (counting XDP_PASS)"},
           {"xdpdrop", "baseline: trivial XDP_DROP"},
           {"xdpbyte", "baseline: XDP_DROP after a /24 byte-array read"}}) {
    const std::vector<Rate>& v = baselines_[key];
    double p = med(v, &Rate::pps), pc = med(v, &Rate::pps_per_cpu);
    section.rows.push_back({label, "", "", "", "", Fixed(p / 1e6, 3), Fixed(pc / 1e6, 3),
                            ratio(p, base_pps, pc, base_ppc), ratio(p, drop_pps, pc, drop_ppc),
                            verdict(med(v, &Rate::tcp_share))});
    nlohmann::json rounds_j = nlohmann::json::array();
    for (const Rate& m : v) rounds_j.push_back({{"mpps", m.pps / 1e6}, {"mpps_per_rx_cpu", m.pps_per_cpu / 1e6},
                                                {"rx_cpu_busy", m.rx_busy}, {"reached_tcp_share", m.tcp_share}});
    out[key] = {{"mpps", p / 1e6}, {"mpps_per_rx_cpu", med(v, &Rate::pps_per_cpu) / 1e6},
                {"rounds", rounds_j}};
  }

  // Notes: how, and what else was seen.
  section.notes.push_back(absl::StrFormat(
      "one Local API (%s; `crowdsec -no-cs`, SQLite) in the protected namespace holds %zu decisions "
      "(%zu IPv4, %zu IPv6 of 2001:db8::/32; scope ip, 24 h), imported with `cscli decisions import` "
      "in %.1f s%s; every enforcer has its own bouncer key and polls every %g s (the bouncer's "
      "update_frequency, bannerwatch's crowdsec.poll)",
      versions_.empty() ? "crowdsec" : versions_, n, n - v6_count_, v6_count_, import_s_,
      startup_stream_s_ >= 0 ? absl::StrFormat("; one startup stream (startup=true) took %.2f s", startup_stream_s_) : "",
      poll));
  section.notes.push_back(absl::StrFormat(
      "(a) from the enforcer's fork until UDP datagrams from all %zu probe sources (decisions of "
      "203.0.113.128/25 spread through the import order, the last one the last decision imported) stop "
      "arriving at a socket behind it, or until its log says the whole set is in force if that is "
      "later (the nftables bouncer adds in no particular order, so the probes see ~99%% of it); CPU: "
      "the enforcer's, its children's included, by then; medians over up to %d cold starts (one if "
      "the first took over %g s)",
      probe_sources_.size(), absl::GetFlag(FLAGS_startup_rounds), absl::GetFlag(FLAGS_startup_cheap)));
  section.notes.push_back(absl::StrFormat(
      "(b) from the start of `cscli decisions add --ip X --duration 1h` until X's first datagram (one "
      "per ms) that never arrives; (c) from the start of `cscli decisions delete --ip X` until the first "
      "datagram sent after it that arrives; median (min–max) of %d rounds, each after a random part of "
      "a poll period; X a fresh address of 203.0.113.0/25 each round",
      absl::GetFlag(FLAGS_latency_rounds)));
  section.notes.push_back(absl::StrFormat(
      "(d) as part 4: BPF_PROG_TEST_RUN live frames (XDP_TX) on CPU %d from %d sources drawn from the "
      "IPv4 decisions, %zu-byte TCP frames with a bad checksum to 198.51.100.2; protected veth: "
      "threaded NAPI on CPU %d; median of %d rounds of %g s (after %g s warm-up); the baselines %d "
      "rounds before the enforcers and %d after. Mpps: frames the protected end processed per second "
      "of wall time; per rx CPU: per second of its NAPI thread's CPU time, less disturbed by other load "
      "(a busy host starves that thread: see rx_cpu_busy in the JSON); ÷: ratio of the medians, wall "
      "/ per CPU. The byte-array floor (part 4) reads one byte of a 16 MiB array at the source's /24 "
      "before it drops: about one cache miss a frame, a floor for any lookup in a table that size",
      absl::GetFlag(FLAGS_gen_cpu), absl::GetFlag(FLAGS_addrs), blocked_.frame.size(),
      absl::GetFlag(FLAGS_rx_cpu), rounds, absl::GetFlag(FLAGS_seconds), absl::GetFlag(FLAGS_warmup),
      rounds, rounds));
  for (const std::string& e : order_) {
    const EnforcerResult& r = results_[e];
    if (!r.skipped.empty() || r.startups.empty()) continue;
    const nlohmann::json& st = out[e]["startup"];
    std::string s = absl::StrFormat(
        "%s: half the probe sources dropped at %s s, all at %s s", e,
        st["half_enforced_s"].is_null() ? "-" : Secs(st["half_enforced_s"].get<double>()),
        st["probes_all_s"].is_null() ? "-" : Secs(st["probes_all_s"].get<double>()));
    if (!st["log_done_s"].is_null())
      absl::StrAppend(&s, absl::StrFormat("; its log said \"%s\" at %s s", Def(e)->log_done,
                                          Secs(st["log_done_s"].get<double>())));
    if (!st["lapi_cpu_s"].is_null())
      absl::StrAppend(&s, absl::StrFormat("; the Local API's CPU meanwhile %.1f s", st["lapi_cpu_s"].get<double>()));
    if (!st["rss_mib"].is_null())
      absl::StrAppend(&s, absl::StrFormat("; its VmRSS then %.0f MiB", st["rss_mib"].get<double>()));
    const nlohmann::json& lt = out[e]["latency"];
    if (!r.latencies.empty())
      absl::StrAppend(&s, absl::StrFormat("; cscli add / delete took %.2f / %.2f s (inside (b) / (c))",
                                          lt["cscli_add_s"].get<double>(), lt["cscli_delete_s"].get<double>()));
    if (e == "ipset" && !out[e]["rate"]["rule_counter_drop_share"].is_null())
      absl::StrAppend(&s, absl::StrFormat("; its iptables rule counted %.0f%% of the frames as drops",
                                          100 * out[e]["rate"]["rule_counter_drop_share"].get<double>()));
    if (r.warm && r.warm->done)
      absl::StrAppend(&s, absl::StrFormat(
                              "; a restart that kept the decisions it saves when it stops "
                              "(crowdsec-decisions.json, enforced until the API answers) dropped "
                              "every probe source after %s s",
                              Seconds(r.warm->all_s)));
    if (!r.left_behind.empty()) absl::StrAppend(&s, "; left ", r.left_behind);
    section.notes.push_back(s);
  }
  int ipset_size = absl::GetFlag(FLAGS_ipset_size);
  if (ipset_size <= 0) ipset_size = std::max(65536, 2 * static_cast<int>(n));
  bool bouncer = false;
  for (const std::string& e : order_) bouncer = bouncer || e != "bannerwatch";
  if (bouncer)
    section.notes.push_back(absl::StrFormat(
        "bouncer: the package's configuration with mode nftables or iptables, update_frequency %gs "
        "and ipset_size %d%s, run inside the protected namespace, whose ruleset only it changes",
        poll, ipset_size,
        n > 65536 ? absl::StrFormat(" (its default maxelem, 65536, cannot hold %s decisions: the adds "
                                    "beyond it fail with \"Hash is full\", which it logs at info "
                                    "level, and goes on)",
                                    SizeLabel(n))
                  : ""));
  section.notes.push_back(
      "bannerwatch: `ports: [443]` and one `action: block` list with `source: crowdsec` (types "
      "[ban], scopes [ip, range]); cold starts without the decisions file it keeps beside its "
      "state file");
  auto hi = Sh("ipset list -n 2>/dev/null || true");
  auto hn = Sh("nft list tables 2>/dev/null || true");
  bool host_same = hi.ok() && hn.ok() && *hi == host_ipsets_before_ && *hn == host_nft_before_;
  section.notes.push_back(host_same
                              ? "the host's `ipset list -n` and `nft list tables` were the same before and after (ipsets and nftables tables are per network namespace)"
                              : "the host's `ipset list -n` or `nft list tables` changed during the run (other work on the host?)");
  section.results = {{"decisions", n},
                     {"ipv6_decisions", v6_count_},
                     {"probe_sources", probe_sources_.size()},
                     {"import_seconds", import_s_},
                     {"import_said", import_said_},
                     {"startup_stream_seconds", startup_stream_s_ >= 0 ? nlohmann::json(startup_stream_s_) : nlohmann::json()},
                     {"versions", versions_},
                     {"enforcers", out},
                     {"settings",
                      {{"rounds", rounds},
                       {"latency_rounds", absl::GetFlag(FLAGS_latency_rounds)},
                       {"startup_rounds", absl::GetFlag(FLAGS_startup_rounds)},
                       {"startup_cheap", absl::GetFlag(FLAGS_startup_cheap)},
                       {"startup_timeout", absl::GetFlag(FLAGS_startup_timeout)},
                       {"poll_seconds", poll},
                       {"seconds", absl::GetFlag(FLAGS_seconds)},
                       {"warmup", absl::GetFlag(FLAGS_warmup)},
                       {"addrs", absl::GetFlag(FLAGS_addrs)},
                       {"ipset_size", ipset_size},
                       {"seed", absl::GetFlag(FLAGS_seed)},
                       {"bannerwatch", bannerwatch_bin_},
                       {"bouncer", absl::GetFlag(FLAGS_bouncer)}}}};
}

void CrowdsecBench::Cleanup() {
  if (probe_) probe_.reset();
  lapi_.reset();  // stops the API
  // Deleting the namespaces removes the veth pair, the XDP attachments, the nftables tables, the
  // iptables rules and the ipsets inside.
  dut_.reset();
  gen_.reset();
  progs_.reset();
  if (base_) baseline__destroy(base_);
  base_ = nullptr;
  if (!pin_root_.empty()) (void)Sh(absl::StrCat("rm -rf ", pin_root_));
  if (!dir_.empty() && !absl::GetFlag(FLAGS_keep_dir)) (void)Sh(absl::StrCat("rm -rf ", dir_));
  else if (!dir_.empty()) Log(absl::StrCat("kept ", dir_));
}

}  // namespace
}  // namespace bw::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return bw::bench::BenchMainOf<bw::bench::CrowdsecBench>(
      "crowdsec", "namespaces, XDP, nftables, iptables, a CrowdSec Local API", argc, argv,
      absl::GetFlag(FLAGS_verbose), absl::GetFlag(FLAGS_out));
}
