#include "daemon/cli/events_view.hpp"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace bw {
namespace {

using json = nlohmann::json;

// A bannerwatch detail of the record: the "bannerwatch" object's key, or (suricata-7 schema) the
// alert.metadata.tag entry "bannerwatch.NAME:VALUE".
std::string Detail(const json& eve, const std::string& name) {
  if (auto b = eve.find("bannerwatch"); b != eve.end() && b->is_object()) {
    if (auto v = b->find(name); v != b->end() && v->is_string()) return v->get<std::string>();
  }
  const std::string prefix = "bannerwatch." + name + ":";
  if (eve.contains("alert") && eve["alert"].is_object() && eve["alert"].contains("metadata")) {
    const json& tags = eve["alert"]["metadata"].value("tag", json::array());
    if (tags.is_array()) {
      for (const json& t : tags) {
        if (t.is_string() && absl::StartsWith(t.get<std::string>(), prefix))
          return t.get<std::string>().substr(prefix.size());
      }
    }
  }
  return "";
}

std::optional<absl::Time> EveTime(const json& eve) {
  if (!eve.contains("timestamp") || !eve["timestamp"].is_string()) return std::nullopt;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*S%z", eve["timestamp"].get<std::string>(), &t, &err))
    return std::nullopt;
  return t;
}

bool InPrefixes(const json& eve, const char* key, const std::vector<Prefix>& prefixes) {
  if (!eve.contains(key) || !eve[key].is_string()) return false;
  auto a = ParseAddress(eve[key].get<std::string>());
  if (!a.ok()) return false;
  return std::any_of(prefixes.begin(), prefixes.end(),
                     [&](const Prefix& p) { return p.contains(*a); });
}

std::string Endpoint(const json& eve, const char* ip, const char* port) {
  std::string a = eve.value(ip, "?");
  if (a.find(':') != std::string::npos) a = "[" + a + "]";
  if (eve.contains(port) && eve[port].is_number()) absl::StrAppend(&a, ":", eve[port].get<int64_t>());
  return a;
}

}  // namespace

bool EventFilter::Match(const json& eve) const {
  if (!eve.is_object()) return empty();
  if (!sids.empty()) {
    const json& a = eve.value("alert", json::object());
    if (!a.is_object() || !a.contains("signature_id") || !a["signature_id"].is_number()) return false;
    if (std::find(sids.begin(), sids.end(), a["signature_id"].get<int64_t>()) == sids.end())
      return false;
  }
  if (!prefixes.empty() && !InPrefixes(eve, "src_ip", prefixes) &&
      !InPrefixes(eve, "dest_ip", prefixes))
    return false;
  if (since) {
    std::optional<absl::Time> t = EveTime(eve);
    if (!t || *t < *since) return false;
  }
  if (!list.empty() && Detail(eve, "list") != list) return false;
  return true;
}

bool EventFilter::MatchLine(const std::string& line) const {
  if (empty()) return true;
  json j = json::parse(line, nullptr, false);
  return !j.is_discarded() && Match(j);
}

absl::StatusOr<Prefix> ParseEventPrefix(const std::string& text) {
  PrefixOptions o;
  o.allow_default_route = true;
  auto p = ParsePrefix(text, o);
  if (!p.ok())
    return absl::InvalidArgumentError(absl::StrCat("--ip: ", p.status().message()));
  return *p;
}

absl::StatusOr<absl::Time> ParseSince(const std::string& text, absl::Time now) {
  absl::Duration d;
  if (absl::ParseDuration(text, &d) && d >= absl::ZeroDuration()) return now - d;
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &err)) return t;
  return absl::InvalidArgumentError(absl::StrCat(
      "--since: '", text, "' is neither a duration (10m, 1h30m) nor an RFC 3339 time "
      "(2026-12-02T23:00:00Z)"));
}

std::string FastLine(const std::string& line) {
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("alert") || !j["alert"].is_object())
    return line;
  const json& a = j["alert"];
  // fast.log's time: MM/DD/YYYY-HH:MM:SS.uuuuuu, from the record's own text.
  std::string ts = j.value("timestamp", "");
  std::string when = ts;
  if (ts.size() >= 26)
    when = absl::StrCat(ts.substr(5, 2), "/", ts.substr(8, 2), "/", ts.substr(0, 4), "-",
                        ts.substr(11, 15));
  std::string out = absl::StrCat(
      when, "  [**] [", a.value("gid", 1), ":", a.value("signature_id", 0), ":", a.value("rev", 0),
      "] ", a.value("signature", ""), " [**] [Classification: ", a.value("category", ""),
      "] [Priority: ", a.value("severity", 0), "] {", j.value("proto", "?"), "} ",
      // ICMP's type and code where the ports go, as fast.log writes them.
      Endpoint(j, "src_ip", j.contains("icmp_type") ? "icmp_type" : "src_port"), " -> ",
      Endpoint(j, "dest_ip", j.contains("icmp_code") ? "icmp_code" : "dest_port"), " [",
      a.value("action", "?"), "]");
  if (std::string l = Detail(j, "list"); !l.empty()) absl::StrAppend(&out, " list=", l);
  if (std::string b = Detail(j, "banner"); !b.empty()) {
    // The banner up to its line end, printable only: one line per alert.
    std::string shown;
    for (char c : b) {
      if (c == '\r' || c == '\n') break;
      shown.push_back(c >= 32 && c < 127 ? c : '.');
    }
    absl::StrAppend(&out, " banner=\"", shown, "\"");
  }
  if (j.contains("process") && j["process"].is_object())
    absl::StrAppend(&out, " process=", j["process"].value("name", "?"), "[",
                    j["process"].value("pid", 0), "]");
  return out;
}

}  // namespace bw
