// control_request.hpp — the control socket's command table: every request is checked against it
// before the daemon acts on it.
//
// Contract: ParseControlRequest() accepts a JSON object whose string "cmd" names a command of the
// table, with only the fields that command takes, each of its JSON type and within its bounds;
// anything else is an InvalidArgument error whose message is the reply's "error" and names the
// field and what it wants. It never throws, whatever the JSON holds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace bw {

struct ControlRequest {
  std::string cmd;          // status block watch allow unlist list query events reload
  std::string cidr;         // block watch allow unlist: the prefix (required)
  std::string list;         // block watch allow: the runtime list (optional; 1-64 of [A-Za-z0-9._-])
  // block watch allow: free text (optional; printable, <= 512 bytes). Absent (keep an existing
  // entry's reason) is not "" (clear it).
  std::optional<std::string> reason;
  int64_t ttl_seconds = 0;  // block watch allow: 0 = no expiry, else 1 s .. 10 years
  std::string ip;           // query: the address (required)
  uint64_t count = 50;      // events: recent lines (0 .. 1000)
  bool follow = false;      // events: keep the connection for every later line
};

absl::StatusOr<ControlRequest> ParseControlRequest(const nlohmann::json& request);

// The list-name rule of runtime lists: 1 to 64 characters of [A-Za-z0-9._-].
bool ValidListName(const std::string& name);

}  // namespace bw
