// policy_cost.cpp — issue 5 part 3: policy. Parse and apply a 1 M-prefix list; a reload that
// changes 1 % of it (with a check that no address kept by both versions passes meanwhile); the
// maps' memory and the daemon's.
//
// Method. bench/lib/feeds.hpp's feed-shaped prefixes are written as a real list file (plain
// format, one prefix per line) named by a real policy YAML (one block list). Each round loads a
// fresh data plane (private pin root /sys/fs/bpf/bwbench-<pid>/policy, XDP attached to an idle veth
// in namespace bwb-pol-<pid>) and times what the daemon does, with the daemon's own functions:
//   start:  LoadPolicyFile (YAML + the list file), Compile, ApplyPolicy with nothing applied
//           (the daemon's first apply: tries read back, element by element, then the pre-filter);
//   reload: the list file rewritten with --change of its prefixes replaced (as many removed as
//           added), then LoadPolicyFile, Compile (ids kept from the previous compile) and ApplyPolicy
//           as a diff against the applied policy in memory, exactly as Daemon::Reload does; then
//           --reloads - 1 more, back and forth between the two versions (the first reload after a
//           start and the later ones are shown apart).
// Nothing is pinned by default, as the daemon runs: parse and compile use both CPUs; the apply
// shares the second with the prober. --apply_cpu pins them all to one CPU (earlier figures).
// While each reload's apply runs, a prober on the other CPU runs the loaded XDP program through
// BPF_PROG_TEST_RUN (bench/bwbench.bpf.c's wrapper writes a new source address into the frame on
// every run) with sources inside prefixes kept by both versions, half of them where a kept and a
// changed prefix overlap (a kept /32 inside a removed /24, a removed /24 inside a kept /16): every
// one is blocked in both versions, so any PASS is a hole. Passes are counted from the program's own
// counters (packets − block_drops), so every run counts, not only the last of a repeat.
// Baselines in the same rounds: the same prefixes inserted into plain LPM tries element by element
// (bpf_map_update_elem), and `ipset restore` of the same set (hash:net), and of the 1 % diff.
// Memory: every map of the loaded programs (fdinfo memlock, the kernel's own accounting) with the
// full list applied, and the RSS of a real `bannerwatch run` holding the same policy (after start
// and after a 1 % reload through its inotify watch, with the apply times it logs).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/lib/bpfbench.hpp"
#include "bench/lib/daemon_proc.hpp"
#include "bench/lib/feeds.hpp"
#include "bench/lib/report.hpp"
#include "bench/lib/sys.hpp"
#include "bench/lib/traffic.hpp"
#include "daemon/dataplane/apply.hpp"
#include "daemon/policy/feeds.hpp"
#include "daemon/dataplane/libbpf_log.hpp"
#include "daemon/dataplane/loader.hpp"
#include "daemon/policy/policy.hpp"
#include "maps/maps.hpp"

ABSL_FLAG(std::string, out, "", "write the result fragment (JSON) here");
ABSL_FLAG(int, prefixes, 1000000, "prefixes in the list");
ABSL_FLAG(double, change, 0.01, "share of the prefixes replaced by the reload");
ABSL_FLAG(int, rounds, 3, "rounds (median)");
ABSL_FLAG(uint64_t, seed, 5, "seed of the prefix set");
ABSL_FLAG(int, apply_cpu, -1,
          "pin the parse/compile/apply (this thread and the threads it starts) to this CPU; -1: "
          "not pinned, as the daemon runs");
ABSL_FLAG(bool, premade, true,
          "make the first reload's buffers after the start, as the daemon does on a thread "
          "(keep_reload_buffers); false: the first reload allocates its tables");
ABSL_FLAG(int, reloads, 3, "reloads per round: the first after the start, then back and forth");
ABSL_FLAG(int, probe_cpu, 1, "CPU of the concurrent prober");
ABSL_FLAG(int, probe_batch, 64, "runs per BPF_PROG_TEST_RUN call of the prober");
ABSL_FLAG(std::string, dir, "/tmp", "directory for the policy, the list file, the daemon's files");
ABSL_FLAG(bool, baselines, true, "plain LPM trie and ipset baselines");
ABSL_FLAG(bool, daemon, true, "the real daemon's memory");
ABSL_FLAG(std::string, bannerwatch, "", "the bannerwatch binary (default: this build's)");
ABSL_FLAG(bool, verbose, false, "libbpf debug output");

namespace bw::bench {
namespace {


std::string Secs(double s) {
  return s >= 1 ? absl::StrFormat("%.2f s", s) : absl::StrFormat("%.1f ms", s * 1e3);
}
std::string MiB(double bytes) { return absl::StrFormat("%.1f MiB", bytes / 1048576.0); }

std::string ListText(const std::vector<const Prefix*>& v) {
  std::string s;
  s.reserve(v.size() * 18);
  absl::StrAppend(&s, "# bench/policy_cost: feed-shaped prefixes (bench/lib/feeds.hpp)\n");
  for (const Prefix* p : v) absl::StrAppend(&s, p->ToString(), "\n");
  return s;
}

// fdinfo "memlock:" of a BPF object fd: the kernel's accounting of the map's memory.
uint64_t MemlockOf(int fd) {
  std::ifstream f(absl::StrCat("/proc/self/fdinfo/", fd));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("memlock:", 0) == 0) return std::strtoull(line.c_str() + 8, nullptr, 10);
  }
  return 0;
}

struct MapMem {
  std::string name, type;
  uint32_t max_entries = 0, key = 0, value = 0, flags = 0;
  uint64_t memlock = 0;
};

