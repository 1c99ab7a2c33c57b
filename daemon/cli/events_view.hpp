// events_view.hpp — what `bannerwatch events` shows of the daemon's EVE lines: a filter (--sid,
// --ip, --since, --list) and, with --fast, one line per alert in the manner of Suricata's fast.log.
//
// Contract: the filter reads a line as the daemon wrote it, in either EVE schema (the bannerwatch
// object, or suricata-7's alert.metadata.tag "bannerwatch.NAME:VALUE"); a line that is not JSON
// matches no filter but the empty one, and is printed as it is. Conditions of different options
// must all hold; several --sid (or --ip) are alternatives.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/policy/cidr.hpp"

namespace bw {

struct EventFilter {
  std::vector<int64_t> sids;       // alert.signature_id is one of these
  std::vector<Prefix> prefixes;    // src_ip or dest_ip lies in one of these
  std::optional<absl::Time> since; // timestamp at or after
  std::string list;                // the deciding list's name

  bool empty() const { return sids.empty() && prefixes.empty() && !since && list.empty(); }
  bool Match(const nlohmann::json& eve) const;
  bool MatchLine(const std::string& line) const;
};

// --ip: an address or a prefix ("198.51.100.0/24", "2001:db8::/32").
absl::StatusOr<Prefix> ParseEventPrefix(const std::string& text);
// --since: a duration back from `now` ("10m", "1h30m") or an RFC 3339 time
// ("2026-12-02T23:00:00Z", "2026-12-02T23:00:00+01:00").
absl::StatusOr<absl::Time> ParseSince(const std::string& text, absl::Time now);

// One alert as a line, fast.log-like:
//   12/02/2026-23:59:01.123456  [**] [1:1000146:1] ET POLICY SSH banner ... [**]
//   [Classification: Potential Corporate Privacy Violation] [Priority: 1] {TCP}
//   198.51.100.2:443 -> 198.51.100.1:40512 [allowed] list=seed-2013-09
// (on one line; the time as written in the record, in its own zone). A line that is not an EVE
// alert is returned as it is.
std::string FastLine(const std::string& line);

}  // namespace bw
