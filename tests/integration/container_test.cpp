// The OCI image (packaging/container/build-image) run for real: built from this build tree with
// buildah, no base image pulled, then run under podman as the DaemonSet
// (packaging/kubernetes/bannerwatch.yaml) runs it: its arguments, its ConfigMap's policy mounted
// read-only at /etc/bannerwatch, a read-only root file system with the state and run directories
// as volumes, only CAP_BPF CAP_NET_ADMIN CAP_PERFMON, /sys/fs/bpf from the host, the host network
// (the test's host namespace). A real sshd on 443 answers a real client: the container's stdout
// carries the 1000146 alert; the readiness probe's command and the liveness probe's URL answer;
// `podman stop` detaches.
//
// Two things of this test machine, not of the image, are worked around here: crun refuses a
// cgroup v1/v2 hybrid (this machine mounts both; Debian 12 under systemd mounts v2 alone), so
// podman runs in a mount namespace of its own with cgroup2 at /sys/fs/cgroup and cgroups
// disabled; and root here lacks CAP_SYS_RESOURCE, so the container's limits are set no higher
// than the machine's. Debian 12's default seccomp profile allows bpf(2) only with CAP_SYS_ADMIN:
// the container gets the same profile with bpf allowed under CAP_BPF
// (packaging/container/seccomp-with-bpf), as newer runtimes' defaults do.
#include <sys/statfs.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <linux/magic.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "yaml-cpp/yaml.h"
#include "lib/test_util.hpp"
#include "lib/topology.hpp"

namespace bw::test {
namespace {

bool PureCgroup2() {
  struct statfs s;
  return ::statfs("/sys/fs/cgroup", &s) == 0 && s.f_type == CGROUP2_SUPER_MAGIC;
}

// The shell command that runs `podman ARGS` in `ns` (see the file comment for the wrapper).
std::string Podman(const Netns& ns, const std::string& args) {
  std::string podman = "podman " + args;
  if (!PureCgroup2()) {
    podman = "unshare -m sh -c 'mount --make-rprivate / && umount -R /sys/fs/cgroup && "
             "mount -t cgroup2 none /sys/fs/cgroup && exec " + podman + "'";
  }
  return ns.Prefix() + " " + podman;
}

std::string Version() {
  std::string v = ShOut("sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' " BW_BUILD_DIR
                        "/CMakeCache.txt");
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
  return v;
}

// The manifest's DaemonSet container and ConfigMap policy.
struct Manifest {
  std::vector<std::string> args;
  std::string policy;
};

Manifest ReadManifest() {
  Manifest m;
  for (const YAML::Node& doc :
       YAML::LoadAllFromFile(std::string(BW_SOURCE_DIR) + "/packaging/kubernetes/bannerwatch.yaml")) {
    const std::string kind = doc["kind"].as<std::string>();
    if (kind == "ConfigMap") m.policy = doc["data"]["policy.yaml"].as<std::string>();
    if (kind == "DaemonSet") {
      for (const YAML::Node& a : doc["spec"]["template"]["spec"]["containers"][0]["args"])
        m.args.push_back(a.as<std::string>());
    }
  }
  return m;
}

TEST_CASE("container: the image built from this tree raises 1000146 under podman with only "
          "CAP_BPF CAP_NET_ADMIN CAP_PERFMON, run as the DaemonSet runs it", "[packaging]") {
  if (Sh("command -v podman >/dev/null && command -v buildah >/dev/null") != 0) {
    FAIL("podman and buildah are needed (scripts/install-deps installs them)");
  }
  Topology t;
  const std::string tag = absl::StrCat("localhost/bannerwatch-test:", getpid());
  const std::string name = absl::StrCat("bwt-ctr-", getpid());
  const std::string pin_root = absl::StrCat("/sys/fs/bpf/bwt-ctr-", getpid());
  const std::string archive = t.dir() + "/image.tar";
  struct Cleanup {
    std::string rm, rmi;
    ~Cleanup() {
      Sh(rm + " >/dev/null 2>&1");
      Sh(rmi + " >/dev/null 2>&1");
    }
  } cleanup{Podman(t.host(), "rm -f " + name), "podman rmi -f " + tag};

  int st = -1;
  std::string built = ShOut(std::string(BW_SOURCE_DIR) + "/packaging/container/build-image --build " +
                                BW_BUILD_DIR + " --tag " + tag + " --oci-archive " + archive + " 2>&1",
                            &st);
  INFO(built);
  REQUIRE(st == 0);
  // No base image: the image's one layer holds the daemon, its libraries and its files.
  std::string labels = ShOut("podman image inspect " + tag +
                             " --format '{{.Config.Entrypoint}} {{len .RootFS.Layers}} "
                             "{{index .Config.Labels \"org.opencontainers.image.version\"}}'");
  CHECK(absl::StrContains(labels, "[/usr/sbin/bannerwatch] 1 " + Version()));
  CHECK(std::filesystem::file_size(archive) > 1000000);

  const Manifest manifest = ReadManifest();
  REQUIRE(!manifest.args.empty());
  REQUIRE(!manifest.policy.empty());
  std::filesystem::create_directories(t.dir() + "/etc");
  std::filesystem::create_directories(t.dir() + "/state");
  std::filesystem::create_directories(t.dir() + "/run");
  WriteFile(t.dir() + "/etc/policy.yaml", manifest.policy);
  const std::string seccomp = t.dir() + "/seccomp.json";
  REQUIRE(Sh(std::string(BW_SOURCE_DIR) + "/packaging/container/seccomp-with-bpf > " + seccomp) == 0);
  auto sshd = StartSshd(t, 443);
  const std::string out = t.dir() + "/container.out", err = t.dir() + "/container.err";
  // The DaemonSet's arguments, plus the interface (the test's host namespace has no default
  // route) and a pin root of the test's own.
  const std::string run = absl::StrCat(
      "run --rm --name ", name, " --network host --cgroups=disabled",
      " --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 --read-only",
      " --cap-drop all --cap-add BPF,NET_ADMIN,PERFMON --security-opt seccomp=", seccomp,
      " -v /sys/fs/bpf:/sys/fs/bpf -v ", t.dir(), "/etc:/etc/bannerwatch:ro -v ", t.dir(),
      "/state:/var/lib/bannerwatch -v ", t.dir(), "/run:/run/bannerwatch ", tag, " ",
      absl::StrJoin(manifest.args, " "), " --iface ", kHostIf, " --pin-root ", pin_root);
  Process ctr(nullptr, {"sh", "-c", Podman(t.host(), run) + " >" + out + " 2>" + err}, t.dir() + "/podman.log");
  bool attached = WaitFor([&] { return absl::StrContains(ReadFile(err), "running: policy"); },
                          30000);
  INFO("container stderr:\n" << ReadFile(err) << "\npodman:\n" << ReadFile(t.dir() + "/podman.log"));
  REQUIRE(attached);
  CHECK(absl::StrContains(ReadFile(err), absl::StrCat("attached to ", kHostIf)));
  CHECK(absl::StrContains(t.host().Out(std::string("tc filter show dev ") + kHostIf + " egress"),
                          "bw_tc_egress"));

  std::string ssh;
  SshProbe(t, kServerV4, 443, 5, &ssh);
  bool alerted = WaitFor([&] { return absl::StrContains(ReadFile(out), "\"signature_id\":1000146"); },
                         10000);
  INFO("container stdout:\n" << ReadFile(out));
  REQUIRE(alerted);
  for (absl::string_view line : absl::StrSplit(ReadFile(out), '\n', absl::SkipEmpty())) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    REQUIRE(!j.is_discarded());
    if (j["alert"]["signature_id"] != 1000146) continue;
    CHECK(j["src_ip"] == kServerV4);
    CHECK(j["src_port"] == 443);
    CHECK(absl::StartsWith(j["bannerwatch"]["banner"].get<std::string>(), "SSH-2.0-OpenSSH"));
  }

