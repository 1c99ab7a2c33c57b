// scan.hpp — `bannerwatch scan`: replays pcap / pcapng captures through the real data plane.
//
// Contract: Scan() loads one DataPlane under a private pin root (default /sys/fs/bpf/bwscan-<pid>,
// leftovers there removed first and the root removed before Scan returns; a root the caller names
// must be new or empty, and only the scan's own pins are removed from it), never adopting maps,
// applies the policy as `run` does (LoadPolicyFile, Compile, ApplyPolicy; the policy file only, not
// the runtime entries of a daemon's state file), then runs every frame of every capture, in order,
// through the same compiled programs with BPF_PROG_TEST_RUN. Map state (banner-dropped flows and
// whatever else the kernel keeps per flow) carries over from frame to frame and file to file.
// Direction: a frame whose IP source is inside a `local` prefix goes through the TC egress program
// (a __sk_buff context), every other frame (no `local`: all of them; non-IP frames too) through XDP.
// Each kernel event becomes one EVE line, exactly as the daemon writes it except that the timestamp
// is the frame's capture time (EveFormatter::FormatAt), there is no in_iface, and pcap_filename
// names the capture as given ("-" when read from stdin); lines go to `emit` in order.
// Block and watch events: the kernel rate-limits them on its clock, which in a replay is the
// replay's, not the capture's. A scan therefore sets the kernel's interval to 0 and applies the
// policy's block_event_interval itself, on capture time: at most one block or watch event per
// remote address per interval (exact per address, as one CPU would; the kernel hashes addresses
// into slots per CPU), the next one carrying in bannerwatch.suppressed how many were held back.
// Link types: Ethernet (DLT_EN10MB) and Linux cooked captures (DLT_LINUX_SLL, DLT_LINUX_SLL2), for
// which an Ethernet header is synthesized from the protocol field. Frames the capture holds only
// in part (snaplen), or longer than BPF_PROG_TEST_RUN accepts (GRO/TSO super-frames, jumbo frames),
// run cut to the bytes present with their IP length field trimmed to match ("trimmed" in the
// report): headers, addresses, ports and the first payload bytes are what the programs decide on.
// A capture taken on an interface a live bannerwatch guards lacks the frames it dropped there (XDP
// and TC egress run before the capture taps): their alerts show only live.
// Errors: a capture that cannot be opened, has an unsupported link type, or fails while being read
// is an error naming the file and why; other failures (policy, bpffs, load, apply) name their cause.
// On error `report` holds what was done up to that point. Not thread-safe: one scan at a time per
// pin root.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/policy/cidr.hpp"
#include "daemon/dataplane/kernel_probe.hpp"
#include "maps/maps.hpp"

namespace bw {

struct ScanOptions {
  std::string config_path;             // policy YAML (its list files resolve as for `run`)
  std::vector<Prefix> local;           // addresses of the capturing host(s): their frames are egress
  std::vector<std::string> captures;   // pcap or pcapng files, "-" for stdin; read in this order
  std::string pin_root;                // empty: /sys/fs/bpf/bwscan-<pid>; else a new or empty dir
  Variant variant = Variant::kAuto;    // the data-plane object (kernel_probe.hpp)
  const std::atomic<bool>* stop = nullptr;  // set (e.g. by SIGINT) to stop after the current frame
};

struct ScanReport {
  size_t captures = 0;          // files opened
  uint64_t frames = 0;          // records read from the captures
  uint64_t ingress = 0;         // frames run through XDP
  uint64_t egress = 0;          // frames run through TC egress
  uint64_t not_run = 0;         // frames shorter than an Ethernet header: nothing to run
  uint64_t trimmed = 0;         // frames run cut short (snaplen, or too long for test_run)
  uint64_t pass = 0, drop = 0;  // the programs' verdicts
  std::map<uint32_t, uint64_t> alerts;  // EVE lines written, by signature_id
  uint64_t events_held = 0;  // block and watch events held back by the capture-time rate limit
  absl::Duration block_event_interval;  // the policy's
  uint64_t format_errors = 0;           // events the formatter refused (not written)
  CounterArray counters[BW_DIR__MAX] = {};  // the kernel's counters after the scan
  uint64_t alert_count() const;
};

// Called once per EVE line (no trailing newline); the view is valid during the call only.
using ScanLineSink = std::function<void(std::string_view line)>;

// Runs the scan; see the contract above.
absl::Status Scan(const ScanOptions& opts, const ScanLineSink& emit, ScanReport* report);

// The summary `bannerwatch scan` prints on stderr: frames, verdicts, alerts by signature id,
// malformed frames and the kernel's non-zero counters, by direction. Lines of "name: value".
std::string FormatScanSummary(const ScanReport& r);

// `--local CIDR`: a prefix or a single address (/0 allowed).
absl::StatusOr<Prefix> ParseLocalPrefix(absl::string_view text);

// `bannerwatch scan` with its options parsed (cli.hpp): EVE lines on stdout, the summary on
// stderr. Exit status 0 success, 1 a capture (or the policy, or the data plane) could not be used.
int ScanMain(ScanOptions o, bool verbose);

}  // namespace bw
