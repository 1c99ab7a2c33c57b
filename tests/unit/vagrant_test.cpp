// vagrant/Vagrantfile: the VM that runs the suite on another kernel (Debian 12, its stock 6.1).
//
// Test that: `vagrant validate` accepts the file (offline: no box is fetched, the update check is
// off, Vagrant's home and the machine's dot directory go to a temporary directory that is removed,
// so nothing is left in the repository or in ~/.vagrant.d); and that the file still says what the
// README promises: box debian/bookworm64, the repository synced with rsync, provisioned with
// scripts/install-deps, then `make test`. Provider blocks are validated only where that provider
// is installed (`--ignore-provider`): this machine has neither libvirt's plugin nor VirtualBox.
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "lib/netns.hpp"
#include "lib/topology.hpp"

namespace bw::test {
namespace {

TEST_CASE("vagrant validate accepts vagrant/Vagrantfile, offline") {
  const std::string dir = std::string(BW_SOURCE_DIR) + "/vagrant";
  REQUIRE(std::filesystem::exists(dir + "/Vagrantfile"));
  if (Sh("command -v vagrant >/dev/null 2>&1") != 0)
    FAIL("the vagrant binary is missing: scripts/install-deps installs it (Debian package "
         "'vagrant'); run it, then this test again");

  std::string tmpl = (std::filesystem::temp_directory_path() / "bw-vagrant-XXXXXX").string();
  REQUIRE(mkdtemp(tmpl.data()) != nullptr);
  const std::string tmp = tmpl;
  struct Cleanup {
    std::string path;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } cleanup{tmp};

  int st = -1;
  // Ruby's own temporary files go there too (TMPDIR), so a /tmp without the sticky bit is no bother.
  std::string out = ShOut("cd '" + dir + "' && TMPDIR='" + tmp + "' VAGRANT_HOME='" + tmp +
                              "/home' VAGRANT_DOTFILE_PATH='" + tmp +
                              "/dot' VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_NO_COLOR=1 "
                              "vagrant validate --ignore-provider 2>&1",
                          &st);
  INFO(out);
  CHECK(st == 0);
  CHECK(out.find("Vagrantfile validated successfully") != std::string::npos);
  CHECK(!std::filesystem::exists(dir + "/.vagrant"));  // nothing left beside the file

  const std::string vf = ReadFile(dir + "/Vagrantfile");
  CHECK(vf.find("\"debian/bookworm64\"") != std::string::npos);
  CHECK(vf.find("type: \"rsync\"") != std::string::npos);
  CHECK(vf.find("./scripts/install-deps") != std::string::npos);
  CHECK(vf.find("make test") != std::string::npos);
}

}  // namespace
}  // namespace bw::test
