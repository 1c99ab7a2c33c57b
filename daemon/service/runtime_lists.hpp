// runtime_lists.hpp — entries added while the daemon runs (`bannerwatch block/watch/allow`,
// `unlist`, expiry), kept in the state file and applied through the Reloader.
//
// A change is written to the state file first (atomically) and then applied; when either step
// fails nothing changes, neither the file nor the kernel: a change applied but not saved would be
// undone silently by the next start, and an unlist not saved would lift a block meanwhile.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "absl/time/time.h"
#include "daemon/control/control_request.hpp"
#include "daemon/policy/state.hpp"
#include "daemon/service/reloader.hpp"

namespace bw {

class RuntimeLists {
 public:
  RuntimeLists(std::string state_file, RuntimeState loaded, Reloader& reloader)
      : state_file_(std::move(state_file)), state_(std::move(loaded)), reloader_(reloader) {}

  const RuntimeState& state() const { return state_; }

  // The control commands' replies ({"ok": ...}); `action` is block, watch or safelist.
  nlohmann::json Add(const ControlRequest& req, const std::string& action);
  nlohmann::json Unlist(const ControlRequest& req);
  nlohmann::json List() const;  // numbered as in the state file (and as `query` cites them)

  // When the next entry or policy list expires (InfiniteFuture: none).
  absl::Time NextExpiry() const;
  // Lifts what has expired by `now` (a reload; the state file rewritten).
  void Expire(absl::Time now);

 private:
  absl::Status Commit(RuntimeState next, const std::string& why);

  const std::string state_file_;
  RuntimeState state_;
  Reloader& reloader_;
};

}  // namespace bw
