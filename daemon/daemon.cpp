#include "daemon/daemon.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <malloc.h>
#include <net/if.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "daemon/apply.hpp"
#include "daemon/prefilter.hpp"
#include "daemon/control.hpp"
#include "daemon/control_request.hpp"
#include "daemon/eve_writer.hpp"
#include "daemon/event_pipeline.hpp"
#include "daemon/libbpf_log.hpp"
#include "daemon/loader.hpp"
#include "daemon/metrics.hpp"
#include "daemon/policy.hpp"
#include "daemon/state.hpp"
#include "maps/maps.hpp"

namespace bw {
namespace {

using json = nlohmann::json;

void Log(const std::string& msg) {
  std::string t = absl::FormatTime("%Y-%m-%dT%H:%M:%S%Ez", absl::Now(), absl::LocalTimeZone());
  std::fprintf(stderr, "%s bannerwatch: %s\n", t.c_str(), msg.c_str());
}

std::string TimeText(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3S%Ez", t, absl::UTCTimeZone());
}

// Holds the pin root's lock: flock on the directory itself, released when the process dies.
class PinRootLock {
 public:
  static absl::StatusOr<PinRootLock> Take(const std::string& pin_root) {
    bool created = false;
    absl::Status st = EnsurePinRoot(pin_root, &created);
    if (!st.ok()) return st;
    int fd = ::open(pin_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(pin_root, "open", errno);
    Fd owner(fd);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK)
        return absl::FailedPreconditionError(absl::StrCat(
            "another bannerwatch daemon holds ", pin_root,
            " (one daemon per pin root; use --pin-root for a second, independent one)"));
      return ErrnoStatus(pin_root, "flock", errno);
    }
    PinRootLock l;
    l.fd_ = std::move(owner);
    l.created_ = created;
    return l;
  }
  // The directory was made by this lock (not there before).
  bool created() const { return created_; }

 private:
  Fd fd_;
  bool created_ = false;
};

class Daemon {
 public:
  explicit Daemon(DaemonOptions o) : opts_(std::move(o)) {}
  int Run();

 private:
  absl::Status Start();
  // Validates everything, then applies as a diff. On error nothing changes.
  absl::Status Reload(const std::string& why, const RuntimeState* runtime_override = nullptr);
  absl::StatusOr<Policy> BuildPolicy(const RuntimeState& runtime);
  // A runtime change (block/watch/allow/unlist): saved to the state file first, then applied; on
  // either error nothing changes (neither the file nor the kernel).
  absl::Status CommitRuntime(RuntimeState next, const std::string& why);
  ControlServer::Reply HandleControl(const json& req);
  json Status();
  json RuntimeChange(const ControlRequest& req, const std::string& action);
  json Unlist(const ControlRequest& req);
  json RuntimeList() const;
  std::string RenderMetrics();
  void Shutdown();
  void WatchFiles();
  void OnInotify();
  void OnTimer();
  absl::Time NextExpiry() const;
  // Hits and drops per list id. Read afresh when that is quick; when the tries are large (a read
  // takes most of a second at a million prefixes) the last complete read is returned at once and
  // a new one is made on a thread when it is over 10 s old, so status and scrapes stay fast.
  using ListStats = std::map<uint32_t, std::pair<uint64_t, uint64_t>>;
  ListStats PerListStats();
  static ListStats ReadListStats(const MapSet& maps);

  DaemonOptions opts_;
  std::string pin_root_;
  std::optional<PinRootLock> lock_;
  std::optional<StateFileLock> state_lock_;
  Policy policy_;  // last good (file part plus runtime lists)
  Policy spare_policy_;  // the one the last reload replaced: the next parse writes into its tables
  std::unique_ptr<CompiledPolicy> compiled_;
  // The compiled policy the last reload replaced, kept for the next compile to write its tables
  // into (their pages stay mapped: page faults are otherwise a third of a million-prefix compile).
  std::unique_ptr<CompiledPolicy> spare_;
  // Until the first reload: the buffers it writes into, made on a thread after the start
  // (keep_reload_buffers), so that it does not pay the page faults later reloads are spared.
  std::future<ReloadBuffers> premade_;
  void StartPremade();
  void TakePremade();
  // What the daemon holds for the next reload to write into (status, metrics).
  uint64_t ReloadBufferBytes() const;
  bool maps_in_sync_ = false;  // the tries hold exactly compiled_ (this process applied it)
  RuntimeState runtime_;
  std::string state_file_;
  bool keep_on_exit_ = false;

  std::unique_ptr<DataPlane> dp_;
  MapSet maps_;
  std::vector<Attachment> attached_;
  // Ring buffer -> EVE file, followers and the recent lines, on its own thread; told of every
  // applied policy (SetPolicy) before the one it replaces is reused or freed.
  std::unique_ptr<EventPipeline> events_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<MetricsServer> metrics_;

  Fd epoll_, sigfd_, timerfd_, inotify_;
  std::map<int, std::string> watch_dirs_;  // inotify wd -> directory
  std::set<std::string> watched_files_;
  absl::Time reload_due_ = absl::InfiniteFuture();  // debounced inotify reload

  // Reload bookkeeping.
  uint64_t reloads_ok_ = 0, reloads_failed_ = 0;
  absl::Time last_reload_ = absl::InfinitePast();
  bool last_reload_ok_ = false;
  std::string last_reload_error_, last_reload_summary_;
  absl::Time started_ = absl::Now();
  bool stop_ = false;

