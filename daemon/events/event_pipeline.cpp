#include "daemon/events/event_pipeline.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "daemon/service/log.hpp"

namespace bw {
namespace {

int64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// NTP steps move CLOCK_REALTIME, not the kernel's CLOCK_MONOTONIC event stamps.
constexpr int64_t kClockResyncNs = 10'000'000'000;
// How long the thread sleeps with nothing in the ring (then it flushes the sink).
constexpr int kIdleWaitMs = 100;

}  // namespace

std::string_view EventPipeline::Lookup::IfName(uint32_t ifindex) const {
  auto it = ifnames_.find(ifindex);
  if (it != ifnames_.end()) return it->second;
  char buf[IF_NAMESIZE] = {};
  if (!if_indextoname(ifindex, buf)) return {};
  return ifnames_.emplace(ifindex, buf).first->second;
}

absl::StatusOr<std::unique_ptr<EventPipeline>> EventPipeline::Create(
    int ringbuf_fd, std::unique_ptr<EveSink> sink, std::unique_ptr<SyslogSink> syslog) {
  std::unique_ptr<EventPipeline> p(new EventPipeline());
  p->sink_ = std::move(sink);
  p->syslog_ = std::move(syslog);
  p->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p->wake_fd_ < 0) return ErrnoStatus("event pipeline", "eventfd", errno);
  EventPipeline* self = p.get();
  auto reader = EventReader::Create(ringbuf_fd, [self](const bw_event& e) { self->OnEvent(e); });
  if (!reader.ok()) return reader.status();
  p->reader_ = std::move(*reader);
  // Events the pre-filter decided get their entry from the applied policy in memory, not from a
  // trie lookup (a syscall) per event.
  p->reader_->set_v4_resolver([self](const uint8_t* a) { return self->ResolveV4(a); });
  p->clock_resync_ns_ = MonotonicNs();
  return p;
}

