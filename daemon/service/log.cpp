#include "daemon/service/log.hpp"

#include <cstdio>

#include "absl/time/clock.h"

namespace bw {

void Log(absl::string_view msg) {
  std::string t = absl::FormatTime("%Y-%m-%dT%H:%M:%S%Ez", absl::Now(), absl::LocalTimeZone());
  std::fprintf(stderr, "%s bannerwatch: %.*s\n", t.c_str(), static_cast<int>(msg.size()),
               msg.data());
}

std::string TimeText(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3S%Ez", t, absl::UTCTimeZone());
}

}  // namespace bw
