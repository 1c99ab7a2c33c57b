// pin_root.hpp — who owns a pin root: one daemon at a time (a lock), and `bannerwatch detach`,
// which removes only what is bannerwatch's.
#pragma once
#include <string>

#include "absl/status/statusor.h"
#include "maps/maps.hpp"

namespace bw {

// Holds the pin root's lock: flock on the directory itself, released when the process dies. Makes
// the directory (mode 0700) when it is not there.
class PinRootLock {
 public:
  static absl::StatusOr<PinRootLock> Take(const std::string& pin_root);
  // The directory was made by this lock (not there before).
  bool created() const { return created_; }

 private:
  Fd fd_;
  bool created_ = false;
};

// `bannerwatch detach`: removes every attachment and pin under pin_root (refused while a daemon
// holds the root, and on a directory that holds no bannerwatch maps or links). Returns the exit
// code.
int DetachAll(const std::string& pin_root);

}  // namespace bw
