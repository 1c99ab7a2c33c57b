#include "daemon/service/daemon.hpp"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/str_cat.h"
#include "daemon/control/control.hpp"
#include "daemon/control/control_request.hpp"
#include "daemon/control/metrics.hpp"
#include "daemon/dataplane/libbpf_log.hpp"
#include "daemon/dataplane/list_counters.hpp"
#include "daemon/dataplane/loader.hpp"
#include "daemon/dataplane/pin_root.hpp"
#include "daemon/events/eve_writer.hpp"
#include "daemon/events/event_pipeline.hpp"
#include "daemon/policy/policy.hpp"
#include "daemon/policy/state.hpp"
#include "daemon/host/host_programs.hpp"
#include "daemon/service/crowdsec_poller.hpp"
#include "daemon/service/file_watch.hpp"
#include "daemon/service/log.hpp"
#include "daemon/service/notify.hpp"
#include "daemon/service/reloader.hpp"
#include "daemon/service/runtime_lists.hpp"
#include "maps/maps.hpp"

namespace bw {
namespace {

using json = nlohmann::json;

// `bannerwatch run`: takes the locks, opens the sockets, loads the data plane, applies the policy,
// attaches, then runs one loop of signals, a 100 ms timer, file changes and the two servers. The
// parts do the work: Reloader (the policy in force), RuntimeLists (the state file's entries),
// EventPipeline (its own thread), ControlServer and MetricsServer (deadlines and limits per
// connection), FileWatch, ListCounters. The Daemon wires them and answers status and metrics
// from them, and tells the service manager how it goes (Notifier: READY=1 once the policy is
// enforced on every interface, RELOADING=1/READY=1 around every reload of the policy (SIGHUP, the
// control socket's `reload`, a changed policy or list file), STOPPING=1, STATUS=, the watchdog's
// pings from the loop's 100 ms timer).
class Daemon {
 public:
  explicit Daemon(DaemonOptions o) : opts_(std::move(o)) {}
  int Run();

 private:
  absl::Status Start();
  void Shutdown();
  ControlServer::Reply HandleControl(const json& req);
  json Status();
  std::string RenderMetrics();
  void OnTimer();
  // The policy's files as the file watch should see them (not the state file: the daemon writes
  // it itself).
  void WatchPolicyFiles();
  // "enforcing N prefixes on IF1, IF2 (last reload ...)", for STATUS=.
  std::string StatusText();
  // A SIGHUP: the EVE file reopened and the policy reloaded.
  void OnReloadSignal();
  // Reloads the policy (`why`: the log's word for the cause) between RELOADING=1 and READY=1 with
  // the new STATUS=, so the service manager shows every reload, whoever started it.
  absl::Status ReloadPolicy(const std::string& why);
  // Starts, restarts or stops the CrowdSec poller as the policy in force says (from the loop's
  // timer, so within 100 ms of a reload): a changed API, key or polling starts a new one, whose first answer replaces
  // the decisions held; a policy without `crowdsec:` drops them.
  void SyncCrowdsec();
  // The poller's answers: applied to the decisions held, then one reload if they changed.
  void OnCrowdsecResults();
  // What CrowdSec's decisions changed, applied (not a policy reload: no RELOADING=1, as for
  // `bannerwatch block`).
  void ApplyDecisions(const std::string& why);
  json CrowdsecStatus() const;
  // The decisions held, carried over a restart in a file beside the state file: a daemon that
  // adopts its predecessor's maps (keep_on_exit) would otherwise lift every CrowdSec block at its
  // first apply, until the API's first answer. Written at the stop and, while decisions change,
  // at most once a minute; read at the start for the policy's API only.
  void LoadDecisions(const Policy& p);
  void SaveDecisions();
  // The host-context programs (process attribution, connect-time refusal), loaded after the data
  // plane; what cannot be had is logged as off with its reason, and the rest runs.
  void StartHost(const Policy& p);
  // bw_host_cfg from the policy in force (at the start and after every applied reload).
  void ConfigureHost(const Policy& p);
  json HostStatus() const;

  DaemonOptions opts_;
  Notifier notify_ = Notifier::FromEnvironment();
  std::string pin_root_, state_file_;
  bool keep_on_exit_ = false;
  std::optional<PinRootLock> lock_;
  std::optional<StateFileLock> state_lock_;

