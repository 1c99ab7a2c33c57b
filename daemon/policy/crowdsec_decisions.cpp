#include "daemon/policy/crowdsec_decisions.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace bw {

using json = nlohmann::json;

absl::StatusOr<absl::Duration> ParseGoDuration(absl::string_view s) {
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("'", absl::CHexEscape(s), "' is not a duration such as 3h59m58.5s"));
  };
  absl::string_view rest = s;
  bool neg = false;
  if (!rest.empty() && (rest[0] == '-' || rest[0] == '+')) {
    neg = rest[0] == '-';
    rest.remove_prefix(1);
  }
  if (rest == "0") return absl::ZeroDuration();
  if (rest.empty()) return bad();
  // Units longest first, so "ms" is not read as "m" then "s".
  static const std::pair<absl::string_view, absl::Duration> kUnits[] = {
      {"ns", absl::Nanoseconds(1)}, {"us", absl::Microseconds(1)},
      {"\xc2\xb5s", absl::Microseconds(1)}, {"\xce\xbcs", absl::Microseconds(1)},
      {"ms", absl::Milliseconds(1)}, {"h", absl::Hours(1)},
      {"m", absl::Minutes(1)}, {"s", absl::Seconds(1)}};
  absl::Duration total;
  while (!rest.empty()) {
    // A number: digits, optionally a fraction.
    size_t i = 0;
    uint64_t whole = 0;
    bool digits = false;
    while (i < rest.size() && absl::ascii_isdigit(static_cast<unsigned char>(rest[i]))) {
      if (whole > (UINT64_MAX - 9) / 10) return bad();
      whole = whole * 10 + static_cast<uint64_t>(rest[i] - '0');
      digits = true;
      ++i;
    }
    double frac = 0, scale = 1;
    if (i < rest.size() && rest[i] == '.') {
      ++i;
      while (i < rest.size() && absl::ascii_isdigit(static_cast<unsigned char>(rest[i]))) {
        scale /= 10;
        frac += (rest[i] - '0') * scale;
        digits = true;
        ++i;
      }
    }
    if (!digits) return bad();
    rest.remove_prefix(i);
    const absl::Duration* unit = nullptr;
    for (const auto& [name, d] : kUnits)
      if (absl::StartsWith(rest, name)) {
        unit = &d;
        rest.remove_prefix(name.size());
        break;
      }
    if (!unit) return bad();
    total += *unit * static_cast<int64_t>(whole) + *unit * frac;
  }
  return neg ? -total : total;
}

namespace {

// One decision object; false (counted by the caller) when its scope is not taken or its value
// does not parse. Errors: the object's shape.
absl::StatusOr<bool> ReadDecision(const json& d, const DecisionScopes& scopes,
                                  const PrefixOptions& opts, DecisionStream& out,
                                  CrowdsecDecision* dec, absl::string_view where) {
  auto field = [&](const char* name, json::value_t t) -> const json* {
    auto it = d.find(name);
    if (it == d.end() || it->type() != t) return nullptr;
    return &*it;
  };
  if (!d.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": not an object"));
  const json* id = d.contains("id") && d["id"].is_number_integer() ? &d["id"] : nullptr;
  const json* scope = field("scope", json::value_t::string);
  const json* value = field("value", json::value_t::string);
  const json* type = field("type", json::value_t::string);
  const json* duration = field("duration", json::value_t::string);
  for (auto [f, name] : {std::pair{id, "id"}, {scope, "scope"}, {value, "value"}, {type, "type"},
                         {duration, "duration"}})
    if (!f)
      return absl::InvalidArgumentError(absl::StrCat(where, ": '", name, "' missing or of the wrong type"));
  auto dur = ParseGoDuration(duration->get_ref<const std::string&>());
  if (!dur.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": duration ", dur.status().message()));
  std::string sc = absl::AsciiStrToLower(scope->get_ref<const std::string&>());
  bool want = (sc == "ip" && scopes.ip) || (sc == "range" && scopes.range);
  if (!want) {
    ++out.skipped_scope;
    return false;
  }
  const std::string& v = value->get_ref<const std::string&>();
  auto prefix = sc == "ip" ? ParseAddress(v) : ParsePrefix(v, opts);
  if (!prefix.ok()) {
    ++out.skipped_value;
    return false;
  }
  dec->id = id->get<int64_t>();
  dec->type = absl::AsciiStrToLower(type->get_ref<const std::string&>());
  dec->prefix = *prefix;
  dec->duration = *dur;
  auto scenario = d.find("scenario");
  if (scenario != d.end() && scenario->is_string())
    dec->scenario = SourceId(absl::StrCat("crowdsec: ", scenario->get_ref<const std::string&>()));
  return true;
}

}  // namespace

