#include "daemon/policy/state.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "daemon/control/control_request.hpp"
#include "daemon/policy/feeds.hpp"
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

absl::StatusOr<StateFileLock> StateFileLock::Take(const std::string& state_path) {
  std::filesystem::path p(state_path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  const std::string lock = state_path + ".lock";
  int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return ErrnoStatus(lock, "open", errno);
  Fd owner(fd);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return absl::FailedPreconditionError(absl::StrCat(
          "state file ", state_path, " is in use by another bannerwatch daemon; give this one "
          "its own (--state) or stop that one"));
    return ErrnoStatus(lock, "flock", errno);
  }
  StateFileLock l;
  l.fd_ = std::move(owner);
  return l;
}

absl::StatusOr<RuntimeState> RuntimeState::Load(const std::string& path) {
  RuntimeState st;
  if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return st;
  auto text = ReadWholeFile(path, kStateFileMaxBytes);
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("entries") || !j["entries"].is_array())
    return absl::DataLossError(absl::StrCat(path, ": not a bannerwatch state file (want {\"entries\": [...]})"));
  int i = 0;
  for (const auto& e : j["entries"]) {
    ++i;
    // Every field checked as the control socket checks a request: a hand-edited or damaged file
    // is an error naming the entry, never a guess ("blok" is not a watch).
    auto bad = [&](const std::string& why) {
      return absl::DataLossError(absl::StrCat(path, ": entry ", i, ": ", why));
    };
    if (!e.is_object()) return bad("not an object");
    auto str = [&](const char* key, bool required, std::string* out) -> absl::Status {
      auto it = e.find(key);
      if (it == e.end()) return required ? bad(absl::StrCat("lacks \"", key, "\"")) : absl::OkStatus();
      if (!it->is_string()) return bad(absl::StrCat("\"", key, "\" is not a string"));
      *out = it->get<std::string>();
      return absl::OkStatus();
    };
    RuntimeEntry r;
    std::string added, expires;
    for (auto s2 : {str("cidr", true, &r.cidr), str("action", true, &r.action),
                    str("list", false, &r.list), str("reason", false, &r.reason),
                    str("added", false, &added), str("expires", false, &expires)})
      if (!s2.ok()) return s2;
    if (r.action != "block" && r.action != "watch" && r.action != "safelist")
      return bad(absl::StrCat("action '", r.action.substr(0, 32), "' is not block, watch or safelist"));
    if (r.list.empty()) r.list = "runtime-" + r.action;
    if (!ValidListName(r.list))
      return bad("the list name is not 1 to 64 characters of A-Z a-z 0-9 . _ -");
    if (r.reason.size() > 512 || std::any_of(r.reason.begin(), r.reason.end(), [](char c) {
          return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
        }))
      return bad("the reason is longer than 512 bytes or holds control characters");
    std::string err;
    if (!ParseTime(added, &r.added, &err) || !ParseTime(expires, &r.expires, &err))
      return bad(absl::StrCat("bad time: ", err));
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