  // The probes: readiness runs `bannerwatch status` inside, liveness fetches the metrics.
  CHECK(Sh(Podman(t.host(), "exec " + name +
                                " /usr/sbin/bannerwatch status --control /run/bannerwatch/control.sock") +
           " >/dev/null 2>&1") == 0);
  CHECK(absl::StrContains(t.host().Out("curl -s http://127.0.0.1:9464/metrics"),
                          "bannerwatch_"));

  // podman stop: SIGTERM, the daemon detaches and unpins (keep_on_exit is false by default).
  CHECK(Sh(Podman(t.host(), "stop -t 20 " + name) + " >/dev/null 2>&1") == 0);
  CHECK(ctr.Wait(30000) == 0);
  // The manifest's policy keeps enforcement over pod restarts (keep_on_exit: true): still
  // attached, for the next pod to take over; `bannerwatch detach` on the node removes it.
  CHECK(absl::StrContains(ReadFile(err), "keep_on_exit: programs stay attached"));
  CHECK(absl::StrContains(t.host().Out(std::string("tc filter show dev ") + kHostIf + " egress"),
                          "bw_tc_egress"));
  CHECK(t.host().Run(BannerwatchBinary() + " detach --pin-root " + pin_root) == 0);
  CHECK(!absl::StrContains(t.host().Out(std::string("tc filter show dev ") + kHostIf + " egress"),
                           "bw_tc_egress"));
  CHECK(!std::filesystem::exists(pin_root));
}

}  // namespace
}  // namespace bw::test
