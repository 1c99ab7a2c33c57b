// test_util.hpp — small helpers several suites share: a temporary directory and compiling a
// policy from YAML text (failing the test, with the message, when it does not compile).
#pragma once

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "daemon/policy/policy.hpp"

namespace bw::test {

// A directory under /tmp, removed with everything in it when the object goes.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "bw-test") {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  // Writes `content` to `name` (parent directories created); returns the full path.
  std::string Write(const std::string& name, const std::string& content) const {
    std::string p = path_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline CompiledPolicy CompileYaml(const std::string& yaml, const std::string& name = "test.yaml") {
  auto p = ParsePolicy(yaml, name);
  INFO(p.status());
  REQUIRE(p.ok());
  auto c = Compile(*p);
  INFO(c.status());
  REQUIRE(c.ok());
  return *c;
}

}  // namespace bw::test
