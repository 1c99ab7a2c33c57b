// The install layout and the Debian package, from this build tree: `cmake --install --prefix /usr`
// into a staging DESTDIR puts every file in its Debian place and compiles no build-tree path into
// the binary; the .deb CPack makes lists the same files, computed Depends and its conffiles. The
// package is inspected, never installed on this host.
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/test_util.hpp"
#include "lib/topology.hpp"

namespace bw::test {
namespace {

const std::vector<std::string> kInstalled = {
    "usr/sbin/bannerwatch",
    "etc/bannerwatch/policy.yaml",
    "etc/bannerwatch/watchlists/seed-2013-09.txt",
    "etc/bannerwatch/watchlists/example-drop.txt",
    "etc/logrotate.d/bannerwatch",
    "lib/systemd/system/bannerwatch.service",
    "usr/share/man/man8/bannerwatch.8.gz",
    "usr/share/bash-completion/completions/bannerwatch",
    "usr/share/doc/bannerwatch/README.md",
    "usr/share/doc/bannerwatch/policy.md",
    "usr/share/doc/bannerwatch/signatures.md",
    "usr/share/doc/bannerwatch/copyright",
    "usr/share/doc/bannerwatch/changelog.gz",
};

TEST_CASE("packaging: cmake --install --prefix /usr stages the Debian layout, no build path inside", "[packaging]") {
  TempDir stage("bw-install");
  int st = 0;
  std::string out = ShOut("DESTDIR=" + stage.path() + " cmake --install " BW_BUILD_DIR
                          " --prefix /usr 2>&1", &st);
  INFO(out);
  REQUIRE(st == 0);
  for (const std::string& f : kInstalled) {
    INFO(f);
    CHECK(std::filesystem::is_regular_file(stage.path() + "/" + f));
  }
  const std::string bin = stage.path() + "/usr/sbin/bannerwatch";
  // No path of the source or build tree in the binary.
  for (const char* tree : {BW_SOURCE_DIR, BW_BUILD_DIR}) {
    INFO(tree);
    CHECK(ShOut("strings -a " + bin + " | grep -cF '" + tree + "'") == "0\n");
  }
  CHECK(ShOut("strings -a " + bin + " | grep -c '^/work/'") == "0\n");
  // Out of its build tree the binary looks in /etc (absent here unless the package is installed).
  if (!std::filesystem::exists("/etc/bannerwatch/policy.yaml")) {
    out = ShOut(bin + " check 2>&1", &st);
    INFO(out);
    CHECK(st == 1);
    CHECK(absl::StrContains(out, "/etc/bannerwatch/policy.yaml"));
  }
  // The staged policy's list files resolve relative to it.
  out = ShOut(bin + " check --config " + stage.path() + "/etc/bannerwatch/policy.yaml 2>&1", &st);
  INFO(out);
  CHECK(st == 0);
  CHECK(absl::StrContains(out, "seed-2013-09"));
  // The man page renders without complaint.
  out = ShOut("MANWIDTH=80 man --warnings -l " + stage.path() +
              "/usr/share/man/man8/bannerwatch.8.gz 2>&1 >/dev/null");
  CHECK(out == "");
  // The completion completes.
  out = ShOut("bash -c 'source /usr/share/bash-completion/bash_completion 2>/dev/null; source " +
              stage.path() + "/usr/share/bash-completion/completions/bannerwatch; "
              "COMP_WORDS=(bannerwatch run --x); COMP_CWORD=2; COMP_WORDS[2]=--xdp; "
              "_bannerwatch; echo ${COMPREPLY[@]}'");
  CHECK(out == "--xdp-mode\n");
}

TEST_CASE("packaging: the .deb lists the layout, computed Depends and the conffiles", "[packaging]") {
  TempDir out_dir("bw-deb");
  int st = 0;
  std::string out = ShOut("cd " + out_dir.path() + " && cpack -G DEB --config " BW_BUILD_DIR
                          "/CPackConfig.cmake 2>&1", &st);
  INFO(out);
  REQUIRE(st == 0);
  const std::string deb = out_dir.path() + "/bannerwatch_0.1.0_amd64.deb";
  REQUIRE(std::filesystem::exists(deb));
  std::string files = ShOut("dpkg-deb -c " + deb);
  for (const std::string& f : kInstalled) {
    INFO(f);
    CHECK(absl::StrContains(files, " ./" + f + "\n"));
  }
  CHECK(!absl::StrContains(files, "/include/"));
  CHECK(!absl::StrContains(files, ".a\n"));
  for (absl::string_view piece : absl::StrSplit(files, '\n', absl::SkipEmpty())) {
    const std::string line(piece);
    INFO(line);
    CHECK(absl::StrContains(line, " root/root "));
  }
  std::string info = ShOut("dpkg-deb -I " + deb);
  INFO(info);
  for (const char* dep : {"libbpf1", "libyaml-cpp0.7", "libabsl", "libpcap0.8", "libstdc++6",
                          "adduser"})
    CHECK(absl::StrContains(info, dep));
  for (const char* script : {"postinst", "prerm", "postrm", "conffiles"})
    CHECK(absl::StrContains(info, script));
  std::string conffiles = ShOut("dpkg-deb -e " + deb + " " + out_dir.path() + "/ctl && cat " +
                                out_dir.path() + "/ctl/conffiles");
  for (const std::string& f : kInstalled) {
    if (f.rfind("etc/", 0) != 0) continue;
    INFO(f);
    CHECK(absl::StrContains(conffiles, "/" + f + "\n"));
  }
  // Every file of the package under /etc is a conffile.
  for (absl::string_view piece : absl::StrSplit(files, '\n', absl::SkipEmpty())) {
    const std::string line(piece);
    auto at = line.find(" ./etc/");
    if (at == std::string::npos || line.back() == '/') continue;
    std::string path = line.substr(at + 2);
    INFO(path);
    CHECK(absl::StrContains(conffiles, path + "\n"));
  }
  for (const char* script : {"postinst", "prerm", "postrm"})
    CHECK(Sh("sh -n " + out_dir.path() + "/ctl/" + script) == 0);
}

}  // namespace
}  // namespace bw::test
