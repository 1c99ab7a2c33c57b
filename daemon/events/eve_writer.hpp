// eve_writer.hpp — bw_event records as Suricata EVE JSON alert lines, and the sink that writes them.
//
// Contract: EveFormatter::Format turns one bw_event into one line of JSON (no trailing newline) in
// Suricata's alert schema plus a "bannerwatch" object (field list: docs/signatures.md), or, with
// EveSchema::kSuricata7, only properties Suricata 7's etc/schema.json allows, the bannerwatch
// details carried as alert.metadata.tag strings and the banner as payload/payload_printable. The line is
// always valid JSON: every string is escaped, the banner byte-exactly (see below). Formatting
// writes into a buffer the formatter owns and reuses: the returned view is valid until the next
// call on that formatter; no per-event heap allocation once the buffer has grown. A formatter is
// used by one thread at a time. List/entry/interface metadata comes from an EveLookup the caller
// supplies (the daemon's policy, an offline scanner's table); it must outlive the formatter.
// EveSink appends lines to a file and/or stdout through a large buffer; it is thread-safe.
//
// Banner mapping (exact and reversible): the banner is a byte string; byte b is the JSON code
// point U+00b (ISO-8859-1). Printable ASCII other than '"' and '\' is written as is, '"' '\' as
// \" \\, BS TAB LF FF CR as \b \t \n \f \r, every other byte (controls, DEL, 0x80-0xff) as \u00xx.
// So a JSON parser yields code points 0..255 and the bytes are exactly those code points
// (BannerBytesFromJson). Bytes >= 0x80 are never passed through as UTF-8: "é" (c3 a9) would then
// decode to the same code point as \u00e9 and the mapping could not be reversed.
// Other strings (list names, tags, reasons, interface names) are UTF-8 text: valid UTF-8 passes
// through, invalid bytes are written as \u00xx as above, so the line stays valid JSON.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/host/beacon.hpp"
#include "daemon/host/process_context.hpp"
#include "maps/bannerwatch_abi.h"

namespace bw {

// ---- metadata lookup ------------------------------------------------------------------------------
// What the formatter asks about an event beyond its bytes. Every method has a default answering
// "unknown", so a provider overrides only what it knows. Called only from the formatting thread;
// returned views need only stay valid until the next call on the lookup (they are copied at once).
struct EveListInfo {
  std::string_view name;                 // "bannerwatch.list"
  std::span<const std::string> tags;     // "bannerwatch.tags"
  std::string_view reason;               // "bannerwatch.reason"
};

class EveLookup {
 public:
  virtual ~EveLookup() = default;
  // ifindex -> interface name ("in_iface"); empty: the field is omitted.
  virtual std::string_view IfName(uint32_t /*ifindex*/) const { return {}; }
  // list_id -> list metadata; false if unknown (then only the list fields the event carries print).
  virtual bool List(uint32_t /*list_id*/, EveListInfo* /*out*/) const { return false; }
  // entry_ref -> the entry's source id (e.g. a Spamhaus "SBL123456"); empty: omitted.
  virtual std::string_view EntrySourceId(uint32_t /*entry_ref*/) const { return {}; }
  // Whether `port` (host order) is a watched TCP port; used to tell client from server in block
  // and watch events that are not a SYN or SYN-ACK (see EveDirection).
  virtual bool IsWatchedPort(uint16_t /*port*/) const { return false; }
  // The capture file the event comes from ("pcap_filename", offline replay); empty: omitted.
  virtual std::string_view PcapFilename() const { return {}; }
};

// ---- options --------------------------------------------------------------------------------------
enum class EveSchema : uint8_t {
  kBannerwatch,  // Suricata's alert fields plus the "bannerwatch" object (the default)
  kSuricata7,    // only what Suricata 7's etc/schema.json allows (docs/signatures.md)
};

struct EveOptions {
  std::string host;                 // "host": the sensor's name; empty: omitted
  uint16_t community_id_seed = 0;   // Community ID v1 seed
  EveSchema schema = EveSchema::kBannerwatch;
};

// ---- what the daemon adds to a record --------------------------------------------------------------
// Context an event's record does not carry: the process behind its connection ("process"), the
// call refused for a block event that never became a packet ("bannerwatch.refused": "connect" or
// "sendmsg"), a beacon's figures ("bannerwatch.beacon"). Each is optional.
struct EveExtra {
  const ProcessContext* process = nullptr;
  std::string_view refused;
  const BeaconAlert* beacon = nullptr;  // BW_EV_BEACON: the tracker's alert (daemon/host/beacon.hpp)
};

// ---- formatting -----------------------------------------------------------------------------------
class EveFormatter {
 public:
  // `lookup` may be null (no metadata); it is not owned. `clock_offset_ns` is added to an event's
  // ts_ns (CLOCK_MONOTONIC) to get wall-clock time (CLOCK_REALTIME), see MonotonicToRealtimeNs.
  explicit EveFormatter(const EveLookup* lookup = nullptr, int64_t clock_offset_ns = 0);
  EveFormatter(const EveFormatter&) = delete;
  EveFormatter& operator=(const EveFormatter&) = delete;