EventPipeline::~EventPipeline() {
  Stop();
  std::lock_guard<std::mutex> l(out_mu_);
  for (int f : followers_) ::close(f);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

absl::Status EventPipeline::AttachHost(int sock_ring_fd, int socks_fd, int exes_fd,
                                       ProcessResolver::Options resolver) {
  if (thread_.joinable()) return absl::FailedPreconditionError("AttachHost after Start");
  EventPipeline* self = this;
  absl::Status st =
      reader_->AddSockRing(sock_ring_fd, [self](const bw_sock_event& e) { self->OnSockEvent(e); });
  if (!st.ok()) return st;
  std::lock_guard<std::mutex> l(policy_mu_);
  host_ = std::make_unique<HostContext>(socks_fd, std::move(resolver), exes_fd);
  const CompiledPolicy* c = lookup_.policy();
  if (c && c->beacon.on) host_->SetBeacon(c->beacon.options);
  beacon_all_ = c && c->beacon.all_connections;
  return absl::OkStatus();
}

std::optional<HostContext::Stats> EventPipeline::host_stats() const {
  if (!host_) return std::nullopt;
  return host_->stats();
}

void EventPipeline::SetPolicy(const CompiledPolicy* policy) {
  std::lock_guard<std::mutex> l(policy_mu_);
  lookup_.set_policy(policy);
  if (policy) formatter_.set_options(EveOptionsFor(policy->eve));
  if (policy && host_) {
    host_->SetBeacon(policy->beacon.on ? std::optional<BeaconOptions>(policy->beacon.options)
                                       : std::nullopt);
    beacon_all_ = policy->beacon.all_connections;
  }
  v4_match_.reset();  // built from the new one's table when an event first needs it
}

std::optional<bw_list_value> EventPipeline::ResolveV4(const uint8_t* addr4) {
  std::lock_guard<std::mutex> l(policy_mu_);
  const CompiledPolicy* c = lookup_.policy();
  if (!c) return std::nullopt;
  if (!v4_match_) v4_match_ = std::make_unique<V4Match>(c->v4);
  uint32_t a;
  std::memcpy(&a, addr4, 4);
  const KernelEntry* e = v4_match_->Find(ntohl(a));
  if (!e) return std::nullopt;
  return e->value.ToMap();
}

void EventPipeline::OnEvent(const bw_event& ev) {
  EveExtra extra;
  if (host_) extra.process = host_->ProcessFor(ev);
  Write(ev, extra);
  // An outbound connection to a watched address starts: its SYN leaving, or (where the SYN went
  // unseen) its SYN-ACK arriving; the tracker counts a connection once by its flow id.
  constexpr uint8_t kSyn = 0x02, kAck = 0x10;
  if (host_ && ev.kind == BW_EV_WATCH && ev.l4proto == IPPROTO_TCP &&
      ((ev.direction == BW_DIR_EGRESS && (ev.tcp_flags & (kSyn | kAck)) == kSyn) ||
       (ev.direction == BW_DIR_INGRESS && (ev.tcp_flags & (kSyn | kAck)) == (kSyn | kAck))))
    if (auto b = BeaconStart(ev, extra.process ? extra.process->name : "",
                             extra.process ? extra.process->uid : 0, /*from_record=*/false))
      WriteBeacon(*b, extra.process);
}

std::optional<HostContext::BeaconEvent> EventPipeline::BeaconStart(const bw_event& start,
                                                                   std::string_view who,
                                                                   uint32_t uid,
                                                                   bool from_record) {
  std::lock_guard<std::mutex> l(policy_mu_);
  // Watch hits are the starts scored unless every connection is (then connect records are).
  if (!host_->beacon_on() || beacon_all_ != from_record) return std::nullopt;
  return host_->OnStart(start, who, uid);
}

void EventPipeline::WriteBeacon(const HostContext::BeaconEvent& b, const ProcessContext* process) {
  EveExtra extra;
  extra.process = process;
  extra.beacon = &b.alert;
  Write(b.ev, extra);
}

void EventPipeline::OnSockEvent(const bw_sock_event& s) {
  if (s.family != BW_FAMILY_V4 && s.family != BW_FAMILY_V6) {
    format_errors_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  bw_event ev{};
  ev.ts_ns = s.ts_ns;
  ev.direction = BW_DIR_EGRESS;
  ev.family = s.family;
  ev.l4proto = s.l4proto;
  std::memcpy(ev.saddr, s.laddr, 16);
  std::memcpy(ev.daddr, s.raddr, 16);
  ev.sport = s.lport;
  ev.dport = s.rport;
  ev.list_id = s.list_id;
  ev.entry_ref = s.entry_ref;
  ev.list_action = s.list_action;
  ev.prefixlen = s.prefixlen;
  if (s.kind == BW_SEV_REFUSED) {
    // A block event that never became a packet: the call was refused in the sender's context.
    ev.kind = BW_EV_BLOCK;
    ev.verdict = BW_VERDICT_DROP;
    if (s.l4proto == IPPROTO_TCP) ev.tcp_flags = 0x02;  // it would have been the SYN
    EveExtra extra;
    extra.process = host_->Resolve(s.proc);
    extra.refused = s.hook == BW_HOOK_SENDMSG ? "sendmsg" : "connect";
    Write(ev, extra);
  } else if (s.kind == BW_SEV_CONNECT) {
    ev.kind = BW_EV_WATCH;  // the start's shape; not written out itself
    ev.tcp_flags = 0x02;
    // The pair is named by the record's comm and uid; the process is resolved (user, /proc,
    // cgroup) only for an alert, not for every connection.
    const std::string_view comm(s.proc.comm, strnlen(s.proc.comm, sizeof(s.proc.comm)));
    if (auto b = BeaconStart(ev, s.proc.tgid ? comm : "", s.proc.tgid ? s.proc.uid : 0,
                             /*from_record=*/true))
      WriteBeacon(*b, host_->Resolve(s.proc));
  } else {
    format_errors_.fetch_add(1, std::memory_order_relaxed);
  }
}

void EventPipeline::Write(const bw_event& ev, const EveExtra& extra) {
  std::string_view line;
  {
    std::lock_guard<std::mutex> l(policy_mu_);
    auto formatted = formatter_.Format(ev, extra);
    if (!formatted.ok()) {
      format_errors_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    line = *formatted;  // the formatter's buffer: only this thread formats
  }
  if (sink_) (void)sink_->Write(line);  // errors are counted by the sink
  if (syslog_) syslog_->Send(line);      // and so are the syslog socket's
  std::lock_guard<std::mutex> l(out_mu_);
  if (!followers_.empty()) {
    std::string with_nl(line);
    with_nl.push_back('\n');
    for (size_t i = 0; i < followers_.size();) {
      ssize_t w = ::send(followers_[i], with_nl.data(), with_nl.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w != static_cast<ssize_t>(with_nl.size())) {
        // Gone, or too slow (a partial line would corrupt the stream): dropped.
        ::close(followers_[i]);
        followers_[i] = followers_.back();
        followers_.pop_back();
        continue;
      }
      ++i;
    }
    follower_count_.store(followers_.size(), std::memory_order_relaxed);
  }
  recent_[recent_next_].assign(line.data(), line.size());
  recent_next_ = (recent_next_ + 1) % kRecent;
  recent_count_ = std::min(recent_count_ + 1, kRecent);
}

absl::StatusOr<int> EventPipeline::DrainNow() { return reader_->Drain(); }

absl::Status EventPipeline::Start() {
  if (thread_.joinable()) return absl::OkStatus();
  stop_.store(false);
  try {
    thread_ = std::thread([this] { Loop(); });
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(absl::StrCat("event pipeline thread: ", e.what()));
  }
  return absl::OkStatus();
}

void EventPipeline::Loop() {
  pollfd fds[2] = {{reader_->epoll_fd(), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  while (!stop_.load(std::memory_order_relaxed)) {
    int n = ::poll(fds, 2, kIdleWaitMs);
    if (n < 0 && errno != EINTR) {
      Log(absl::StrCat("event pipeline: poll: ", std::strerror(errno)), LogLevel::kError);
      ::usleep(kIdleWaitMs * 1000);  // keep reading on the timeout rather than spin
    }
    auto handled = reader_->Drain();
    if (handled.ok() && *handled == 0 && sink_) (void)sink_->Flush();  // quiet: nothing waits
    int64_t now = MonotonicNs();
    if (now - clock_resync_ns_ > kClockResyncNs) {
      std::lock_guard<std::mutex> l(policy_mu_);
      formatter_.set_clock_offset_ns(MonotonicToRealtimeNs());
      if (host_) host_->ExpireBeacons(now);  // idle pairs go (every 10 s: a walk of them all)
      clock_resync_ns_ = now;
    }
  }
}

void EventPipeline::Stop() {
  if (thread_.joinable()) {
    stop_.store(true);
    uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
    thread_.join();
  }
  if (reader_) (void)reader_->Drain();
  if (sink_) (void)sink_->Flush();
}

void EventPipeline::AddFollower(int fd) {
  int big = 1 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  std::lock_guard<std::mutex> l(out_mu_);
  followers_.push_back(fd);
  follower_count_.store(followers_.size(), std::memory_order_relaxed);
}

std::vector<std::string> EventPipeline::Recent(size_t n) const {
  std::lock_guard<std::mutex> l(out_mu_);
  n = std::min(n, recent_count_);
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t k = 0; k < n; ++k) out.push_back(recent_[(recent_next_ + kRecent - n + k) % kRecent]);
  return out;
}

EventPipeline::Stats EventPipeline::stats() const {
  Stats s;
  s.delivered = reader_->delivered();
  s.malformed = reader_->malformed();
  s.format_errors = format_errors_.load(std::memory_order_relaxed);
  if (sink_) {
    s.has_sink = true;
    s.sink_path = sink_->path();
    s.lines_written = sink_->lines_written();
    s.lines_dropped = sink_->lines_dropped();
  }
  if (syslog_) {
    s.syslog_socket = syslog_->socket();
    s.syslog_sent = syslog_->sent();
    s.syslog_dropped = syslog_->dropped();
  }
  s.followers = follower_count_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace bw
