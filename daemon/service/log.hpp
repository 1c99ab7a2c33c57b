// log.hpp — the daemon's log lines and the timestamps its replies carry.
//
// A line on stderr is "TIME bannerwatch: MESSAGE" (local time) — unless stderr is the journal
// (systemd's $JOURNAL_STREAM names stderr's device and inode), where it is "<N>MESSAGE": a syslog
// priority journald reads (sd-daemon.h's SD_ERR... levels), no time (journald stamps each line)
// and no name (journald knows the unit's). There a message of several lines gets the prefix on
// every line; the plain format writes it as it is.
#pragma once
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace bw {

// syslog priorities, as sd-daemon.h's SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG.
enum class LogLevel { kError = 3, kWarning = 4, kInfo = 6, kDebug = 7 };

// One message on stderr, formatted for where stderr goes (decided once, at the first line).
void Log(absl::string_view msg, LogLevel level = LogLevel::kInfo);

// The text Log writes for `msg`, ending in '\n': the journal's format or the plain one with `now`.
std::string FormatLog(absl::string_view msg, LogLevel level, bool journal, absl::Time now);

// Whether `journal_stream` ($JOURNAL_STREAM, "DEV:INODE" in decimal) names the file `fd` is open
// on; false for null, malformed, or another file.
bool IsJournalStream(const char* journal_stream, int fd);

// Whether stderr goes to the journal (decided at the first call, from $JOURNAL_STREAM).
bool LogToJournal();

// A time as status and control replies print it (UTC, milliseconds); "" for InfinitePast.
std::string TimeText(absl::Time t);

}  // namespace bw
