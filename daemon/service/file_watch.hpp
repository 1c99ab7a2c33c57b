// file_watch.hpp — notices when the policy's files change, so the daemon reloads them.
//
// Directories are watched, not files: editors and config management replace files by rename.
// Only a finished write (close after writing) or a rename into place counts: a file being created
// or still written (`curl -o`, a slow copy) is never read half-way, and a deletion alone changes
// nothing (the last good policy stays until a new file is complete). A list file that is a
// symlink has its target's directory watched as well. Changes are debounced: an editor's save is
// several events, the reload comes once things are quiet for 200 ms.
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "maps/maps.hpp"

namespace bw {

class FileWatch {
 public:
  static absl::StatusOr<FileWatch> Create();
  int fd() const { return fd_.get(); }

  // Watches exactly `files` from now on (the policy's files after each applied reload).
  void Watch(const std::vector<std::string>& files);
  // Reads the pending notifications (call when fd() is readable).
  void OnReadable();
  // True once, when a change has been quiet long enough to reload.
  bool TakeDue(absl::Time now);

 private:
  Fd fd_;
  std::map<int, std::string> dirs_;  // watch descriptor -> directory
  std::set<std::string> files_;      // absolute paths (and symlink targets)
  absl::Time due_ = absl::InfiniteFuture();
};

}  // namespace bw
