// process_context.cpp — process record -> EVE process context (see process_context.hpp for the
// contract).
#include "daemon/host/process_context.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"

namespace bw {
namespace {

constexpr size_t kContainerIdLen = 64;
// /proc/PID/stat is one line well under 1 KiB (comm is at most 64 bytes, for kernel threads);
// anything longer is not a stat file.
constexpr size_t kStatMaxBytes = 4096;

// Closes an fd on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

bool IsLowerHex64(absl::string_view s) {
  if (s.size() != kContainerIdLen) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// The public API takes std::string_view; this absl (Debian's build) has a string_view of its own.
absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::vector<absl::string_view> Components(std::string_view path) {
  return absl::StrSplit(AbslView(path), '/', absl::SkipEmpty());
}

// The container that component i itself names (its ancestors decide the bare-id forms), or nullopt.
std::optional<ContainerRef> ContainerAt(const std::vector<absl::string_view>& c, size_t i) {
  absl::string_view s = c[i];
  if (IsLowerHex64(s)) {
    // cgroupfs layouts name the container's cgroup by the bare id; only the parent says whose.
    if (i == 0) return std::nullopt;
    if (c[i - 1] == "docker") return ContainerRef{std::string(s), "docker"};
    if (absl::StartsWith(c[i - 1], "pod")) {
      for (size_t j = 0; j + 1 < i; ++j) {
        if (absl::StartsWith(c[j], "kubepods")) return ContainerRef{std::string(s), "containerd"};
      }
    }
    return std::nullopt;
  }
  // Prefixed forms: "<prefix><id>.scope" under the systemd cgroup driver, "<prefix><id>" under
  // cgroupfs (CRI-O's crio-<id>, podman's libpod-<id>). "libpod-conmon-<id>" and "crio-conmon-<id>"
  // fail the hex check after the prefix, which is what we want: conmon is not the container.
  absl::ConsumeSuffix(&s, ".scope");
  static constexpr std::pair<absl::string_view, absl::string_view> kPrefixes[] = {
      {"docker-", "docker"},
      {"cri-containerd-", "containerd"},
      {"crio-", "cri-o"},
      {"libpod-", "podman"},
  };
  for (const auto& [prefix, runtime] : kPrefixes) {
    absl::string_view rest = s;
    if (absl::ConsumePrefix(&rest, prefix) && IsLowerHex64(rest)) {
      return ContainerRef{std::string(rest), std::string(runtime)};
    }
  }
  return std::nullopt;
}

bool NamesUnit(absl::string_view s) {
  for (absl::string_view suffix : {".service", ".scope", ".socket", ".mount", ".swap"}) {
    if (s.size() > suffix.size() && absl::EndsWith(s, suffix)) return true;
  }
  return false;
}

// Reads a small file relative to a directory fd. Returns 0 or an errno.
int ReadSmallFileAt(int dir_fd, const char* name, size_t max_bytes, std::string* out) {
  Fd fd(::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) return errno;
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return errno;
  if (!S_ISREG(st.st_mode)) return EINVAL;
  out->clear();
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return 0;
    if (out->size() + static_cast<size_t>(n) > max_bytes) return EFBIG;
    out->append(buf, static_cast<size_t>(n));
  }
}

// Returns 0 or an errno.
int ReadLinkAt(int dir_fd, const char* name, std::string* out) {
  // /proc's readlink d_paths into one page and fails with ENAMETOOLONG beyond it; a symlink target
  // (a fake proc root) is at most PATH_MAX - 1 bytes too. A full buffer therefore means truncation.
  char buf[PATH_MAX];
  ssize_t n = ::readlinkat(dir_fd, name, buf, sizeof buf);
  if (n < 0) return errno;
  if (static_cast<size_t>(n) >= sizeof buf) return ENAMETOOLONG;
  out->assign(buf, static_cast<size_t>(n));
  return 0;
}

bool ProcessGone(int err) { return err == ENOENT || err == ESRCH; }

struct ExeResult {
  std::string path;  // "" unknown
  // The answer holds for this (pid, start time) for good: the process is gone or is another one.
  // False for transient failures (EMFILE, EACCES, ...), which are worth asking again.
  bool definitive = false;
};

ExeResult LookupExe(const std::string& proc_root, uint32_t pid, uint32_t tid, uint64_t want_ticks) {
  const std::string dir = absl::StrCat(proc_root, "/", pid);
  // Everything below goes through this directory fd. An open /proc/PID refers to that process's
  // struct pid, not to the number: once the process exits, lookups under it fail even if the
  // number has been given to a new process, so the start time checked below and the link read
  // after it cannot belong to two different processes.
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (dfd.get() < 0) return {"", ProcessGone(errno)};
  std::string stat;
  if (int err = ReadSmallFileAt(dfd.get(), "stat", kStatMaxBytes, &stat); err != 0) {
    return {"", ProcessGone(err)};
  }
  absl::StatusOr<uint64_t> ticks = ParseProcStatStartTime(stat);
  if (!ticks.ok()) return {"", false};
  // Note: /proc shows start times shifted by the reader's time namespace boottime offset; the
  // daemon runs in the initial time namespace, where the offset is zero.
  if (*ticks != want_ticks) return {"", true};  // the pid now names another process
  std::string exe;
  int err = ReadLinkAt(dfd.get(), "exe", &exe);
  if (err == ENOENT && tid != 0 && tid != pid) {
    // The thread-group leader exited (a zombie leader has no mm, so no exe) while the calling
    // thread lives on: ask that thread.
    const std::string task_exe = absl::StrCat("task/", tid, "/exe");
    err = ReadLinkAt(dfd.get(), task_exe.c_str(), &exe);
  }
  if (err != 0) return {"", ProcessGone(err)};
  return {std::move(exe), true};
}

struct UserResult {
  std::string name;
  bool definitive = false;  // found, or glibc said there is no such user
};

UserResult LookupUser(uint32_t uid) {
  long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(hint > 0 ? static_cast<size_t>(hint) : 16384);
  for (;;) {
    struct passwd pw;
    struct passwd* res = nullptr;
    int rc = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &res);
    if (rc == ERANGE && buf.size() < (size_t{1} << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc == EINTR) continue;
    if (rc != 0) return {"", false};
    if (res == nullptr) return {"", true};
    return {res->pw_name != nullptr ? res->pw_name : "", true};
  }
}

// A bounded map that keeps what was used recently without LRU bookkeeping: entries live in a
// current and a previous generation; when the current one is full it becomes the previous one (the
// old previous one is dropped), and a hit in the previous generation moves the entry to the
// current. At most max_entries in all.
template <typename K, typename V>
class TwoGenerationCache {
 public:
  explicit TwoGenerationCache(size_t max_entries)
      : gen_cap_(std::max<size_t>(1, max_entries / 2)) {}