// Every map the given programs use (by id, deduplicated), with its memlock.
absl::StatusOr<std::vector<MapMem>> MapsOf(const std::vector<int>& prog_fds) {
  std::vector<uint32_t> ids;
  for (int pfd : prog_fds) {
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(pfd, &info, &len) != 0)
      return ErrnoStatus("prog", "bpf_obj_get_info_by_fd", errno);
    std::vector<uint32_t> m(info.nr_map_ids);
    bpf_prog_info info2{};
    info2.nr_map_ids = static_cast<uint32_t>(m.size());
    info2.map_ids = reinterpret_cast<uint64_t>(m.data());
    len = sizeof(info2);
    if (bpf_obj_get_info_by_fd(pfd, &info2, &len) != 0)
      return ErrnoStatus("prog", "bpf_obj_get_info_by_fd(map_ids)", errno);
    for (uint32_t id : m)
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  std::vector<MapMem> out;
  for (uint32_t id : ids) {
    Fd fd(bpf_map_get_fd_by_id(id));
    if (!fd.valid()) return ErrnoStatus(absl::StrCat("map id ", id), "bpf_map_get_fd_by_id", errno);
    bpf_map_info mi{};
    uint32_t len = sizeof(mi);
    if (bpf_obj_get_info_by_fd(fd.get(), &mi, &len) != 0)
      return ErrnoStatus("map", "bpf_obj_get_info_by_fd", errno);
    MapMem mm;
    mm.name = mi.name;
    const char* t = libbpf_bpf_map_type_str(static_cast<bpf_map_type>(mi.type));
    mm.type = t ? t : absl::StrCat(mi.type);
    mm.max_entries = mi.max_entries;
    mm.key = mi.key_size;
    mm.value = mi.value_size;
    mm.flags = mi.map_flags;
    mm.memlock = MemlockOf(fd.get());
    out.push_back(mm);
  }
  std::sort(out.begin(), out.end(), [](const MapMem& a, const MapMem& b) { return a.memlock > b.memlock; });
  return out;
}

// One reload: the list file rewritten, then parse, compile and apply (probed).
struct Reload {
  double parse = 0, compile = 0, apply = 0;
  uint64_t probes = 0, passes = 0, probe_calls = 0;  // during the apply
  std::string stats;
  double total() const { return parse + compile + apply; }
  nlohmann::json ToJson() const {
    return {{"parse_s", parse}, {"compile_s", compile}, {"apply_s", apply}, {"total_s", total()},
            {"apply_stats", stats}, {"during_apply_probes", probes},
            {"during_apply_passes", passes}, {"calls", probe_calls}};
  }
};

struct Round {
  double parse = 0, compile = 0, apply = 0;  // start
  // reloads[0]: the first after the start (A -> B); then back and forth (B -> A, A -> B, ...).
  std::vector<Reload> reloads;
  uint64_t pre_probes = 0, pre_passes = 0, post_probes = 0, post_passes = 0;
  double plain_trie = -1, ipset_full = -1, ipset_diff = -1;
  double premade = -1;  // making the first reload's buffers after the start (--premade)
  std::string start_stats;
  double start_total() const { return parse + compile + apply; }
  nlohmann::json ToJson() const {
    nlohmann::json rl = nlohmann::json::array();
    for (const Reload& r : reloads) rl.push_back(r.ToJson());
    return {{"start", {{"parse_s", parse}, {"compile_s", compile}, {"apply_s", apply},
                       {"total_s", start_total()}, {"apply_stats", start_stats}}},
            {"premade_buffers_s", premade},
            {"reloads", rl},
            {"probe", {{"before_probes", pre_probes}, {"before_passes", pre_passes},
                       {"after_probes", post_probes}, {"after_passes", post_passes}}},
            {"baselines", {{"plain_lpm_trie_s", plain_trie}, {"ipset_restore_s", ipset_full},
                           {"ipset_restore_diff_s", ipset_diff}}}};
  }
};

class PolicyCost {
 public:
  absl::Status Run();
  ~PolicyCost() { Cleanup(); }
  Section section;

 private:
  absl::Status Setup();
  void Cleanup();
  absl::Status LoadDataPlane();
  absl::Status UnloadDataPlane();
  absl::StatusOr<Round> OneRound(int r, bool last);
  // Runs the prober on --probe_cpu until `stop`; returns (runs counted by the program, passes).
  absl::Status Probe(const std::function<absl::Status()>& during, uint64_t* probes,
                     uint64_t* passes, uint64_t* calls);
  absl::StatusOr<double> PlainTrie();
  absl::StatusOr<double> IpsetRestore(const std::string& input, bool destroy_after);
  absl::Status DaemonMemory(const std::string& policy, nlohmann::json* out);

  std::string dir_, pin_parent_, pin_root_, policy_path_, list_path_, text_a_, text_b_;
  size_t n_ = 0, nchange_ = 0;
  std::vector<Prefix> all_;                 // n_ + nchange_ prefixes
  std::vector<const Prefix*> a_, b_;        // version A (n_), version B (A minus removed plus added)
  std::vector<const Prefix*> removed_, added_;
  std::string ipset_full_, ipset_diff_;
  std::unique_ptr<Netns> ns_;
  std::unique_ptr<DataPlane> dp_;
  MapSet maps_;
  std::unique_ptr<BenchProgs> progs_;
  std::vector<MapMem> map_mem_;
  size_t risky_ = 0;
};