  ListStats list_stats_cache_;
  absl::Time list_stats_at_ = absl::InfinitePast();
  absl::Duration list_stats_took_ = absl::ZeroDuration();
  std::future<std::pair<ListStats, absl::Duration>> list_stats_next_;  // a read on its thread
};

absl::StatusOr<Policy> Daemon::BuildPolicy(const RuntimeState& runtime) {
  auto p = LoadPolicyFile(opts_.config_path, &spare_policy_);
  if (!p.ok()) return p.status();
  Policy pol = std::move(*p);
  // Runtime entries (CLI block/watch/allow) become entries of lists named by --list; a list of the
  // policy file with the same name and action takes them, otherwise a runtime list is made.
  uint32_t state_file_idx = static_cast<uint32_t>(pol.files.size());
  pol.files.push_back(state_file_);
  pol.numbered_file = state_file_idx;  // `line` below numbers the entries: "state.json entry N"
  PrefixOptions popts{pol.allow_default_route};
  uint32_t line = 0;
  for (const RuntimeEntry& r : runtime.entries()) {
    ++line;
    auto prefix = ParsePrefix(r.cidr, popts);
    if (!prefix.ok())
      return absl::InvalidArgumentError(
          absl::StrCat(state_file_, ": entry ", line, ": ", prefix.status().message()));
    ListAction act = r.action == "block"      ? ListAction::kBlock
                     : r.action == "safelist" ? ListAction::kSafelist
                                              : ListAction::kWatch;
    ListSpec* target = nullptr;
    std::string list = r.list;
    for (ListSpec& l : pol.lists)
      if (l.name == list) target = &l;
    if (target && target->action != act) {
      // The policy now has a list of that name with another action (the control socket refuses
      // to make one, but policies change): the entry keeps its action in its action's runtime
      // list, rather than keep the daemon from starting.
      Log(absl::StrCat(state_file_, ": entry ", line, " (", r.cidr, ", ", r.action, ") names list '",
                       list, "', a ", ListActionName(target->action), " list in the policy: kept in ",
                       "list 'runtime-", r.action, "' instead"));
      list = "runtime-" + r.action;
      target = nullptr;
      for (ListSpec& l : pol.lists)
        if (l.name == list && l.action == act) target = &l;
    }
    if (!target) {
      ListSpec l;
      l.name = list;
      l.action = act;
      l.reason = r.reason;
      l.tags = {"runtime"};
      pol.lists.push_back(std::move(l));
      target = &pol.lists.back();
    }
    PolicyEntry e;
    e.prefix = *prefix;
    e.file = state_file_idx;
    e.line = line;
    e.source_id = r.reason.empty() ? "" : absl::StrCat("runtime: ", r.reason);
    target->entries.push_back(std::move(e));
  }
  return pol;
}

void Daemon::StartPremade() {
  if (!policy_.keep_reload_buffers || !compiled_) return;
  // Sizes read here; the thread touches nothing of this daemon's (the feed cache locks itself).
  // Started after the signals are blocked: a thread must not take the signalfd's signals.
  premade_ = std::async(std::launch::async, [sizes = ReloadBufferSizesOf(policy_, *compiled_)] {
    PrepareFeedSpares();
    return MakeReloadBuffers(sizes);
  });
}

void Daemon::TakePremade() {
  if (!premade_.valid() || premade_.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
    return;  // not made yet: a reload now goes without them
  ReloadBuffers b = premade_.get();
  if (!policy_.keep_reload_buffers) return;
  if (!spare_) spare_ = std::move(b.compiled);
  if (spare_policy_.lists.empty()) spare_policy_ = std::move(b.policy);
}

uint64_t Daemon::ReloadBufferBytes() const {
  return ReusableBytes(spare_policy_) + (spare_ ? ReusableBytes(*spare_) : 0) +
         GetFeedCacheStats().spare_bytes;
}

absl::Status Daemon::Reload(const std::string& why, const RuntimeState* runtime_override) {
  absl::Time t0 = absl::Now();
  TakePremade();
  const RuntimeState& rt = runtime_override ? *runtime_override : runtime_;
  auto fail = [&](const absl::Status& st) {
    ++reloads_failed_;
    last_reload_ = absl::Now();
    last_reload_ok_ = false;
    last_reload_error_ = std::string(st.message());
    Log(absl::StrCat("reload (", why, ") rejected, the last good policy stays in force: ",
                     st.message()));
    return st;
  };
  auto pol = BuildPolicy(rt);
  if (!pol.ok()) return fail(pol.status());
  // Ids stay stable across reloads; the tables are written into the storage of the policy the
  // last reload replaced.
  absl::Time t1 = absl::Now();
  auto compiled = Compile(*pol, t0, compiled_.get(), spare_.get());
  absl::Time t2 = absl::Now();
  if (!compiled.ok()) return fail(compiled.status());
  // The maps were sized at load; a policy that outgrew them cannot be applied half-way.
  uint32_t cap4 = dp_->v4_capacity();
  uint32_t cap6 = dp_->v6_capacity();
  if (compiled->v4.size() > cap4 || compiled->v6.size() > cap6)
    return fail(absl::ResourceExhaustedError(absl::StrCat(
        "policy needs ", compiled->v4.size(), " IPv4 / ", compiled->v6.size(),
        " IPv6 prefixes; the loaded maps hold ", cap4, " / ", cap6,
        " (raise limits and restart after `bannerwatch detach`)")));
  ApplyOptions ao;
  // The diff is taken against memory, not by reading the maps back: against what this process
  // applied last, or, for maps this start created (all empty), against nothing.
  static const CompiledPolicy kNothing;
  ao.applied = maps_in_sync_ ? compiled_.get() : nullptr;
  if (!compiled_ && !dp_->adopted()) ao.applied = &kNothing;
  auto stats = ApplyPolicy(*compiled, maps_, ao);
  if (!stats.ok()) {
    // Put the last good policy back so no half-applied state remains (reading the maps: what a
    // failed apply left is not known).
    maps_in_sync_ = false;
    if (compiled_) {
      auto back = ApplyPolicy(*compiled_, maps_);
      if (!back.ok()) Log(absl::StrCat("restoring the previous policy failed: ", back.status().message()));
      maps_in_sync_ = back.ok();
    }
    return fail(stats.status());
  }
  maps_in_sync_ = true;
  spare_policy_ = std::move(policy_);
  policy_ = std::move(*pol);
  spare_ = std::move(compiled_);
  compiled_ = std::make_unique<CompiledPolicy>(std::move(*compiled));
  // The event thread moves to the new policy before the old one is freed or written over.
  if (events_) events_->SetPolicy(compiled_.get());
  if (!policy_.keep_reload_buffers) {
    spare_.reset();
    spare_policy_ = Policy();
    premade_ = {};  // waits for the thread if it still runs
    // The compiled policy holds every entry (status, query, events); the policy's own copy of a
    // big list (40 bytes an entry) is only read again by a reload writing into it.
    for (ListSpec& l : policy_.lists) std::vector<PolicyEntry>().swap(l.entries);
  }
  KeepFeedSpares(policy_.keep_reload_buffers);
  ++reloads_ok_;
  last_reload_ = absl::Now();
  last_reload_ok_ = true;
  last_reload_error_.clear();
  last_reload_summary_ = absl::StrCat(stats->ToString(), "; parse ", absl::FormatDuration(t1 - t0),
                                      ", compile ", absl::FormatDuration(t2 - t1));
  Log(absl::StrCat("policy ", opts_.config_path, " applied (", why, "): ", last_reload_summary_));
  if (!compiled_->proxy_ports.empty() && !(dp_->features() & BW_FEAT_CONNECT))
    Log(absl::StrCat("proxy_ports are set, but this kernel's data plane does not follow CONNECT "
                     "tunnels (", DescribeDataPlane(dp_->variant(), dp_->kernel()), ")"));
  WatchFiles();
  // What the replaced policy and this reload's temporaries freed inside the allocator's arenas
  // (small tables, a thread's arena) goes back to the kernel now, not at some later allocation.
  ::malloc_trim(0);
  return absl::OkStatus();
}

Daemon::ListStats Daemon::ReadListStats(const MapSet& maps) {
  ListStats out;
  for (auto r : {ReadTrieCounted(maps.watch_v4), ReadTrieCounted(maps.watch_v6)}) {
    if (!r.ok()) continue;
    for (const CountedEntry& c : *r) {
      auto& s = out[c.entry.value.list_id];
      s.first += c.hits;
      s.second += c.drops;
    }
  }
  // Packets decided by the IPv4 pre-filter count per class, per CPU: each class is one list.
  if (auto cls = ReadClasses(maps.v4_class); cls.ok()) {
    for (uint32_t c = 1; c < BW_V4_PRE_TRIE; ++c) {
      if (!ClassUsed((*cls)[c])) continue;
      auto per_cpu = maps.v4_cls_cnt.LookupAll(c);
      if (!per_cpu.ok()) continue;
      auto& s = out[(*cls)[c].list_id];
      for (const bw_v4_cls_cnt& v : *per_cpu) {
        s.first += v.hits;
        s.second += v.drops;
      }
    }
  }
  return out;
}

Daemon::ListStats Daemon::PerListStats() {
  constexpr size_t kLargeTries = 100'000;
  const bool large = list_stats_took_ > absl::Milliseconds(50) ||
                     compiled_->v4.size() + compiled_->v6.size() > kLargeTries;
  if (!large) {
    absl::Time t0 = absl::Now();
    list_stats_cache_ = ReadListStats(maps_);
    list_stats_at_ = absl::Now();
    list_stats_took_ = list_stats_at_ - t0;
    return list_stats_cache_;
  }
  if (list_stats_next_.valid() &&
      list_stats_next_.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
    auto [stats, took] = list_stats_next_.get();
    list_stats_cache_ = std::move(stats);
    list_stats_took_ = took;
    list_stats_at_ = absl::Now();
  }
  if (!list_stats_next_.valid() && absl::Now() - list_stats_at_ >= absl::Seconds(10)) {
    // The maps' fds are only read there; the MapSet outlives the thread (Shutdown waits).
    list_stats_next_ = std::async(std::launch::async, [maps = &maps_] {
      absl::Time t0 = absl::Now();
      ListStats s = ReadListStats(*maps);
      return std::make_pair(std::move(s), absl::Now() - t0);
    });
  }
  return list_stats_cache_;
}

json Daemon::Status() {
  json j;
  j["ok"] = true;
  j["pid"] = getpid();
  j["pin_root"] = pin_root_;
  j["policy"] = opts_.config_path;
  j["state_file"] = state_file_;
  j["uptime_s"] = absl::ToInt64Seconds(absl::Now() - started_);
  j["adopted"] = dp_->adopted();
  {
    json off = json::array(), lacks = json::array();
    for (const auto& f : AllFeatures())
      if (!(dp_->features() & f.bit)) off.push_back(f.name);
    for (const std::string& m : dp_->kernel().Missing()) lacks.push_back(m);
    j["data_plane"] = {{"variant", VariantName(dp_->variant())},
                       {"kernel", dp_->kernel().release},
                       {"features_off", off},
                       {"kernel_lacks", lacks}};
  }
  j["interfaces"] = json::array();
  for (const Attachment& a : attached_)
    j["interfaces"].push_back({{"name", a.ifname}, {"ifindex", a.ifindex},
                               {"xdp_mode", XdpModeOf(a.ifindex)}, {"tc_egress", true},
                               {"adopted", a.xdp_adopted}});
  j["ports"] = compiled_->ports;
  j["proxy_ports"] = compiled_->proxy_ports;
  j["banner"] = {{"server", BannerActionName(static_cast<bw_banner_action>(
                                compiled_->config.banner_action[BW_SIDE_SERVER]))},
                 {"client", BannerActionName(static_cast<bw_banner_action>(
                                compiled_->config.banner_action[BW_SIDE_CLIENT]))},
                 {"non_tls", (compiled_->config.flags & BW_CFG_NON_TLS) ? "alert" : "off"}};
  auto stats = PerListStats();
  // How old the hits and drops are (0: read for this answer; large tries: the last read on its
  // thread, null before the first is done).
  j["list_counts_age_s"] = list_stats_at_ == absl::InfinitePast()
                               ? json(nullptr)
                               : json(absl::ToDoubleSeconds(absl::Now() - list_stats_at_));
  j["lists"] = json::array();
  for (const CompiledList& l : compiled_->lists) {
    json e = {{"name", l.name}, {"action", ListActionName(l.action)}, {"entries", l.entries},
              {"expired", l.expired}, {"hits", stats[l.id].first}, {"drops", stats[l.id].second}};
    if (l.expires) e["expires"] = TimeText(*l.expires);
    j["lists"].push_back(std::move(e));
  }
  j["prefixes"] = {{"v4", compiled_->v4.size()}, {"v6", compiled_->v6.size()}};
  for (int d = 0; d < BW_DIR__MAX; ++d) {
    auto c = maps_.ReadCounters(static_cast<bw_direction>(d));
    if (!c.ok()) continue;
    json cj;
    for (int i = 0; i < BW_CNT__MAX; ++i) cj[kCounterNames[i]] = (*c)[i];
    j["counters"][d == BW_DIR_INGRESS ? "ingress" : "egress"] = cj;
  }
  EventPipeline::Stats es = events_->stats();
  j["eve"] = {{"path", es.sink_path},
              {"lines_written", es.lines_written},
              {"lines_dropped", es.lines_dropped},
              {"format_errors", es.format_errors},
              {"followers", es.followers}};
  auto conns = [](const RequestServer& r) {
    return json{{"open", r.open_connections()}, {"refused_busy", r.refused_busy()},
                {"evicted_idle", r.evicted()}, {"timed_out", r.timed_out()}};
  };
  if (control_) j["connections"]["control"] = conns(control_->connections());
  if (metrics_) j["connections"]["metrics"] = conns(metrics_->connections());
  j["reload_buffers"] = {{"keep", policy_.keep_reload_buffers},
                         {"making", premade_.valid()},
                         {"held_bytes", ReloadBufferBytes()}};
  j["last_reload"] = {{"time", TimeText(last_reload_)}, {"ok", last_reload_ok_},
                      {"error", last_reload_error_}, {"summary", last_reload_summary_},
                      {"reloads_ok", reloads_ok_}, {"reloads_failed", reloads_failed_}};
  return j;
}

json Daemon::RuntimeChange(const ControlRequest& req, const std::string& action) {
  auto prefix = ParsePrefix(req.cidr, PrefixOptions{policy_.allow_default_route});
  if (!prefix.ok()) return {{"ok", false}, {"error", std::string(prefix.status().message())}};
  // Again on an entry (this cidr and action, in the list given if one is): it keeps its list
  // and, unless a reason is given ("" clears it), its reason.
  const RuntimeEntry* was = nullptr;
  for (const RuntimeEntry& r : runtime_.entries())
    if (!was && r.cidr == prefix->ToString() && r.action == action &&
        (req.list.empty() || r.list == req.list))
      was = &r;
  const std::string list = !req.list.empty() ? req.list : was ? was->list : "runtime-" + action;
  for (const ListSpec& l : policy_.lists) {
    if (l.name == list && ListActionName(l.action) != action)
      return {{"ok", false},
              {"error", absl::StrCat("list '", list, "' is a ", ListActionName(l.action),
                                     " list: a ", action, " entry cannot go in it")}};
  }
  RuntimeEntry e;
  e.cidr = prefix->ToString();
  e.action = action;
  e.list = list;
  e.reason = req.reason ? *req.reason : was ? was->reason : "";
  e.added = absl::Now();
  if (req.ttl_seconds > 0) e.expires = e.added + absl::Seconds(req.ttl_seconds);
  RuntimeState next = runtime_;
  next.Upsert(e);
  absl::Status st = CommitRuntime(std::move(next), absl::StrCat(action, " ", e.cidr));
  if (!st.ok()) return {{"ok", false}, {"error", std::string(st.message())}};
  return {{"ok", true}, {"cidr", e.cidr}, {"list", e.list}, {"action", action},
          {"reason", e.reason},
          {"expires", e.expires == absl::InfiniteFuture() ? json(nullptr) : json(TimeText(e.expires))},
          {"summary", last_reload_summary_}};
}

absl::Status Daemon::CommitRuntime(RuntimeState next, const std::string& why) {
  // The file first: a change applied and then not saved (a full disk) was live until the next
  // start silently undid it, and an unlist that could not be saved lifted a block meanwhile.
  if (absl::Status saved = next.Save(state_file_); !saved.ok())
    return absl::Status(saved.code(), absl::StrCat("state file ", state_file_,
                                                   " not written, nothing changed: ",
                                                   saved.message()));
  absl::Status st = Reload(why, &next);
  if (!st.ok()) {
    // Refused (the reload logged why): the file goes back to the entries in force.
    if (absl::Status back = runtime_.Save(state_file_); !back.ok())
      Log(absl::StrCat("state file ", state_file_, " still holds the refused change (", why,
                       "): ", back.message()));
    return st;
  }
  runtime_ = std::move(next);
  return absl::OkStatus();
}

json Daemon::Unlist(const ControlRequest& req) {
  auto prefix = ParsePrefix(req.cidr, PrefixOptions{true});
  if (!prefix.ok()) return {{"ok", false}, {"error", std::string(prefix.status().message())}};
  RuntimeState next = runtime_;
  size_t n = next.Remove(prefix->ToString());
  if (n == 0) {
    // Not a runtime entry: say where it comes from, if anywhere.
    std::vector<std::string> where;
    for (const CompiledEntry& e : compiled_->entries)
      if (e.prefix == *prefix && e.file < compiled_->files.size() &&
          compiled_->files[e.file] != state_file_)
        where.push_back(absl::StrCat(compiled_->files[e.file], ":", e.line));
    if (!where.empty())
      return {{"ok", false},
              {"error", absl::StrCat(prefix->ToString(), " is listed by the policy (",
                                     absl::StrJoin(where, ", "),
                                     "); edit the file there, then `bannerwatch reload`")}};
    return {{"ok", false}, {"error", absl::StrCat(prefix->ToString(), " is not listed")}};
  }
  absl::Status st = CommitRuntime(std::move(next), absl::StrCat("unlist ", prefix->ToString()));
  if (!st.ok()) return {{"ok", false}, {"error", std::string(st.message())}};
  return {{"ok", true}, {"removed", n}, {"summary", last_reload_summary_}};
}

// `list`: the runtime entries, numbered as in the state file (and as `query` cites them).
json Daemon::RuntimeList() const {
  json j = {{"ok", true}, {"state_file", state_file_}, {"entries", json::array()}};
  size_t n = 0;
  for (const RuntimeEntry& r : runtime_.entries())
    j["entries"].push_back(json{
        {"n", ++n}, {"cidr", r.cidr}, {"action", r.action}, {"list", r.list}, {"reason", r.reason},
        {"added", TimeText(r.added)},
        {"expires", r.expires == absl::InfiniteFuture() ? json(nullptr) : json(TimeText(r.expires))}});
  return j;
}

ControlServer::Reply Daemon::HandleControl(const json& raw) {
  auto parsed = ParseControlRequest(raw);
  if (!parsed.ok()) return {{{"ok", false}, {"error", std::string(parsed.status().message())}}};
  const ControlRequest& req = *parsed;
  const std::string& cmd = req.cmd;
  if (cmd == "status") return {Status()};
  if (cmd == "block") return {RuntimeChange(req, "block")};
  if (cmd == "watch") return {RuntimeChange(req, "watch")};
  if (cmd == "allow") return {RuntimeChange(req, "safelist")};
  if (cmd == "unlist") return {Unlist(req)};
  if (cmd == "list") return {RuntimeList()};
  if (cmd == "reload") {
    absl::Status st = Reload("control");
    if (!st.ok()) return {{{"ok", false}, {"error", std::string(st.message())}}};
    return {{{"ok", true}, {"summary", last_reload_summary_}}};
  }
  if (cmd == "query") {
    auto addr = ParseAddress(req.ip);
    if (!addr.ok()) return {{{"ok", false}, {"error", std::string(addr.status().message())}}};
    Explanation ex = compiled_->Explain(*addr);
    json j = {{"ok", true}, {"query", addr->HumanString()},
              {"text", compiled_->ExplainText(*addr)}};
    if (ex.match) {
      const CompiledList* l = compiled_->list(ex.match->value.list_id);
      j["effective_action"] = ListActionName(static_cast<ListAction>(
          ex.match->value.action & BW_ACTION_SAFELIST   ? BW_ACTION_SAFELIST
          : ex.match->value.action & BW_ACTION_BLOCK    ? BW_ACTION_BLOCK
                                                        : BW_ACTION_WATCH));
      j["list"] = l ? l->name : "";
      j["kernel_key"] = ex.match->prefix.ToString();
      j["deciding_entry"] = compiled_->EntryLocation(ex.deciding_entry);
    } else {
      j["effective_action"] = "none";
    }
    return {j};
  }
  // "events": the command table knows no other.
  json j = {{"ok", true}, {"recent", json::array()}};
  for (std::string& l : events_->Recent(req.count)) j["recent"].push_back(std::move(l));
  return {j, req.follow};
}

std::string Daemon::RenderMetrics() {
  MetricsText m;
  m.Family("bannerwatch_data_plane_info", "gauge",
           "The data-plane object variant loaded and the kernel it runs on (always 1)");
  m.Sample("bannerwatch_data_plane_info",
           absl::StrCat(MetricsText::Label("variant", VariantName(dp_->variant())), ",",
                        MetricsText::Label("kernel", dp_->kernel().release)),
           uint64_t{1});
  m.Family("bannerwatch_feature_enabled", "gauge",
           "1 when the loaded data plane has the detection, 0 when this kernel cannot run it");
  for (const auto& f : AllFeatures())
    m.Sample("bannerwatch_feature_enabled", MetricsText::Label("feature", f.name),
             uint64_t{(dp_->features() & f.bit) ? 1u : 0u});
  for (int i = 0; i < BW_CNT__MAX; ++i) {
    std::string name = absl::StrCat("bannerwatch_", kCounterNames[i], "_total");
    m.Family(name, "counter", absl::StrCat("Data-plane counter ", kCounterNames[i], ", by direction"));
    for (int d = 0; d < BW_DIR__MAX; ++d) {
      auto c = maps_.ReadCounters(static_cast<bw_direction>(d));
      if (!c.ok()) continue;
      m.Sample(name, MetricsText::Label("direction", d == BW_DIR_INGRESS ? "ingress" : "egress"),
               (*c)[i]);
    }
  }
  auto stats = PerListStats();
  m.Family("bannerwatch_list_entries", "gauge", "Entries of each list in the applied policy");
  for (const CompiledList& l : compiled_->lists)
    m.Sample("bannerwatch_list_entries",
             absl::StrCat(MetricsText::Label("list", l.name), ",",
                          MetricsText::Label("action", ListActionName(l.action))),
             static_cast<uint64_t>(l.expired ? 0 : l.entries));
  m.Family("bannerwatch_list_hits_total", "counter", "Connection starts with a watched address, by list (cached up to 10 s)");
  for (const CompiledList& l : compiled_->lists)
    m.Sample("bannerwatch_list_hits_total", MetricsText::Label("list", l.name), stats[l.id].first);
  m.Family("bannerwatch_list_drops_total", "counter", "Packets dropped for a blocked address, by list (cached up to 10 s)");
  for (const CompiledList& l : compiled_->lists)
    m.Sample("bannerwatch_list_drops_total", MetricsText::Label("list", l.name), stats[l.id].second);
  EventPipeline::Stats es = events_->stats();
  m.Family("bannerwatch_eve_lines_written_total", "counter", "EVE lines written");
  m.Sample("bannerwatch_eve_lines_written_total", "", es.lines_written);
  m.Family("bannerwatch_eve_lines_dropped_total", "counter", "EVE lines lost to write errors");
  m.Sample("bannerwatch_eve_lines_dropped_total", "", es.lines_dropped);
  m.Family("bannerwatch_events_read_total", "counter", "Event records read from the ring buffer");
  m.Sample("bannerwatch_events_read_total", "", es.delivered);
  m.Family("bannerwatch_connections_refused_total", "counter",
           "Connections closed unserved, by server and reason (busy: at the limit, all being "
           "answered; evicted: the oldest idle one, for a new one at the limit; timeout: no whole "
           "request, or the answer not taken, within 2 s)");
  for (const auto& [server, rs] :
       {std::pair<const char*, const RequestServer*>{"control",
                                                     control_ ? &control_->connections() : nullptr},
        {"metrics", metrics_ ? &metrics_->connections() : nullptr}}) {
    if (!rs) continue;
    for (const auto& [reason, n] : {std::pair<const char*, uint64_t>{"busy", rs->refused_busy()},
                                    {"evicted", rs->evicted()},
                                    {"timeout", rs->timed_out()}})
      m.Sample("bannerwatch_connections_refused_total",
               absl::StrCat(MetricsText::Label("server", server), ",",
                            MetricsText::Label("reason", reason)),
               n);
  }
  m.Family("bannerwatch_reloads_total", "counter", "Policy reloads by result");
  m.Sample("bannerwatch_reloads_total", MetricsText::Label("result", "ok"), reloads_ok_);
  m.Sample("bannerwatch_reloads_total", MetricsText::Label("result", "error"), reloads_failed_);
  m.Family("bannerwatch_last_reload_success", "gauge", "1 if the last reload was applied");
  m.Sample("bannerwatch_last_reload_success", "", uint64_t{last_reload_ok_ ? 1u : 0u});
  m.Family("bannerwatch_reload_buffers_bytes", "gauge",
           "Memory held for the next reload to write its tables into (keep_reload_buffers)");
  m.Sample("bannerwatch_reload_buffers_bytes", "", ReloadBufferBytes());
  m.Family("bannerwatch_last_reload_timestamp_seconds", "gauge", "Unix time of the last reload");
  m.Sample("bannerwatch_last_reload_timestamp_seconds", "", absl::ToDoubleSeconds(last_reload_ - absl::UnixEpoch()));
  return m.str();
}

void Daemon::WatchFiles() {
  if (!inotify_.valid()) return;
  std::set<std::string> dirs;
  watched_files_.clear();
  for (const std::string& f : policy_.files) {
    if (f == state_file_) continue;  // changed by this daemon itself
    std::error_code ec;
    std::string abs = std::filesystem::absolute(f, ec).lexically_normal().string();
    watched_files_.insert(abs);
    dirs.insert(std::filesystem::path(abs).parent_path().string());
    // A symlink's target too (operators link a list to a feed's current file): a write or a
    // rename there is the list's change, and the link's directory sees nothing of it.
    std::string target = std::filesystem::canonical(abs, ec).string();
    if (!ec && target != abs) {
      watched_files_.insert(target);
      dirs.insert(std::filesystem::path(target).parent_path().string());
    }
  }
  // Directories, not files: editors and config management replace files by rename. Only a
  // finished write (close after writing) or a rename into place reloads: a file being created or
  // still written (`curl -o`, a slow copy) is not read half-way, and a deletion alone changes
  // nothing (the last good policy stays until a new file is complete).
  for (auto it = watch_dirs_.begin(); it != watch_dirs_.end();) {
    if (!dirs.count(it->second)) {
      inotify_rm_watch(inotify_.get(), it->first);
      it = watch_dirs_.erase(it);
    } else {
      dirs.erase(it->second);
      ++it;
    }
  }
  for (const std::string& d : dirs) {
    int wd = inotify_add_watch(inotify_.get(), d.c_str(),
                               IN_CLOSE_WRITE | IN_MOVED_TO);
    if (wd >= 0) watch_dirs_[wd] = d;
  }
}

void Daemon::OnInotify() {
  alignas(inotify_event) char buf[8192];
  ssize_t n;
  while ((n = ::read(inotify_.get(), buf, sizeof(buf))) > 0) {
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      auto it = watch_dirs_.find(ev->wd);
      if (it != watch_dirs_.end() && ev->len > 0) {
        std::string path = (std::filesystem::path(it->second) / ev->name).string();
        // Debounce: an editor's save is several events; reload once things are quiet.
        if (watched_files_.count(path)) reload_due_ = absl::Now() + absl::Milliseconds(200);
      }
      p += sizeof(inotify_event) + ev->len;
    }
  }
}

absl::Time Daemon::NextExpiry() const {
  absl::Time t = absl::InfiniteFuture();
  if (compiled_ && compiled_->next_expiry) t = *compiled_->next_expiry;
  for (const RuntimeEntry& e : runtime_.entries()) t = std::min(t, e.expires);
  return t;
}

void Daemon::OnTimer() {
  uint64_t ticks;
  (void)!::read(timerfd_.get(), &ticks, sizeof(ticks));
  absl::Time now = absl::Now();
  // Clients that have not sent a whole request, or not taken their answer, within their time.
  if (control_) control_->ExpireDeadlines(now);
  if (metrics_) metrics_->ExpireDeadlines(now);
  TakePremade();  // the buffers made after the start, once ready (held_bytes counts them then)
  if (now >= reload_due_) {
    reload_due_ = absl::InfiniteFuture();
    (void)Reload("file changed");
  }
  if (now >= NextExpiry()) {
    RuntimeState next = runtime_;
    size_t gone = next.Expire(now);
    if (Reload("expiry", &next).ok()) {
      runtime_ = std::move(next);
      if (gone) (void)runtime_.Save(state_file_);
    }
  }
}

absl::Status Daemon::Start() {
  // The policy first: an invalid one at start is fatal, before anything is touched.
  auto probe = LoadPolicyFile(opts_.config_path);
  if (!probe.ok()) return probe.status();
  const Policy& p0 = *probe;
  pin_root_ = opts_.pin_root.value_or(p0.pin_root);
  state_file_ = opts_.state_file.value_or(p0.state_file);
  keep_on_exit_ = p0.keep_on_exit;

  auto lock = PinRootLock::Take(pin_root_);
  if (!lock.ok()) return lock.status();
  lock_.emplace(std::move(*lock));

  auto state_lock = StateFileLock::Take(state_file_);
  if (!state_lock.ok()) return state_lock.status();
  state_lock_.emplace(std::move(*state_lock));
  auto rt = RuntimeState::Load(state_file_);
  if (!rt.ok()) return rt.status();
  runtime_ = std::move(*rt);

  // The sockets before the kernel is touched: a control socket or metrics port another daemon
  // serves fails the start here, with nothing loaded, attached or replaced. Requests wait in the
  // backlog until the loop runs.
  std::string ctl = opts_.control_socket.value_or(p0.control_socket);
  if (!ctl.empty()) {
    auto c = ControlServer::Listen(
        ctl, [this](const json& r) { return HandleControl(r); },
        [this](int fd) { events_->AddFollower(fd); });
    if (!c.ok()) return c.status();
    control_ = std::move(*c);
  }
  std::string ml = opts_.metrics_listen.value_or(p0.metrics_listen);
  if (!ml.empty() && ml != "off") {
    auto m = MetricsServer::Listen(ml, [this] { return RenderMetrics(); });
    if (!m.ok()) return m.status();
    metrics_ = std::move(*m);
    Log(absl::StrCat("metrics on http://", ml, "/metrics"));
  }

  // The interfaces, checked before anything is loaded: programs of another bannerwatch daemon
  // (another pin root) or of another tool are refused, not replaced.
  std::vector<std::string> ifaces = opts_.ifaces;
  if (ifaces.empty()) ifaces = p0.interfaces;
  if (ifaces.empty()) {
    auto def = DefaultRouteInterface();
    if (!def.ok()) return def.status();
    ifaces.push_back(*def);
  }
  for (const std::string& ifn : ifaces) {
    absl::Status free = CheckInterfaceFree(pin_root_, ifn);
    if (!free.ok()) return free;
  }

  LoadOptions lo;
  lo.pin_root = pin_root_;
  lo.v4_entries = p0.v4_entries;
  lo.v6_entries = p0.v6_entries;
  lo.variant = opts_.bpf_variant;
  auto dp = DataPlane::Load(lo);
  if (!dp.ok()) return dp.status();
  dp_ = std::move(*dp);
  Log(DescribeDataPlane(dp_->variant(), dp_->kernel()));
  auto maps = dp_->Maps();
  if (!maps.ok()) return maps.status();
  maps_ = std::move(*maps);
  Log(dp_->adopted() ? absl::StrCat("adopted the maps pinned under ", pin_root_)
                     : absl::StrCat("created and pinned maps under ", pin_root_));

  inotify_ = Fd(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  absl::Status st = Reload("start");
  if (!st.ok()) return st;

  // Output before attaching, so the first events have somewhere to go.
  EveSinkOptions so;
  so.path = opts_.eve_path.value_or(policy_.eve_path);
  so.to_stdout = opts_.eve_stdout.value_or(policy_.eve_stdout);
  std::unique_ptr<EveSink> sink;
  if (!so.path.empty() || so.to_stdout) {
    auto opened = EveSink::Open(so);
    if (!opened.ok()) return opened.status();
    sink = std::move(*opened);
  }
  auto events = EventPipeline::Create(dp_->events_fd(), std::move(sink));
  if (!events.ok()) return events.status();
  events_ = std::move(*events);
  events_->SetPolicy(compiled_.get());
  // Events the kernel buffered while no daemon was running (the thread starts once the signals
  // are blocked, below).
  auto drained = events_->DrainNow();
  if (drained.ok() && *drained > 0) Log(absl::StrCat(*drained, " events buffered while down, written"));

  for (const std::string& ifn : ifaces) {
    auto a = AttachInterface(pin_root_, dp_->xdp_fd(), dp_->tc_fd(), ifn, opts_.xdp_mode);
    if (!a.ok()) return a.status();
    Log(absl::StrCat(a->xdp_adopted ? "took over " : "attached to ", ifn, " (XDP ", a->xdp_mode,
                     ", TC egress)"));
    attached_.push_back(*a);
  }
  // Interfaces a previous daemon attached to and this one does not want: let them go.
  for (const std::string& old : PinnedInterfaces(pin_root_)) {
    if (std::find(ifaces.begin(), ifaces.end(), old) != ifaces.end()) continue;
    absl::Status d = DetachInterface(pin_root_, old);
    Log(d.ok() ? absl::StrCat("detached from ", old, " (no longer configured)")
               : absl::StrCat("detaching from ", old, ": ", d.message()));
  }


  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, s);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  sigfd_ = Fd(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  timerfd_ = Fd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  itimerspec its{{0, 100'000'000}, {0, 100'000'000}};
  timerfd_settime(timerfd_.get(), 0, &its, nullptr);

  epoll_ = Fd(epoll_create1(EPOLL_CLOEXEC));
  auto add = [&](int fd) {
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = fd;
    epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &e);
  };
  add(sigfd_.get());
  add(timerfd_.get());
  if (inotify_.valid()) add(inotify_.get());
  if (control_) add(control_->fd());
  if (metrics_) add(metrics_->fd());
  absl::Status started = events_->Start();  // after the mask: the thread inherits it
  if (!started.ok()) return started;
  EventPipeline::Stats es = events_->stats();
  Log(absl::StrCat("running: policy ", opts_.config_path, ", EVE ",
                   es.has_sink ? (es.sink_path.empty() ? "stdout" : es.sink_path) : "off",
                   control_ ? absl::StrCat(", control ", ctl) : ""));
  StartPremade();
  return absl::OkStatus();
}

void Daemon::Shutdown() {
  if (list_stats_next_.valid()) list_stats_next_.wait();
  events_->Stop();  // every event that reached the ring is written
  if (keep_on_exit_) {
    Log("stopping; keep_on_exit: programs stay attached and maps pinned");
    return;
  }
  for (const Attachment& a : attached_) {
    absl::Status st = DetachInterface(pin_root_, a.ifname);
    if (!st.ok()) Log(absl::StrCat("detach ", a.ifname, ": ", st.message()));
  }
  absl::Status st = dp_->UnpinMaps();
  if (!st.ok()) Log(absl::StrCat("unpin: ", st.message()));
  Log("stopped; detached and unpinned");
}

int Daemon::Run() {
  absl::Status st = Start();
  if (!st.ok()) {
    Log(absl::StrCat("cannot start: ", st.message()));
    // Attachments made before the failure must not stay behind a dead daemon, unless adopted.
    if (dp_ && !keep_on_exit_ && !dp_->adopted()) {
      for (const Attachment& a : attached_) (void)DetachInterface(pin_root_, a.ifname);
      (void)dp_->UnpinMaps();
    }
    // A pin root this start made and left empty (refused before loading) goes too.
    if (lock_ && lock_->created()) ::rmdir(pin_root_.c_str());
    return 1;
  }
  epoll_event evs[16];
  while (!stop_) {
    int n = epoll_wait(epoll_.get(), evs, 16, 1000);
    if (n < 0 && errno != EINTR) {
      Log(absl::StrCat("epoll_wait: ", std::strerror(errno)));
      break;
    }
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      if (fd == sigfd_.get()) {
        signalfd_siginfo si;
        while (::read(sigfd_.get(), &si, sizeof(si)) == sizeof(si)) {
          if (si.ssi_signo == SIGHUP) {
            absl::Status rs = events_->ReopenSink();
            if (!rs.ok()) Log(absl::StrCat("reopen EVE: ", rs.message()));
            (void)Reload("SIGHUP");
          } else {
            Log(absl::StrCat("signal ", si.ssi_signo, ": stopping"));
            stop_ = true;
          }
        }
      } else if (fd == timerfd_.get()) {
        OnTimer();
      } else if (inotify_.valid() && fd == inotify_.get()) {
        OnInotify();
      } else if (control_ && fd == control_->fd()) {
        control_->OnReadable();
      } else if (metrics_ && fd == metrics_->fd()) {
        metrics_->OnReadable();
      }
    }
  }
  Shutdown();
  return 0;
}

}  // namespace

