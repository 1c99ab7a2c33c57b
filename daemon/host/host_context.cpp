#include "daemon/host/host_context.hpp"

#include <bpf/bpf.h>

#include <cstring>
#include <string>
#include <vector>
#include <netinet/in.h>

namespace bw {

namespace {

bool SameOptions(const BeaconOptions& a, const BeaconOptions& b) {
  return a.min_connections == b.min_connections && a.window == b.window &&
         a.threshold == b.threshold && a.realert == b.realert && a.idle == b.idle &&
         a.max_pairs == b.max_pairs && a.full_count == b.full_count;
}

ProcessRecord RecordOf(const bw_proc& p) {
  ProcessRecord r;
  r.pid = p.tgid;
  r.tid = p.tid;
  r.ppid = p.ppid;
  r.uid = p.uid;
  r.gid = p.gid;
  r.cgroup_id = p.cgroup_id;
  r.start_boottime_ns = p.start_boottime_ns;
  r.comm.assign(p.comm, strnlen(p.comm, sizeof(p.comm)));
  return r;
}

}  // namespace

bw_sock_key SockKeyOfEvent(const bw_event& ev) {
  bw_sock_key k{};
  const bool egress = ev.direction == BW_DIR_EGRESS;
  std::memcpy(k.laddr, egress ? ev.saddr : ev.daddr, 16);
  std::memcpy(k.raddr, egress ? ev.daddr : ev.saddr, 16);
  k.lport = egress ? ev.sport : ev.dport;
  k.rport = egress ? ev.dport : ev.sport;
  k.family = ev.family;
  return k;
}

std::string ExePathOfRecord(const bw_exe& e) {
  if (!(e.flags & BW_EXE_COMPLETE) || e.len == 0 || e.len > BW_EXE_PATH) return {};
  // Components from the file up, each NUL-terminated: joined the other way round.
  std::vector<std::string_view> parts;
  size_t at = 0;
  while (at < e.len) {
    const void* nul = std::memchr(e.path + at, '\0', e.len - at);
    if (nul == nullptr) return {};  // the last component lost its end
    size_t n = static_cast<size_t>(static_cast<const char*>(nul) - (e.path + at));
    if (n == 0) return {};
    parts.emplace_back(e.path + at, n);
    at += n + 1;
  }
  std::string path;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    path += '/';
    path.append(it->data(), it->size());
  }
  return path;
}

HostContext::HostContext(int socks_fd, ProcessResolver::Options resolver, int exes_fd)
    : socks_fd_(socks_fd), exes_fd_(exes_fd), resolver_(std::move(resolver)) {}

const ProcessContext* HostContext::Resolve(const bw_proc& rec) {
  if (rec.tgid == 0) return nullptr;
  current_ = resolver_.Resolve(RecordOf(rec));
  // The kernel's record of the executable, taken while the process ran (it may be gone now, or
  // hidden from this daemon's /proc): preferred to what /proc says.
  if (exes_fd_ >= 0) {
    bw_exe_key k{};
    k.start_boottime_ns = rec.start_boottime_ns;
    k.tgid = rec.tgid;
    bw_exe e{};
    if (bpf_map_lookup_elem(exes_fd_, &k, &e) == 0) {
      std::string path = ExePathOfRecord(e);
      if (!path.empty()) current_.executable = std::move(path);
    }
  }
  return &current_;
}

const ProcessContext* HostContext::ProcessFor(const bw_event& ev) {
  if (socks_fd_ < 0 || ev.l4proto != IPPROTO_TCP || ev.kind == BW_EV_BEACON) return nullptr;
  bw_sock_key k = SockKeyOfEvent(ev);
  bw_proc rec{};
  if (bpf_map_lookup_elem(socks_fd_, &k, &rec) != 0) {
    unknown_.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  // A connect record is taken before the connection's first packet: one newer than the event
  // belongs to a later connection on the same addresses and ports. (An accept record is newer
  // than its connection's SYN by design.)
  // A record whose connection closed before the event is a previous connection's.
  if ((rec.origin == BW_PROC_CONNECT && rec.ts_ns > ev.ts_ns) ||
      (rec.closed_ns != 0 && rec.closed_ns < ev.ts_ns)) {
    stale_.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  named_.fetch_add(1, std::memory_order_relaxed);
  return Resolve(rec);
}

void HostContext::SetBeacon(const std::optional<BeaconOptions>& o) {
  if (!o) {
    tracker_.reset();
    beacon_options_.reset();
    return;
  }
  if (tracker_ && beacon_options_ && SameOptions(*beacon_options_, *o)) return;
  beacon_options_ = o;
  tracker_ = std::make_unique<BeaconTracker>(*o);
}

std::optional<HostContext::BeaconEvent> HostContext::OnStart(const bw_event& start,
                                                              std::string_view who, uint32_t uid) {
  if (!tracker_) return std::nullopt;
  const bw_sock_key k = SockKeyOfEvent(start);
  BeaconEvent out;
  bw_event& ev = out.ev;
  ev.ts_ns = start.ts_ns;
  ev.kind = BW_EV_BEACON;
  ev.direction = BW_DIR_EGRESS;
  ev.family = start.family;
  ev.verdict = BW_VERDICT_PASS;
  ev.l4proto = IPPROTO_TCP;
  ev.tcp_flags = 0x02;  // the connection's SYN: from the client, this host
  std::memcpy(ev.saddr, k.laddr, 16);
  std::memcpy(ev.daddr, k.raddr, 16);
  ev.sport = k.lport;
  ev.dport = k.rport;
  ev.list_id = start.list_id;
  ev.entry_ref = start.entry_ref;
  ev.list_action = start.list_action;
  ev.prefixlen = start.prefixlen;
  BeaconKey key;
  key.who = std::string(who);
  key.uid = uid;
  key.family = start.family;
  std::memcpy(key.remote.data(), k.raddr, 16);
  auto alert = tracker_->Observe(key, EveFlowId(ev), static_cast<int64_t>(start.ts_ns));
  beacon_pairs_.store(tracker_->pairs(), std::memory_order_relaxed);
  beacon_evicted_.store(tracker_->evicted(), std::memory_order_relaxed);
  beacon_alerts_.store(tracker_->alerts(), std::memory_order_relaxed);
  if (!alert) return std::nullopt;
  out.alert = std::move(*alert);
  return out;
}

void HostContext::ExpireBeacons(int64_t now_ns) {
  if (!tracker_) return;
  tracker_->Expire(now_ns);
  beacon_pairs_.store(tracker_->pairs(), std::memory_order_relaxed);
}

HostContext::Stats HostContext::stats() const {
  Stats s;
  s.named = named_.load(std::memory_order_relaxed);
  s.unknown = unknown_.load(std::memory_order_relaxed);
  s.stale = stale_.load(std::memory_order_relaxed);
  s.beacon_pairs = beacon_pairs_.load(std::memory_order_relaxed);
  s.beacon_alerts = beacon_alerts_.load(std::memory_order_relaxed);
  s.beacon_evicted = beacon_evicted_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace bw