  std::unique_ptr<DataPlane> dp_;
  std::unique_ptr<HostPrograms> host_;  // null when the object could not load at all
  std::string host_off_;                // then why
  MapSet maps_;
  std::vector<Attachment> attached_;
  std::unique_ptr<Reloader> reloader_;
  std::unique_ptr<RuntimeLists> runtime_;
  std::unique_ptr<ListCounters> counters_;
  std::optional<FileWatch> files_;
  // Ring buffer -> EVE file, followers and the recent lines, on its own thread; told of every
  // applied policy (SetPolicy) before the one it replaces is reused or freed.
  std::unique_ptr<EventPipeline> events_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<MetricsServer> metrics_;
  // CrowdSec (`crowdsec:` and lists with source: crowdsec): the poller's thread asks the API; the
  // decisions held here are what the lists enforce (the last good answers, less what expired).
  std::unique_ptr<CrowdsecPoller> crowdsec_;
  DecisionSet decisions_;
  struct CrowdsecRecord {
    uint64_t polls_ok = 0, polls_failed = 0, consecutive_failures = 0;
    uint64_t skipped_scope = 0, skipped_value = 0, expired = 0;
    absl::Time last_ok = absl::InfinitePast(), last_attempt = absl::InfinitePast();
    absl::Duration last_took;
    size_t last_bytes = 0;
    std::string last_error;
  } crowdsec_record_;
  absl::Time decisions_expired_at_ = absl::InfinitePast();
  std::string decisions_file_;  // "" when the state file is off
  bool decisions_dirty_ = false;
  absl::Time decisions_saved_at_ = absl::InfinitePast();

