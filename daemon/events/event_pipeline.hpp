// event_pipeline.hpp — the data plane's events to EVE lines, on a thread of their own.
//
// Contract: one thread reads the ring buffer, completes each record (the applied policy's IPv4
// table for pre-filter decisions, list names, interface names), formats it and hands the line to
// the EVE sink, to every follower (`bannerwatch events --follow`) and to a ring of recent lines.
// Nothing the daemon's loop does — a reload, a slow control or metrics client, a long status —
// holds this thread up, and nothing here waits on the loop: the only lock the two share is taken
// per record for the policy pointer (SetPolicy waits for at most one record, or for the first
// record after a reload that builds the in-memory IPv4 matcher) and, separately, for the recent
// ring and the followers. A follower that cannot take a line at once is dropped (a partial line
// would corrupt its stream). Stop() joins the thread, then drains what the kernel still holds and
// flushes the sink, so a stopping daemon writes every event that reached the ring.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "daemon/events/eve_writer.hpp"
#include "daemon/events/events.hpp"
#include "daemon/events/syslog_sink.hpp"
#include "daemon/host/host_context.hpp"
#include "daemon/policy/policy.hpp"
#include "daemon/policy/policy_lookup.hpp"
#include "daemon/dataplane/v4_match.hpp"
#include "maps/maps.hpp"

namespace bw {

class EventPipeline {
 public:
  // `sink` (file, stdout) and `syslog` may each be null (no such output: followers and the recent
  // ring still get lines); every line goes to each one there is.
  static absl::StatusOr<std::unique_ptr<EventPipeline>> Create(
      int ringbuf_fd, std::unique_ptr<EveSink> sink, std::unique_ptr<SyslogSink> syslog = nullptr);
  ~EventPipeline();  // Stop()
  EventPipeline(const EventPipeline&) = delete;
  EventPipeline& operator=(const EventPipeline&) = delete;

  // The policy events are completed and named from (not owned; must stay unchanged until the next
  // SetPolicy returns). Returns once the thread no longer uses the previous one.
  void SetPolicy(const CompiledPolicy* policy);
  // The host context (daemon/host/host_programs.hpp), before Start(): its records' ring (refused
  // calls become block events naming the process; connection starts feed beacon scoring) and the
  // connections' processes (`socks_fd` -1: events are not joined to processes).
  // `exes_fd` (bw_exes, -1: none): executables the kernel recorded.
  absl::Status AttachHost(int sock_ring_fd, int socks_fd, int exes_fd = -1,
                          ProcessResolver::Options resolver = {});
  std::optional<HostContext::Stats> host_stats() const;

  // Handles what the ring holds now, on the caller's thread (before Start: the events buffered
  // while no daemon ran). Returns how many.
  absl::StatusOr<int> DrainNow();
  // Starts the thread. Call with the signals the loop takes by signalfd already blocked: the
  // thread inherits the mask and must not take them.
  absl::Status Start();
  // Joins the thread, drains the ring and flushes the sink. Idempotent.
  void Stop();

  // Takes ownership of a connected stream socket that gets every later line.
  void AddFollower(int fd);
  // The last `n` lines (at most kRecent), oldest first.
  std::vector<std::string> Recent(size_t n) const;
  // logrotate: flushes and opens the EVE file's path anew (the sink locks itself). On an error
  // the old file stays in use.
  absl::Status ReopenSink() { return sink_ ? sink_->Reopen() : absl::OkStatus(); }

  struct Stats {
    uint64_t delivered = 0;      // records read from the ring
    uint64_t malformed = 0;      // records of the wrong size, skipped
    uint64_t format_errors = 0;  // records the ABI does not allow, skipped
    uint64_t lines_written = 0, lines_dropped = 0;  // the sink's
    size_t followers = 0;
    std::string sink_path;  // "" for stdout or none
    bool has_sink = false;
    std::string syslog_socket;  // "" when there is no syslog output
    uint64_t syslog_sent = 0, syslog_dropped = 0;
  };
  Stats stats() const;

  static constexpr size_t kRecent = 1000;

 private:
  // Completes and names events from the policy last given to SetPolicy; interface names live.
  class Lookup : public PolicyEveLookup {
   public:
    std::string_view IfName(uint32_t ifindex) const override;

   private:
    mutable std::map<uint32_t, std::string> ifnames_;
  };

  EventPipeline() = default;
  void Loop();
  // The ring buffer's record handler (on whichever thread drains).
  void OnEvent(const bw_event& ev);
  void OnSockEvent(const bw_sock_event& ev);
  // Formats one record and hands the line to every output.
  void Write(const bw_event& ev, const EveExtra& extra);
  // An outbound connection start for beacon scoring (of `who`, `uid`: HostContext::OnStart);
  // the alert when one is due. `from_record`: a connect record (beacon.connections: all), else a
  // watch hit: only the kind the policy scores counts.
  std::optional<HostContext::BeaconEvent> BeaconStart(const bw_event& start, std::string_view who,
                                                      uint32_t uid, bool from_record);
  void WriteBeacon(const HostContext::BeaconEvent& b, const ProcessContext* process);
  std::optional<bw_list_value> ResolveV4(const uint8_t* addr4);

  std::unique_ptr<EventReader> reader_;
  // Thread-only but for its beacon part, which SetPolicy changes: that is used under policy_mu_.
  std::unique_ptr<HostContext> host_;
  std::unique_ptr<EveSink> sink_;
  std::unique_ptr<SyslogSink> syslog_;
  int wake_fd_ = -1;  // eventfd: Stop() wakes the thread
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> format_errors_{0};

  // The policy and what is built from it, used per record.
  mutable std::mutex policy_mu_;
  Lookup lookup_ ABSL_GUARDED_BY(policy_mu_);
  std::unique_ptr<V4Match> v4_match_ ABSL_GUARDED_BY(policy_mu_);
  EveFormatter formatter_ ABSL_GUARDED_BY(policy_mu_){&lookup_, MonotonicToRealtimeNs()};
  bool beacon_all_ ABSL_GUARDED_BY(policy_mu_) = false;  // BeaconSettings::all_connections
  int64_t clock_resync_ns_ = 0;  // thread-only: when the clock offset was last sampled

  // The recent lines (buffers reused, no allocation per event once warm) and the followers.
  mutable std::mutex out_mu_;
  std::vector<std::string> recent_ ABSL_GUARDED_BY(out_mu_) = std::vector<std::string>(kRecent);
  size_t recent_next_ ABSL_GUARDED_BY(out_mu_) = 0;
  size_t recent_count_ ABSL_GUARDED_BY(out_mu_) = 0;
  std::vector<int> followers_ ABSL_GUARDED_BY(out_mu_);
  std::atomic<size_t> follower_count_{0};
};

}  // namespace bw