absl::Status PolicyCost::Setup() {
  pid_t pid = getpid();
  std::string tmpl = absl::StrCat(absl::GetFlag(FLAGS_dir), "/bwbench-policy-XXXXXX");
  if (!mkdtemp(tmpl.data())) return ErrnoStatus(tmpl, "mkdtemp", errno);
  dir_ = tmpl;
  policy_path_ = dir_ + "/policy.yaml";
  list_path_ = dir_ + "/feed.txt";
  pin_parent_ = absl::StrCat("/sys/fs/bpf/bwbench-", pid);
  if (::mkdir(pin_parent_.c_str(), 0700) != 0 && errno != EEXIST)
    return ErrnoStatus(pin_parent_, "mkdir", errno);
  pin_root_ = pin_parent_ + "/policy";

  auto ns = Netns::Create("pol");
  if (!ns.ok()) return ns.status();
  ns_ = std::move(*ns);
  // bwbp0: the loaded XDP program; bwbp1: the prober's wrapper (an attached program keeps its
  // place in the XDP dispatcher, so BPF_PROG_TEST_RUN does not rebuild it per call); bwbd0: the
  // real daemon's interface.
  for (const char* cmd : {"ip link add bwbp0 type veth peer name bwbp1",
                          "ip link add bwbd0 type veth peer name bwbd1"}) {
    auto r = ns_->Sh(cmd);
    if (!r.ok()) return r.status();
  }
  auto p = BenchProgs::Load();
  if (!p.ok()) return p.status();
  progs_ = std::move(*p);

  // The prefixes: version A is the first n; the reload replaces nchange of them (drawn at random)
  // by the next nchange of the same sequence.
  double t0 = MonotonicSeconds();
  all_ = FeedPrefixes(n_ + nchange_, absl::GetFlag(FLAGS_seed));
  Rng rng(absl::GetFlag(FLAGS_seed) + 7);
  std::vector<bool> gone(n_, false);
  size_t k = 0;
  while (k < nchange_) {
    size_t i = rng.Below(n_);
    if (!gone[i]) {
      gone[i] = true;
      ++k;
    }
  }
  for (size_t i = 0; i < n_; ++i) {
    a_.push_back(&all_[i]);
    if (gone[i]) removed_.push_back(&all_[i]);
    else b_.push_back(&all_[i]);
  }
  for (size_t i = n_; i < n_ + nchange_; ++i) {
    b_.push_back(&all_[i]);
    added_.push_back(&all_[i]);
  }
  text_a_ = ListText(a_);
  text_b_ = ListText(b_);
  std::string yaml = absl::StrCat(
      "# bench/policy_cost: one block list from a feed-shaped file\n"
      "ports: [443]\n"
      "lists:\n"
      "  - name: bench-feed\n"
      "    action: block\n"
      "    reason: \"benchmark feed\"\n"
      "    files: [feed.txt]\n");
  absl::Status st = WriteFileAtomically(policy_path_, yaml);
  if (!st.ok()) return st;

  // ipset inputs: the full set, and the diff (del + add) the reload would be for ipset.
  ipset_full_ =
      "create bwb4 hash:net family inet hashsize 1048576 maxelem 4194304\n"
      "create bwb6 hash:net family inet6 hashsize 65536 maxelem 1048576\n";
  for (const Prefix* q : a_) absl::StrAppend(&ipset_full_, "add bwb", q->is_v4() ? 4 : 6, " ", q->ToString(), "\n");
  for (const Prefix* q : removed_) absl::StrAppend(&ipset_diff_, "del bwb", q->is_v4() ? 4 : 6, " ", q->ToString(), "\n");
  for (const Prefix* q : added_) absl::StrAppend(&ipset_diff_, "add bwb", q->is_v4() ? 4 : 6, " ", q->ToString(), "\n");

  // Probe sources: addresses inside prefixes kept by both versions (all BLOCK, so blocked in
  // both). Half where a kept prefix and a changed one overlap (the addresses a reload could
  // break), half anywhere in the kept prefixes.
  std::vector<Prefix> kept;
  for (const Prefix* q : b_)
    if (!(q >= &all_[n_])) kept.push_back(*q);  // in A and in B
  std::vector<std::pair<uint32_t, uint8_t>> kept4;  // (network, len), sorted
  absl::flat_hash_set<uint32_t> by_len[33];
  for (const Prefix& q : kept)
    if (q.is_v4()) {
      kept4.emplace_back(q.v4(), q.len);
      by_len[q.len].insert(q.v4());
    }
  std::sort(kept4.begin(), kept4.end());
  std::vector<uint32_t> risky;
  std::vector<const Prefix*> changed = removed_;
  changed.insert(changed.end(), added_.begin(), added_.end());
  for (const Prefix* c : changed) {
    if (!c->is_v4()) continue;
    uint32_t lo = c->v4(), hi = lo | ~V4Mask(c->len);
    // Kept prefixes inside the changed one: an address in the kept (more specific) prefix.
    for (auto it = std::lower_bound(kept4.begin(), kept4.end(), std::make_pair(lo, uint8_t{0}));
         it != kept4.end() && it->first <= hi; ++it)
      if (it->second >= c->len)
        risky.push_back(it->first | (static_cast<uint32_t>(rng.Next()) & ~V4Mask(it->second)));
    // Kept prefixes covering the changed one: an address in the changed prefix.
    for (int l = 0; l < c->len; ++l)
      if (by_len[l].contains(lo & V4Mask(l)))
        risky.push_back(lo | (static_cast<uint32_t>(rng.Next()) & ~V4Mask(c->len)));
  }
  risky_ = risky.size();
  std::vector<uint32_t> sources = CoveredSources(kept, 65536, absl::GetFlag(FLAGS_seed) + 11);
  for (size_t i = 0; i < risky.size() && i < sources.size() / 2; ++i) sources[2 * i] = risky[i];
  if (risky.size() < sources.size() / 2)
    for (size_t i = risky.size(); i < sources.size() / 2 && !risky.empty(); ++i)
      sources[2 * i] = risky[i % risky.size()];
  Traffic t = MakeTraffic("kept", Kind::kTcpUnwatched, sources);
  st = progs_->SetTraffic(t);
  if (!st.ok()) return st;
  std::fprintf(stderr,
               "policy_cost: %zu prefixes, %zu replaced; %zu probe addresses where kept and "
               "changed prefixes overlap; generated in %.2f s\n",
               n_, nchange_, risky_, MonotonicSeconds() - t0);
  return absl::OkStatus();
}

absl::Status PolicyCost::LoadDataPlane() {
  if (absl::Status st = LoadFreshDataPlane(pin_root_, &dp_, &maps_); !st.ok()) return st;
  absl::Status st = progs_->SetTargets(dp_->xdp_fd(), dp_->xdp_fd());
  if (!st.ok()) return st;
  st = AttachXdp(ns_->name(), "bwbp0", dp_->xdp_fd());
  if (!st.ok()) return st;
  return AttachXdp(ns_->name(), "bwbp1", progs_->wrap_bw_fd());
}

absl::Status PolicyCost::UnloadDataPlane() {
  if (!dp_) return absl::OkStatus();
  (void)AttachXdp(ns_->name(), "bwbp0", -1);
  (void)AttachXdp(ns_->name(), "bwbp1", -1);
  maps_ = MapSet();
  absl::Status st = dp_->UnpinMaps();
  dp_.reset();
  return st;
}

