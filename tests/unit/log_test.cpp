// The daemon's log lines (daemon/service/log.hpp): the plain format on a terminal or file, and
// the journal's when $JOURNAL_STREAM names stderr (a "<N>" priority per line, no timestamp).
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/service/log.hpp"
#include "lib/test_util.hpp"

namespace bw::test {
namespace {

TEST_CASE("log: the plain format keeps its local time and name") {
  absl::Time t = absl::FromUnixSeconds(1700000000);
  std::string line = FormatLog("attached to eth0", LogLevel::kInfo, false, t);
  std::string when = absl::FormatTime("%Y-%m-%dT%H:%M:%S%Ez", t, absl::LocalTimeZone());
  CHECK(line == absl::StrCat(when, " bannerwatch: attached to eth0\n"));
  // A message of several lines is written as it is; a trailing newline is not doubled.
  CHECK(FormatLog("a\nb\n", LogLevel::kError, false, t) ==
        absl::StrCat(when, " bannerwatch: a\nb\n"));
}

TEST_CASE("log: the journal's format: a priority on every line, no time") {
  absl::Time t = absl::FromUnixSeconds(1700000000);
  CHECK(FormatLog("cannot start: x", LogLevel::kError, true, t) == "<3>cannot start: x\n");
  CHECK(FormatLog("reload rejected", LogLevel::kWarning, true, t) == "<4>reload rejected\n");
  CHECK(FormatLog("running", LogLevel::kInfo, true, t) == "<6>running\n");
  CHECK(FormatLog("detail", LogLevel::kDebug, true, t) == "<7>detail\n");
  CHECK(FormatLog("verifier:\n0: r1 = 0\n", LogLevel::kWarning, true, t) ==
        "<4>verifier:\n<4>0: r1 = 0\n");
}

TEST_CASE("log: JOURNAL_STREAM is the journal only when it names the fd's device and inode") {
  TempDir dir("bw-log");
  int fd = ::open(dir.Write("stderr", "").c_str(), O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  struct stat st;
  REQUIRE(::fstat(fd, &st) == 0);
  std::string mine = absl::StrCat(st.st_dev, ":", st.st_ino);
  CHECK(IsJournalStream(mine.c_str(), fd));
  CHECK_FALSE(IsJournalStream(nullptr, fd));
  for (std::string other : {absl::StrCat(st.st_dev, ":", st.st_ino + 1),
                            absl::StrCat(st.st_dev + 1, ":", st.st_ino), std::string(""),
                            std::string(":"), absl::StrCat(st.st_dev), std::string("x:y"),
                            absl::StrCat(st.st_dev, ":", st.st_ino, ":1"),
                            absl::StrCat("-", st.st_dev, ":", st.st_ino)}) {
    INFO(other);
    CHECK_FALSE(IsJournalStream(other.c_str(), fd));
  }
  ::close(fd);
  CHECK_FALSE(IsJournalStream(mine.c_str(), fd));  // closed: fstat fails
}

}  // namespace
}  // namespace bw::test
