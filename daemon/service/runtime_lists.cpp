#include "daemon/service/runtime_lists.hpp"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/policy/cidr.hpp"
#include "daemon/service/log.hpp"

namespace bw {

using json = nlohmann::json;

json RuntimeLists::Add(const ControlRequest& req, const std::string& action) {
  auto prefix = ParsePrefix(req.cidr, PrefixOptions{reloader_.policy().allow_default_route});
  if (!prefix.ok()) return {{"ok", false}, {"error", std::string(prefix.status().message())}};
  // Again on an entry (this cidr and action, in the list given if one is): it keeps its list
  // and, unless a reason is given ("" clears it), its reason.
  const RuntimeEntry* was = nullptr;
  for (const RuntimeEntry& r : state_.entries())
    if (!was && r.cidr == prefix->ToString() && r.action == action &&
        (req.list.empty() || r.list == req.list))
      was = &r;
  const std::string list = !req.list.empty() ? req.list : was ? was->list : "runtime-" + action;
  for (const ListSpec& l : reloader_.policy().lists) {
    if (l.name == list && ListActionName(l.action) != action)
      return {{"ok", false},
              {"error", absl::StrCat("list '", list, "' is a ", ListActionName(l.action),
                                     " list: a ", action, " entry cannot go in it")}};
  }
  RuntimeEntry e;
  e.cidr = prefix->ToString();
  e.action = action;
  e.list = list;
  e.reason = req.reason ? *req.reason : was ? was->reason : "";
  e.added = absl::Now();
  if (req.ttl_seconds > 0) e.expires = e.added + absl::Seconds(req.ttl_seconds);
  RuntimeState next = state_;
  next.Upsert(e);
  absl::Status st = Commit(std::move(next), absl::StrCat(action, " ", e.cidr));
  if (!st.ok()) return {{"ok", false}, {"error", std::string(st.message())}};
  return {{"ok", true}, {"cidr", e.cidr}, {"list", e.list}, {"action", action},
          {"reason", e.reason},
          {"expires", e.expires == absl::InfiniteFuture() ? json(nullptr) : json(TimeText(e.expires))},
          {"summary", reloader_.record().summary}};
}

absl::Status RuntimeLists::Commit(RuntimeState next, const std::string& why) {
  // The file first: a change applied and then not saved (a full disk) was live until the next
  // start silently undid it, and an unlist that could not be saved lifted a block meanwhile.
  if (absl::Status saved = next.Save(state_file_); !saved.ok())
    return absl::Status(saved.code(), absl::StrCat("state file ", state_file_,
                                                   " not written, nothing changed: ",
                                                   saved.message()));
  absl::Status st = reloader_.Reload(why, next);
  if (!st.ok()) {
    // Refused (the reload logged why): the file goes back to the entries in force.
    if (absl::Status back = state_.Save(state_file_); !back.ok())
      Log(absl::StrCat("state file ", state_file_, " still holds the refused change (", why,
                       "): ", back.message()),
          LogLevel::kError);
    return st;
  }
  state_ = std::move(next);
  return absl::OkStatus();
}

json RuntimeLists::Unlist(const ControlRequest& req) {
  auto prefix = ParsePrefix(req.cidr, PrefixOptions{true});
  if (!prefix.ok()) return {{"ok", false}, {"error", std::string(prefix.status().message())}};
  RuntimeState next = state_;
  size_t n = next.Remove(prefix->ToString());
  if (n == 0) {
    // Not a runtime entry: say where it comes from, if anywhere.
    std::vector<std::string> where;
    const CompiledPolicy& c = *reloader_.compiled();
    for (const CompiledEntry& e : c.entries)
      if (e.prefix == *prefix && e.file < c.files.size() && c.files[e.file] != state_file_)
        where.push_back(absl::StrCat(c.files[e.file], ":", e.line));
    if (!where.empty())
      return {{"ok", false},
              {"error", absl::StrCat(prefix->ToString(), " is listed by the policy (",
                                     absl::StrJoin(where, ", "),
                                     "); edit the file there, then `bannerwatch reload`")}};
    return {{"ok", false}, {"error", absl::StrCat(prefix->ToString(), " is not listed")}};
  }
  absl::Status st = Commit(std::move(next), absl::StrCat("unlist ", prefix->ToString()));
  if (!st.ok()) return {{"ok", false}, {"error", std::string(st.message())}};
  return {{"ok", true}, {"removed", n}, {"summary", reloader_.record().summary}};
}

json RuntimeLists::List() const {
  json j = {{"ok", true}, {"state_file", state_file_}, {"entries", json::array()}};
  size_t n = 0;
  for (const RuntimeEntry& r : state_.entries())
    j["entries"].push_back(json{
        {"n", ++n}, {"cidr", r.cidr}, {"action", r.action}, {"list", r.list}, {"reason", r.reason},
        {"added", TimeText(r.added)},
        {"expires", r.expires == absl::InfiniteFuture() ? json(nullptr) : json(TimeText(r.expires))}});
  return j;
}

absl::Time RuntimeLists::NextExpiry() const {
  absl::Time t = absl::InfiniteFuture();
  const CompiledPolicy* c = reloader_.compiled();
  if (c && c->next_expiry) t = *c->next_expiry;
  for (const RuntimeEntry& e : state_.entries()) t = std::min(t, e.expires);
  return t;
}

void RuntimeLists::Expire(absl::Time now) {
  RuntimeState next = state_;
  size_t gone = next.Expire(now);
  // A policy list's expiry needs only the recompile; an expired runtime entry also leaves the file
  // (if that write fails the entry is lifted all the same, and after a restart again at once).
  if (reloader_.Reload("expiry", next).ok()) {
    state_ = std::move(next);
    if (gone) (void)state_.Save(state_file_);
  }
}

}  // namespace bw