  void set_lookup(const EveLookup* lookup) { lookup_ = lookup; }
  void set_options(EveOptions options) { options_ = std::move(options); }
  const EveOptions& options() const { return options_; }
  void set_clock_offset_ns(int64_t offset) { clock_offset_ns_ = offset; }
  int64_t clock_offset_ns() const { return clock_offset_ns_; }

  // One EVE line for `ev`, timestamped ts_ns + clock offset. InvalidArgument for a record the ABI
  // does not allow (unknown kind, family or banner side, banner_len > BW_BANNER_MAX).
  absl::StatusOr<std::string_view> Format(const bw_event& ev, const EveExtra& extra = {});
  // The same with an explicit wall-clock time (ns since the Unix epoch), e.g. a capture's packet
  // time when replaying offline.
  absl::StatusOr<std::string_view> FormatAt(const bw_event& ev, int64_t wall_ns,
                                            const EveExtra& extra = {});

 private:
  char* Reserve(size_t n);

  const EveLookup* lookup_;
  EveOptions options_;
  int64_t clock_offset_ns_;
  std::string buf_;       // grows, never shrinks; its size is the capacity in use
  int64_t cached_sec_;    // second whose "YYYY-MM-DDTHH:MM:SS" is in cached_date_
  char cached_date_[20];
};

// CLOCK_REALTIME - CLOCK_MONOTONIC now, in ns: the offset for EveFormatter. Resample it now and then
// (NTP steps move CLOCK_REALTIME, not CLOCK_MONOTONIC).
int64_t MonotonicToRealtimeNs();

// Suricata's timestamp form in UTC: "2026-11-28T02:43:03.123456+0000" (microseconds, truncated).
std::string FormatEveTimestamp(int64_t wall_ns);

// The address as EVE prints it: dotted quad for BW_FAMILY_V4 (first 4 bytes), RFC 5952 text for
// BW_FAMILY_V6, identical to glibc inet_ntop (including ::ffff:a.b.c.d).
std::string FormatEveAddress(uint8_t family, const uint8_t addr[16]);

// The matched prefix as CIDR: the remote address (source on ingress, destination on egress) masked
// to ev.prefixlen; an IPv4-mapped IPv6 remote (looked up in the IPv4 trie) prints as IPv4.
// Empty if the event carries no list action or prefixlen is out of range for the family.
std::string FormatEvePrefix(const bw_event& ev);

// Suricata "flow_id": a hash of the canonical 5-tuple (family, protocol, the two endpoints ordered
// as in bw_flow_key), the same for both directions of a flow and stable across runs and builds,
// reduced to 51 bits like Suricata's so JSON consumers using doubles keep it exact.
uint64_t EveFlowId(const bw_event& ev);

// Suricata 7's "proto" text for an IP protocol number (its util-proto-name.c table: "TCP", "UDP",
// "ICMP", "IPv6-ICMP", "SCTP", "GRE", ...), the number as text where it has none, and "0" for 0,
// which in a bw_event means "not read" (a later IP fragment, an unwalked IPv6 chain), not HOPOPT.
std::string EveProtoName(uint8_t proto);

// The event's Community ID v1 (community_id.hpp) into `out` (kCommunityIdChars characters);
// false when the event lacks what the hash needs: ICMP/ICMPv6 whose type and code were not read,
// SCTP (no ports), or an unread protocol (0). ICMP's type and code stand for the ports as the
// specification maps them (a request and its reply share one id).
bool EveCommunityId(const bw_event& ev, uint16_t seed, char* out);

// Suricata "direction": true for "to_server", false for "to_client".
//   banner: server side (from the watched port) -> to_client; client side -> to_server.
//   block/watch: TCP SYN -> to_server, SYN-ACK -> to_client; otherwise a watched port
//   (EveLookup::IsWatchedPort) marks the server's end; otherwise the lower port is taken to be the
//   server's (ephemeral client ports are high); otherwise (no ports, equal ports) to_server.
bool EveToServer(const bw_event& ev, const EveLookup* lookup);

// Inverse of the banner mapping: the "banner" string as a JSON parser returns it (UTF-8) -> the
// original bytes. InvalidArgument if it is not UTF-8 or holds a code point above U+00FF.
absl::StatusOr<std::string> BannerBytesFromJson(std::string_view utf8);

// ---- output ---------------------------------------------------------------------------------------
struct EveSinkOptions {
  std::string path = "/var/log/bannerwatch/eve.json";  // empty: no file
  bool to_stdout = false;
  size_t buffer_bytes = 1 << 20;
  absl::Duration flush_interval = absl::Milliseconds(100);
};

// Lines go into one buffer, written out (to the file, then stdout) when it fills, when a write
// finds the oldest buffered line older than flush_interval, on Flush(), Reopen() and destruction.
// The event loop calls Flush() when the ring buffer goes idle so lines never wait on a quiet
// system. A failed write(2) counts one write error, drops the buffered lines (counted) and
// returns the error; the sink keeps going with the next lines. Every method is thread-safe.
class EveSink {
 public:
  // Creates the file's missing parent directories (mode 0750) and opens the file
  // O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC with mode 0640 (both subject to the umask).
  static absl::StatusOr<std::unique_ptr<EveSink>> Open(const EveSinkOptions& opts);
  ~EveSink();  // flushes; errors are only counted
  EveSink(const EveSink&) = delete;
  EveSink& operator=(const EveSink&) = delete;

