// host_context.hpp — the event pipeline's host part: the process behind an event's connection,
// host-context records (refused calls, connection starts) as events, and beacon scoring.
//
// Contract: used by the event pipeline's thread only (stats() from any thread). ProcessFor()
// looks the event's TCP connection up in bw_socks (a record taken in the kernel at connect or
// accept time) and resolves it (user name, executable, cgroup path, container) through a
// ProcessResolver; it answers nullptr rather than a wrong process: no record (not TCP, evicted
// from the LRU, made before the daemon ran), a connect record newer than the event, or a record
// whose connection closed before the event (the addresses and ports reused by another one).
// OnStart() feeds one outbound connection start to the beacon tracker and returns the alert when
// one is due, as the event the EVE formatter writes and the tracker's figures.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "daemon/events/eve_writer.hpp"
#include "daemon/host/beacon.hpp"
#include "daemon/host/process_context.hpp"
#include "maps/bannerwatch_abi.h"

namespace bw {

class HostContext {
 public:
  // `socks_fd` (bw_socks; not owned) may be -1: no attribution, only beacons. `exes_fd`
  // (bw_exes; not owned, may be -1): the executables the kernel recorded, preferred to /proc.
  HostContext(int socks_fd, ProcessResolver::Options resolver, int exes_fd = -1);

  // The process behind ev's connection, valid until the next call; nullptr when unknown.
  const ProcessContext* ProcessFor(const bw_event& ev);
  // The process of a kernel record, valid until the next call; nullptr when it has no process
  // id (a cgroup program on a kernel that does not give it one).
  const ProcessContext* Resolve(const bw_proc& rec);

  // Beacon scoring: options (a reload); nullopt turns it off. The tracker starts empty when the
  // options change.
  void SetBeacon(const std::optional<BeaconOptions>& o);
  bool beacon_on() const { return tracker_ != nullptr; }

  struct BeaconEvent {
    bw_event ev{};  // kind BW_EV_BEACON, from local to remote, the last start's ports and list
    BeaconAlert alert;
  };
  // One outbound connection start (`start`: a watch event of its SYN or SYN-ACK, or a connect
  // record in that shape) of the pair's `who` (process name; "" for the host as a whole) and uid.
  std::optional<BeaconEvent> OnStart(const bw_event& start, std::string_view who, uint32_t uid);
  void ExpireBeacons(int64_t now_ns);

  struct Stats {
    uint64_t named = 0;    // events joined to a process
    uint64_t unknown = 0;  // TCP events with no record
    uint64_t stale = 0;    // records newer than their event: not used
    uint64_t beacon_pairs = 0, beacon_alerts = 0, beacon_evicted = 0;
  };
  Stats stats() const;

 private:
  int socks_fd_, exes_fd_;
  ProcessResolver resolver_;
  ProcessContext current_;
  std::optional<BeaconOptions> beacon_options_;
  std::unique_ptr<BeaconTracker> tracker_;
  std::atomic<uint64_t> named_{0}, unknown_{0}, stale_{0};
  std::atomic<uint64_t> beacon_pairs_{0}, beacon_alerts_{0}, beacon_evicted_{0};
};

// The bw_socks key of an event's connection: local and remote as the direction says.
bw_sock_key SockKeyOfEvent(const bw_event& ev);

// The path a bw_exes record holds ("/usr/bin/ssh" from "ssh\0bin\0usr\0"); "" when the kernel's
// walk did not reach the root (cut short: no half path is given) or the record is malformed.
std::string ExePathOfRecord(const bw_exe& e);

}  // namespace bw