int RunDaemon(const DaemonOptions& opts) {
  InstallLibbpfLog(opts.verbose);
  Daemon d(opts);
  return d.Run();
}

int DetachAll(const std::string& pin_root) {
  InstallLibbpfLog(false);
  if (access(pin_root.c_str(), F_OK) != 0) {
    std::fprintf(stderr, "bannerwatch: nothing pinned under %s\n", pin_root.c_str());
    return 0;
  }
  // Only bannerwatch's own pins are removed: its maps (by the object's names) and XDP links.
  // A directory holding neither is somebody else's and is not touched at all.
  std::set<std::string> ours;
  for (const std::string& n : DataPlaneMapNames()) ours.insert(n);
  bool bannerwatch_root = false;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(pin_root, ec)) {
    std::string n = e.path().filename().string();
    if (n == BW_MAP_CONFIG || n.rfind("link_xdp_", 0) == 0) bannerwatch_root = true;
  }
  if (!bannerwatch_root) {
    std::fprintf(stderr,
                 "bannerwatch: %s holds no bannerwatch maps or links (no %s, no link_xdp_*): "
                 "not a bannerwatch pin root; nothing removed\n",
                 pin_root.c_str(), BW_MAP_CONFIG);
    return 1;
  }
  auto lock = PinRootLock::Take(pin_root);
  if (!lock.ok()) {
    std::fprintf(stderr, "bannerwatch: %s; stop it first (SIGTERM detaches unless keep_on_exit)\n",
                 std::string(lock.status().message()).c_str());
    return 1;
  }
  int rc = 0;
  for (const std::string& ifn : PinnedInterfaces(pin_root)) {
    absl::Status st = DetachInterface(pin_root, ifn);
    if (!st.ok()) {
      std::fprintf(stderr, "bannerwatch: detach %s: %s\n", ifn.c_str(),
                   std::string(st.message()).c_str());
      rc = 1;
    } else {
      std::fprintf(stderr, "bannerwatch: detached from %s\n", ifn.c_str());
    }
  }
  if (rc != 0) {
    // An interface left attached keeps its maps: the pins stay, so a detach that can reach it
    // (from its network namespace) finds everything.
    std::fprintf(stderr, "bannerwatch: the maps stay pinned under %s until every interface is "
                         "detached\n", pin_root.c_str());
    return rc;
  }
  std::vector<std::string> foreign;
  for (const auto& e : std::filesystem::directory_iterator(pin_root, ec)) {
    std::string n = e.path().filename().string();
    if (!ours.count(n)) {
      foreign.push_back(n);
      continue;
    }
    if (::unlink(e.path().c_str()) != 0) {
      std::fprintf(stderr, "bannerwatch: unlink %s: %s\n", e.path().c_str(), std::strerror(errno));
      rc = 1;
    }
  }
  if (!foreign.empty()) {
    std::fprintf(stderr, "bannerwatch: left in %s what is not bannerwatch's: %s\n",
                 pin_root.c_str(), absl::StrJoin(foreign, ", ").c_str());
    return rc;
  }
  if (rc == 0 && ::rmdir(pin_root.c_str()) != 0 && errno != ENOENT) {
    std::fprintf(stderr, "bannerwatch: rmdir %s: %s\n", pin_root.c_str(), std::strerror(errno));
    rc = 1;
  }
  if (rc == 0) std::fprintf(stderr, "bannerwatch: removed everything under %s\n", pin_root.c_str());
  return rc;
}

}  // namespace bw