  std::optional<V> Find(const K& k) {
    if (auto it = cur_.find(k); it != cur_.end()) return it->second;
    auto it = old_.find(k);
    if (it == old_.end()) return std::nullopt;
    V v = std::move(it->second);
    old_.erase(it);
    Insert(k, v);
    return v;
  }

  void Insert(const K& k, V v) {
    if (cur_.size() >= gen_cap_) {
      old_ = std::move(cur_);
      cur_.clear();
    }
    cur_.insert_or_assign(k, std::move(v));
  }

 private:
  size_t gen_cap_;
  absl::flat_hash_map<K, V> cur_, old_;
};

struct CgroupScan {
  absl::flat_hash_map<uint64_t, std::string> paths;  // inode (= cgroup id) -> path
  bool truncated = false;
};

// Breadth first, so that when max_dirs cuts the walk short the shallow cgroups (system services,
// sessions, container scopes) are the ones recorded and deep sub-cgroups the ones missing.
CgroupScan WalkCgroups(const std::string& root, const std::string& prefix, size_t max_dirs) {
  CgroupScan out;
  // The root may be a configured path with symlinks in it; nothing below it is followed.
  Fd root_fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root_fd.get() < 0) return out;
  struct stat root_st;
  if (::fstat(root_fd.get(), &root_st) != 0) return out;