  // Buffers `line` plus '\n'. Errors only from a flush this triggered.
  absl::Status Write(std::string_view line);
  absl::Status Flush();
  // logrotate: flushes, then opens the path anew (a renamed file is left behind, a new one
  // created). If the open fails, the old file stays in use and the error is returned.
  absl::Status Reopen();
  // Async-signal-safe (a SIGHUP handler may call it): the next Write/Flush performs Reopen().
  void RequestReopen() { reopen_requested_.store(true, std::memory_order_relaxed); }

  const std::string& path() const { return opts_.path; }
  uint64_t lines_written() const { return lines_written_.load(std::memory_order_relaxed); }
  uint64_t lines_dropped() const { return lines_dropped_.load(std::memory_order_relaxed); }
  uint64_t write_errors() const { return write_errors_.load(std::memory_order_relaxed); }
  uint64_t reopens() const { return reopens_.load(std::memory_order_relaxed); }

 private:
  explicit EveSink(const EveSinkOptions& opts);
  absl::Status OpenFileLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status FlushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteAllLocked(const char* data, size_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReopenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status MaybeReopenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const EveSinkOptions opts_;
  absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  std::unique_ptr<char[]> buf_ ABSL_GUARDED_BY(mu_);
  size_t used_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t pending_lines_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t oldest_ns_ ABSL_GUARDED_BY(mu_) = 0;  // CLOCK_MONOTONIC_COARSE of the oldest buffered line
  std::atomic<bool> reopen_requested_{false};
  std::atomic<uint64_t> lines_written_{0};
  std::atomic<uint64_t> lines_dropped_{0};
  std::atomic<uint64_t> write_errors_{0};
  std::atomic<uint64_t> reopens_{0};
};

}  // namespace bw