  Fd epoll_, sigfd_, timerfd_;
  absl::Time started_ = absl::Now();
  bool stop_ = false;
};

json Daemon::Status() {
  json j;
  j["ok"] = true;
  j["pid"] = getpid();
  j["pin_root"] = pin_root_;
  j["policy"] = opts_.config_path;
  j["state_file"] = state_file_;
  j["uptime_s"] = absl::ToInt64Seconds(absl::Now() - started_);
  j["adopted"] = dp_->adopted();
  const CompiledPolicy& compiled = *reloader_->compiled();
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
  j["ports"] = compiled.ports;
  j["proxy_ports"] = compiled.proxy_ports;
  j["banner"] = {{"server", BannerActionName(static_cast<bw_banner_action>(
                                compiled.config.banner_action[BW_SIDE_SERVER]))},
                 {"client", BannerActionName(static_cast<bw_banner_action>(
                                compiled.config.banner_action[BW_SIDE_CLIENT]))},
                 {"non_tls", (compiled.config.flags & BW_CFG_NON_TLS) ? "alert" : "off"}};
  ListCounters::ByList stats = counters_->Get(compiled.v4.size() + compiled.v6.size());
  // How old the hits and drops are (0: read for this answer; large tries: the last read on its
  // thread, null before the first is done).
  j["list_counts_age_s"] = counters_->read_at() == absl::InfinitePast()
                               ? json(nullptr)
                               : json(absl::ToDoubleSeconds(absl::Now() - counters_->read_at()));
  j["lists"] = json::array();
  for (const CompiledList& l : compiled.lists) {
    json e = {{"name", l.name}, {"action", ListActionName(l.action)}, {"entries", l.entries},
              {"expired", l.expired}, {"hits", stats[l.id].hits}, {"drops", stats[l.id].drops}};
    if (l.expires) e["expires"] = TimeText(*l.expires);
    j["lists"].push_back(std::move(e));
  }
  j["prefixes"] = {{"v4", compiled.v4.size()}, {"v6", compiled.v6.size()}};
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
  if (!es.syslog_socket.empty())
    j["eve"]["syslog"] = {{"socket", es.syslog_socket},
                          {"sent", es.syslog_sent},
                          {"dropped", es.syslog_dropped}};
  auto conns = [](const RequestServer& r) {
    return json{{"open", r.open_connections()}, {"refused_busy", r.refused_busy()},
                {"evicted_idle", r.evicted()}, {"timed_out", r.timed_out()}};
  };
  if (control_) j["connections"]["control"] = conns(control_->connections());
  if (metrics_) j["connections"]["metrics"] = conns(metrics_->connections());
  j["reload_buffers"] = {{"keep", reloader_->policy().keep_reload_buffers},
                         {"making", reloader_->making_buffers()},
                         {"held_bytes", reloader_->BufferBytes()}};
  const Reloader::Record& r = reloader_->record();
  j["last_reload"] = {{"time", TimeText(r.last)}, {"ok", r.last_ok}, {"error", r.error},
                      {"summary", r.summary}, {"reloads_ok", r.ok}, {"reloads_failed", r.failed}};
  if (crowdsec_) j["crowdsec"] = CrowdsecStatus();
  j["host"] = HostStatus();
  return j;
}

json Daemon::HostStatus() const {
  if (!host_) return {{"loaded", false}, {"error", host_off_}};
  const Policy& p = reloader_->policy();
  json j = {{"loaded", true},
            {"attribution", host_->attribution()},
            {"attribution_hooks", host_->attribution_hooks()},
            {"attribution_off", host_->attribution_off()},
            {"refusal", host_->refusal() && p.host.refuse},
            {"refusal_off", !host_->refusal() ? host_->refusal_off()
                            : p.host.refuse   ? std::string()
                                              : std::string("off in the policy (host.refuse: false)")},
            {"cgroup", host_->cgroup()},
            {"beacon", p.beacon.on ? (p.beacon.all_connections ? "all" : "watched") : "off"}};
  if (auto c = host_->Counters(); c.ok()) {
    json cj;
    for (int i = 0; i < BW_HCNT__MAX; ++i) cj[HostCounterName(i)] = (*c)[i];
    j["counters"] = cj;
  }
  if (auto hs = events_->host_stats()) {
    j["events_named"] = hs->named;
    j["events_unnamed"] = hs->unknown;
    j["records_stale"] = hs->stale;
    j["beacon_pairs"] = hs->beacon_pairs;
    j["beacon_alerts"] = hs->beacon_alerts;
    j["beacon_evicted"] = hs->beacon_evicted;
  }
  return j;
}

void Daemon::StartHost(const Policy& p) {
  HostOptions ho;
  ho.attribution = p.host.attribution;
  // Attached whatever host.refuse says, so that a reload can turn refusing on and off (a flag the
  // programs read); off, they only look the remote up.
  ho.refusal = true;
  ho.cgroup = opts_.cgroup.value_or(p.host.cgroup);
  auto h = HostPrograms::Load(*dp_, ho);
  if (!h.ok()) {
    host_off_ = std::string(h.status().message());
    Log(absl::StrCat("host context off: ", host_off_,
                     "; blocks are enforced at TC egress only, events name no process"),
        LogLevel::kWarning);
    return;
  }
  host_ = std::move(*h);
  Log(host_->attribution()
          ? absl::StrCat("process attribution: ", host_->attribution_hooks())
          : absl::StrCat("process attribution off: ", host_->attribution_off()),
      host_->attribution() ? LogLevel::kInfo : LogLevel::kWarning);
  Log(host_->refusal()
          ? absl::StrCat("connect-time refusal: cgroup ", host_->cgroup(),
                         p.host.refuse ? "" : " (off in the policy: host.refuse: false)")
          : absl::StrCat("connect-time refusal off: ", host_->refusal_off(),
                         "; blocks are enforced at TC egress"),
      host_->refusal() ? LogLevel::kInfo : LogLevel::kWarning);
}

void Daemon::ConfigureHost(const Policy& p) {
  if (!host_) return;
  uint32_t flags = 0;
  if (p.host.refuse) flags |= BW_HOST_REFUSE;
  if (p.beacon.on && p.beacon.all_connections) flags |= BW_HOST_CONNECT_EVENTS;
  absl::Status st = host_->Configure(flags, p.host.event_budget);
  if (!st.ok()) Log(absl::StrCat("host context: ", st.message()), LogLevel::kError);
}

json Daemon::CrowdsecStatus() const {
  const CrowdsecRecord& c = crowdsec_record_;
  const CrowdsecSettings& s = crowdsec_->settings();
  auto time_or_null = [](absl::Time t) { return t == absl::InfinitePast() ? json(nullptr) : json(TimeText(t)); };
  return {{"url", s.url},
          {"poll_s", absl::ToDoubleSeconds(s.poll)},
          {"up", c.polls_ok > 0 && c.consecutive_failures == 0},
          {"decisions", decisions_.size()},
          {"last_ok", time_or_null(c.last_ok)},
          {"last_attempt", time_or_null(c.last_attempt)},
          {"last_took_s", absl::ToDoubleSeconds(c.last_took)},
          {"last_bytes", c.last_bytes},
          {"polls_ok", c.polls_ok},
          {"polls_failed", c.polls_failed},
          {"consecutive_failures", c.consecutive_failures},
          {"last_error", c.last_error},
          {"expired", c.expired},
          {"skipped_scope", c.skipped_scope},
          {"skipped_value", c.skipped_value}};
}

void Daemon::SyncCrowdsec() {
  const CrowdsecSettings& want = reloader_->policy().crowdsec;
  if (crowdsec_ && want.on() && crowdsec_->settings().SameSource(want)) return;
  // Neither running nor wanted: nothing to do (this runs every 100 ms).
  if (!crowdsec_ && !want.on()) return;
  if (crowdsec_) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, crowdsec_->fd(), nullptr);
    crowdsec_.reset();
  }
  if (!want.on()) {
    if (decisions_.size() > 0) {
      decisions_.Clear();
      Log("crowdsec: no crowdsec section in the policy any more; its decisions dropped");
    }
    crowdsec_record_ = {};
    SaveDecisions();  // removes the file
    return;
  }
  auto p = CrowdsecPoller::Start(want, PrefixOptions{reloader_->policy().allow_default_route});
  if (!p.ok()) {
    Log(absl::StrCat("crowdsec: ", p.status().message()), LogLevel::kError);
    return;
  }
  crowdsec_ = std::move(*p);
  crowdsec_record_ = {};
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.fd = crowdsec_->fd();
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, crowdsec_->fd(), &e);
  Log(absl::StrCat("crowdsec: polling ", want.url, " every ", absl::FormatDuration(want.poll)));
}

