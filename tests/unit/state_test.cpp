// The runtime state file (state.hpp): what the CLI's block/watch/allow leave behind for the next
// start. Written atomically through a temporary file nobody can predict or redirect; read back
// with every field checked, so a damaged or hand-edited file is an error naming the entry, never
// a silent guess.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "daemon/policy/state.hpp"
#include "lib/test_util.hpp"

namespace bw {
namespace {

using test::TempDir;

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST_CASE("state file: saved and loaded back as it was") {
  TempDir tmp;
  const std::string path = tmp.path() + "/state.json";
  RuntimeState s;
  RuntimeEntry e;
  e.cidr = "203.0.113.0/24";
  e.action = "block";
  e.list = "manual";
  e.reason = "seen beaconing";
  e.added = absl::FromUnixSeconds(1700000000);
  e.expires = absl::FromUnixSeconds(1700043200);
  s.Upsert(e);
  REQUIRE(s.Save(path).ok());
  auto back = RuntimeState::Load(path);
  REQUIRE(back.ok());
  REQUIRE(back->entries().size() == 1u);
  CHECK(back->entries()[0].cidr == e.cidr);
  CHECK(back->entries()[0].list == "manual");
  CHECK(back->entries()[0].reason == e.reason);
  CHECK(back->entries()[0].expires == e.expires);
  // Nothing but the file itself is left in the directory.
  int files = 0;
  for (const auto& f : std::filesystem::directory_iterator(tmp.path())) (void)f, ++files;
  CHECK(files == 1);
  CHECK(RuntimeState::Load(tmp.path() + "/missing.json").ok());  // no file: empty state
}

TEST_CASE("state file: a wrong action, type, list name or reason is an error naming the entry") {
  TempDir tmp;
  const std::string path = tmp.path() + "/state.json";
  struct Case {
    const char* entry;
    const char* says;
  };
  const Case cases[] = {
      // "blok" once became a watch entry without a word.
      {R"({"cidr":"203.0.113.0/24","action":"blok"})", "entry 1: action 'blok' is not block, watch or safelist"},
      {R"({"cidr":"203.0.113.0/24"})", "entry 1: lacks \"action\""},
      {R"({"cidr":7,"action":"block"})", "entry 1: \"cidr\" is not a string"},
      {R"({"cidr":"203.0.113.0/24","action":"block","list":7})", "\"list\" is not a string"},
      {R"({"cidr":"203.0.113.0/24","action":"block","list":"two words"})", "the list name is not"},
      {R"({"cidr":"203.0.113.0/24","action":"block","reason":"a\u001b[2Jb"})", "control characters"},
      {R"({"cidr":"203.0.113.0/24","action":"block","expires":"tomorrow"})", "bad time"},
      {R"("203.0.113.0/24")", "entry 1: not an object"},
  };
  for (const Case& c : cases) {
    INFO(c.entry);
    Write(path, std::string(R"({"version":1,"entries":[)") + c.entry + "]}");
    auto s = RuntimeState::Load(path);
    REQUIRE_FALSE(s.ok());
    CHECK(std::string(s.status().message()).find(c.says) != std::string::npos);
    CHECK(std::string(s.status().message()).rfind(path, 0) == 0);
  }
  // Not a regular file.
  REQUIRE(std::filesystem::remove(path));
  REQUIRE(mkfifo(path.c_str(), 0600) == 0);
  auto s = RuntimeState::Load(path);
  REQUIRE_FALSE(s.ok());
  CHECK(std::string(s.status().message()).find("is a FIFO") != std::string::npos);
}

// The temporary file of an atomic write was `<path>.tmp.<pid>`, opened with O_CREAT|O_TRUNC: a
// symlink planted at that name sent the write (and the truncation) to its target.
TEST_CASE("state file: a symlink at a temporary name a writer could guess is not followed") {
  TempDir tmp;
  const std::string path = tmp.path() + "/state.json";
  const std::string victim = tmp.path() + "/victim";
  Write(victim, "precious\n");
  const std::string guess = path + ".tmp." + std::to_string(getpid());
  REQUIRE(symlink(victim.c_str(), guess.c_str()) == 0);
  RuntimeState s;
  RuntimeEntry e;
  e.cidr = "198.51.100.7/32";
  e.action = "watch";
  e.list = "runtime-watch";
  s.Upsert(e);
  REQUIRE(s.Save(path).ok());
  std::ifstream in(victim);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text == "precious\n");
  struct stat st {};
  REQUIRE(lstat(guess.c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));  // left alone
  CHECK(RuntimeState::Load(path)->entries().size() == 1u);
}

}  // namespace
}  // namespace bw