void PolicyCost::Cleanup() {
  (void)UnloadDataPlane();
  progs_.reset();
  ns_.reset();
  std::error_code ec;
  if (!pin_parent_.empty()) std::filesystem::remove_all(pin_parent_, ec);
  pin_parent_.clear();
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  dir_.clear();
}

absl::Status PolicyCost::Probe(const std::function<absl::Status()>& during, uint64_t* probes,
                               uint64_t* passes, uint64_t* calls) {
  auto c0 = maps_.ReadCounters(BW_DIR_INGRESS);
  if (!c0.ok()) return c0.status();
  std::atomic<bool> started{false}, stop{false};
  absl::Status pst;
  uint64_t n_calls = 0;
  uint32_t batch = static_cast<uint32_t>(absl::GetFlag(FLAGS_probe_batch));
  test::Bytes frame = MakeTraffic("kept", Kind::kTcpUnwatched, {0xcb007100u}).frame;
  std::thread prober([&] {
    pst = PinThisThread(absl::GetFlag(FLAGS_probe_cpu));
    started = true;
    if (!pst.ok()) return;
    while (!stop.load(std::memory_order_relaxed)) {
      auto r = RunXdp(progs_->wrap_bw_fd(), frame, batch);
      if (!r.ok()) {
        pst = r.status();
        return;
      }
      ++n_calls;
    }
  });
  while (!started) usleep(100);
  usleep(2000);  // the prober is running
  absl::Status st = during();
  stop = true;
  prober.join();
  if (!st.ok()) return st;
  if (!pst.ok()) return pst;
  auto c1 = maps_.ReadCounters(BW_DIR_INGRESS);
  if (!c1.ok()) return c1.status();
  *probes = (*c1)[BW_CNT_packets] - (*c0)[BW_CNT_packets];
  *passes = *probes - ((*c1)[BW_CNT_block_drops] - (*c0)[BW_CNT_block_drops]);
  *calls = n_calls;
  if (*probes != n_calls * batch)
    return absl::InternalError(absl::StrCat("prober: ", n_calls * batch, " runs, the program counted ",
                                            *probes, " packets"));
  return absl::OkStatus();
}

absl::StatusOr<Round> PolicyCost::OneRound(int r, bool last) {
  Round rd;
  absl::Status st = LoadDataPlane();
  if (!st.ok()) return st;
  st = WriteFileAtomically(list_path_, text_a_);
  if (!st.ok()) return st;
  if (Stopped()) return StoppedStatus();

  // Start: parse, compile, apply onto empty maps, as the daemon's Reload("start").
  double t0 = MonotonicSeconds();
  auto pol = LoadPolicyFile(policy_path_);
  if (!pol.ok()) return pol.status();
  double t1 = MonotonicSeconds();
  auto comp = Compile(*pol, absl::Now(), nullptr);
  if (!comp.ok()) return comp.status();
  double t2 = MonotonicSeconds();
  auto ast = ApplyPolicy(*comp, maps_, ApplyOptions{});
  if (!ast.ok()) return ast.status();
  double t3 = MonotonicSeconds();
  rd.parse = t1 - t0;
  rd.compile = t2 - t1;
  rd.apply = t3 - t2;
  rd.start_stats = ast->ToString();
  auto applied = std::make_unique<CompiledPolicy>(std::move(*comp));
  std::fprintf(stderr, "policy_cost: round %d start: parse %.3f s, compile %.3f s, apply %.3f s (%s)\n",
               r, rd.parse, rd.compile, rd.apply, rd.start_stats.c_str());

  if (last) {
    auto mm = MapsOf({dp_->xdp_fd(), dp_->tc_fd()});
    if (!mm.ok()) return mm.status();
    map_mem_ = *mm;
  }
  // Every kept address is blocked before the reload.
  uint64_t calls = 0;
  st = Probe([] { usleep(20000); return absl::OkStatus(); }, &rd.pre_probes, &rd.pre_passes,
             &calls);
  if (!st.ok()) return st;

  // The reloads: the file rewritten (rename, as config management does), then what
  // Daemon::Reload does: parse, compile with the previous ids, apply as a diff against memory.
  // The first goes A -> B, then B -> A, A -> B, ...: each replaces the same 1 %.
  int nreloads = absl::GetFlag(FLAGS_reloads);
  std::unique_ptr<CompiledPolicy> spare;
  Policy spare_pol;
  if (absl::GetFlag(FLAGS_premade)) {
    // What the daemon does on a thread after its start (keep_reload_buffers): the first reload's
    // buffers, made ahead, so it writes into mapped pages as the later ones do.
    double b0 = MonotonicSeconds();
    PrepareFeedSpares();
    ReloadBuffers b = MakeReloadBuffers(ReloadBufferSizesOf(*pol, *applied));
    rd.premade = MonotonicSeconds() - b0;
    spare = std::move(b.compiled);
    spare_pol = std::move(b.policy);
  }
  for (int k = 0; k < nreloads; ++k) {
    Reload rl;
    st = WriteFileAtomically(list_path_, k % 2 == 0 ? text_b_ : text_a_);
    if (!st.ok()) return st;
    if (Stopped()) return StoppedStatus();
    t0 = MonotonicSeconds();
    auto pol2 = LoadPolicyFile(policy_path_, &spare_pol);
    if (!pol2.ok()) return pol2.status();
    t1 = MonotonicSeconds();
    auto comp2 = Compile(*pol2, absl::Now(), applied.get(), spare.get());
    if (!comp2.ok()) return comp2.status();
    t2 = MonotonicSeconds();
    absl::StatusOr<ApplyStats> rst;
    st = Probe(
        [&]() -> absl::Status {
          double a0 = MonotonicSeconds();
          ApplyOptions ao;
          ao.applied = applied.get();
          rst = ApplyPolicy(*comp2, maps_, ao);
          rl.apply = MonotonicSeconds() - a0;
          return rst.status();
        },
        &rl.probes, &rl.passes, &rl.probe_calls);
    if (!st.ok()) return st;
    rl.parse = t1 - t0;
    rl.compile = t2 - t1;
    rl.stats = rst->ToString();
    std::fprintf(stderr,
                 "policy_cost: round %d reload %d: parse %.3f s, compile %.3f s, apply %.3f s (%s); "
                 "%llu probes during the apply, %llu passed\n",
                 r, k + 1, rl.parse, rl.compile, rl.apply, rl.stats.c_str(),
                 static_cast<unsigned long long>(rl.probes),
                 static_cast<unsigned long long>(rl.passes));
    rd.reloads.push_back(rl);
    // What the daemon keeps: the new policy replaces the applied one, which is kept for the next
    // reload to write into (Daemon::Reload's spare_ and spare_policy_).
    spare = std::move(applied);
    applied = std::make_unique<CompiledPolicy>(std::move(*comp2));
    spare_pol = std::move(*pol);
    pol = std::move(pol2);
  }
  st = Probe([] { usleep(20000); return absl::OkStatus(); }, &rd.post_probes, &rd.post_passes,
             &calls);
  if (!st.ok()) return st;
  std::fprintf(stderr, "policy_cost: round %d: before the reloads %llu/%llu passed, after %llu/%llu\n",
               r, static_cast<unsigned long long>(rd.pre_passes),
               static_cast<unsigned long long>(rd.pre_probes),
               static_cast<unsigned long long>(rd.post_passes),
               static_cast<unsigned long long>(rd.post_probes));
  applied.reset();
  st = UnloadDataPlane();
  if (!st.ok()) return st;

  if (absl::GetFlag(FLAGS_baselines)) {
    if (Stopped()) return StoppedStatus();
    auto pt = PlainTrie();
    if (!pt.ok()) return pt.status();
    rd.plain_trie = *pt;
    auto full = IpsetRestore(ipset_full_, false);
    if (!full.ok()) return full.status();
    rd.ipset_full = *full;
    auto diff = IpsetRestore(ipset_diff_, true);
    if (!diff.ok()) return diff.status();
    rd.ipset_diff = *diff;
    std::fprintf(stderr,
                 "policy_cost: round %d baselines: plain LPM tries %.3f s, ipset restore %.3f s, "
                 "ipset restore of the diff %.3f s\n",
                 r, rd.plain_trie, rd.ipset_full, rd.ipset_diff);
  }
  return rd;
}

