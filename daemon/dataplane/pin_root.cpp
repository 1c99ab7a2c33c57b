#include "daemon/dataplane/pin_root.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/dataplane/attach.hpp"
#include "daemon/dataplane/libbpf_log.hpp"
#include "daemon/dataplane/loader.hpp"
#include "maps/bannerwatch_abi.h"

namespace bw {

absl::StatusOr<PinRootLock> PinRootLock::Take(const std::string& pin_root) {
  bool created = false;
  absl::Status st = EnsurePinRoot(pin_root, &created);
  if (!st.ok()) return st;
  int fd = ::open(pin_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(pin_root, "open", errno);
  Fd owner(fd);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return absl::FailedPreconditionError(absl::StrCat(
          "another bannerwatch daemon holds ", pin_root,
          " (one daemon per pin root; use --pin-root for a second, independent one)"));
    return ErrnoStatus(pin_root, "flock", errno);
  }
  PinRootLock l;
  l.fd_ = std::move(owner);
  l.created_ = created;
  return l;
}

int DetachAll(const std::string& pin_root) {
  InstallLibbpfLog(false);
  if (access(pin_root.c_str(), F_OK) != 0) {
    std::fprintf(stderr, "bannerwatch: nothing pinned under %s\n", pin_root.c_str());
    return 0;
  }
  // Only bannerwatch's own pins are removed: its maps (by the object's names), XDP links and
  // programs (prog_<id>).
  // A directory holding neither is somebody else's and is not touched at all.
  std::set<std::string> ours;
  for (const std::string& n : DataPlaneMapNames()) ours.insert(n);
  bool bannerwatch_root = false;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(pin_root, ec)) {
    std::string n = e.path().filename().string();
    if (n == BW_MAP_CONFIG || n.rfind("link_xdp_", 0) == 0) bannerwatch_root = true;
  }
  if (!bannerwatch_root) {
    std::fprintf(stderr,
                 "bannerwatch: %s holds no bannerwatch maps or links (no %s, no link_xdp_*): "
                 "not a bannerwatch pin root; nothing removed\n",
                 pin_root.c_str(), BW_MAP_CONFIG);
    return 1;
  }
  auto lock = PinRootLock::Take(pin_root);
  if (!lock.ok()) {
    std::fprintf(stderr, "bannerwatch: %s; stop it first (SIGTERM detaches unless keep_on_exit)\n",
                 std::string(lock.status().message()).c_str());
    return 1;
  }
  int rc = 0;
  for (const std::string& ifn : PinnedInterfaces(pin_root)) {
    absl::Status st = DetachInterface(pin_root, ifn);
    if (!st.ok()) {
      std::fprintf(stderr, "bannerwatch: detach %s: %s\n", ifn.c_str(),
                   std::string(st.message()).c_str());
      rc = 1;
    } else {
      std::fprintf(stderr, "bannerwatch: detached from %s\n", ifn.c_str());
    }
  }
  if (rc != 0) {
    // An interface left attached keeps its maps: the pins stay, so a detach that can reach it
    // (from its network namespace) finds everything.
    std::fprintf(stderr, "bannerwatch: the maps stay pinned under %s until every interface is "
                         "detached\n", pin_root.c_str());
    return rc;
  }
  std::vector<std::string> foreign;
  for (const auto& e : std::filesystem::directory_iterator(pin_root, ec)) {
    std::string n = e.path().filename().string();
    if (!ours.count(n) && n.rfind(kProgramPinPrefix, 0) != 0) {
      foreign.push_back(n);
      continue;
    }
    if (::unlink(e.path().c_str()) != 0) {
      std::fprintf(stderr, "bannerwatch: unlink %s: %s\n", e.path().c_str(), std::strerror(errno));
      rc = 1;
    }
  }
  if (!foreign.empty()) {
    std::fprintf(stderr, "bannerwatch: left in %s what is not bannerwatch's: %s\n",
                 pin_root.c_str(), absl::StrJoin(foreign, ", ").c_str());
    return rc;
  }
  if (rc == 0 && ::rmdir(pin_root.c_str()) != 0 && errno != ENOENT) {
    std::fprintf(stderr, "bannerwatch: rmdir %s: %s\n", pin_root.c_str(), std::strerror(errno));
    rc = 1;
  }
  if (rc == 0) std::fprintf(stderr, "bannerwatch: removed everything under %s\n", pin_root.c_str());
  return rc;
}

}  // namespace bw
