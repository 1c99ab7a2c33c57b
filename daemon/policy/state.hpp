// state.hpp — runtime list changes made through the CLI (block / watch / allow / unlist), kept
// in a JSON state file so they survive restarts.
//
// Contract: Save() writes the whole state atomically (temporary file in the same directory,
// fsync, rename), so a crash leaves either the old or the new file, never a torn one. Load() of a
// missing file is an empty state; a corrupt file (not a regular file, over kStateFileMaxBytes, a
// field of the wrong type, an unknown action, a list name or reason the control socket would
// refuse) is an error naming the path and entry (the daemon then refuses to start rather than
// silently dropping or misreading an operator's blocks).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "maps/maps.hpp"

namespace bw {

inline constexpr const char* kStateFileDefault = "/var/lib/bannerwatch/state.json";
// A state file is read whole; a larger one is refused (a million runtime entries fit).
inline constexpr uint64_t kStateFileMaxBytes = uint64_t{256} << 20;

struct RuntimeEntry {
  std::string cidr;    // as normalised by the policy's prefix parser
  std::string action;  // watch | block | safelist
  std::string list;    // list name (default: runtime-<action>)
  std::string reason;
  absl::Time added = absl::UnixEpoch();
  absl::Time expires = absl::InfiniteFuture();
};

// Held for a daemon's life: an exclusive flock on <state file>.lock (made 0600 if missing, never
// through a symlink). Two daemons writing one state file would lose each other's changes, so a
// second one is refused, naming the file.
class StateFileLock {
 public:
  static absl::StatusOr<StateFileLock> Take(const std::string& state_path);

 private:
  Fd fd_;
};

class RuntimeState {
 public:
  static absl::StatusOr<RuntimeState> Load(const std::string& path);
  absl::Status Save(const std::string& path) const;

  // Replaces an entry with the same cidr and list, else appends.
  void Upsert(const RuntimeEntry& e);
  // Removes every entry for cidr; returns how many.
  size_t Remove(const std::string& cidr);
  // Drops entries expired at `now`; returns how many.
  size_t Expire(absl::Time now);
  const std::vector<RuntimeEntry>& entries() const { return entries_; }

 private:
  std::vector<RuntimeEntry> entries_;
};

}  // namespace bw