// The same prefixes into plain LPM tries (the daemon's key and value layout, no pre-filter, no
// diff, no compile), element by element.
absl::StatusOr<double> PolicyCost::PlainTrie() {
  LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = BPF_F_NO_PREALLOC);
  Fd v4(bpf_map_create(BPF_MAP_TYPE_LPM_TRIE, "bwb_plain_v4", sizeof(bw_lpm_v4_key),
                       sizeof(bw_list_value), BW_V4_ENTRIES_DEFAULT, &o));
  if (!v4.valid()) return ErrnoStatus("bwb_plain_v4", "bpf_map_create", errno);
  Fd v6(bpf_map_create(BPF_MAP_TYPE_LPM_TRIE, "bwb_plain_v6", sizeof(bw_lpm_v6_key),
                       sizeof(bw_list_value), BW_V6_ENTRIES_DEFAULT, &o));
  if (!v6.valid()) return ErrnoStatus("bwb_plain_v6", "bpf_map_create", errno);
  bw_list_value val{};
  val.list_id = 1;
  val.action = BW_ACTION_BLOCK;
  double t0 = MonotonicSeconds();
  uint32_t ref = 0;
  for (const Prefix* p : a_) {
    val.entry_ref = ++ref;
    val.prefixlen = p->len;
    int err;
    if (p->is_v4()) {
      bw_lpm_v4_key k{p->len, {}};
      std::memcpy(k.addr, p->addr.data(), 4);
      err = bpf_map_update_elem(v4.get(), &k, &val, BPF_ANY);
    } else {
      bw_lpm_v6_key k{p->len, {}};
      std::memcpy(k.addr, p->addr.data(), 16);
      err = bpf_map_update_elem(v6.get(), &k, &val, BPF_ANY);
    }
    if (err) return ErrnoStatus("plain trie", "bpf_map_update_elem", errno);
  }
  return MonotonicSeconds() - t0;
}

absl::StatusOr<double> PolicyCost::IpsetRestore(const std::string& input, bool destroy_after) {
  double t0 = MonotonicSeconds();
  auto r = ns_->ShInput("ipset restore", input);
  if (!r.ok()) return r.status();
  double s = MonotonicSeconds() - t0;
  if (destroy_after) {
    auto d = ns_->Sh("ipset destroy bwb4 && ipset destroy bwb6");
    if (!d.ok()) return d.status();
  }
  return s;
}