absl::StatusOr<DecisionStream> ParseDecisionStream(absl::string_view body,
                                                   const DecisionScopes& scopes,
                                                   const PrefixOptions& opts) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("the answer is not JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("the answer is not a JSON object");
  DecisionStream out;
  for (const char* part : {"new", "deleted"}) {
    auto it = j.find(part);
    if (it == j.end() || it->is_null()) continue;  // CrowdSec writes null for "none"
    if (!it->is_array())
      return absl::InvalidArgumentError(absl::StrCat("'", part, "' is not an array"));
    std::vector<CrowdsecDecision>& dst = part[0] == 'n' ? out.added : out.deleted;
    dst.reserve(it->size());
    size_t i = 0;
    for (const json& d : *it) {
      CrowdsecDecision dec;
      auto ok = ReadDecision(d, scopes, opts, out, &dec, absl::StrCat(part, "[", i++, "]"));
      if (!ok.ok()) return ok.status();
      if (*ok) dst.push_back(std::move(dec));
    }
  }
  return out;
}

bool DecisionSet::Apply(const DecisionStream& s, bool startup, absl::Time now) {
  bool changed = false;
  if (startup && !by_id_.empty()) {
    by_id_.clear();
    changed = true;
  }
  for (const CrowdsecDecision& d : s.deleted) changed |= by_id_.erase(d.id) > 0;
  for (const CrowdsecDecision& d : s.added) {
    if (d.duration <= absl::ZeroDuration()) continue;  // ended already
    by_id_[d.id] = Held{d.type, d.prefix, now + d.duration, d.scenario};
    changed = true;
  }
  if (changed) next_expiry_ = Earliest();
  return changed;
}

size_t DecisionSet::Expire(absl::Time now) {
  if (now < next_expiry_) return 0;
  size_t n = absl::erase_if(by_id_, [&](const auto& kv) { return kv.second.expires <= now; });
  next_expiry_ = Earliest();
  return n;
}

absl::Time DecisionSet::Earliest() const {
  absl::Time t = absl::InfiniteFuture();
  for (const auto& [id, h] : by_id_) t = std::min(t, h.expires);
  return t;
}

std::vector<DecisionSet::Entry> DecisionSet::Entries(const std::vector<std::string>& types) const {
  std::vector<std::pair<int64_t, const Held*>> picked;
  for (const auto& [id, h] : by_id_)
    if (std::find(types.begin(), types.end(), h.type) != types.end()) picked.emplace_back(id, &h);
  std::sort(picked.begin(), picked.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<Entry> out;
  out.reserve(picked.size());
  absl::flat_hash_set<Prefix> seen;
  seen.reserve(picked.size());
  for (const auto& [id, h] : picked) {
    if (!seen.insert(h->prefix).second) continue;  // a second decision on the same prefix
    uint32_t line = id < 0 ? 0 : id > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(id);
    out.push_back(Entry{h->prefix, line, h->scenario});
  }
  return out;
}

std::string DecisionSet::Save(const std::string& url) const {
  json list = json::array();
  for (const auto& [id, h] : by_id_)
    list.push_back({{"id", id},
                    {"type", h.type},
                    {"prefix", h.prefix.ToString()},
                    {"expires", absl::ToUnixSeconds(h.expires)},
                    {"scenario", h.scenario.str()}});
  return json{{"url", url}, {"decisions", std::move(list)}}.dump();
}

absl::StatusOr<DecisionSet> DecisionSet::Load(absl::string_view text, const std::string& url,
                                              absl::Time now) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  auto bad = [](absl::string_view why) { return absl::InvalidArgumentError(why); };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  DecisionSet set;
  if (!j.contains("url") || !j["url"].is_string()) return bad("'url' missing");
  if (j["url"] != url) return set;
  if (!j.contains("decisions") || !j["decisions"].is_array()) return bad("'decisions' missing");
  size_t i = 0;
  for (const json& d : j["decisions"]) {
    std::string at = absl::StrCat("decisions[", i++, "]");
    if (!d.is_object() || !d.contains("id") || !d["id"].is_number_integer() ||
        !d.contains("type") || !d["type"].is_string() || !d.contains("prefix") ||
        !d["prefix"].is_string() || !d.contains("expires") || !d["expires"].is_number_integer() ||
        !d.contains("scenario") || !d["scenario"].is_string())
      return bad(absl::StrCat(at, ": expected id, type, prefix, expires and scenario"));
    auto prefix = ParsePrefix(d["prefix"].get<std::string>(), {.allow_default_route = true});
    if (!prefix.ok()) return bad(absl::StrCat(at, ": ", prefix.status().message()));
    absl::Time expires = absl::FromUnixSeconds(d["expires"].get<int64_t>());
    if (expires <= now) continue;
    const std::string& scenario = d["scenario"].get_ref<const std::string&>();
    set.by_id_[d["id"].get<int64_t>()] =
        Held{d["type"].get<std::string>(), *prefix, expires, SourceId(scenario)};
  }
  set.next_expiry_ = set.Earliest();
  return set;
}

}  // namespace bw
