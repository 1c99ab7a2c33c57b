// Process context (daemon/host/process_context.hpp): container ids and systemd units from every
// real-world cgroup path layout and the near misses; /proc/PID/stat parsing with hostile comms; the
// resolver on this very process (real /proc: right start time -> its executable, wrong one -> "");
// a fake /proc for " (deleted)" and the leader-exited fallback; a fake cgroup tree for id -> path,
// unknown ids, symlinks not followed, the walk bound and the rescan interval; uid 0 -> "root".
#include "daemon/host/process_context.hpp"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "lib/test_util.hpp"

namespace bw {
namespace {

const std::string kId = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kId2 = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

using test::TempDir;  // tests/lib/test_util.hpp

uint64_t Inode(const std::string& path) {
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_ino;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

// Field 22 of /proc/self/stat, read independently of the parser under test.
uint64_t SelfStartTicks() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  std::getline(in, line);
  const size_t close = line.rfind(')');
  REQUIRE(close != std::string::npos);
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22; ++i) rest >> field;
  return std::stoull(field);
}

uint64_t TicksToNs(uint64_t ticks) {
  return ticks * (1'000'000'000ull / static_cast<uint64_t>(sysconf(_SC_CLK_TCK)));
}

// A stat line with `comm` and `starttime`; the other fields are plausible values.
std::string StatLine(uint32_t pid, const std::string& comm, const std::string& starttime) {
  return absl::StrCat(
      pid, " (", comm, ") S 1 ", pid, " ", pid, " 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 ",
      starttime, " 10000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n");
}

TEST_CASE("process: containers and systemd units from cgroup paths", "[process]") {
  struct Row {
    std::string path;
    std::string id;  // "" = no container
    std::string runtime;
    std::string unit;
  };
  const std::string pod_cgroupfs = "pod1b2c3d4e-0000-4000-8000-000000000001";
  const std::string pod_systemd =
      "kubepods-besteffort-pod1b2c3d4e_0000_4000_8000_000000000001.slice";
  const std::vector<Row> rows = {
      // Docker, cgroupfs and systemd drivers.
      {"/docker/" + kId, kId, "docker", ""},
      {"/system.slice/docker-" + kId + ".scope", kId, "docker", ""},
      // Kubernetes: containerd under cgroupfs (QoS classes and guaranteed, which has no class dir).
      {"/kubepods/besteffort/" + pod_cgroupfs + "/" + kId, kId, "containerd", ""},
      {"/kubepods/burstable/" + pod_cgroupfs + "/" + kId, kId, "containerd", ""},
      {"/kubepods/" + pod_cgroupfs + "/" + kId, kId, "containerd", ""},
      // ... and under the systemd driver.
      {"/kubepods.slice/kubepods-besteffort.slice/" + pod_systemd + "/cri-containerd-" + kId +
           ".scope",
       kId, "containerd", ""},
      // Docker as the Kubernetes runtime, systemd driver.
      {"/kubepods.slice/kubepods-besteffort.slice/" + pod_systemd + "/docker-" + kId + ".scope",
       kId, "docker", ""},
      // CRI-O, systemd and cgroupfs drivers.
      {"/kubepods.slice/kubepods-burstable.slice/" + pod_systemd + "/crio-" + kId + ".scope", kId,
       "cri-o", ""},
      {"/kubepods/burstable/" + pod_cgroupfs + "/crio-" + kId, kId, "cri-o", ""},
      // podman: the scope, and the "container" sub-cgroup the process is put in.
      {"/machine.slice/libpod-" + kId + ".scope", kId, "podman", ""},
      {"/machine.slice/libpod-" + kId + ".scope/container", kId, "podman", ""},
      // rootless podman: the unit is the user's manager.
      {"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + kId +
           ".scope/container",
       kId, "podman", "user@1000.service"},
      // conmon is the runtime's monitor, not the container: its scope is a plain unit.
      {"/machine.slice/libpod-conmon-" + kId + ".scope", "", "", "libpod-conmon-" + kId + ".scope"},
      {"/system.slice/crio-conmon-" + kId + ".scope", "", "", "crio-conmon-" + kId + ".scope"},
      // systemd inside a container; docker-in-docker (the innermost container wins).
      {"/system.slice/docker-" + kId + ".scope/system.slice/nginx.service", kId, "docker",
       "nginx.service"},
      {"/docker/" + kId + "/docker/" + kId2, kId2, "docker", ""},
      // Plain systemd units.
      {"/system.slice/ssh.service", "", "", "ssh.service"},
      {"/user.slice/user-1000.slice/session-3.scope", "", "", "session-3.scope"},
      {"/system.slice/system-getty.slice/getty@tty1.service", "", "", "getty@tty1.service"},
      {"/init.scope", "", "", "init.scope"},
      {"/system.slice/docker.socket", "", "", "docker.socket"},
      {"/system.slice/-.mount", "", "", "-.mount"},
      {"/system.slice/dev-vda2.swap", "", "", "dev-vda2.swap"},
      // Negatives: ids of the wrong length or case, unknown parents, slices, nothing.
      {"/docker/" + kId.substr(1), "", "", ""},
      {"/docker/" + kId + "0", "", "", ""},
      {"/system.slice/docker-" + kId.substr(0, 12) + ".scope", "", "",
       "docker-" + kId.substr(0, 12) + ".scope"},
      {"/docker/0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF", "", "", ""},
      {"/system.slice/"
       "docker-0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF.scope",
       "", "", "docker-0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF.scope"},
      {"/docker/" + kId.substr(0, 63) + "g", "", "", ""},
      {"/lxc/" + kId, "", "", ""},                   // bare id, parent names no runtime
      {"/" + pod_cgroupfs + "/" + kId, "", "", ""},  // pod<uid> without kubepods above it
      {"/" + kId, "", "", ""},
      {"/kubepods/besteffort/" + pod_cgroupfs, "", "", ""},  // the pod, not a container
      {"/system.slice/.service", "", "", ""},                // a suffix alone names nothing
      {"/user.slice/user-1000.slice", "", "", ""},
      {"/", "", "", ""},
      {"", "", "", ""},
  };
  for (const Row& r : rows) {
    INFO(r.path);
    std::optional<ContainerRef> c = ContainerFromCgroupPath(r.path);
    if (r.id.empty()) {
      CHECK_FALSE(c.has_value());
    } else {
      REQUIRE(c.has_value());
      CHECK(c->id == r.id);
      CHECK(c->runtime == r.runtime);
    }
    CHECK(SystemdUnitFromCgroupPath(r.path) == r.unit);
  }
}

TEST_CASE("process: /proc/PID/stat start time with hostile comms", "[process]") {
  for (const std::string comm : {"sshd", "a b", "x) S 1 2 3", ") (", "))))", "", "(", "a\tb"}) {
    INFO("comm '" << comm << "'");
    auto t = ParseProcStatStartTime(StatLine(4242, comm, "123456789"));
    INFO(t.status());
    REQUIRE(t.ok());
    CHECK(*t == 123456789u);
  }
  CHECK_FALSE(ParseProcStatStartTime("4242 sshd S 1 2 3").ok());    // no parentheses
  CHECK_FALSE(ParseProcStatStartTime("4242 (sshd) S 1 2 3").ok());  // too few fields
  for (const char* bad : {"-1", "12x", "0x10", "99999999999999999999999"}) {
    INFO(bad);
    CHECK_FALSE(ParseProcStatStartTime(StatLine(1, "x", bad)).ok());
  }
  CHECK_FALSE(ParseProcStatStartTime("").ok());
}

TEST_CASE("process: boot time ns to clock ticks as the kernel converts", "[process]") {
  CHECK(BoottimeNsToClockTicks(0, 100) == 0);
  CHECK(BoottimeNsToClockTicks(9'999'999, 100) == 0);
  CHECK(BoottimeNsToClockTicks(10'000'000, 100) == 1);
  CHECK(BoottimeNsToClockTicks(123'456'789'012, 100) == 12345);
  CHECK(BoottimeNsToClockTicks(1'000'000'000, 1024) == 1024);  // alpha's USER_HZ
  CHECK(BoottimeNsToClockTicks(1'000'000'000, 300) == 300);
}

TEST_CASE("process: the cgroup2 mount from mountinfo", "[process]") {
  const std::string hybrid =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
      "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,name=systemd\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw\n";
  auto m = FindCgroup2Mount(hybrid);
  REQUIRE(m.ok());
  CHECK(m->mount_point == "/sys/fs/cgroup/unified");
  CHECK(m->root == "/");

  const std::string unified =
      "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
      "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
      "rw,nsdelegate,memory_recursiveprot\n";
  m = FindCgroup2Mount(unified);
  REQUIRE(m.ok());
  CHECK(m->mount_point == "/sys/fs/cgroup");

  // A sub-tree bind mount is only taken when there is no whole one; escapes are undone.
  const std::string bind_then_whole =
      "50 1 0:26 /system.slice/x.scope /mnt/cg\\040part rw - cgroup2 cgroup2 rw\n"
      "51 1 0:26 / /mnt/cg\\040all rw - cgroup2 cgroup2 rw\n";
  m = FindCgroup2Mount(bind_then_whole);
  REQUIRE(m.ok());
  CHECK(m->mount_point == "/mnt/cg all");
  m = FindCgroup2Mount(
      "50 1 0:26 /system.slice/x.scope /mnt/cg\\040part rw - cgroup2 cgroup2 rw\n");
  REQUIRE(m.ok());
  CHECK(m->mount_point == "/mnt/cg part");
  CHECK(m->root == "/system.slice/x.scope");

  m = FindCgroup2Mount("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n");
  CHECK(m.status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("process: this process's executable, only with its own start time", "[process]") {
  char self_exe[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self_exe, sizeof self_exe);
  REQUIRE(n > 0);
  const std::string want(self_exe, static_cast<size_t>(n));
  const uint64_t ticks = SelfStartTicks();

  ProcessResolver res(ProcessResolver::Options{});
  ProcessRecord r;
  r.pid = static_cast<uint32_t>(::getpid());
  r.tid = static_cast<uint32_t>(::gettid());
  r.uid = ::getuid();
  r.gid = ::getgid();
  r.start_boottime_ns = TicksToNs(ticks) + 1234;  // ns below a tick do not matter
  r.comm = std::string("pc_test\0\0\0", 10);

  ProcessContext c = res.Resolve(r);
  CHECK(c.executable == want);
  CHECK(c.pid == r.pid);
  CHECK(c.tid == r.tid);
  CHECK(c.name == "pc_test");  // cut at the kernel's NUL padding
  CHECK(res.counters().exe_lookups == 1);
  CHECK(res.counters().exe_misses == 0);

  // Cached by (pid, start time): no second read.
  CHECK(res.Resolve(r).executable == want);
  CHECK(res.counters().exe_lookups == 1);

  // Another start time is another process that had this pid: never this one's path.
  r.start_boottime_ns = TicksToNs(ticks + 1);
  CHECK(res.Resolve(r).executable.empty());
  r.start_boottime_ns = TicksToNs(ticks - 1);
  CHECK(res.Resolve(r).executable.empty());
  CHECK(res.counters().exe_misses == 2);
  // Unknown start time: not looked up at all.
  r.start_boottime_ns = 0;
  CHECK(res.Resolve(r).executable.empty());
  CHECK(res.counters().exe_lookups == 3);
}

TEST_CASE("process: a fake /proc: hostile comm, deleted executable, exited leader", "[process]") {
  TempDir tmp;
  const std::string proc = tmp.path() + "/proc";
  const uint64_t ticks = 987654;
  // A comm with ") (" and spaces, and an executable replaced on disk since it started.
  WriteFile(proc + "/4242/stat", StatLine(4242, "evil) (x y", absl::StrCat(ticks)));
  REQUIRE(::symlink("/opt/app/bin/agent (deleted)", (proc + "/4242/exe").c_str()) == 0);
  // A leader that exited (no exe link) while thread 4244 lives on.
  WriteFile(proc + "/4243/stat", StatLine(4243, "worker", absl::StrCat(ticks)));
  std::filesystem::create_directories(proc + "/4243/task/4244");
  REQUIRE(::symlink("/usr/bin/worker", (proc + "/4243/task/4244/exe").c_str()) == 0);

  ProcessResolver res(ProcessResolver::Options{.proc_root = proc, .cgroup2_root = tmp.path()});
  ProcessRecord r{.pid = 4242, .tid = 4242, .start_boottime_ns = TicksToNs(ticks)};
  CHECK(res.Resolve(r).executable == "/opt/app/bin/agent (deleted)");

  r = ProcessRecord{.pid = 4243, .tid = 4244, .start_boottime_ns = TicksToNs(ticks)};
  CHECK(res.Resolve(r).executable == "/usr/bin/worker");
  r.tid = 4243;              // the leader itself: nothing to fall back on
  r.start_boottime_ns += 1;  // a different cache key, same tick
  CHECK(res.Resolve(r).executable.empty());

  // A process that is gone.
  r = ProcessRecord{.pid = 9999, .tid = 9999, .start_boottime_ns = TicksToNs(ticks)};
  CHECK(res.Resolve(r).executable.empty());
}

TEST_CASE("process: the executable cache is bounded", "[process]") {
  TempDir tmp;
  const std::string proc = tmp.path() + "/proc";
  for (uint32_t pid : {4250u, 4251u, 4252u}) {
    WriteFile(absl::StrCat(proc, "/", pid, "/stat"), StatLine(pid, "p", "500"));
    REQUIRE(::symlink(absl::StrCat("/bin/p", pid).c_str(),
                      absl::StrCat(proc, "/", pid, "/exe").c_str()) == 0);
  }
  ProcessResolver res(
      ProcessResolver::Options{.proc_root = proc, .cgroup2_root = tmp.path(), .cache_entries = 2});
  auto exe = [&](uint32_t pid) {
    return res.Resolve(ProcessRecord{.pid = pid, .tid = pid, .start_boottime_ns = TicksToNs(500)})
        .executable;
  };
  CHECK(exe(4250) == "/bin/p4250");
  CHECK(exe(4250) == "/bin/p4250");
  CHECK(res.counters().exe_lookups == 1);
  CHECK(exe(4251) == "/bin/p4251");
  CHECK(exe(4252) == "/bin/p4252");
  CHECK(res.counters().exe_lookups == 3);
  // Two entries at most: the oldest was dropped and is read again (with the same answer).
  CHECK(exe(4250) == "/bin/p4250");
  CHECK(res.counters().exe_lookups == 4);
  CHECK(res.counters().exe_misses == 0);
}

TEST_CASE("process: cgroup ids map to paths in the hierarchy, rescans are rate limited",
          "[process]") {
  TempDir tmp;
  const std::string cg = tmp.path() + "/cg";
  for (const std::string& d : std::vector<std::string>{
           "/system.slice/ssh.service", "/system.slice/docker-" + kId + ".scope",
           "/user.slice/user-1000.slice/session-3.scope"}) {
    std::filesystem::create_directories(cg + d);
  }
  // A symlink to a directory outside the tree: never followed.
  std::filesystem::create_directories(tmp.path() + "/outside/inner");
  REQUIRE(::symlink((tmp.path() + "/outside").c_str(), (cg + "/link").c_str()) == 0);

  const auto interval = std::chrono::milliseconds(200);
  ProcessResolver res(ProcessResolver::Options{.cgroup2_root = cg,
                                               .rescan_min_interval = absl::FromChrono(interval)});
  CHECK(res.cgroup2_root() == cg);
  ProcessRecord r{.pid = 1, .cgroup_id = Inode(cg + "/system.slice/ssh.service")};

  const auto first_scan = std::chrono::steady_clock::now();
  ProcessContext c = res.Resolve(r);
  CHECK(c.cgroup_id == r.cgroup_id);
  CHECK(c.cgroup_path == "/system.slice/ssh.service");
  CHECK(c.systemd_unit == "ssh.service");
  CHECK_FALSE(c.container.has_value());
  CHECK(res.counters().cgroup_scans == 1);
  CHECK(res.counters().cgroup_dirs == 7);  // root, two slices, user-1000.slice, three leaves

  r.cgroup_id = Inode(cg + "/system.slice/docker-" + kId + ".scope");
  c = res.Resolve(r);
  CHECK(c.cgroup_path == "/system.slice/docker-" + kId + ".scope");
  REQUIRE(c.container.has_value());
  CHECK(c.container->id == kId);
  CHECK(c.container->runtime == "docker");
  CHECK(c.systemd_unit.empty());

  r.cgroup_id = Inode(cg + "/user.slice/user-1000.slice/session-3.scope");
  CHECK(res.Resolve(r).cgroup_path == "/user.slice/user-1000.slice/session-3.scope");
  r.cgroup_id = Inode(cg);
  CHECK(res.Resolve(r).cgroup_path == "/");
  r.cgroup_id = 0;  // unknown: no lookup, no scan
  CHECK(res.Resolve(r).cgroup_path.empty());
  CHECK(res.counters().cgroup_scans == 1);

  // Made after the first walk; a flood of unknown ids meanwhile.
  std::filesystem::create_directories(cg + "/system.slice/late.service");
  const uint64_t late = Inode(cg + "/system.slice/late.service");
  r.cgroup_id = late;
  const std::string before = res.Resolve(r).cgroup_path;
  for (uint64_t id = 1; id <= 100; ++id) {
    r.cgroup_id = (uint64_t{1} << 62) + id;
    CHECK(res.Resolve(r).cgroup_path.empty());
  }
  if (std::chrono::steady_clock::now() - first_scan < interval) {
    CHECK(before.empty());
    CHECK(res.counters().cgroup_scans == 1);
    CHECK(res.counters().cgroup_unknown == 101);
  } else {
    WARN("the interval passed before the checks ran (slow machine): not checking 'not before'");
  }

  // After the interval the next miss walks again and finds it.
  std::this_thread::sleep_for(interval + std::chrono::milliseconds(50));
  r.cgroup_id = late;
  c = res.Resolve(r);
  CHECK(c.cgroup_path == "/system.slice/late.service");
  CHECK(c.systemd_unit == "late.service");
  const uint64_t scans = res.counters().cgroup_scans;
  CHECK(scans >= 2);

  // An id that is nowhere in the tree stays unknown; the symlinked directory was not walked.
  std::this_thread::sleep_for(interval + std::chrono::milliseconds(50));
  r.cgroup_id = Inode(tmp.path() + "/outside/inner");
  CHECK(res.Resolve(r).cgroup_path.empty());
  r.cgroup_id = Inode(tmp.path() + "/outside");
  CHECK(res.Resolve(r).cgroup_path.empty());
  CHECK(res.counters().cgroup_scans > scans);
  CHECK(res.counters().cgroup_dirs == 8);
  CHECK(res.counters().cgroup_scan_truncated == 0);
}

TEST_CASE("process: the cgroup walk stops at max_cgroup_dirs", "[process]") {
  TempDir tmp;
  for (int i = 0; i < 10; ++i)
    std::filesystem::create_directories(absl::StrCat(tmp.path(), "/d", i, "/e"));
  ProcessResolver res(ProcessResolver::Options{.cgroup2_root = tmp.path(), .max_cgroup_dirs = 5});
  ProcessRecord r{.pid = 1, .cgroup_id = Inode(tmp.path())};
  CHECK(res.Resolve(r).cgroup_path == "/");
  CHECK(res.counters().cgroup_dirs == 5);
  CHECK(res.counters().cgroup_scan_truncated == 1);
  // Breadth first: the first level is what was recorded, not the deeper "e" directories.
  r.cgroup_id = Inode(tmp.path() + "/d0/e");
  CHECK(res.Resolve(r).cgroup_path.empty());
}

TEST_CASE("process: this host's cgroup2 hierarchy, found through mountinfo", "[process]") {
  ProcessResolver res(ProcessResolver::Options{});
  if (res.cgroup2_root().empty()) {
    WARN("no cgroup2 mount on this machine: cgroup paths are off, nothing to check");
    return;
  }
  // Our own cgroup: the "0::PATH" line of /proc/self/cgroup, and its directory's inode.
  std::ifstream in("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  }
  REQUIRE_FALSE(path.empty());
  struct stat st;
  if (::stat((res.cgroup2_root() + path).c_str(), &st) != 0) {
    WARN("own cgroup " << path << " not under " << res.cgroup2_root()
                       << " (another cgroup namespace?)");
    return;
  }
  ProcessRecord r{.pid = static_cast<uint32_t>(::getpid()), .cgroup_id = st.st_ino};
  CHECK(res.Resolve(r).cgroup_path == path);
}

TEST_CASE("process: user names from uids", "[process]") {
  ProcessResolver res(ProcessResolver::Options{.cgroup2_root = "/nonexistent"});
  ProcessRecord r{.pid = 0, .uid = 0};
  CHECK(res.Resolve(r).user == "root");
  CHECK(res.Resolve(r).user == "root");
  CHECK(res.counters().user_lookups == 1);  // cached
  r.uid = 3'999'999'999u;                   // no such user on any test machine
  CHECK(res.Resolve(r).user.empty());
  CHECK(res.Resolve(r).executable.empty());  // pid 0: nothing looked up
  CHECK(res.counters().exe_lookups == 0);
}

}  // namespace
}  // namespace bw
