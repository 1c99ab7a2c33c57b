// process_context.hpp — turns the kernel's record of a local process (at connect()/accept())
// into what an EVE alert's `process` object shows: executable, user name, cgroup path, container
// and systemd unit.
//
// Contract: ProcessResolver::Resolve never fails and never guesses: a part it cannot establish
// stays empty. The executable is read from /proc only when /proc/PID/stat's start time equals the
// record's (so a reused pid never yields another program's path); a process that has exited by the
// time the event is read has no executable. The cgroup path comes from a map id -> path built by
// walking the cgroup2 hierarchy (a cgroup v2 id is the inode number of its directory), rescanned on
// a miss at most once per rescan_min_interval; a cgroup removed before the event is read stays
// unknown. Container and systemd unit are pure functions of the cgroup path. Names are the host's
// view: executables need the host's pid namespace (hostPID), cgroup paths the host's cgroup
// namespace or the host's cgroup2 mount passed as cgroup2_root; user names come from the daemon's
// own NSS, not the container's /etc/passwd.
// Cost on the caller's thread: cache hits are memory only; a new (pid, start time) costs a few
// syscalls, a uid seen for the first time an NSS lookup (which may block on LDAP/SSSD hosts), a
// cgroup miss at most one walk per interval. Resolve may be called from any thread (one internal
// lock, held during all of these); counters() may be read from any thread while another resolves.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace bw {

// Input, filled by the caller from the kernel record.
struct ProcessRecord {
  uint32_t pid = 0;  // tgid
  uint32_t tid = 0;
  uint32_t ppid = 0;  // parent's tgid (0 unknown)
  uint32_t uid = 0, gid = 0;
  uint64_t cgroup_id = 0;          // cgroup v2 id (0 unknown)
  uint64_t start_boottime_ns = 0;  // thread-group leader's task->start_boottime (0 unknown)
  std::string comm{};              // as the kernel had it, <= 15 chars (cut at the first NUL)
  // (`{}` so that designated initializers that leave comm out compile under -Wextra.)
};

struct ContainerRef {
  std::string id;       // 64 lowercase hex characters
  std::string runtime;  // "docker", "containerd", "cri-o", "podman"
};

struct ProcessContext {
  uint32_t pid = 0, tid = 0, ppid = 0, uid = 0, gid = 0;
  std::string name;        // comm
  std::string executable;  // full path as /proc/PID/exe reads (" (deleted)" kept), "" unknown
  std::string user;        // user name from uid, "" unknown
  uint64_t cgroup_id = 0;
  std::string cgroup_path;  // path inside the cgroup2 hierarchy, e.g. "/system.slice/ssh.service"
  std::optional<ContainerRef> container;
  std::string systemd_unit;  // e.g. "ssh.service", "session-3.scope", "" none
};

// The innermost container named by a cgroup path, or nullopt. Recognised components (the id is
// exactly 64 lowercase hex characters; a ".scope" suffix is optional on the prefixed forms):
//   docker-<id>.scope, and <id> under a "docker" parent                  -> "docker"
//   cri-containerd-<id>.scope, and <id> under pod<uid> under kubepods*    -> "containerd"
//   crio-<id>.scope (systemd driver), crio-<id> (cgroupfs driver)         -> "cri-o"
//   libpod-<id>.scope (also its "container" sub-cgroup, where podman puts the process) -> "podman"
// Components below a container's own (e.g. systemd running inside it) still belong to it. A bare
// <id> under pod<uid> is reported as "containerd" although dockershim named its cgroups the same
// way: the cgroupfs layout does not say which runtime made it. libpod-conmon-<id>.scope and
// crio-conmon-<id>.scope hold conmon, the runtime's monitor on the host, not the container: nullopt
// (their scope shows as the systemd unit instead). Other layouts (LXC, nerdctl, ...) give nullopt.
std::optional<ContainerRef> ContainerFromCgroupPath(std::string_view cgroup_path);

// The deepest path component naming a systemd unit (".service", ".scope", ".socket", ".mount",
// ".swap"; slices are not units a process runs in) that is not a container scope recognised by
// ContainerFromCgroupPath; "" if none. Inside a container running systemd this is the container's
// unit; for rootless podman it is the user's manager ("user@1000.service").
std::string SystemdUnitFromCgroupPath(std::string_view cgroup_path);

// /proc/PID/stat field 22 (starttime, clock ticks since boot). comm (field 2) is in parentheses and
// may itself contain spaces and ')': fields are counted after the LAST ')'.
absl::StatusOr<uint64_t> ParseProcStatStartTime(std::string_view stat_line);

// task->start_boottime (ns) in the clock ticks /proc/PID/stat shows, as the kernel's
// nsec_to_clock_t converts it (USER_HZ = sysconf(_SC_CLK_TCK), 100 on every common architecture).
uint64_t BoottimeNsToClockTicks(uint64_t ns, long clk_tck);

// Where the cgroup2 hierarchy is mounted, from the text of /proc/self/mountinfo: /sys/fs/cgroup on
// unified hosts, /sys/fs/cgroup/unified on hybrid ones. `root` is the mount's root inside the
// hierarchy ("/" unless a sub-tree was bind-mounted); it prefixes every path found under it.
// NotFound when there is no cgroup2 mount.
struct Cgroup2MountInfo {
  std::string mount_point;
  std::string root;
};
absl::StatusOr<Cgroup2MountInfo> FindCgroup2Mount(std::string_view mountinfo);

class ProcessResolver {
 public:
  struct Options {
    std::string proc_root = "/proc";
    // "" = find the cgroup2 mount in /proc/self/mountinfo; if none, cgroup paths stay "" (and
    // cgroup2_root() says so).
    std::string cgroup2_root{};
    size_t max_cgroup_dirs = 50000;  // a walk records at most this many directories
    absl::Duration rescan_min_interval = absl::Seconds(2);
    size_t cache_entries = 4096;  // bound of each cache (executables; user names)
  };

  // Readable from any thread.
  struct Counters {
    uint64_t cgroup_scans = 0;           // walks of the hierarchy (the first one included)
    uint64_t cgroup_scan_truncated = 0;  // walks that stopped at max_cgroup_dirs
    uint64_t cgroup_dirs = 0;            // directories the last walk recorded
    uint64_t cgroup_unknown = 0;         // ids not in the map even after the allowed rescan
    uint64_t exe_lookups = 0;            // /proc reads (cache misses)
    uint64_t exe_misses = 0;    // ... that gave "": process gone, start time mismatch, error
    uint64_t user_lookups = 0;  // getpwuid_r calls (cache misses)
  };

  explicit ProcessResolver(Options o);
  ~ProcessResolver();
  ProcessResolver(const ProcessResolver&) = delete;
  ProcessResolver& operator=(const ProcessResolver&) = delete;

  // Never fails: unknown parts stay empty.
  ProcessContext Resolve(const ProcessRecord& r);

  Counters counters() const;
  // The directory walked for cgroup paths; "" when no cgroup2 mount was found (paths are off).
  const std::string& cgroup2_root() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bw
