#include "daemon/state.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "daemon/feeds.hpp"
#include "maps/maps.hpp"

namespace bw {
namespace {
constexpr const char* kTimeFmt = "%Y-%m-%d%ET%H:%M:%E*S%Ez";

std::string TimeText(absl::Time t) {
  if (t == absl::InfiniteFuture()) return "";
  return absl::FormatTime(kTimeFmt, t, absl::UTCTimeZone());
}

bool ParseTime(const std::string& s, absl::Time* t, std::string* err) {
  if (s.empty()) {
    *t = absl::InfiniteFuture();
    return true;
  }
  return absl::ParseTime(absl::RFC3339_full, s, t, err);
}
}  // namespace

absl::StatusOr<RuntimeState> RuntimeState::Load(const std::string& path) {
  RuntimeState st;
  std::ifstream f(path);
  if (!f) {
    if (errno == ENOENT) return st;
    return ErrnoStatus(path, "open", errno);
  }
  std::stringstream ss;
  ss << f.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("entries") || !j["entries"].is_array())
    return absl::DataLossError(absl::StrCat(path, ": not a bannerwatch state file (want {\"entries\": [...]})"));
  int i = 0;
  for (const auto& e : j["entries"]) {
    ++i;
    if (!e.is_object() || !e.contains("cidr") || !e["cidr"].is_string() || !e.contains("action") ||
        !e["action"].is_string())
      return absl::DataLossError(absl::StrCat(path, ": entry ", i, " lacks cidr/action"));
    RuntimeEntry r;
    r.cidr = e["cidr"];
    r.action = e["action"];
    r.list = e.value("list", "runtime-" + r.action);
    r.reason = e.value("reason", "");
    std::string err;
    if (!ParseTime(e.value("added", ""), &r.added, &err) ||
        !ParseTime(e.value("expires", ""), &r.expires, &err))
      return absl::DataLossError(absl::StrCat(path, ": entry ", i, ": bad time: ", err));
    if (r.added == absl::InfiniteFuture()) r.added = absl::UnixEpoch();
    st.entries_.push_back(std::move(r));
  }
  return st;
}

absl::Status RuntimeState::Save(const std::string& path) const {
  nlohmann::json j;
  j["version"] = 1;
  j["entries"] = nlohmann::json::array();
  for (const RuntimeEntry& r : entries_) {
    nlohmann::json e = {{"cidr", r.cidr}, {"action", r.action}, {"list", r.list},
                        {"reason", r.reason}, {"added", TimeText(r.added)}};
    if (r.expires != absl::InfiniteFuture()) e["expires"] = TimeText(r.expires);
    j["entries"].push_back(std::move(e));
  }
  std::string text = j.dump(2) + "\n";
  std::filesystem::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  return WriteFileAtomically(path, text);
}

void RuntimeState::Upsert(const RuntimeEntry& e) {
  for (RuntimeEntry& r : entries_) {
    if (r.cidr == e.cidr && r.list == e.list) {
      r = e;
      return;
    }
  }
  entries_.push_back(e);
}

size_t RuntimeState::Remove(const std::string& cidr) {
  size_t before = entries_.size();
  std::erase_if(entries_, [&](const RuntimeEntry& r) { return r.cidr == cidr; });
  return before - entries_.size();
}

size_t RuntimeState::Expire(absl::Time now) {
  size_t before = entries_.size();
  std::erase_if(entries_, [&](const RuntimeEntry& r) { return r.expires <= now; });
  return before - entries_.size();
}

}  // namespace bw
