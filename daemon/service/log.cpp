#include "daemon/service/log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace bw {

bool IsJournalStream(const char* journal_stream, int fd) {
  if (journal_stream == nullptr) return false;
  std::pair<std::string, std::string> p = absl::StrSplit(journal_stream, absl::MaxSplits(':', 1));
  uint64_t dev, ino;
  if (!absl::SimpleAtoi(p.first, &dev) || !absl::SimpleAtoi(p.second, &ino)) return false;
  struct stat st;
  if (::fstat(fd, &st) != 0) return false;
  return static_cast<uint64_t>(st.st_dev) == dev && static_cast<uint64_t>(st.st_ino) == ino;
}

bool LogToJournal() {
  static const bool journal = IsJournalStream(std::getenv("JOURNAL_STREAM"), STDERR_FILENO);
  return journal;
}

std::string FormatLog(absl::string_view msg, LogLevel level, bool journal, absl::Time now) {
  while (!msg.empty() && msg.back() == '\n') msg.remove_suffix(1);
  if (!journal)  // the format the daemon always had, the message as it is
    return absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%S%Ez", now, absl::LocalTimeZone()),
                        " bannerwatch: ", msg, "\n");
  // journald reads every line as an entry of its own: the priority goes on each.
  std::string head = absl::StrCat("<", static_cast<int>(level), ">");
  std::string out;
  for (absl::string_view line : absl::StrSplit(msg, '\n')) absl::StrAppend(&out, head, line, "\n");
  return out;
}

void Log(absl::string_view msg, LogLevel level) {
  std::string text = FormatLog(msg, level, LogToJournal(), absl::Now());
  // One write per message: lines of two threads do not interleave.
  std::fwrite(text.data(), 1, text.size(), stderr);
}

std::string TimeText(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3S%Ez", t, absl::UTCTimeZone());
}

}  // namespace bw