void Daemon::OnCrowdsecResults() {
  bool changed = false;
  uint64_t added = 0, deleted = 0;
  for (CrowdsecPoller::Result& r : crowdsec_->Take()) {
    CrowdsecRecord& c = crowdsec_record_;
    c.last_attempt = r.at;
    c.last_took = r.took;
    c.last_bytes = r.bytes;
    if (!r.error.ok()) {
      ++c.polls_failed;
      // Said once when it starts failing, then every tenth time: the API may be down for hours.
      if (c.consecutive_failures++ % 10 == 0)
        Log(absl::StrCat("crowdsec: ", r.error.message(), "; keeping the ", decisions_.size(),
                         " decisions held (", c.consecutive_failures, " failed in a row)"),
            LogLevel::kWarning);
      c.last_error = std::string(r.error.message());
      continue;
    }
    if (c.consecutive_failures > 0 || c.polls_ok == 0)
      Log(absl::StrCat("crowdsec: ", crowdsec_->settings().url, " answered (",
                       r.stream.added.size(), " decisions", r.startup ? ", the whole set" : "",
                       ": ", r.bytes, " bytes in ", absl::FormatDuration(r.took), ")"));
    ++c.polls_ok;
    c.consecutive_failures = 0;
    c.last_error.clear();
    c.last_ok = r.at;
    c.skipped_scope += r.stream.skipped_scope;
    c.skipped_value += r.stream.skipped_value;
    added += r.stream.added.size();
    deleted += r.stream.deleted.size();
    changed |= decisions_.Apply(r.stream, r.startup, r.at);
  }
  if (changed)
    ApplyDecisions(absl::StrCat("crowdsec: ", added, " new, ", deleted, " deleted"));
}

void Daemon::LoadDecisions(const Policy& p) {
  if (decisions_file_.empty() || !p.crowdsec.on()) return;
  if (::access(decisions_file_.c_str(), F_OK) != 0) return;
  auto text = ReadWholeFile(decisions_file_, uint64_t{1} << 30);
  absl::StatusOr<DecisionSet> set =
      text.ok() ? DecisionSet::Load(*text, p.crowdsec.url, absl::Now()) : text.status();
  if (!set.ok()) {
    Log(absl::StrCat("crowdsec: ", decisions_file_, ": ", set.status().message(),
                     "; starting with no decisions until the API answers"),
        LogLevel::kWarning);
    return;
  }
  decisions_ = std::move(*set);
  Log(absl::StrCat("crowdsec: ", decisions_.size(), " decisions carried over from ",
                   decisions_file_, " until the API answers"));
}

void Daemon::SaveDecisions() {
  decisions_dirty_ = false;
  decisions_saved_at_ = absl::Now();
  if (decisions_file_.empty()) return;
  if (!crowdsec_) {
    ::unlink(decisions_file_.c_str());
    return;
  }
  absl::Status st = WriteFileAtomically(decisions_file_, decisions_.Save(crowdsec_->settings().url));
  if (!st.ok()) Log(absl::StrCat("crowdsec: saving the decisions: ", st.message()), LogLevel::kWarning);
}

void Daemon::ApplyDecisions(const std::string& why) {
  decisions_dirty_ = true;
  // On error the policy in force stays (Reload logs it); the next change tries again.
  if (reloader_->Reload(why, runtime_->state()).ok())
    notify_.Send(absl::StrCat("STATUS=", StatusText()));
}

