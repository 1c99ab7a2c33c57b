// log.hpp — the daemon's log lines and the timestamps its replies carry.
#pragma once
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace bw {

// One line on stderr: local time, "bannerwatch:", the message.
void Log(absl::string_view msg);

// A time as status and control replies print it (UTC, milliseconds); "" for InfinitePast.
std::string TimeText(absl::Time t);

}  // namespace bw