// A real `bannerwatch run` holding the policy: RSS after start, after a 1 % reload (the file
// rewritten; the daemon's inotify watch reloads it), and the apply lines it logs.
absl::Status PolicyCost::DaemonMemory(const std::string& policy, nlohmann::json* out) {
  absl::Status st = WriteFileAtomically(list_path_, text_a_);
  if (!st.ok()) return st;
  std::string bin = absl::GetFlag(FLAGS_bannerwatch);
  if (bin.empty()) bin = BannerwatchBinary();
  DaemonProc d;
  std::string log = dir_ + "/daemon.log";
  st = d.Start(bin,
               {"--config", policy, "--iface", "bwbd0", "--pin-root", pin_parent_ + "/daemon",
                "--no-eve-file", "--control", dir_ + "/control.sock", "--metrics", "off", "--state",
                dir_ + "/state.json"},
               ns_->name(), -1, log, 120);
  if (!st.ok()) return st;
  usleep(300000);
  auto m0 = d.Memory();
  if (!m0.ok()) return m0.status();
  st = WriteFileAtomically(list_path_, text_b_);
  if (!st.ok()) return st;
  double t0 = MonotonicSeconds();
  bool reloaded = false;
  while (MonotonicSeconds() - t0 < 60 && !Stopped()) {
    if (d.LogTail(100000).find("applied (file changed)") != std::string::npos) {
      reloaded = true;
      break;
    }
    usleep(20000);
  }
  usleep(300000);
  auto m1 = d.Memory();
  if (!m1.ok()) return m1.status();
  std::string text = d.LogTail(100000);
  st = d.Stop();
  if (!st.ok()) return st;
  std::vector<std::string> applied_lines;
  for (absl::string_view l : absl::StrSplit(text, '\n'))
    if (l.find(" applied (") != absl::string_view::npos) applied_lines.emplace_back(l);
  *out = {{"startup_seconds", d.startup_seconds()},
          {"after_start_kib", {{"rss", m0->rss_kib}, {"hwm", m0->hwm_kib},
                               {"rss_anon", m0->rss_anon_kib}, {"rss_file", m0->rss_file_kib}}},
          {"after_reload_kib", {{"rss", m1->rss_kib}, {"hwm", m1->hwm_kib},
                                {"rss_anon", m1->rss_anon_kib}, {"rss_file", m1->rss_file_kib}}},
          {"reloaded", reloaded},
          {"log_applied", applied_lines}};
  std::fprintf(stderr,
               "policy_cost: daemon: running after %.2f s; VmRSS %.1f MiB (VmHWM %.1f MiB); after "
               "the 1 %% reload VmRSS %.1f MiB (VmHWM %.1f MiB)%s\n",
               d.startup_seconds(), m0->rss_kib / 1024.0, m0->hwm_kib / 1024.0,
               m1->rss_kib / 1024.0, m1->hwm_kib / 1024.0, reloaded ? "" : " (no reload seen)");
  return absl::OkStatus();
}