ControlServer::Reply Daemon::HandleControl(const json& raw) {
  auto parsed = ParseControlRequest(raw);
  if (!parsed.ok()) return {{{"ok", false}, {"error", std::string(parsed.status().message())}}};
  const ControlRequest& req = *parsed;
  const std::string& cmd = req.cmd;
  if (cmd == "status") return {Status()};
  if (cmd == "block") return {runtime_->Add(req, "block")};
  if (cmd == "watch") return {runtime_->Add(req, "watch")};
  if (cmd == "allow") return {runtime_->Add(req, "safelist")};
  if (cmd == "unlist") return {runtime_->Unlist(req)};
  if (cmd == "list") return {runtime_->List()};
  if (cmd == "reload") {
    absl::Status st = ReloadPolicy("control");
    if (!st.ok()) return {{{"ok", false}, {"error", std::string(st.message())}}};
    return {{{"ok", true}, {"summary", reloader_->record().summary}}};
  }
  if (cmd == "query") {
    auto addr = ParseAddress(req.ip);
    if (!addr.ok()) return {{{"ok", false}, {"error", std::string(addr.status().message())}}};
    const CompiledPolicy& compiled = *reloader_->compiled();
    Explanation ex = compiled.Explain(*addr);
    json j = {{"ok", true}, {"query", addr->HumanString()},
              {"text", compiled.ExplainText(*addr)}};
    if (ex.match) {
      const CompiledList* l = compiled.list(ex.match->value.list_id);
      j["effective_action"] = ListActionName(static_cast<ListAction>(
          ex.match->value.action & BW_ACTION_SAFELIST   ? BW_ACTION_SAFELIST
          : ex.match->value.action & BW_ACTION_BLOCK    ? BW_ACTION_BLOCK
                                                        : BW_ACTION_WATCH));
      j["list"] = l ? l->name : "";
      j["kernel_key"] = ex.match->prefix.ToString();
      j["deciding_entry"] = compiled.EntryLocation(ex.deciding_entry);
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
  const CompiledPolicy& compiled = *reloader_->compiled();
  ListCounters::ByList stats = counters_->Get(compiled.v4.size() + compiled.v6.size());
  m.Family("bannerwatch_list_entries", "gauge", "Entries of each list in the applied policy");
  for (const CompiledList& l : compiled.lists)
    m.Sample("bannerwatch_list_entries",
             absl::StrCat(MetricsText::Label("list", l.name), ",",
                          MetricsText::Label("action", ListActionName(l.action))),
             static_cast<uint64_t>(l.expired ? 0 : l.entries));
  m.Family("bannerwatch_list_hits_total", "counter", "Connection starts with a watched address, by list (cached up to 10 s)");
  for (const CompiledList& l : compiled.lists)
    m.Sample("bannerwatch_list_hits_total", MetricsText::Label("list", l.name), stats[l.id].hits);
  m.Family("bannerwatch_list_drops_total", "counter", "Packets dropped for a blocked address, by list (cached up to 10 s)");
  for (const CompiledList& l : compiled.lists)
    m.Sample("bannerwatch_list_drops_total", MetricsText::Label("list", l.name), stats[l.id].drops);
  EventPipeline::Stats es = events_->stats();
  m.Family("bannerwatch_eve_lines_written_total", "counter", "EVE lines written");
  m.Sample("bannerwatch_eve_lines_written_total", "", es.lines_written);
  m.Family("bannerwatch_eve_lines_dropped_total", "counter", "EVE lines lost to write errors");
  m.Sample("bannerwatch_eve_lines_dropped_total", "", es.lines_dropped);
  if (!es.syslog_socket.empty()) {
    m.Family("bannerwatch_eve_syslog_sent_total", "counter", "EVE lines sent to the syslog socket");
    m.Sample("bannerwatch_eve_syslog_sent_total", "", es.syslog_sent);
    m.Family("bannerwatch_eve_syslog_dropped_total", "counter",
             "EVE lines the syslog socket did not take (no receiver, or its queue full)");
    m.Sample("bannerwatch_eve_syslog_dropped_total", "", es.syslog_dropped);
  }
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
  const Reloader::Record& r = reloader_->record();
  m.Sample("bannerwatch_reloads_total", MetricsText::Label("result", "ok"), r.ok);
  m.Sample("bannerwatch_reloads_total", MetricsText::Label("result", "error"), r.failed);
  m.Family("bannerwatch_last_reload_success", "gauge", "1 if the last reload was applied");
  m.Sample("bannerwatch_last_reload_success", "", uint64_t{r.last_ok ? 1u : 0u});
  m.Family("bannerwatch_reload_buffers_bytes", "gauge",
           "Memory held for the next reload to write its tables into (keep_reload_buffers)");
  m.Sample("bannerwatch_reload_buffers_bytes", "", reloader_->BufferBytes());
  m.Family("bannerwatch_last_reload_timestamp_seconds", "gauge", "Unix time of the last reload");
  m.Sample("bannerwatch_last_reload_timestamp_seconds", "", absl::ToDoubleSeconds(r.last - absl::UnixEpoch()));
  m.Family("bannerwatch_host_attribution_up", "gauge",
           "1 if connections are attributed to processes (connect/accept hooks attached)");
  m.Sample("bannerwatch_host_attribution_up", "", uint64_t{host_ && host_->attribution()});
  m.Family("bannerwatch_host_refusal_up", "gauge",
           "1 if connect()/sendmsg() to blocked remotes are refused (EPERM); 0: TC egress only");
  m.Sample("bannerwatch_host_refusal_up", "",
           uint64_t{host_ && host_->refusal() && reloader_->policy().host.refuse});
  if (host_) {
    if (auto c = host_->Counters(); c.ok()) {
      m.Family("bannerwatch_host_refused_total", "counter",
               "Calls refused with EPERM because the remote is blocked");
      m.Sample("bannerwatch_host_refused_total", MetricsText::Label("call", "connect"),
               (*c)[BW_HCNT_refused_connect]);
      m.Sample("bannerwatch_host_refused_total", MetricsText::Label("call", "sendmsg"),
               (*c)[BW_HCNT_refused_sendmsg]);
      m.Family("bannerwatch_host_connections_total", "counter",
               "TCP connections whose process was recorded");
      m.Sample("bannerwatch_host_connections_total", MetricsText::Label("origin", "connect"),
               (*c)[BW_HCNT_connects]);
      m.Sample("bannerwatch_host_connections_total", MetricsText::Label("origin", "accept"),
               (*c)[BW_HCNT_accepts]);
      m.Family("bannerwatch_host_events_lost_total", "counter",
               "Host-context events not written (ring full or the per-CPU budget spent)");
      m.Sample("bannerwatch_host_events_lost_total", MetricsText::Label("reason", "ring_full"),
               (*c)[BW_HCNT_sock_events_lost]);
      m.Sample("bannerwatch_host_events_lost_total", MetricsText::Label("reason", "budget"),
               (*c)[BW_HCNT_sock_events_budget]);
    }
  }
  if (auto hs = events_->host_stats()) {
    m.Family("bannerwatch_events_process_total", "counter",
             "TCP events by whether the process behind the connection was known");
    m.Sample("bannerwatch_events_process_total", MetricsText::Label("result", "named"), hs->named);
    m.Sample("bannerwatch_events_process_total", MetricsText::Label("result", "unknown"), hs->unknown);
    m.Sample("bannerwatch_events_process_total", MetricsText::Label("result", "stale"), hs->stale);
    m.Family("bannerwatch_beacon_pairs", "gauge", "(process, remote) pairs tracked for beaconing");
    m.Sample("bannerwatch_beacon_pairs", "", hs->beacon_pairs);
    m.Family("bannerwatch_beacon_alerts_total", "counter", "Beacon alerts (1000152)");
    m.Sample("bannerwatch_beacon_alerts_total", "", hs->beacon_alerts);
  }
  if (crowdsec_) {
    const CrowdsecRecord& c = crowdsec_record_;
    m.Family("bannerwatch_crowdsec_up", "gauge",
             "1 if the last poll of the CrowdSec Local API was answered");
    m.Sample("bannerwatch_crowdsec_up", "", uint64_t{c.polls_ok > 0 && c.consecutive_failures == 0});
    m.Family("bannerwatch_crowdsec_decisions", "gauge",
             "CrowdSec decisions held (the last good answers, less those expired)");
    m.Sample("bannerwatch_crowdsec_decisions", "", static_cast<uint64_t>(decisions_.size()));
    m.Family("bannerwatch_crowdsec_polls_total", "counter", "Polls of the CrowdSec Local API by result");
    m.Sample("bannerwatch_crowdsec_polls_total", MetricsText::Label("result", "ok"), c.polls_ok);
    m.Sample("bannerwatch_crowdsec_polls_total", MetricsText::Label("result", "error"), c.polls_failed);
    m.Family("bannerwatch_crowdsec_last_success_timestamp_seconds", "gauge",
             "Unix time of the last answered poll (0: none yet)");
    m.Sample("bannerwatch_crowdsec_last_success_timestamp_seconds", "",
             c.last_ok == absl::InfinitePast() ? 0.0 : absl::ToDoubleSeconds(c.last_ok - absl::UnixEpoch()));
  }
  return m.str();
}

std::string Daemon::StatusText() {
  std::string ifs;
  for (const Attachment& a : attached_) absl::StrAppend(&ifs, ifs.empty() ? "" : ", ", a.ifname);
  const CompiledPolicy& c = *reloader_->compiled();
  const Reloader::Record& r = reloader_->record();
  return Notifier::StatusLine(absl::StrCat(
      "enforcing ", c.v4.size() + c.v6.size(), " prefixes on ", ifs,
      r.last_ok ? "" : absl::StrCat("; last reload rejected: ", r.error)));
}

absl::Status Daemon::ReloadPolicy(const std::string& why) {
  // MONOTONIC_USEC: systemd 253 and later match the reload to its READY=1 by it.
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  notify_.Send(absl::StrCat("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=",
                            uint64_t(ts.tv_sec) * 1000000 + uint64_t(ts.tv_nsec) / 1000));
  absl::Status st = reloader_->Reload(why, runtime_->state());
  notify_.Send(absl::StrCat("READY=1\nSTATUS=", StatusText()));
  return st;
}

void Daemon::OnReloadSignal() {
  absl::Status rs = events_->ReopenSink();
  if (!rs.ok()) Log(absl::StrCat("reopen EVE: ", rs.message()), LogLevel::kError);
  (void)ReloadPolicy("SIGHUP");
}

void Daemon::OnTimer() {
  uint64_t ticks;
  (void)!::read(timerfd_.get(), &ticks, sizeof(ticks));
  absl::Time now = absl::Now();
  // The watchdog's ping comes from here: a loop that stops turning stops pinging.
  notify_.WatchdogTick(now);
  // Clients that have not sent a whole request, or not taken their answer, within their time.
  if (control_) control_->ExpireDeadlines(now);
  if (metrics_) metrics_->ExpireDeadlines(now);
  reloader_->TakePremade();  // the buffers made after the start, once ready
  if (files_->TakeDue(now)) (void)ReloadPolicy("file changed");
  if (now >= runtime_->NextExpiry()) runtime_->Expire(now);
  // Decisions that ran out, lifted even while the API is unreachable; at most once a second (a
  // bulk import's decisions end within moments of each other).
  if (now >= decisions_.NextExpiry() && now - decisions_expired_at_ >= absl::Seconds(1)) {
    decisions_expired_at_ = now;
    size_t n = decisions_.Expire(now);
    crowdsec_record_.expired += n;
    if (n > 0) ApplyDecisions(absl::StrCat("crowdsec: ", n, " decisions expired"));
  }
  // Here rather than in the reload: a reload may run while the poller's answers are handled.
  SyncCrowdsec();
  if (decisions_dirty_ && now - decisions_saved_at_ >= absl::Minutes(1)) SaveDecisions();
}

void Daemon::WatchPolicyFiles() {
  std::vector<std::string> files;
  const Policy& p = reloader_->policy();
  for (uint32_t i = 0; i < p.files.size(); ++i)
    if (p.files[i] != state_file_ && (p.decisions_file == 0 || i != p.decisions_file))
      files.push_back(p.files[i]);
  // A new bouncer key is read by the reload its change starts.
  if (p.crowdsec.on()) files.push_back(p.crowdsec.key_file);
  if (files_) files_->Watch(files);
}

absl::Status Daemon::Start() {
  // The policy first: an invalid one at start is fatal, before anything is touched.
  auto probe = LoadPolicyFile(opts_.config_path);
  if (!probe.ok()) return probe.status();
  const Policy& p0 = *probe;
  pin_root_ = opts_.pin_root.value_or(p0.pin_root);
  state_file_ = opts_.state_file.value_or(p0.state_file);
  if (!state_file_.empty())
    decisions_file_ = std::filesystem::path(state_file_).replace_filename("crowdsec-decisions.json");
  keep_on_exit_ = p0.keep_on_exit;

  auto lock = PinRootLock::Take(pin_root_);
  if (!lock.ok()) return lock.status();
  lock_.emplace(std::move(*lock));

  auto state_lock = StateFileLock::Take(state_file_);
  if (!state_lock.ok()) return state_lock.status();
  state_lock_.emplace(std::move(*state_lock));
  auto loaded = RuntimeState::Load(state_file_);
  if (!loaded.ok()) return loaded.status();

  // The sockets before the kernel is touched: a control socket or metrics port another daemon
  // serves fails the start here, with nothing loaded, attached or replaced. Requests wait in the
  // backlog until the loop runs.
  std::string ctl = opts_.control_socket.value_or(p0.control_socket);
  if (!ctl.empty()) {
    auto c = ControlServer::Listen(
        ctl, [this](const json& r) { return HandleControl(r); },
        [this](int fd) { events_->AddFollower(fd); },
        ControlAccess{p0.control_group, p0.control_admin_group});
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

  auto files = FileWatch::Create();
  if (!files.ok()) return files.status();
  files_ = std::move(*files);
  counters_ = std::make_unique<ListCounters>(maps_);
  reloader_ = std::make_unique<Reloader>(opts_.config_path, state_file_, *dp_, maps_);
  reloader_->SetDecisions(&decisions_);
  StartHost(p0);
  reloader_->OnApplied([this](const CompiledPolicy* c) {
    // The event thread moves to the new policy before the old one is freed or written over.
    if (events_) events_->SetPolicy(c);
    ConfigureHost(reloader_->policy());
    WatchPolicyFiles();
  });
  runtime_ = std::make_unique<RuntimeLists>(state_file_, std::move(*loaded), *reloader_);
  LoadDecisions(p0);
  absl::Status st = reloader_->Reload("start", runtime_->state());
  if (!st.ok()) return st;

  // Output before attaching, so the first events have somewhere to go.
  EveSinkOptions so;
  so.path = opts_.eve_path.value_or(reloader_->policy().eve_path);
  so.to_stdout = opts_.eve_stdout.value_or(reloader_->policy().eve_stdout);
  std::unique_ptr<EveSink> sink;
  if (!so.path.empty() || so.to_stdout) {
    auto opened = EveSink::Open(so);
    if (!opened.ok()) return opened.status();
    sink = std::move(*opened);
  }
  std::unique_ptr<SyslogSink> syslog;
  EveSyslog sl = reloader_->policy().eve_syslog;
  if (opts_.eve_syslog.value_or(sl.on)) {
    SyslogOptions o;
    o.socket = sl.socket;
    o.facility = sl.facility;
    o.severity = sl.severity;
    o.hostname = reloader_->policy().eve.host;
    auto opened = SyslogSink::Open(o);
    if (!opened.ok()) return opened.status();
    syslog = std::move(*opened);
  }
  auto events = EventPipeline::Create(dp_->events_fd(), std::move(sink), std::move(syslog));
  if (!events.ok()) return events.status();
  events_ = std::move(*events);
  events_->SetPolicy(reloader_->compiled());
  if (host_) {
    absl::Status hs = events_->AttachHost(host_->events_fd(),
                                          host_->attribution() ? host_->socks_fd() : -1,
                                          host_->exes_fd());
    if (!hs.ok()) return hs;
  }
  // Events the kernel buffered while no daemon was running (the thread starts once the signals
  // are blocked, below).
  auto drained = events_->DrainNow();
  if (drained.ok() && *drained > 0) Log(absl::StrCat(*drained, " events buffered while down, written"));

  // Pinned before they are attached: whatever happens next, the filters and links they end up in
  // are recognised as this pin root's (by this daemon at stop, the next one, `detach`).
  if (absl::Status pinned = PinPrograms(pin_root_, {dp_->xdp_fd(), dp_->tc_fd()}); !pinned.ok())
    return pinned;
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
               : absl::StrCat("detaching from ", old, ": ", d.message()),
        d.ok() ? LogLevel::kInfo : LogLevel::kWarning);
  }
  // A previous daemon's programs are on no interface now: their pins go.
  if (absl::Status u = UnpinProgramsExcept(pin_root_, {dp_->xdp_fd(), dp_->tc_fd()}); !u.ok())
    Log(absl::StrCat("unpinning earlier programs: ", u.message()), LogLevel::kWarning);

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
  add(files_->fd());
  if (control_) add(control_->fd());
  if (metrics_) add(metrics_->fd());
  absl::Status started = events_->Start();  // after the mask: the thread inherits it
  if (!started.ok()) return started;
  EventPipeline::Stats es = events_->stats();
  Log(absl::StrCat("running: policy ", opts_.config_path, ", EVE ",
                   es.has_sink ? (es.sink_path.empty() ? "stdout" : es.sink_path) : "off",
                   es.syslog_socket.empty() ? "" : absl::StrCat(" and syslog ", es.syslog_socket),
                   control_ ? absl::StrCat(", control ", ctl) : ""));
  reloader_->StartPremade();
  SyncCrowdsec();  // after the mask, as the event thread
  // The policy is applied and every interface attached: enforced.
  notify_.Send(absl::StrCat("READY=1\nSTATUS=", StatusText()));
  if (notify_.watchdog() > absl::ZeroDuration())
    Log(absl::StrCat("watchdog: pinging every ", absl::FormatDuration(notify_.watchdog() / 2),
                     " at most"));
  return absl::OkStatus();
}

void Daemon::Shutdown() {
  counters_->Stop();
  events_->Stop();  // every event that reached the ring is written
  // As the policy in force says: an operator who turns keep_on_exit off (or on) and reloads
  // gets that at the next stop, as `systemctl reload` then `stop` would lead one to expect.
  if (reloader_->policy().keep_on_exit) {
    Log("stopping; keep_on_exit: programs stay attached and maps pinned");
    return;
  }
  for (const Attachment& a : attached_) {
    absl::Status st = DetachInterface(pin_root_, a.ifname);
    if (!st.ok()) Log(absl::StrCat("detach ", a.ifname, ": ", st.message()), LogLevel::kError);
  }
  absl::Status st = UnpinProgramsExcept(pin_root_, {});
  if (st.ok()) st = dp_->UnpinMaps();
  if (!st.ok()) Log(absl::StrCat("unpin: ", st.message()), LogLevel::kError);
  Log("stopped; detached and unpinned");
}

int Daemon::Run() {
  absl::Status st = Start();
  if (!st.ok()) {
    Log(absl::StrCat("cannot start: ", st.message()), LogLevel::kError);
    notify_.Send(Notifier::StatusLine(absl::StrCat("STATUS=cannot start: ", st.message())));
    // Attachments made before the failure must not stay behind a dead daemon, unless adopted.
    if (dp_ && !keep_on_exit_ && !dp_->adopted()) {
      for (const Attachment& a : attached_) (void)DetachInterface(pin_root_, a.ifname);
      (void)UnpinProgramsExcept(pin_root_, {});
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
      Log(absl::StrCat("epoll_wait: ", std::strerror(errno)), LogLevel::kError);
      break;
    }
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      if (fd == sigfd_.get()) {
        signalfd_siginfo si;
        while (::read(sigfd_.get(), &si, sizeof(si)) == sizeof(si)) {
          if (si.ssi_signo == SIGHUP) {
            OnReloadSignal();
          } else {
            Log(absl::StrCat("signal ", si.ssi_signo, ": stopping"));
            stop_ = true;
          }
        }
      } else if (fd == timerfd_.get()) {
        OnTimer();
      } else if (files_ && fd == files_->fd()) {
        files_->OnReadable();
      } else if (control_ && fd == control_->fd()) {
        control_->OnReadable();
      } else if (metrics_ && fd == metrics_->fd()) {
        metrics_->OnReadable();
      } else if (crowdsec_ && fd == crowdsec_->fd()) {
        OnCrowdsecResults();
      }
    }
  }
  notify_.Send("STOPPING=1\nSTATUS=stopping");
  if (crowdsec_) SaveDecisions();
  crowdsec_.reset();
  Shutdown();
  return 0;
}

}  // namespace

int RunDaemon(const DaemonOptions& opts) {
  InstallLibbpfLog(opts.verbose);
  Daemon d(opts);
  return d.Run();
}

}  // namespace bw