  std::deque<std::string> queue;  // relative paths: "" is the root, then "/a", "/a/b", ...
  queue.push_back("");
  bool first = true;
  while (!queue.empty()) {
    if (out.paths.size() >= max_dirs) {
      out.truncated = true;
      break;
    }
    std::string rel = std::move(queue.front());
    queue.pop_front();
    Fd fd(first ? root_fd.release()
                : ::open((root + rel).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    first = false;
    if (fd.get() < 0) continue;  // removed since it was listed, or unreadable: skip it
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) continue;
    // Another file system mounted inside (e.g. the v1 hierarchies under /sys/fs/cgroup when the
    // caller named the tmpfs above them) is not part of this hierarchy.
    if (st.st_dev != root_st.st_dev) continue;
    std::string path = prefix + rel;
    if (path.empty()) path = "/";
    out.paths.insert_or_assign(static_cast<uint64_t>(st.st_ino), std::move(path));

    DIR* d = ::fdopendir(fd.get());
    if (d == nullptr) continue;
    fd.release();  // owned by d now
    while (struct dirent* e = ::readdir(d)) {
      absl::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      bool is_dir = e->d_type == DT_DIR;
      if (e->d_type == DT_UNKNOWN) {
        struct stat cst;
        is_dir = ::fstatat(::dirfd(d), e->d_name, &cst, AT_SYMLINK_NOFOLLOW) == 0 &&
                 S_ISDIR(cst.st_mode);
      }
      if (!is_dir) continue;  // files, and symlinks (DT_LNK) which are never followed
      if (out.paths.size() + queue.size() >= max_dirs) {
        out.truncated = true;
        break;
      }
      queue.push_back(absl::StrCat(rel, "/", name));
    }
    ::closedir(d);
  }
  return out;
}

std::string UnescapeMountinfo(absl::string_view s) {
  // mountinfo escapes space, tab, newline and backslash as \ooo.
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
        s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out.push_back(
          static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

std::optional<ContainerRef> ContainerFromCgroupPath(std::string_view cgroup_path) {
  const std::vector<absl::string_view> c = Components(cgroup_path);
  // Innermost first: a container nested in another (docker-in-docker) is the one the process is in.
  for (size_t i = c.size(); i-- > 0;) {
    if (auto ref = ContainerAt(c, i)) return ref;
  }
  return std::nullopt;
}

std::string SystemdUnitFromCgroupPath(std::string_view cgroup_path) {
  const std::vector<absl::string_view> c = Components(cgroup_path);
  for (size_t i = c.size(); i-- > 0;) {
    if (NamesUnit(c[i]) && !ContainerAt(c, i)) return std::string(c[i]);
  }
  return "";
}

absl::StatusOr<uint64_t> ParseProcStatStartTime(std::string_view stat_line_std) {
  const absl::string_view stat_line = AbslView(stat_line_std);
  // "PID (COMM) STATE PPID ...": COMM is whatever the process set (prctl(PR_SET_NAME) accepts
  // ')' and spaces), and nothing after it contains ')', so the last one closes it.
  const size_t close = stat_line.rfind(')');
  if (close == absl::string_view::npos) {
    return absl::InvalidArgumentError("stat line has no ')' closing comm");
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(stat_line.substr(close + 1), absl::ByAnyChar(" \n"), absl::SkipEmpty());
  // fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
  constexpr size_t kStartTime = 22 - 3;
  if (fields.size() <= kStartTime) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stat line has ", fields.size(), " fields after comm, want at least ", kStartTime + 1));
  }
  const absl::string_view f = fields[kStartTime];
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
  if (ec != std::errc() || end != f.data() + f.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("stat starttime '", f.substr(0, 32), "' is not a decimal number"));
  }
  return v;
}

uint64_t BoottimeNsToClockTicks(uint64_t ns, long clk_tck) {
  // The kernel's nsec_to_clock_t (kernel/time/time.c), with USER_HZ = clk_tck.
  constexpr uint64_t kNsPerSec = 1'000'000'000;
  if (clk_tck <= 0) clk_tck = 100;
  const uint64_t hz = static_cast<uint64_t>(clk_tck);
  if (kNsPerSec % hz == 0) return ns / (kNsPerSec / hz);
  if (hz % 512 == 0) return ns * hz / 512 / (kNsPerSec / 512);
  return ns * 9 / ((9 * kNsPerSec + hz / 2) / hz);
}

absl::StatusOr<Cgroup2MountInfo> FindCgroup2Mount(std::string_view mountinfo) {
  std::optional<Cgroup2MountInfo> found;
  for (absl::string_view line : absl::StrSplit(AbslView(mountinfo), '\n', absl::SkipEmpty())) {
    // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash + 1 >= f.size() || f[dash + 1] != "cgroup2") continue;
    Cgroup2MountInfo m{UnescapeMountinfo(f[4]), UnescapeMountinfo(f[3])};
    // A mount of the whole hierarchy sees every cgroup; a bind mount of a sub-tree only part.
    if (m.root == "/") return m;
    if (!found) found = std::move(m);
  }
  if (found) return *std::move(found);
  return absl::NotFoundError("/proc/self/mountinfo: no cgroup2 file system is mounted");
}

class ProcessResolver::Impl {
 public:
  explicit Impl(Options o)
      : opt_(std::move(o)),
        clk_tck_(::sysconf(_SC_CLK_TCK)),
        exe_cache_(opt_.cache_entries),
        user_cache_(opt_.cache_entries) {
    if (!opt_.cgroup2_root.empty()) {
      cg_root_ = opt_.cgroup2_root;
      return;
    }
    std::string mountinfo;
    Fd self(::open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (self.get() < 0 ||
        ReadSmallFileAt(self.get(), "mountinfo", size_t{16} << 20, &mountinfo) != 0) {
      return;  // cgroup paths stay "" (cgroup2_root() is empty)
    }
    absl::StatusOr<Cgroup2MountInfo> m = FindCgroup2Mount(mountinfo);
    if (!m.ok()) return;
    cg_root_ = m->mount_point;
    if (m->root != "/") cg_prefix_ = m->root;
  }

  ProcessContext Resolve(const ProcessRecord& r) {
    ProcessContext c;
    c.pid = r.pid;
    c.tid = r.tid;
    c.ppid = r.ppid;
    c.uid = r.uid;
    c.gid = r.gid;
    c.name = r.comm.substr(0, std::min<size_t>(r.comm.find('\0'), 15));
    c.cgroup_id = r.cgroup_id;
    absl::MutexLock l(&mu_);
    c.executable = Executable(r);
    c.user = User(r.uid);
    c.cgroup_path = CgroupPath(r.cgroup_id);
    if (!c.cgroup_path.empty()) {
      c.container = ContainerFromCgroupPath(c.cgroup_path);
      c.systemd_unit = SystemdUnitFromCgroupPath(c.cgroup_path);
    }
    return c;
  }

  Counters counters() const {
    Counters c;
    c.cgroup_scans = cgroup_scans_.load(std::memory_order_relaxed);
    c.cgroup_scan_truncated = cgroup_scan_truncated_.load(std::memory_order_relaxed);
    c.cgroup_dirs = cgroup_dirs_.load(std::memory_order_relaxed);
    c.cgroup_unknown = cgroup_unknown_.load(std::memory_order_relaxed);
    c.exe_lookups = exe_lookups_.load(std::memory_order_relaxed);
    c.exe_misses = exe_misses_.load(std::memory_order_relaxed);
    c.user_lookups = user_lookups_.load(std::memory_order_relaxed);
    return c;
  }

  const std::string& cgroup2_root() const { return cg_root_; }

 private:
  std::string Executable(const ProcessRecord& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Without a start time there is nothing to tell this process from a later one with its pid.
    if (r.pid == 0 || r.start_boottime_ns == 0) return "";
    const std::pair<uint32_t, uint64_t> key{r.pid, r.start_boottime_ns};
    if (std::optional<std::string> hit = exe_cache_.Find(key)) return *std::move(hit);
    exe_lookups_.fetch_add(1, std::memory_order_relaxed);
    ExeResult e = LookupExe(opt_.proc_root, r.pid, r.tid,
                            BoottimeNsToClockTicks(r.start_boottime_ns, clk_tck_));
    if (e.path.empty()) exe_misses_.fetch_add(1, std::memory_order_relaxed);
    if (e.definitive) exe_cache_.Insert(key, e.path);
    return std::move(e.path);
  }

  std::string User(uint32_t uid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // A name (or its absence) is remembered until evicted: a user added later shows up then.
    if (std::optional<std::string> hit = user_cache_.Find(uid)) return *std::move(hit);
    user_lookups_.fetch_add(1, std::memory_order_relaxed);
    UserResult u = LookupUser(uid);
    if (u.definitive) user_cache_.Insert(uid, u.name);
    return std::move(u.name);
  }

  std::string CgroupPath(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (id == 0 || cg_root_.empty()) return "";
    if (auto it = cgroup_paths_.find(id); it != cgroup_paths_.end()) return it->second;
    // A miss is a cgroup made since the last walk, or one already removed (a short-lived container
    // or session that ended before its event was read): that one is not in the tree any more and
    // stays unknown. Walk again, but not more often than the interval, so that a flood of unknown
    // ids costs one walk per interval rather than one per event.
    const auto now = std::chrono::steady_clock::now();
    if (!last_scan_ || now - *last_scan_ >= absl::ToChronoNanoseconds(opt_.rescan_min_interval)) {
      CgroupScan scan = WalkCgroups(cg_root_, cg_prefix_, opt_.max_cgroup_dirs);
      // Replaced, not merged: the map stays bounded and forgets removed cgroups. Ids are never
      // reused (64-bit, increasing), so a stale entry could not be wrong, only unbounded.
      cgroup_paths_ = std::move(scan.paths);
      // Timed from the end of the walk, so that a slow walk is not repeated at once.
      last_scan_ = std::chrono::steady_clock::now();
      cgroup_scans_.fetch_add(1, std::memory_order_relaxed);
      if (scan.truncated) cgroup_scan_truncated_.fetch_add(1, std::memory_order_relaxed);
      cgroup_dirs_.store(cgroup_paths_.size(), std::memory_order_relaxed);
      if (auto it = cgroup_paths_.find(id); it != cgroup_paths_.end()) return it->second;
    }
    cgroup_unknown_.fetch_add(1, std::memory_order_relaxed);
    return "";
  }

  const Options opt_;
  const long clk_tck_;
  std::string cg_root_;    // "" = no cgroup2 hierarchy: paths off
  std::string cg_prefix_;  // the mount's root inside the hierarchy, "" for "/"

  absl::Mutex mu_;
  TwoGenerationCache<std::pair<uint32_t, uint64_t>, std::string> exe_cache_ ABSL_GUARDED_BY(mu_);
  TwoGenerationCache<uint32_t, std::string> user_cache_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::string> cgroup_paths_ ABSL_GUARDED_BY(mu_);
  std::optional<std::chrono::steady_clock::time_point> last_scan_ ABSL_GUARDED_BY(mu_);

  std::atomic<uint64_t> cgroup_scans_{0};
  std::atomic<uint64_t> cgroup_scan_truncated_{0};
  std::atomic<uint64_t> cgroup_dirs_{0};
  std::atomic<uint64_t> cgroup_unknown_{0};
  std::atomic<uint64_t> exe_lookups_{0};
  std::atomic<uint64_t> exe_misses_{0};
  std::atomic<uint64_t> user_lookups_{0};
};

ProcessResolver::ProcessResolver(Options o) : impl_(std::make_unique<Impl>(std::move(o))) {}
ProcessResolver::~ProcessResolver() = default;

ProcessContext ProcessResolver::Resolve(const ProcessRecord& r) { return impl_->Resolve(r); }
ProcessResolver::Counters ProcessResolver::counters() const { return impl_->counters(); }
const std::string& ProcessResolver::cgroup2_root() const { return impl_->cgroup2_root(); }

}  // namespace bw