absl::Status PolicyCost::Run() {
  n_ = static_cast<size_t>(absl::GetFlag(FLAGS_prefixes));
  nchange_ = static_cast<size_t>(static_cast<double>(n_) * absl::GetFlag(FLAGS_change) + 0.5);
  int rounds = absl::GetFlag(FLAGS_rounds);
  if (n_ == 0 || nchange_ == 0 || nchange_ > n_ || rounds < 1)
    return absl::InvalidArgumentError("--prefixes, --change, --rounds");
  if (absl::GetFlag(FLAGS_reloads) < 1) return absl::InvalidArgumentError("--reloads");
  absl::Status st;
  if (absl::GetFlag(FLAGS_apply_cpu) >= 0) {
    st = PinThisThread(absl::GetFlag(FLAGS_apply_cpu));
    if (!st.ok()) return st;
  }
  st = Setup();
  if (!st.ok()) return st;

  std::vector<Round> rs;
  for (int r = 0; r < rounds; ++r) {
    auto rd = OneRound(r, r == rounds - 1);
    if (!rd.ok()) return rd.status();
    rs.push_back(*rd);
  }
  nlohmann::json daemon_mem, daemon_mem_keep;
  if (absl::GetFlag(FLAGS_daemon)) {
    st = DaemonMemory(policy_path_, &daemon_mem);  // the default settings
    if (!st.ok()) return st;
    // The same with keep_reload_buffers: true (spare tables held for the next reload).
    std::string keep = dir_ + "/policy-keep.yaml";
    auto yaml = ReadWholeFile(policy_path_);
    if (!yaml.ok()) return yaml.status();
    st = WriteFileAtomically(keep, absl::StrCat(*yaml, "keep_reload_buffers: true\n"));
    if (!st.ok()) return st;
    st = DaemonMemory(keep, &daemon_mem_keep);
    if (!st.ok()) return st;
  }

  auto col = [&](auto f) {
    std::vector<double> v;
    for (const Round& r : rs) v.push_back(f(r));
    return v;
  };
  auto minmax = [](const std::vector<double>& v) {
    auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return absl::StrCat(Secs(*lo), " – ", Secs(*hi));
  };
  bool base = absl::GetFlag(FLAGS_baselines);
  std::string nl = SizeLabel(n_), cl = SizeLabel(nchange_);

  section.part = 3;
  section.key = "policy_cost";
  section.title = absl::StrCat("Policy: parse and apply a ", nl,
                               "-prefix list, a reload that replaces ", cl,
                               " of them, and memory");
  section.columns = {"step", "median", "rounds (min – max)", "baseline (same run)", "÷ baseline",
                     "target"};
  auto row = [&](const std::string& step, const std::vector<double>& v, const std::string& bname,
                 const std::vector<double>& b, const std::string& target) {
    std::string bcol, ratio;
    if (!b.empty() && b[0] >= 0) {
      bcol = absl::StrCat(bname, " ", Secs(Median(b)));
      std::vector<double> ratios;
      for (size_t i = 0; i < v.size() && i < b.size(); ++i) ratios.push_back(v[i] / b[i]);
      ratio = absl::StrFormat("%.2fx", Median(ratios));
    }
    section.rows.push_back({step, Secs(Median(v)), minmax(v), bcol, ratio, target});
  };
  std::vector<double> none;
  double start_total = Median(col([](const Round& r) { return r.start_total(); }));
  // The first reload after the start, and the later ones (every round's, pooled).
  auto first = [&](auto f) {
    std::vector<double> v;
    for (const Round& r : rs) v.push_back(f(r.reloads[0]));
    return v;
  };
  auto later = [&](auto f) {
    std::vector<double> v;
    for (const Round& r : rs)
      for (size_t k = 1; k < r.reloads.size(); ++k) v.push_back(f(r.reloads[k]));
    return v;
  };
  auto parse_of = [](const Reload& x) { return x.parse; };
  auto compile_of = [](const Reload& x) { return x.compile; };
  auto apply_of = [](const Reload& x) { return x.apply; };
  auto total_of = [](const Reload& x) { return x.total(); };
  double reload_total = Median(first(total_of));
  std::vector<double> later_totals = later(total_of);
  double later_total = later_totals.empty() ? -1 : Median(later_totals);
  row(absl::StrCat(nl, ": parse (policy YAML + list file)"), col([](const Round& r) { return r.parse; }),
      "", none, "");
  row(absl::StrCat(nl, ": compile"), col([](const Round& r) { return r.compile; }), "", none, "");
  row(absl::StrCat(nl, ": first apply (tries, then pre-filter)"),
      col([](const Round& r) { return r.apply; }), "plain LPM tries",
      base ? col([](const Round& r) { return r.plain_trie; }) : none, "");
  bool start_ok = start_total <= 2.0;
  row(absl::StrCat(nl, ": parse + compile + apply"),
      col([](const Round& r) { return r.start_total(); }), "ipset restore",
      base ? col([](const Round& r) { return r.ipset_full; }) : none,
      n_ == 1000000 ? absl::StrCat("<= 2 s ", start_ok ? "holds" : "MISSED") : "(<= 2 s at 1 M)");
  bool reload_ok = reload_total <= 0.1, later_ok = later_total >= 0 && later_total <= 0.1;
  auto target = [&](bool ok) {
    return n_ == 1000000 ? absl::StrCat("<= 100 ms ", ok ? "holds" : "MISSED") : "(<= 100 ms at 1 M)";
  };
  auto reload_rows = [&](const std::string& which, auto pick, bool ok) {
    row(absl::StrCat(which, ": parse"), pick(parse_of), "", none, "");
    row(absl::StrCat(which, ": compile"), pick(compile_of), "", none, "");
    row(absl::StrCat(which, ": apply (diff against the applied policy)"), pick(apply_of),
        "ipset restore of the diff", base ? col([](const Round& r) { return r.ipset_diff; }) : none,
        "");
    row(absl::StrCat(which, ": parse + compile + apply"), pick(total_of), "", none, target(ok));
  };
  if (absl::GetFlag(FLAGS_premade))
    row("the first reload's buffers, made after the start (the daemon: on a thread)",
        col([](const Round& r) { return r.premade; }), "", none, "");
  reload_rows(absl::StrCat("first reload after the start, ", cl, " replaced",
                           absl::GetFlag(FLAGS_premade) ? "" : " (no buffers made ahead)"),
              first, reload_ok);
  if (!later_totals.empty())
    reload_rows(absl::StrCat(rs[0].reloads.size() == 2 ? std::string("the second reload")
                                                      : absl::StrCat("reloads 2 to ", rs[0].reloads.size()),
                             ", ", cl, " replaced"),
                later, later_ok);
  uint64_t probes = 0, passes = 0, around = 0, around_passes = 0;
  for (const Round& r : rs) {
    for (const Reload& x : r.reloads) {
      probes += x.probes;
      passes += x.passes;
    }
    around += r.pre_probes + r.post_probes;
    around_passes += r.pre_passes + r.post_passes;
  }
  section.rows.push_back(
      {"reloads: kept-and-blocked sources probed during the applies (all)",
       absl::StrFormat("%llu probes, %llu passed", static_cast<unsigned long long>(probes),
                       static_cast<unsigned long long>(passes)),
       "", absl::StrFormat("before/after: %llu probes, %llu passed",
                           static_cast<unsigned long long>(around),
                           static_cast<unsigned long long>(around_passes)),
       "", absl::StrCat("0 pass ", passes == 0 && probes > 0 ? "holds" : "MISSED")});
  uint64_t map_total = 0;
  for (const MapMem& m : map_mem_) map_total += m.memlock;
  for (const MapMem& m : map_mem_) {
    if (m.memlock < 64 * 1024 && m.name.rfind("bw_", 0) == 0 && m.name != "bw_watch_v6") continue;
    section.rows.push_back({absl::StrCat("map ", m.name, " (", m.type, ", ", m.max_entries, " max)"),
                            MiB(static_cast<double>(m.memlock)), "", "", "", ""});
  }
  section.rows.push_back({absl::StrCat("maps, all ", map_mem_.size(), " (memlock, ", nl, " applied)"),
                          MiB(static_cast<double>(map_total)), "", "", "", ""});
  if (!daemon_mem.is_null()) {
    const auto& a = daemon_mem["after_start_kib"];
    const auto& b = daemon_mem["after_reload_kib"];
    // The issue 13 target: under 256 MiB resident with the default settings.
    auto held = [](double kib) { return kib < 256.0 * 1024 ? "< 256 MiB holds" : "< 256 MiB MISSED"; };
    section.rows.push_back({absl::StrCat("daemon `bannerwatch run` with ", nl,
                                         ", default settings: VmRSS after start"),
                            MiB(a["rss"].get<double>() * 1024), "",
                            absl::StrCat("VmHWM ", MiB(a["hwm"].get<double>() * 1024)), "",
                            held(a["rss"].get<double>())});
    section.rows.push_back({"daemon, default settings: VmRSS after the 1 % reload",
                            MiB(b["rss"].get<double>() * 1024), "",
                            absl::StrCat("VmHWM ", MiB(b["hwm"].get<double>() * 1024)), "",
                            held(b["rss"].get<double>())});
    const auto& c = daemon_mem_keep["after_start_kib"];
    const auto& d = daemon_mem_keep["after_reload_kib"];
    section.rows.push_back({"daemon, keep_reload_buffers: true: VmRSS after start",
                            MiB(c["rss"].get<double>() * 1024), "",
                            absl::StrCat("VmHWM ", MiB(c["hwm"].get<double>() * 1024)), "", ""});
    section.rows.push_back({"daemon, keep_reload_buffers: true: VmRSS after the 1 % reload",
                            MiB(d["rss"].get<double>() * 1024), "",
                            absl::StrCat("VmHWM ", MiB(d["hwm"].get<double>() * 1024)), "", ""});
  }

  FeedShape fs = Shape(all_, n_);
  section.notes.push_back(absl::StrFormat(
      "median of %d rounds, each on a fresh data plane; parse = LoadPolicyFile (the YAML and a "
      "plain list file of %s lines), compile = Compile, apply = ApplyPolicy, as Daemon::Reload "
      "calls them; %zu IPv4 (/24 %zu, /32 %zu, /8-/23 %zu, /25-/31 %zu) and %zu IPv6 prefixes, "
      "one block list, seed %d; %s",
      rounds, nl, fs.v4, fs.v4_24, fs.v4_32, fs.v4_8_23, fs.v4_25_31, fs.v6,
      static_cast<int>(absl::GetFlag(FLAGS_seed)),
      absl::GetFlag(FLAGS_apply_cpu) >= 0
          ? absl::StrCat("pinned to CPU ", absl::GetFlag(FLAGS_apply_cpu),
                         " with every thread it starts")
          : std::string("not pinned, as the daemon runs (parse and compile use both CPUs; the "
                        "apply shares one with the prober)")));
  section.notes.push_back(absl::StrFormat(
      "reloads: %d per round; the first rewrites the list file (rename) with %zu prefixes removed "
      "and %zu added, the later ones go back and forth between the two versions; the parse and "
      "compile are of the whole file again (what the daemon does on a file change); the apply "
      "diffs against the applied policy in memory (ApplyOptions::applied). The policy of each "
      "reload replaces the one before and is kept for the next one to write its tables into, as "
      "in the daemon (keep_reload_buffers); %s. Last apply: %s",
      static_cast<int>(rs[0].reloads.size()), nchange_, nchange_,
      absl::GetFlag(FLAGS_premade)
          ? "the first reload writes into buffers made after the start (MakeReloadBuffers and "
            "PrepareFeedSpares, on a thread in the daemon), not timed with it"
          : "the first reload has none (--premade=false)",
      rs.back().reloads.back().stats));
  section.notes.push_back(absl::StrFormat(
      "prober: BPF_PROG_TEST_RUN of the loaded XDP program on CPU %d during every reload's apply, "
      "%d runs per call, a new source on every run from 65536 addresses inside prefixes kept by "
      "both versions (every one blocked by both), half of them where a kept and a changed prefix "
      "overlap (%zu such addresses); passes = the program's packets − block_drops counters",
      absl::GetFlag(FLAGS_probe_cpu), absl::GetFlag(FLAGS_probe_batch), risky_));
  if (base)
    section.notes.push_back(
        "baselines: the same prefixes into two plain LPM tries (BPF_F_NO_PREALLOC, the daemon's "
        "key/value layout) with bpf_map_update_elem one by one, no parse or compile; `ipset "
        "restore` of hash:net sets (bwb4, bwb6) in the benchmark's namespace, and of the reload's "
        "diff as del/add lines");
  section.notes.push_back(
      "map memory: fdinfo memlock of every map the XDP and TC programs use, with the full list "
      "applied (the kernel's own accounting; bpftool map show prints the same); maps under 64 KiB "
      "are only in the total");
  if (!daemon_mem.is_null()) {
    auto log_lines = [](const nlohmann::json& mem) {
      std::string lines;
      for (const auto& l : mem["log_applied"]) {
        std::string s = l.get<std::string>();
        size_t at = s.find("bannerwatch: ");
        absl::StrAppend(&lines, lines.empty() ? "" : " | ",
                        at == std::string::npos ? s : s.substr(at + 13));
      }
      return lines;
    };
    section.notes.push_back(absl::StrFormat(
        "daemon: `bannerwatch run` (this build) in the benchmark's namespace with the same policy, "
        "no EVE file, running %.1f s after exec; then the list file rewritten (1 %% replaced) "
        "and reloaded through its inotify watch; its log: %s. Then once more, from the start, with "
        "keep_reload_buffers: true added to the policy; its log: %s",
        daemon_mem["startup_seconds"].get<double>(), log_lines(daemon_mem),
        log_lines(daemon_mem_keep)));
  }
  nlohmann::json rounds_j = nlohmann::json::array();
  for (const Round& r : rs) rounds_j.push_back(r.ToJson());
  nlohmann::json maps_j = nlohmann::json::array();
  for (const MapMem& m : map_mem_)
    maps_j.push_back({{"name", m.name}, {"type", m.type}, {"max_entries", m.max_entries},
                      {"key_size", m.key}, {"value_size", m.value}, {"flags", m.flags},
                      {"memlock", m.memlock}});
  section.results = {
      {"prefixes", n_},
      {"replaced", nchange_},
      {"medians",
       {{"start_parse_s", Median(col([](const Round& r) { return r.parse; }))},
        {"start_compile_s", Median(col([](const Round& r) { return r.compile; }))},
        {"start_apply_s", Median(col([](const Round& r) { return r.apply; }))},
        {"start_total_s", start_total},
        {"premade_buffers_s", Median(col([](const Round& r) { return r.premade; }))},
        {"reload_parse_s", Median(first(parse_of))},
        {"reload_compile_s", Median(first(compile_of))},
        {"reload_apply_s", Median(first(apply_of))},
        {"reload_total_s", reload_total},
        {"later_reload_parse_s", later_total >= 0 ? Median(later(parse_of)) : -1},
        {"later_reload_compile_s", later_total >= 0 ? Median(later(compile_of)) : -1},
        {"later_reload_apply_s", later_total >= 0 ? Median(later(apply_of)) : -1},
        {"later_reload_total_s", later_total},
        {"plain_lpm_trie_s", base ? Median(col([](const Round& r) { return r.plain_trie; })) : -1},
        {"ipset_restore_s", base ? Median(col([](const Round& r) { return r.ipset_full; })) : -1},
        {"ipset_restore_diff_s", base ? Median(col([](const Round& r) { return r.ipset_diff; })) : -1}}},
      {"targets",
       {{"start_total_le_2s", start_ok},
        {"reload_total_le_100ms", reload_ok},
        {"later_reload_total_le_100ms", later_ok},
        {"no_pass_during_reload", passes == 0 && probes > 0}}},
      {"probe", {{"during_apply_probes", probes}, {"during_apply_passes", passes},
                 {"around_probes", around}, {"around_passes", around_passes},
                 {"overlap_addresses", risky_}}},
      {"rounds", rounds_j},
      {"maps", maps_j},
      {"maps_memlock_total", map_total},
      {"daemon", daemon_mem},
      {"daemon_keep_reload_buffers_true", daemon_mem_keep}};
  return absl::OkStatus();
}

}  // namespace
}  // namespace bw::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return bw::bench::BenchMainOf<bw::bench::PolicyCost>(
      "policy_cost", "maps, BPF_PROG_TEST_RUN, namespaces, ipset", argc, argv,
      absl::GetFlag(FLAGS_verbose), absl::GetFlag(FLAGS_out));
}
