// policy.cpp — YAML policy parsing and compilation (see policy.hpp for the contract).
#include "daemon/policy/policy.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/events/syslog_sink.hpp"

namespace bw {

absl::string_view ListActionName(ListAction a) {
  switch (a) {
    case ListAction::kWatch: return "watch";
    case ListAction::kBlock: return "block";
    case ListAction::kSafelist: return "safelist";
  }
  return "?";
}

int Precedence(ListAction a) {
  switch (a) {
    case ListAction::kWatch: return 1;
    case ListAction::kBlock: return 2;
    case ListAction::kSafelist: return 3;
  }
  return 0;
}

absl::string_view BannerActionName(bw_banner_action a) {
  switch (a) {
    case BW_BANNER_OFF: return "off";
    case BW_BANNER_ALERT: return "alert";
    case BW_BANNER_DROP: return "drop";
  }
  return "?";
}

size_t Policy::entry_count() const {
  size_t n = 0;
  for (const ListSpec& l : lists) n += l.entries.size();
  return n;
}

namespace {

const std::string kPlainTag = "?";

std::string Dirname(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string Resolve(const std::string& dir, const std::string& p) {
  if (!p.empty() && p[0] == '/') return p;
  if (dir == ".") return p;
  return absl::StrCat(dir, "/", p);
}

const char* KindName(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return "null";
    case YAML::NodeType::Scalar: return "a scalar";
    case YAML::NodeType::Sequence: return "a sequence";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Undefined: return "nothing";
  }
  return "?";
}

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1,
                         prev[j - 1] + (absl::ascii_tolower(a[i - 1]) == absl::ascii_tolower(b[j - 1]) ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// A list table at least this big (entries) is kept for the next parse to write into.
constexpr size_t kReuseMin = size_t{1} << 16;

bool IsNameChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'; }

// A group name as useradd takes it (empty: the setting is off): 1 to 32 of a-z A-Z 0-9 _ - .,
// not starting with '-', not all digits (that would read as a gid).
bool ValidGroupName(const std::string& g) {
  if (g.empty()) return true;
  if (g.size() > 32 || g[0] == '-') return false;
  if (!std::all_of(g.begin(), g.end(), IsNameChar)) return false;
  return !std::all_of(g.begin(), g.end(), [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); });
}

// Parses one policy document. Every check returns a Status naming file:line and the key path.
class PolicyParser {
 public:
  explicit PolicyParser(std::string path) : path_(std::move(path)), dir_(Dirname(path_)) {}

  // The entry tables of a policy no longer needed: the big lists are written into their storage.
  void Reuse(Policy* old) {
    if (!old) return;
    for (ListSpec& l : old->lists)
      if (l.entries.capacity() >= kReuseMin) spare_entries_.push_back(std::move(l.entries));
    std::sort(spare_entries_.begin(), spare_entries_.end(),
              [](const auto& a, const auto& b) { return a.capacity() < b.capacity(); });
    *old = Policy();
  }

  absl::StatusOr<Policy> Run(absl::string_view text);

 private:
  using Fields = std::vector<std::tuple<std::string, YAML::Node, YAML::Node>>;

  int LineOf(const YAML::Node& n, const YAML::Node* fallback = nullptr) const {
    if (n.IsDefined() && !n.Mark().is_null()) return n.Mark().line + 1;
    if (fallback && fallback->IsDefined() && !fallback->Mark().is_null())
      return fallback->Mark().line + 1;
    return 1;
  }
  absl::Status Fail(int line, absl::string_view where, absl::string_view what) const {
    if (where.empty()) return absl::InvalidArgumentError(absl::StrCat(path_, ":", line, ": ", what));
    return absl::InvalidArgumentError(absl::StrCat(path_, ":", line, ": ", where, ": ", what));
  }
  absl::Status Fail(const YAML::Node& n, absl::string_view where, absl::string_view what) const {
    return Fail(LineOf(n), where, what);
  }

  // The fields of a mapping, checked against `known` (unknown and duplicate keys are errors).
  absl::StatusOr<Fields> MapFields(const YAML::Node& n, absl::string_view where,
                                   const std::vector<absl::string_view>& known) const {
    if (!n.IsMap())
      return Fail(n, where, absl::StrCat("expected a mapping, got ", KindName(n)));
    Fields out;
    std::map<std::string, int> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
      YAML::Node k = it->first;  // the iterator yields a temporary pair of handles
      std::string kw = where.empty() ? std::string() : std::string(where);
      if (!k.IsScalar())
        return Fail(k, where, absl::StrCat("a key must be a plain word, got ", KindName(k)));
      std::string key = k.Scalar();
      std::string at = kw.empty() ? key : absl::StrCat(kw, ".", key);
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        std::string hint;
        for (absl::string_view cand : known)
          if (EditDistance(key, cand) <= 2) hint = absl::StrCat(" (did you mean '", cand, "'?)");
        return Fail(k, where.empty() ? absl::string_view() : where,
                    absl::StrCat("unknown key '", absl::CHexEscape(key), "'", hint,
                                 "; known keys: ", absl::StrJoin(known, ", ")));
      }
      auto [pos, fresh] = seen.emplace(key, LineOf(k));
      if (!fresh)
        return Fail(k, at, absl::StrCat("duplicate key (first on line ", pos->second, ")"));
      // No key takes a null value; say so at the key (a null node's own mark is unreliable).
      if (it->second.IsNull())
        return Fail(k, at, "no value given");
      out.emplace_back(key, k, it->second);
    }
    return out;
  }

  absl::Status Str(const YAML::Node& n, absl::string_view where, std::string* out) const {
    if (!n.IsScalar()) return Fail(n, where, absl::StrCat("expected a string, got ", KindName(n)));
    if (n.Scalar().find('\0') != std::string::npos) return Fail(n, where, "NUL byte in string");
    *out = n.Scalar();
    return absl::OkStatus();
  }

  absl::Status Bool(const YAML::Node& n, absl::string_view where, bool* out) const {
    if (!n.IsScalar() || n.Tag() != kPlainTag)
      return Fail(n, where, absl::StrCat("expected true or false, got ",
                                         n.IsScalar() ? "a quoted string" : KindName(n)));
    const std::string& s = n.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") {
      *out = true;
    } else if (s == "false" || s == "False" || s == "FALSE") {
      *out = false;
    } else {
      return Fail(n, where, absl::StrCat("expected true or false, got '", absl::CHexEscape(s), "'"));
    }
    return absl::OkStatus();
  }

  absl::Status Uint(const YAML::Node& n, absl::string_view where, uint64_t lo, uint64_t hi,
                    uint64_t* out) const {
    if (!n.IsScalar() || n.Tag() != kPlainTag)
      return Fail(n, where, absl::StrCat("expected an integer, got ",
                                         n.IsScalar() ? "a quoted string" : KindName(n)));
    const std::string& s = n.Scalar();
    bool digits = !s.empty() && s.size() <= 19 &&
                  std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits)
      return Fail(n, where, absl::StrCat("'", absl::CHexEscape(s), "' is not a decimal integer"));
    if (s.size() > 1 && s[0] == '0')
      return Fail(n, where, absl::StrCat("'", s, "' has a leading zero"));
    uint64_t v = 0;
    for (char c : s) v = v * 10 + static_cast<uint64_t>(c - '0');
    if (v < lo || v > hi)
      return Fail(n, where, absl::StrCat(v, " is out of range (", lo, "..", hi, ")"));
    *out = v;
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Enum(const YAML::Node& n, absl::string_view where,
                    const std::vector<std::pair<absl::string_view, T>>& values, T* out) const {
    std::string s;
    if (auto st = Str(n, where, &s); !st.ok()) return st;
    std::vector<absl::string_view> names;
    for (const auto& [name, v] : values) {
      if (s == name) {
        *out = v;
        return absl::OkStatus();
      }
      names.push_back(name);
    }
    return Fail(n, where, absl::StrCat("'", absl::CHexEscape(s), "' is not one of ",
                                       absl::StrJoin(names, ", ")));
  }

  absl::Status Seq(const YAML::Node& n, absl::string_view where, absl::string_view of) const {
    if (!n.IsSequence())
      return Fail(n, where, absl::StrCat("expected a sequence of ", of, ", got ", KindName(n)));
    return absl::OkStatus();
  }

  // A path, or "off" (-> empty) when `off_ok`.
  absl::Status PathSetting(const YAML::Node& n, absl::string_view where, bool off_ok,
                           std::string* out) const {
    std::string s;
    if (auto st = Str(n, where, &s); !st.ok()) return st;
    if (off_ok && s == "off" && n.Tag() == kPlainTag) {
      out->clear();
      return absl::OkStatus();
    }
    if (s.empty()) return Fail(n, where, off_ok ? "empty path (write off to disable)" : "empty path");
    for (char c : s)
      if (static_cast<unsigned char>(c) < 0x20)
        return Fail(n, where, "control character in path");
    *out = Resolve(dir_, s);
    return absl::OkStatus();
  }

  absl::Status Banner(const YAML::Node& n, Policy& p);
  absl::Status Limits(const YAML::Node& n, Policy& p);
  absl::Status Output(const YAML::Node& n, Policy& p);
  absl::Status Syslog(const YAML::Node& n, Policy& p);
  absl::Status Eve(const YAML::Node& n, Policy& p);
  absl::Status Crowdsec(const YAML::Node& n, Policy& p);
  absl::Status Host(const YAML::Node& n, Policy& p);
  absl::Status Beacon(const YAML::Node& n, Policy& p);
  absl::Status CheckCrowdsecLists(const Policy& p) const;
  absl::Status Metrics(const YAML::Node& n, Policy& p);
  absl::Status Interfaces(const YAML::Node& n, Policy& p);
  absl::Status Ports(const YAML::Node& n, const std::string& key, std::vector<uint16_t>* out);
  absl::Status List(const YAML::Node& n, size_t index, Policy& p);
  absl::Status CheckLimits(const Policy& p, int lists_line) const;

  std::string path_, dir_;
  size_t raw4_ = 0;  // IPv4 entries of every list (with duplicates), counted as they are added
  std::vector<std::vector<PolicyEntry>> spare_entries_;  // by capacity, ascending
  int limits_line_ = 0;
  PrefixOptions prefix_opts_;
  uint64_t file_bytes_ = kFileBytesDefault;  // limits.file_bytes, for the list files
  std::set<std::string> list_names_;
};

absl::Status PolicyParser::Ports(const YAML::Node& n, const std::string& key,
                                 std::vector<uint16_t>* out) {
  if (auto st = Seq(n, key, "TCP port numbers"); !st.ok()) return st;
  out->clear();
  std::map<uint64_t, int> seen;
  for (size_t i = 0; i < n.size(); ++i) {
    std::string where = absl::StrCat(key, "[", i, "]");
    uint64_t v;
    if (auto st = Uint(n[i], where, 1, 65535, &v); !st.ok()) return st;
    auto [pos, fresh] = seen.emplace(v, LineOf(n[i]));
    if (!fresh) return Fail(n[i], where, absl::StrCat("port ", v, " is listed twice"));
    out->push_back(static_cast<uint16_t>(v));
  }
  return absl::OkStatus();
}

absl::Status PolicyParser::Banner(const YAML::Node& n, Policy& p) {
  auto f = MapFields(n, "banner", {"server", "client", "non_tls"});
  if (!f.ok()) return f.status();
  const std::vector<std::pair<absl::string_view, bw_banner_action>> values = {
      {"off", BW_BANNER_OFF}, {"alert", BW_BANNER_ALERT}, {"drop", BW_BANNER_DROP}};
  for (auto& [key, k, v] : *f) {
    std::string where = absl::StrCat("banner.", key);
    if (key == "non_tls") {
      const std::vector<std::pair<absl::string_view, bool>> onoff = {{"off", false},
                                                                     {"alert", true}};
      if (auto st = Enum(v, where, onoff, &p.non_tls); !st.ok()) return st;
      continue;
    }
    bw_banner_action* out = key == "server" ? &p.banner_server : &p.banner_client;
    // `off` is a plain YAML 1.1 boolean to some parsers; yaml-cpp keeps the scalar text.
    if (auto st = Enum(v, where, values, out); !st.ok()) return st;
  }
  return absl::OkStatus();
}

// The upper bounds keep the maps a policy asks the kernel for within reason: an LPM trie entry
// costs about 100 bytes of kernel memory, so 2^24 IPv4 prefixes are ~1.6 GiB already.
constexpr uint64_t kMaxV4Entries = uint64_t{1} << 24;
constexpr uint64_t kMaxV6Entries = uint64_t{1} << 22;
constexpr uint64_t kMaxFileBytes = uint64_t{4} << 30;

absl::Status PolicyParser::Limits(const YAML::Node& n, Policy& p) {
  auto f = MapFields(n, "limits", {"v4_entries", "v6_entries", "file_bytes"});
  if (!f.ok()) return f.status();
  for (auto& [key, k, v] : *f) {
    uint64_t x;
    if (key == "file_bytes") {
      if (auto st = Uint(v, "limits.file_bytes", 1024, kMaxFileBytes, &x); !st.ok()) return st;
      p.file_bytes = x;
      continue;
    }
    const uint64_t max = key == "v4_entries" ? kMaxV4Entries : kMaxV6Entries;
    if (auto st = Uint(v, absl::StrCat("limits.", key), 1, max, &x); !st.ok()) return st;
    (key == "v4_entries" ? p.v4_entries : p.v6_entries) = static_cast<uint32_t>(x);
  }
  return absl::OkStatus();
}

absl::Status PolicyParser::Output(const YAML::Node& n, Policy& p) {
  auto f = MapFields(n, "output", {"eve", "stdout", "syslog"});
  if (!f.ok()) return f.status();
  for (auto& [key, k, v] : *f) {
    absl::Status st;
    if (key == "eve") {
      st = PathSetting(v, "output.eve", true, &p.eve_path);
    } else if (key == "stdout") {
      st = Bool(v, "output.stdout", &p.eve_stdout);
    } else {
      st = Syslog(v, p);
    }
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

// `syslog: true` (the defaults), `false`, or {socket, facility, level}.
absl::Status PolicyParser::Syslog(const YAML::Node& n, Policy& p) {
  EveSyslog s;
  if (n.IsScalar()) {
    if (auto st = Bool(n, "output.syslog", &s.on); !st.ok()) return st;
    p.eve_syslog = s;
    return absl::OkStatus();
  }
  auto f = MapFields(n, "output.syslog", {"socket", "facility", "level"});
  if (!f.ok()) return f.status();
  s.on = true;
  for (auto& [key, k, v] : *f) {
    std::string name;
    absl::Status st;
    if (key == "socket") {
      st = PathSetting(v, "output.syslog.socket", false, &s.socket);
      if (st.ok() && s.socket.size() > 107)
        st = Fail(v, "output.syslog.socket", "longer than a socket path can be (107 bytes)");
    } else if (key == "facility") {
      st = Str(v, "output.syslog.facility", &name);
      if (st.ok() && (s.facility = SyslogFacility(name)) < 0)
        st = Fail(v, "output.syslog.facility",
                  absl::StrCat("'", absl::CHexEscape(name), "' is not a syslog facility (kern, user, "
                               "daemon, auth, ..., local0 to local7)"));
    } else {
      st = Str(v, "output.syslog.level", &name);
      if (st.ok() && (s.severity = SyslogSeverity(name)) < 0)
        st = Fail(v, "output.syslog.level",
                  absl::StrCat("'", absl::CHexEscape(name), "' is not a syslog level (emerg, alert, "
                               "crit, err, warning, notice, info, debug)"));
    }
    if (!st.ok()) return st;
  }
  p.eve_syslog = s;
  return absl::OkStatus();
}

absl::Status PolicyParser::Eve(const YAML::Node& n, Policy& p) {
  auto f = MapFields(n, "eve", {"host", "community_id_seed", "schema"});
  if (!f.ok()) return f.status();
  for (auto& [key, k, v] : *f) {
    absl::Status st;
    if (key == "host") {
      std::string h;
      st = Str(v, "eve.host", &h);
      if (st.ok() && (h.empty() || h.size() > 255))
        st = Fail(v, "eve.host", "expected a sensor name of 1 to 255 bytes");
      if (st.ok()) p.eve.host = h;
    } else if (key == "community_id_seed") {
      uint64_t x = 0;
      st = Uint(v, "eve.community_id_seed", 0, 65535, &x);
      if (st.ok()) p.eve.community_id_seed = static_cast<uint16_t>(x);
    } else {
      const std::vector<std::pair<absl::string_view, bool>> values = {{"bannerwatch", false},
                                                                      {"suricata-7", true}};
      st = Enum(v, "eve.schema", values, &p.eve.suricata7);
    }
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

// `host: {attribution, refuse, cgroup, event_budget}`.
absl::Status PolicyParser::Host(const YAML::Node& n, Policy& p) {
  auto f = MapFields(n, "host", {"attribution", "refuse", "cgroup", "event_budget"});
  if (!f.ok()) return f.status();
  for (auto& [key, k, v] : *f) {
    absl::Status st;
    std::string at = absl::StrCat("host.", key);
    if (key == "attribution") {
      st = Bool(v, at, &p.host.attribution);
    } else if (key == "refuse") {
      st = Bool(v, at, &p.host.refuse);
    } else if (key == "cgroup") {
      st = PathSetting(v, at, false, &p.host.cgroup);
    } else {
      uint64_t x = 0;
      st = Uint(v, at, 0, UINT32_MAX, &x);
      if (st.ok()) p.host.event_budget = static_cast<uint32_t>(x);
    }
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

// `beacon: {enabled, connections, min_connections, threshold, window, full_count, realert, idle,
// max_pairs}`.
absl::Status PolicyParser::Beacon(const YAML::Node& n, Policy& p) {
  auto f = MapFields(n, "beacon", {"enabled", "connections", "min_connections", "threshold",
                                   "window", "full_count", "realert", "idle", "max_pairs"});
  if (!f.ok()) return f.status();
  BeaconSettings b;
  for (auto& [key, k, v] : *f) {
    absl::Status st;
    std::string at = absl::StrCat("beacon.", key);
    uint64_t x = 0;
    if (key == "enabled") {
      st = Bool(v, at, &b.on);
    } else if (key == "connections") {
      const std::vector<std::pair<absl::string_view, bool>> values = {{"watched", false},
                                                                      {"all", true}};
      st = Enum(v, at, values, &b.all_connections);
    } else if (key == "min_connections" || key == "window" || key == "full_count") {
      st = Uint(v, at, 4, 4096, &x);
      size_t& out = key == "min_connections" ? b.options.min_connections
                    : key == "window"        ? b.options.window
                                             : b.options.full_count;
      if (st.ok()) out = x;
    } else if (key == "max_pairs") {
      st = Uint(v, at, 1, 1u << 20, &x);
      if (st.ok()) b.options.max_pairs = x;
    } else if (key == "threshold") {
      std::string s;
      st = Str(v, at, &s);
      double d = 0;
      if (st.ok() && (!absl::SimpleAtod(s, &d) || !(d > 0 && d <= 1)))
        st = Fail(v, at, absl::StrCat("'", absl::CHexEscape(s), "' is not a score above 0 and at most 1, such as 0.8"));
      if (st.ok()) b.options.threshold = d;
    } else {
      std::string s;
      st = Str(v, at, &s);
      absl::Duration d;
      if (st.ok() && (!absl::ParseDuration(s, &d) || d <= absl::ZeroDuration() ||
                      d == absl::InfiniteDuration()))
        st = Fail(v, at, absl::StrCat("'", absl::CHexEscape(s), "' is not a duration such as 1h or 30m"));
      if (st.ok()) (key == "realert" ? b.options.realert : b.options.idle) = d;
    }
    if (!st.ok()) return st;
  }
  if (absl::Status st = ValidateBeaconOptions(b.options); !st.ok()) {
    std::string why(st.message());
    if (absl::StartsWith(why, "beacon options: ")) why.erase(0, 16);
    return Fail(n, "beacon", why);
  }
  p.beacon = b;
  return absl::OkStatus();
}

// `crowdsec: {url, key_file, poll, timeout, resync, scopes}`. The key is read here, so a reload with an
// unreadable or malformed key file is refused like any other bad policy.
absl::Status PolicyParser::Crowdsec(const YAML::Node& n, Policy& p) {
  auto f = MapFields(n, "crowdsec", {"url", "key_file", "poll", "timeout", "resync", "scopes"});
  if (!f.ok()) return f.status();
  CrowdsecSettings c;
  c.line = static_cast<uint32_t>(LineOf(n));
  const YAML::Node* key_node = nullptr;
  auto duration = [&](const YAML::Node& v, const char* where, absl::Duration min, absl::Duration max,
                      absl::Duration* out) {
    std::string s;
    if (auto st = Str(v, where, &s); !st.ok()) return st;
    absl::Duration d;
    if (!absl::ParseDuration(s, &d) || d < min || d > max)
      return Fail(v, where, absl::StrCat("'", absl::CHexEscape(s), "' is not a duration from ",
                                         absl::FormatDuration(min), " to ", absl::FormatDuration(max),
                                         " such as 10s"));
    *out = d;
    return absl::OkStatus();
  };
  for (auto& [key, k, v] : *f) {
    absl::Status st;
    std::string at = absl::StrCat("crowdsec.", key);
    if (key == "url") {
      st = Str(v, at, &c.url);
      bool scheme = absl::StartsWith(c.url, "http://") || absl::StartsWith(c.url, "https://");
      size_t host_at = c.url.find("//") + 2;
      if (st.ok() && (!scheme || c.url.size() <= host_at || c.url.size() > 2048 ||
                      !std::all_of(c.url.begin(), c.url.end(), [](char ch) {
                        return static_cast<unsigned char>(ch) > 0x20 &&
                               static_cast<unsigned char>(ch) < 0x7f;
                      })))
        st = Fail(v, at, absl::StrCat("'", absl::CHexEscape(c.url),
                                      "' is not a Local API URL such as http://127.0.0.1:8080/"));
      if (st.ok() && c.url.back() != '/') c.url += '/';
    } else if (key == "key_file") {
      st = PathSetting(v, at, false, &c.key_file);
      key_node = &v;
    } else if (key == "poll") {
      st = duration(v, "crowdsec.poll", absl::Milliseconds(100), absl::Hours(1), &c.poll);
    } else if (key == "timeout") {
      st = duration(v, "crowdsec.timeout", absl::Milliseconds(100), absl::Minutes(10), &c.timeout);
    } else if (key == "resync") {
      st = duration(v, "crowdsec.resync", absl::Seconds(1), absl::Hours(24), &c.resync);
    } else {
      st = Seq(v, at, "scopes (ip, range)");
      if (st.ok() && v.size() == 0) st = Fail(v, at, "no scopes (ip, range or both)");
      c.scope_ip = c.scope_range = false;
      for (size_t i = 0; st.ok() && i < v.size(); ++i) {
        std::string sat = absl::StrCat(at, "[", i, "]");
        const std::vector<std::pair<absl::string_view, int>> scopes = {{"ip", 0}, {"range", 1}};
        int which = 0;
        st = Enum(v[i], sat, scopes, &which);
        bool& flag = which == 0 ? c.scope_ip : c.scope_range;
        if (st.ok() && flag) st = Fail(v[i], sat, "scope listed twice");
        flag = true;
      }
    }
    if (!st.ok()) return st;
  }
  if (c.url.empty()) return Fail(n, "crowdsec", "missing key 'url' (the Local API, such as http://127.0.0.1:8080/)");
  if (!key_node) return Fail(n, "crowdsec", "missing key 'key_file' (a file holding the bouncer key from `cscli bouncers add`)");
  auto text = ReadWholeFile(c.key_file, 4096);
  if (!text.ok()) {
    // Its limit is this one's, not limits.file_bytes.
    std::string why(text.status().message());
    if (size_t at = why.find(" (limits.file_bytes)"); at != std::string::npos) why.erase(at);
    return Fail(*key_node, "crowdsec.key_file",
                absl::StrCat(why, ": expected one bouncer key as `cscli bouncers add` prints it"));
  }
  c.key = std::string(absl::StripAsciiWhitespace(*text));
  // It goes into an HTTP header: printable ASCII without spaces only.
  if (c.key.empty() || c.key.size() > 512 ||
      !std::all_of(c.key.begin(), c.key.end(), [](char ch) {
        return static_cast<unsigned char>(ch) > 0x20 && static_cast<unsigned char>(ch) < 0x7f;
      }))
    return Fail(*key_node, "crowdsec.key_file",
                absl::StrCat(c.key_file, ": expected one bouncer key (1 to 512 printable characters, "
                                         "no spaces) as `cscli bouncers add` prints it"));
  p.crowdsec = std::move(c);
  return absl::OkStatus();
}

absl::Status PolicyParser::Metrics(const YAML::Node& n, Policy& p) {
  std::string s;
  if (auto st = Str(n, "metrics", &s); !st.ok()) return st;
  if (s == "off") {
    p.metrics_listen.clear();
    return absl::OkStatus();
  }
  auto bad = [&](absl::string_view why) {
    return Fail(n, "metrics", absl::StrCat("'", absl::CHexEscape(s), "': ", why,
                                           " (expected HOST:PORT, [IPV6]:PORT or off)"));
  };
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return bad("missing port");
  std::string host = s.substr(0, colon), port = s.substr(colon + 1);
  uint64_t pv = 0;
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), absl::ascii_isdigit))
    return bad("port is not a number");
  for (char c : port) pv = pv * 10 + static_cast<uint64_t>(c - '0');
  if (pv < 1 || pv > 65535) return bad("port out of range (1..65535)");
  if (host.front() == '[') {
    if (host.back() != ']') return bad("unbalanced '['");
    std::string a = host.substr(1, host.size() - 2);
    auto pa = ParseAddress(a);
    if (!pa.ok() || a.find(':') == std::string::npos) return bad("not an IPv6 address in brackets");
  } else if (host.find(':') != std::string::npos) {
    return bad("an IPv6 address needs brackets");
  } else {
    if (!std::all_of(host.begin(), host.end(),
                     [](char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-'; }))
      return bad("not a host name or address");
    bool dotted = std::all_of(host.begin(), host.end(), [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.'; });
    if (dotted) {
      auto pa = ParseAddress(host);
      if (!pa.ok()) return bad(pa.status().message());
    }
  }
  p.metrics_listen = s;
  return absl::OkStatus();
}

absl::Status PolicyParser::Interfaces(const YAML::Node& n, Policy& p) {
  if (auto st = Seq(n, "interfaces", "interface names"); !st.ok()) return st;
  p.interfaces.clear();
  for (size_t i = 0; i < n.size(); ++i) {
    std::string where = absl::StrCat("interfaces[", i, "]"), s;
    if (auto st = Str(n[i], where, &s); !st.ok()) return st;
    if (s.empty() || s.size() > 15 || s == "." || s == ".." ||
        !std::all_of(s.begin(), s.end(), [](char c) {
          return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f &&
                 c != '/' && c != ':';
        }))
      return Fail(n[i], where, absl::StrCat("'", absl::CHexEscape(s),
                                            "' is not an interface name (1..15 characters, no '/', ':' or spaces)"));
    if (std::find(p.interfaces.begin(), p.interfaces.end(), s) != p.interfaces.end())
      return Fail(n[i], where, absl::StrCat("interface '", s, "' is listed twice"));
    p.interfaces.push_back(s);
  }
  return absl::OkStatus();
}

absl::Status PolicyParser::List(const YAML::Node& n, size_t index, Policy& p) {
  std::string where = absl::StrCat("lists[", index, "]");
  auto f = MapFields(n, where, {"name", "action", "tags", "reason", "expires", "entries", "files",
                                "source", "types"});
  if (!f.ok()) return f.status();
  ListSpec l;
  l.line = static_cast<uint32_t>(LineOf(n));
  const YAML::Node *entries = nullptr, *files = nullptr, *types = nullptr;
  bool have_name = false, have_action = false;
  for (auto& [key, k, v] : *f) {
    std::string at = absl::StrCat(where, ".", key);
    if (key == "name") {
      if (auto st = Str(v, at, &l.name); !st.ok()) return st;
      if (l.name.empty() || l.name.size() > 64 || !absl::ascii_isalnum(static_cast<unsigned char>(l.name[0])) ||
          !std::all_of(l.name.begin(), l.name.end(), IsNameChar))
        return Fail(v, at, absl::StrCat("'", absl::CHexEscape(l.name),
                                        "' is not a list name (1..64 of A-Z a-z 0-9 . _ -, starting with a letter or digit)"));
      if (!list_names_.insert(l.name).second)
        return Fail(v, at, absl::StrCat("duplicate list name '", l.name, "'"));
      have_name = true;
    } else if (key == "action") {
      if (auto st = Enum<ListAction>(v, at,
                                     {{"watch", ListAction::kWatch},
                                      {"block", ListAction::kBlock},
                                      {"safelist", ListAction::kSafelist}},
                                     &l.action);
          !st.ok())
        return st;
      have_action = true;
    } else if (key == "tags") {
      if (auto st = Seq(v, at, "tags"); !st.ok()) return st;
      for (size_t i = 0; i < v.size(); ++i) {
        std::string tat = absl::StrCat(at, "[", i, "]"), t;
        if (auto st = Str(v[i], tat, &t); !st.ok()) return st;
        if (t.empty() || t.size() > 64 || !std::all_of(t.begin(), t.end(), [](char c) { return IsNameChar(c) || c == ':'; }))
          return Fail(v[i], tat, absl::StrCat("'", absl::CHexEscape(t),
                                              "' is not a tag (1..64 of A-Z a-z 0-9 . _ - :)"));
        if (std::find(l.tags.begin(), l.tags.end(), t) != l.tags.end())
          return Fail(v[i], tat, absl::StrCat("tag '", t, "' is listed twice"));
        l.tags.push_back(t);
      }
    } else if (key == "reason") {
      if (auto st = Str(v, at, &l.reason); !st.ok()) return st;
    } else if (key == "expires") {
      std::string s, err;
      if (auto st = Str(v, at, &s); !st.ok()) return st;
      absl::Time t;
      if (!absl::ParseTime(absl::RFC3339_full, s, &t, &err))
        return Fail(v, at, absl::StrCat("'", absl::CHexEscape(s),
                                        "' is not an RFC 3339 time such as 2027-01-01T00:00:00Z (", err, ")"));
      l.expires = t;
    } else if (key == "entries") {
      entries = &v;
    } else if (key == "files") {
      files = &v;
    } else if (key == "source") {
      const std::vector<std::pair<absl::string_view, bool>> sources = {{"crowdsec", true}};
      if (auto st = Enum(v, at, sources, &l.crowdsec); !st.ok()) return st;
    } else if (key == "types") {
      types = &v;
    }
  }
  if (!have_name) return Fail(n, where, "missing key 'name'");
  std::string lw = absl::StrCat("lists[", index, "] (", l.name, ")");
  if (!have_action) return Fail(n, lw, "missing key 'action' (watch, block or safelist)");
  if (!entries && !files && !l.crowdsec)
    return Fail(n, lw, "a list needs 'entries', 'files' or 'source'");
  if (types && !l.crowdsec)
    return Fail(*types, absl::StrCat(lw, ".types"), "'types' is for lists with source: crowdsec");
  if (l.crowdsec) {
    if (!p.crowdsec.on())
      return Fail(n, lw, "source: crowdsec needs the policy's 'crowdsec:' section (url, key_file)");
    if (types) {
      const YAML::Node& v = *types;
      if (auto st = Seq(v, absl::StrCat(lw, ".types"), "CrowdSec decision types"); !st.ok()) return st;
      if (v.size() == 0) return Fail(v, absl::StrCat(lw, ".types"), "no decision types");
      for (size_t i = 0; i < v.size(); ++i) {
        std::string at = absl::StrCat(lw, ".types[", i, "]"), t;
        if (auto st = Str(v[i], at, &t); !st.ok()) return st;
        t = absl::AsciiStrToLower(t);
        if (t.empty() || t.size() > 32 || !std::all_of(t.begin(), t.end(), IsNameChar))
          return Fail(v[i], at, absl::StrCat("'", absl::CHexEscape(t),
                                             "' is not a decision type such as ban or captcha"));
        if (std::find(l.crowdsec_types.begin(), l.crowdsec_types.end(), t) != l.crowdsec_types.end())
          return Fail(v[i], at, absl::StrCat("type '", t, "' is listed twice"));
        // A decision goes to one list: two lists taking one type would both claim it.
        for (const ListSpec& other : p.lists)
          if (other.crowdsec && std::find(other.crowdsec_types.begin(), other.crowdsec_types.end(),
                                          t) != other.crowdsec_types.end())
            return Fail(v[i], at, absl::StrCat("type '", t, "' is taken by list '", other.name,
                                               "' already"));
        l.crowdsec_types.push_back(t);
      }
    } else {
      for (const ListSpec& other : p.lists)
        if (other.crowdsec && std::find(other.crowdsec_types.begin(), other.crowdsec_types.end(),
                                        "ban") != other.crowdsec_types.end())
          return Fail(n, lw, absl::StrCat("type 'ban' (the default types) is taken by list '",
                                          other.name, "' already"));
      l.crowdsec_types = {"ban"};
    }
  }

  if (entries) {
    const YAML::Node& v = *entries;
    if (auto st = Seq(v, absl::StrCat(lw, ".entries"), "addresses or CIDR prefixes"); !st.ok())
      return st;
    l.entries.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      std::string at = absl::StrCat(lw, ".entries[", i, "]"), s;
      if (auto st = Str(v[i], at, &s); !st.ok()) return st;
      auto pre = ParsePrefix(s, prefix_opts_);
      if (!pre.ok()) return Fail(v[i], at, pre.status().message());
      l.entries.push_back(PolicyEntry{*pre, 0, static_cast<uint32_t>(LineOf(v[i])), SourceId()});
      raw4_ += pre->is_v4();
    }
  }
  if (files) {
    const YAML::Node& v = *files;
    if (auto st = Seq(v, absl::StrCat(lw, ".files"), "list file paths"); !st.ok()) return st;
    for (size_t i = 0; i < v.size(); ++i) {
      std::string at = absl::StrCat(lw, ".files[", i, "]");
      ListFile lf;
      lf.policy_line = static_cast<uint32_t>(LineOf(v[i]));
      std::string raw;
      if (v[i].IsMap()) {
        auto ff = MapFields(v[i], at, {"path", "format"});
        if (!ff.ok()) return ff.status();
        bool have_path = false;
        for (auto& [key, k, val] : *ff) {
          if (key == "path") {
            if (auto st = Str(val, at + ".path", &raw); !st.ok()) return st;
            have_path = true;
          } else {
            std::string fs;
            if (auto st = Str(val, at + ".format", &fs); !st.ok()) return st;
            auto fmt = ParseFeedFormat(fs);
            if (!fmt.ok()) return Fail(val, at + ".format", fmt.status().message());
            lf.format = *fmt;
          }
        }
        if (!have_path) return Fail(v[i], at, "missing key 'path'");
      } else {
        if (auto st = Str(v[i], at, &raw); !st.ok()) return st;
      }
      if (raw.empty()) return Fail(v[i], at, "empty path");
      lf.path = Resolve(dir_, raw);
      // Cached: a reload parses only the files whose content changed.
      auto cached = LoadFeedCached(lf.path, lf.format, prefix_opts_, file_bytes_);
      if (!cached.ok())
        return absl::InvalidArgumentError(
            absl::StrCat(cached.status().message(), " (list '", l.name, "', named at ", path_, ":",
                         lf.policy_line, ")"));
      const Feed* feed = cached->get();
      lf.detected = feed->format;
      lf.entries = feed->entries.size();
      uint32_t file_idx;
      auto known = std::find(p.files.begin(), p.files.end(), lf.path);
      if (known != p.files.end()) {
        file_idx = static_cast<uint32_t>(known - p.files.begin());
      } else {
        file_idx = static_cast<uint32_t>(p.files.size());
        p.files.push_back(lf.path);
      }
      size_t need = l.entries.size() + feed->entries.size();
      if (l.entries.capacity() < need) {
        // The smallest spare table that holds the list (pages mapped already), else a new one.
        auto sp = std::find_if(spare_entries_.begin(), spare_entries_.end(),
                               [&](const auto& v) { return v.capacity() >= need; });
        if (sp != spare_entries_.end()) {
          sp->clear();
          sp->insert(sp->end(), l.entries.begin(), l.entries.end());
          l.entries = std::move(*sp);
          spare_entries_.erase(sp);
        }
      }
      l.entries.reserve(need);
      for (const FeedEntry& e : feed->entries) {
        l.entries.push_back(PolicyEntry{e.prefix, file_idx, e.line, e.source_id});
        raw4_ += e.prefix.is_v4();
      }
      l.files.push_back(std::move(lf));
    }
  }
  p.lists.push_back(std::move(l));
  return absl::OkStatus();
}

// Counting distinct prefixes needs a sort; it only runs when the raw count is over a limit.
absl::Status PolicyParser::CheckLimits(const Policy& p, int lists_line) const {
  size_t raw4 = raw4_, raw6 = p.entry_count() - raw4_;
  for (Family fam : {Family::kV4, Family::kV6}) {
    size_t raw = fam == Family::kV4 ? raw4 : raw6;
    uint32_t limit = fam == Family::kV4 ? p.v4_entries : p.v6_entries;
    if (raw <= limit) continue;
    std::vector<Prefix> all;
    all.reserve(raw);
    for (const ListSpec& l : p.lists)
      for (const PolicyEntry& e : l.entries)
        if (e.prefix.family == fam) all.push_back(e.prefix);
    std::sort(all.begin(), all.end());
    size_t distinct = static_cast<size_t>(std::unique(all.begin(), all.end()) - all.begin());
    if (distinct > limit) {
      const char* key = fam == Family::kV4 ? "limits.v4_entries" : "limits.v6_entries";
      return Fail(limits_line_ ? limits_line_ : lists_line, key,
                  absl::StrCat("the lists hold ", distinct, " distinct ",
                               fam == Family::kV4 ? "IPv4" : "IPv6", " prefixes, more than the limit ",
                               limit, limits_line_ ? "" : " (the default)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Policy> PolicyParser::Run(absl::string_view text) {
  if (text.find('\0') != absl::string_view::npos) return Fail(1, "", "binary data (NUL byte): not a YAML policy");
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& e) {
    return Fail(e.mark.is_null() ? 1 : e.mark.line + 1, "", absl::StrCat("YAML syntax error: ", e.msg));
  }
  if (docs.empty() || docs[0].IsNull()) return Fail(1, "", "the policy is empty");
  if (docs.size() > 1) return Fail(docs[1], "", "more than one YAML document ('---'): one policy per file");
  const YAML::Node& root = docs[0];

  Policy p;
  p.path = path_;
  p.files.push_back(path_);
  auto fields = MapFields(root, "",
                          {"ports", "proxy_ports", "banner", "allow_default_route", "keep_on_exit",
                           "keep_reload_buffers", "limits", "unparsed",
                           "block_event_interval", "block_event_budget", "lists", "interfaces", "output", "control_socket",
                           "control_group", "control_admin_group", "metrics", "state_file", "pin_root",
                           "eve", "crowdsec", "host", "beacon"});
  if (!fields.ok()) return fields.status();

  // Settings that change how lists parse come first, whatever their order in the file.
  for (auto& [key, k, v] : *fields) {
    if (key == "allow_default_route") {
      if (auto st = Bool(v, key, &p.allow_default_route); !st.ok()) return st;
      prefix_opts_.allow_default_route = p.allow_default_route;
    }
  }
  int lists_line = 1;
  const YAML::Node* lists = nullptr;
  for (auto& [key, k, v] : *fields) {
    absl::Status st;
    if (key == "ports") {
      st = Ports(v, "ports", &p.ports);
    } else if (key == "proxy_ports") {
      st = Ports(v, "proxy_ports", &p.proxy_ports);
    } else if (key == "banner") {
      st = Banner(v, p);
    } else if (key == "keep_on_exit") {
      st = Bool(v, key, &p.keep_on_exit);
    } else if (key == "keep_reload_buffers") {
      st = Bool(v, key, &p.keep_reload_buffers);
    } else if (key == "unparsed") {
      const std::vector<std::pair<absl::string_view, bw_unparsed_action>> values = {
          {"pass", BW_UNPARSED_PASS}, {"alert", BW_UNPARSED_ALERT}, {"drop", BW_UNPARSED_DROP}};
      st = Enum(v, key, values, &p.unparsed);
    } else if (key == "limits") {
      limits_line_ = LineOf(v, &k);
      st = Limits(v, p);
      file_bytes_ = p.file_bytes;
    } else if (key == "block_event_interval") {
      std::string s;
      st = Str(v, key, &s);
      absl::Duration d;
      if (st.ok() && (!absl::ParseDuration(s, &d) || d < absl::ZeroDuration() || d == absl::InfiniteDuration()))
        st = Fail(v, key, absl::StrCat("'", absl::CHexEscape(s),
                                       "' is not a duration such as 1s, 500ms or 0s"));
      if (st.ok()) p.block_event_interval = d;
    } else if (key == "block_event_budget") {
      uint64_t x = 0;
      st = Uint(v, key, 0, UINT32_MAX, &x);
      if (st.ok()) p.block_event_budget = static_cast<uint32_t>(x);
    } else if (key == "lists") {
      lists = &v;
      lists_line = LineOf(k);
    } else if (key == "interfaces") {
      st = Interfaces(v, p);
    } else if (key == "output") {
      st = Output(v, p);
    } else if (key == "eve") {
      st = Eve(v, p);
    } else if (key == "crowdsec") {
      st = Crowdsec(v, p);
    } else if (key == "host") {
      st = Host(v, p);
    } else if (key == "beacon") {
      st = Beacon(v, p);
    } else if (key == "control_socket") {
      st = PathSetting(v, key, true, &p.control_socket);
      if (st.ok() && p.control_socket.size() > 107)
        st = Fail(v, key, "longer than a unix socket path can be (107 bytes)");
    } else if (key == "control_group" || key == "control_admin_group") {
      std::string g;
      st = Str(v, key, &g);
      if (st.ok() && !ValidGroupName(g))
        st = Fail(v, key,
                  "expected a group name (1 to 32 of a-z A-Z 0-9 _ - ., not starting with - or a "
                  "digit-only name)");
      if (st.ok()) (key == "control_group" ? p.control_group : p.control_admin_group) = g;
    } else if (key == "metrics") {
      st = Metrics(v, p);
    } else if (key == "state_file") {
      st = PathSetting(v, key, true, &p.state_file);
    } else if (key == "pin_root") {
      std::string s;
      st = Str(v, key, &s);
      if (st.ok() && (s.empty() || s[0] != '/'))
        st = Fail(v, key, "expected an absolute path on bpffs, such as /sys/fs/bpf/bannerwatch");
      if (st.ok()) p.pin_root = s;
    }
    if (!st.ok()) return st;
  }
  if (lists) {
    if (auto st = Seq(*lists, "lists", "lists"); !st.ok()) return st;
    for (size_t i = 0; i < lists->size(); ++i)
      if (auto st = List((*lists)[i], i, p); !st.ok()) return st;
  }
  if (auto st = CheckLimits(p, lists_line); !st.ok()) return st;
  return p;
}

}  // namespace

absl::StatusOr<Policy> ParsePolicy(absl::string_view yaml, const std::string& path,
                                   Policy* reuse) {
  try {
    PolicyParser parser(path);
    parser.Reuse(reuse);
    return parser.Run(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", e.mark.is_null() ? 1 : e.mark.line + 1, ": ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
}

absl::StatusOr<Policy> LoadPolicyFile(const std::string& path, Policy* reuse) {
  auto text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  auto p = ParsePolicy(*text, path, reuse);
  // The feed cache keeps what this policy names (a failed load keeps everything: the next attempt
  // is likely the same policy, fixed).
  if (p.ok()) PruneFeedCache(std::vector<std::string>(p->files.begin() + 1, p->files.end()));
  return p;
}

// ---- compilation ---------------------------------------------------------------------------------

namespace {

std::atomic<uint64_t> g_incremental_compiles{0};
std::atomic<bool> g_incremental_enabled{true};

// One non-expired entry in sweep order.
struct Item {
  Prefix prefix;
  uint8_t prec;  // Precedence(action)
  uint32_t pos;  // index in CompiledPolicy::entries: policy order
};

// Prefix ascending (covering prefixes first), then precedence descending, then policy order. The
// prefix compares with Prefix's own order (two big-endian words, no memcmp call): about half the
// IPv6 sort's time.
bool ItemLess(const Item& a, const Item& b) {
  if (auto c = a.prefix <=> b.prefix; c != 0) return c < 0;
  if (a.prec != b.prec) return a.prec > b.prec;
  return a.pos < b.pos;
}

// One non-expired IPv4 entry: key = address << 10 | length << 2 | (3 - precedence), so key order
// is ItemLess's order; ties keep policy order (pos) because the sort is stable and items are made
// in policy order.
// The deciding entry's fields ride along, so the sweep reads nothing but this array in order.
struct Item4 {
  uint64_t key;
  uint32_t ref;
  uint32_t list_id;
  uint8_t action;
};

uint64_t Item4Key(const Prefix& p, uint8_t prec) {
  uint32_t a = (uint32_t{p.addr[0]} << 24) | (uint32_t{p.addr[1]} << 16) |
               (uint32_t{p.addr[2]} << 8) | p.addr[3];
  return (uint64_t{a} << 10) | (uint64_t{p.len} << 2) | uint64_t(3 - prec);
}

// Stable LSD radix sort on the 42-bit keys: 4 passes of 11 bits (a pass whose digit is the same
// for every key is skipped). At a million entries about 5x faster than std::sort with ItemLess.
void SortItems4(std::vector<Item4>& v) {
  constexpr int kBits = 11, kPasses = 4;
  constexpr size_t kBuckets = size_t{1} << kBits;
  if (v.size() < 2) return;
  std::unique_ptr<Item4[]> tmp(new Item4[v.size()]);  // uninitialized: every slot is written
  std::vector<uint32_t> count(kBuckets * kPasses, 0);
  for (const Item4& it : v)
    for (int p = 0; p < kPasses; ++p) ++count[p * kBuckets + ((it.key >> (p * kBits)) & (kBuckets - 1))];
  Item4 *src = v.data(), *dst = tmp.get();
  for (int p = 0; p < kPasses; ++p) {
    uint32_t* cnt = &count[p * kBuckets];
    if (cnt[(src[0].key >> (p * kBits)) & (kBuckets - 1)] == v.size()) continue;
    uint32_t sum = 0;
    for (size_t b = 0; b < kBuckets; ++b) {
      uint32_t n = cnt[b];
      cnt[b] = sum;
      sum += n;
    }
    for (size_t i = 0; i < v.size(); ++i) dst[cnt[(src[i].key >> (p * kBits)) & (kBuckets - 1)]++] = src[i];
    std::swap(src, dst);
  }
  if (src != v.data()) std::copy(src, src + v.size(), v.data());
}

// The IPv4 table from the sorted items.
void SweepV4(const std::vector<Item4>& items4, std::vector<KernelEntry>& out) {
  // Sweep: the stack holds the chain of prefixes covering the current one, each with the decision
  // for it (the best of its own entries and everything covering it). Strictly higher precedence
  // above wins; on a tie the more specific (this prefix) wins.
  // IPv4 on the packed keys: address and length as integers.
  struct Decision4 {
    uint8_t prec, len, action;
    uint32_t ref, list_id;
  };
  out.reserve(items4.size());
  std::vector<std::pair<uint64_t, Decision4>> stack4;  // (addr << 8 | len, decision)
  for (size_t i = 0; i < items4.size();) {
    const Item4& first = items4[i];  // best own entry of this prefix (sort order)
    uint64_t pk = first.key >> 2;     // addr << 8 | len
    size_t j = i + 1;
    while (j < items4.size() && (items4[j].key >> 2) == pk) ++j;
    uint32_t addr = static_cast<uint32_t>(pk >> 8);
    uint8_t len = static_cast<uint8_t>(pk & 0xff);
    while (!stack4.empty()) {
      uint32_t sa = static_cast<uint32_t>(stack4.back().first >> 8);
      unsigned sl = static_cast<unsigned>(stack4.back().first & 0xff);
      uint32_t mask = sl == 0 ? 0 : ~uint32_t{0} << (32 - sl);
      if (sl <= len && ((sa ^ addr) & mask) == 0) break;
      stack4.pop_back();
    }
    Decision4 d{static_cast<uint8_t>(3 - (first.key & 3)), len, first.action, first.ref,
                first.list_id};
    if (!stack4.empty() && stack4.back().second.prec > d.prec) d = stack4.back().second;
    stack4.emplace_back(pk, d);
    KernelEntry& ke = out.emplace_back();
    ke.prefix = Prefix::V4(addr, len);
    ke.value.list_id = d.list_id;
    ke.value.entry_ref = d.ref;
    ke.value.action = d.action;
    ke.value.prefixlen = d.len;
    i = j;
  }
}

struct Decision {
  uint8_t prec;
  uint8_t len;   // the deciding entry's prefix length
  uint32_t pos;  // the deciding entry
};

constexpr uint32_t kNone = UINT32_MAX;

// For each of a list's entries, the index (in `old`) of the entry it continues from the previous
// compile, whose ref it keeps (kNone: a new entry), matching by prefix. Lists
// change little between compiles and keep their order, so entries are matched in sequence, with a
// short look-ahead on both sides over removed or added runs, a replaced entry skipped on both, and
// a far look-ahead after a streak of replacements (a long removed or added run); only what that
// misses goes through a hash map.
std::vector<uint32_t> CarryRefs(const std::vector<PolicyEntry>& now, const CompiledEntry* old,
                                size_t old_n) {
  constexpr size_t kLookAhead = 8, kFarAhead = size_t{1} << 16;
  size_t streak = 0;  // replacements in a row
  // Far look-aheads compare at most this many entries in all: the matching stays linear.
  size_t budget = 4 * (now.size() + old_n) + 2 * kFarAhead;
  std::vector<uint32_t> refs(now.size(), kNone);
  std::vector<size_t> unmatched_new;
  std::vector<const CompiledEntry*> unmatched_old;
  size_t i = 0, j = 0;
  while (i < now.size() && j < old_n) {
    if (now[i].prefix == old[j].prefix) {
      refs[i++] = static_cast<uint32_t>(j++);
      streak = 0;
      continue;
    }
    size_t d = 1;
    while (d <= kLookAhead && j + d < old_n && !(now[i].prefix == old[j + d].prefix)) ++d;
    if (d <= kLookAhead && j + d < old_n) {  // old[j .. j+d-1] were removed (or moved)
      for (size_t k = 0; k < d; ++k) unmatched_old.push_back(&old[j + k]);
      j += d;
      continue;
    }
    size_t e = 1;
    while (e <= kLookAhead && i + e < now.size() && !(now[i + e].prefix == old[j].prefix)) ++e;
    if (e <= kLookAhead && i + e < now.size()) {  // now[i .. i+e-1] were added (or moved)
      for (size_t k = 0; k < e; ++k) unmatched_new.push_back(i + k);
      i += e;
      continue;
    }
    // now[i] replaced old[j] (or both moved): neither is matched here.
    unmatched_new.push_back(i++);
    unmatched_old.push_back(&old[j++]);
    // A long removed or added run looks like a streak of replacements: after a few, look far
    // ahead on both sides to get back in step.
    if (++streak < kLookAhead || budget == 0 || i >= now.size() || j >= old_n) continue;
    streak = 0;
    // A match counts when the next few entries match too: lists repeat short prefixes.
    auto in_step = [&](size_t a, size_t b) {
      for (size_t m = 0; m < 4 && a + m < now.size() && b + m < old_n; ++m)
        if (!(now[a + m].prefix == old[b + m].prefix)) return false;
      return true;
    };
    size_t far = std::min({old_n - j, kFarAhead, budget}), k = 0;
    while (k < far && !in_step(i, j + k)) ++k;
    budget -= std::min(k + 1, far);
    if (k < far) {  // old[j .. j+k-1] were removed
      for (size_t m = 0; m < k; ++m) unmatched_old.push_back(&old[j + m]);
      j += k;
      continue;
    }
    far = std::min({now.size() - i, kFarAhead, budget}), k = 0;
    while (k < far && !in_step(i + k, j)) ++k;
    budget -= std::min(k + 1, far);
    if (k < far) {  // now[i .. i+k-1] were added
      for (size_t m = 0; m < k; ++m) unmatched_new.push_back(i + m);
      i += k;
    }
  }
  for (; i < now.size(); ++i) unmatched_new.push_back(i);
  for (; j < old_n; ++j) unmatched_old.push_back(&old[j]);
  if (unmatched_new.empty() || unmatched_old.empty()) return refs;
  absl::flat_hash_map<Prefix, uint32_t> rest;
  rest.reserve(unmatched_old.size());
  for (const CompiledEntry* e : unmatched_old) rest.emplace(e->prefix, static_cast<uint32_t>(e - old));
  for (size_t k : unmatched_new) {
    auto it = rest.find(now[k].prefix);
    if (it == rest.end()) continue;
    refs[k] = it->second;
    rest.erase(it);
  }
  return refs;
}

// What one list of this compile continues from the previous one (the incremental path).
struct ListMatch {
  size_t old_begin = 0, old_n = 0;  // the list's entries in previous->entries
  std::vector<uint32_t> match;      // CarryRefs; empty: every entry is new
};

// The sorted IPv4 items of this compile from the previous compile's (same lists, names, order,
// actions and expired states): the previous items whose entries continue in order, merged with
// the items of the entries that are new or moved (an entry matched out of order within its list
// keeps its ref but is re-placed, so every continuing entry keeps its relative policy order and
// equal keys stay in policy order, as the stable radix sort leaves them). False when too much
// changed for a merge to pay; `out` is then untouched.
bool MergeItems4(const Policy& policy, const std::vector<CompiledList>& lists,
                 const std::vector<std::vector<uint32_t>>& refs,
                 const std::vector<ListMatch>& matches, const CompiledPolicy& previous,
                 const std::vector<Item4>& old_items, size_t total, std::vector<Item4>& out) {
  const std::vector<CompiledEntry>& pe = previous.entries;
  size_t limit = total / 8 + 64;  // added + removed items beyond this: sort instead
  std::vector<uint32_t> old_to_new(pe.size(), kNone);  // continuing entries: new position
  std::vector<uint64_t> drop((size_t{previous.max_entry_ref} >> 6) + 1, 0);  // by ref
  auto drop_ref = [&](uint32_t ref) { drop[ref >> 6] |= uint64_t{1} << (ref & 63); };
  struct Added {
    Item4 it;
    uint32_t pos;  // in the new entry table
  };
  std::vector<Added> added;
  size_t removed = 0;
  uint32_t pos0 = 0;
  for (size_t li = 0; li < lists.size(); ++li) {
    const std::vector<PolicyEntry>& es = policy.lists[li].entries;
    const CompiledList& cl = lists[li];
    const ListMatch& lm = matches[li];
    if (!cl.expired) {
      uint8_t prec = static_cast<uint8_t>(Precedence(cl.action));
      bool any = lm.match.size() == es.size();
      int64_t last = -1;  // the last continuing entry's old index
      for (size_t k = 0; k < es.size(); ++k) {
        uint32_t o = any ? lm.match[k] : kNone;
        if (o != kNone && static_cast<int64_t>(o) > last) {
          old_to_new[lm.old_begin + o] = pos0 + static_cast<uint32_t>(k);
          last = o;
          continue;
        }
        if (o != kNone) drop_ref(refs[li][k]);  // moved: its old item goes, a new one comes
        if (!es[k].prefix.is_v4()) continue;
        added.push_back(Added{Item4{Item4Key(es[k].prefix, prec), refs[li][k], cl.id,
                                    static_cast<uint8_t>(cl.action)},
                              pos0 + static_cast<uint32_t>(k)});
        if (added.size() > limit) return false;
      }
      for (size_t j = lm.old_begin; j < lm.old_begin + lm.old_n; ++j)
        if (old_to_new[j] == kNone) {
          drop_ref(pe[j].ref);
          removed += pe[j].prefix.is_v4();
        }
      if (added.size() + removed > limit) return false;
    }
    pos0 += static_cast<uint32_t>(es.size());
  }
  // Key order, then policy order (they were made in policy order).
  std::sort(added.begin(), added.end(), [](const Added& a, const Added& b) {
    return a.it.key != b.it.key ? a.it.key < b.it.key : a.pos < b.pos;
  });
  out.reserve(old_items.size() - std::min(old_items.size(), removed) + added.size());
  auto new_pos = [&](uint32_t ref) {
    return old_to_new[static_cast<size_t>(previous.entry(ref) - pe.data())];
  };
  size_t a = 0;
  for (const Item4& it : old_items) {
    if ((drop[it.ref >> 6] >> (it.ref & 63)) & 1) continue;
    while (a < added.size() && (added[a].it.key < it.key ||
                                (added[a].it.key == it.key && added[a].pos < new_pos(it.ref))))
      out.push_back(added[a++].it);
    out.push_back(it);
  }
  for (; a < added.size(); ++a) out.push_back(added[a].it);
  return true;
}

}  // namespace

struct CompileState {
  std::vector<Item4> items4;  // the sorted IPv4 items SweepV4 read
};

uint64_t IncrementalCompileCount() { return g_incremental_compiles.load(); }
void SetIncrementalCompile(bool enabled) { g_incremental_enabled = enabled; }

absl::StatusOr<CompiledPolicy> Compile(const Policy& policy, absl::Time now,
                                       const CompiledPolicy* previous, CompiledPolicy* reuse) {
  CompiledPolicy c;
  if (reuse == previous) reuse = nullptr;
  // The big tables' storage from `reuse`: its pages are mapped already.
  std::vector<Item4> reused_items4;
  if (reuse) {
    c.entries = std::move(reuse->entries);
    c.entries.clear();
    c.v4 = std::move(reuse->v4);
    c.v4.clear();
    c.entry_slot = std::move(reuse->entry_slot);
    c.entry_slot.clear();
    if (reuse->compile_state && reuse->compile_state.use_count() == 1) {
      // Made non-const by the compile that made it, and no one else holds it.
      reused_items4 = std::move(const_cast<CompileState&>(*reuse->compile_state).items4);
      reused_items4.clear();
    }
    *reuse = CompiledPolicy();
  }
  c.policy_path = policy.path;
  c.compiled_at = now;
  c.files = policy.files;
  c.numbered_file = policy.numbered_file;
  c.decisions_file = policy.decisions_file;
  c.ports = policy.ports;
  std::sort(c.ports.begin(), c.ports.end());
  c.ports.erase(std::unique(c.ports.begin(), c.ports.end()), c.ports.end());
  c.config.banner_action[BW_SIDE_SERVER] = static_cast<uint8_t>(policy.banner_server);
  c.config.banner_action[BW_SIDE_CLIENT] = static_cast<uint8_t>(policy.banner_client);
  c.config.flags = policy.non_tls ? BW_CFG_NON_TLS : 0;
  c.config.unparsed = static_cast<uint8_t>(policy.unparsed);
  c.eve = policy.eve;
  c.beacon = policy.beacon;
  c.proxy_ports = policy.proxy_ports;
  std::sort(c.proxy_ports.begin(), c.proxy_ports.end());
  c.proxy_ports.erase(std::unique(c.proxy_ports.begin(), c.proxy_ports.end()), c.proxy_ports.end());
  c.config.block_event_interval_ns =
      static_cast<uint64_t>(absl::ToInt64Nanoseconds(policy.block_event_interval));
  c.config.block_event_budget = policy.block_event_budget;

  size_t total = policy.entry_count();
  if (total >= UINT32_MAX / 2) return absl::InvalidArgumentError("too many entries");
  // Ids run out after ~2^31 additions over a daemon's life: then numbering starts afresh.
  if (previous && (previous->max_entry_ref > UINT32_MAX / 2 || previous->max_list_id > UINT32_MAX / 2))
    previous = nullptr;

  // Stable ids: lists by name, entries by (list, prefix). A previous policy's entries are grouped
  // by list, in policy order.
  absl::flat_hash_map<std::string, uint32_t> old_lists;
  absl::flat_hash_map<uint32_t, std::pair<size_t, size_t>> old_range;  // list id -> [begin, end)
  if (previous) {
    c.max_list_id = previous->max_list_id;
    c.max_entry_ref = previous->max_entry_ref;
    for (const CompiledList& l : previous->lists) old_lists.emplace(l.name, l.id);
    const auto& pe = previous->entries;
    for (size_t b = 0, e = 0; b < pe.size(); b = e) {
      while (e < pe.size() && pe[e].list_id == pe[b].list_id) ++e;
      old_range.emplace(pe[b].list_id, std::make_pair(b, e));
    }
  }
  bool dense = true;  // refs are 1..n in policy order

  // The incremental IPv4 path: the same lists (names, order, actions, expired states) as
  // `previous`, whose sorted items are kept, and refs dense enough for a bit per ref.
  const CompileState* prev_state = nullptr;
  if (previous && previous->compile_state && g_incremental_enabled.load() &&
      previous->lists.size() == policy.lists.size() &&
      previous->max_entry_ref <= 8 * previous->entries.size() + 65536) {
    bool same = true;
    for (size_t li = 0; li < policy.lists.size() && same; ++li) {
      const ListSpec& l = policy.lists[li];
      const CompiledList& pl = previous->lists[li];
      same = pl.name == l.name && pl.action == l.action &&
             pl.expired == (l.expires && *l.expires <= now);
    }
    if (same) prev_state = previous->compile_state.get();
  }
  std::vector<ListMatch> matches(prev_state ? policy.lists.size() : 0);

  // Lists and each entry's ref first (refs are handed out in policy order, so this pass is
  // sequential); then the IPv4 table on a second thread (items, radix sort, sweep) while this one
  // builds the entry table and the IPv6 table.
  std::vector<std::vector<uint32_t>> refs(policy.lists.size());
  for (size_t li = 0; li < policy.lists.size(); ++li) {
    const ListSpec& l = policy.lists[li];
    CompiledList cl;
    uint32_t old_id = 0;
    if (auto it = old_lists.find(l.name); it != old_lists.end()) old_id = it->second;
    cl.id = old_id ? old_id : ++c.max_list_id;
    cl.name = l.name;
    cl.action = l.action;
    cl.tags = l.tags;
    cl.reason = l.reason;
    cl.expires = l.expires;
    cl.expired = l.expires && *l.expires <= now;
    cl.entries = l.entries.size();
    if (l.expires && !cl.expired && (!c.next_expiry || *l.expires < *c.next_expiry))
      c.next_expiry = l.expires;
    std::vector<uint32_t>& r = refs[li];
    if (auto it = old_range.find(old_id); old_id && it != old_range.end()) {
      const CompiledEntry* old = previous->entries.data() + it->second.first;
      std::vector<uint32_t> m = CarryRefs(l.entries, old, it->second.second - it->second.first);
      r.resize(m.size());
      for (size_t k = 0; k < m.size(); ++k) r[k] = m[k] == kNone ? ++c.max_entry_ref : old[m[k]].ref;
      if (prev_state)
        matches[li] = ListMatch{it->second.first, it->second.second - it->second.first, std::move(m)};
    } else {
      r.resize(l.entries.size());
      for (uint32_t& ref : r) ref = ++c.max_entry_ref;
    }
    c.lists.push_back(std::move(cl));
  }

  auto state = std::make_shared<CompileState>();
  state->items4 = std::move(reused_items4);
  std::thread v4_thread([&] {
    std::vector<Item4>& items4 = state->items4;  // IPv4: a packed key, sorted
    if (prev_state && MergeItems4(policy, c.lists, refs, matches, *previous, prev_state->items4,
                                  total, items4)) {
      g_incremental_compiles.fetch_add(1);
      SweepV4(items4, c.v4);
      return;
    }
    items4.reserve(total);
    for (size_t li = 0; li < policy.lists.size(); ++li) {
      const CompiledList& cl = c.lists[li];
      if (cl.expired) continue;
      uint8_t prec = static_cast<uint8_t>(Precedence(cl.action));
      const std::vector<PolicyEntry>& es = policy.lists[li].entries;
      const uint32_t* r = refs[li].data();
      for (size_t k = 0; k < es.size(); ++k)
        if (es[k].prefix.is_v4())
          items4.push_back(
              Item4{Item4Key(es[k].prefix, prec), r[k], cl.id, static_cast<uint8_t>(cl.action)});
    }
    SortItems4(items4);
    SweepV4(items4, c.v4);
  });

  c.entries.reserve(total);
  std::vector<Item> items;  // IPv6
  for (size_t li = 0; li < policy.lists.size(); ++li) {
    const CompiledList& cl = c.lists[li];
    uint8_t prec = static_cast<uint8_t>(Precedence(cl.action));
    const std::vector<PolicyEntry>& es = policy.lists[li].entries;
    const uint32_t* r = refs[li].data();
    for (size_t k = 0; k < es.size(); ++k) {
      const PolicyEntry& e = es[k];
      uint32_t pos = static_cast<uint32_t>(c.entries.size());
      dense &= r[k] == pos + 1;
      c.entries.push_back(CompiledEntry{r[k], e.prefix, cl.id, e.file, e.line, e.source_id});
      if (!cl.expired && !e.prefix.is_v4()) items.push_back(Item{e.prefix, prec, pos});
    }
  }
  if (!dense) {
    // Refs stay close to 1..n (each reload adds only the new entries' refs): a table indexed by
    // ref is then smaller and much faster to build than a hash map of a million entries.
    if (c.max_entry_ref <= 2 * c.entries.size() + 4096) {
      c.entry_slot.assign(size_t{c.max_entry_ref} + 1, 0);
      for (uint32_t i = 0; i < c.entries.size(); ++i) c.entry_slot[c.entries[i].ref] = i + 1;
    } else {
      c.entry_index.reserve(c.entries.size());
      for (uint32_t i = 0; i < c.entries.size(); ++i) c.entry_index.emplace(c.entries[i].ref, i);
    }
  }
  absl::flat_hash_map<uint32_t, uint8_t> list_action;
  for (const CompiledList& l : c.lists) list_action[l.id] = static_cast<uint8_t>(l.action);

  std::sort(items.begin(), items.end(), ItemLess);

  // The kernel value of an IPv6 prefix decided by entry `d`.
  uint32_t last_list = 0;
  uint8_t last_action = 0;
  auto emit = [&](const Prefix& pre, const Decision& d, std::vector<KernelEntry>& out) {
    const CompiledEntry& de = c.entries[d.pos];
    if (de.list_id != last_list) {
      last_list = de.list_id;
      last_action = list_action[de.list_id];
    }
    KernelEntry& ke = out.emplace_back();
    ke.prefix = pre;
    ke.value.list_id = de.list_id;
    ke.value.entry_ref = de.ref;
    ke.value.action = last_action;
    ke.value.prefixlen = d.len;
  };

  // IPv6 (a few percent of a feed): the same on Prefix values.
  std::vector<std::pair<Prefix, Decision>> stack;
  for (size_t i = 0; i < items.size();) {
    const Item& first = items[i];  // best own entry of this prefix (sort order)
    const Prefix& pre = first.prefix;
    size_t j = i + 1;
    while (j < items.size() && items[j].prefix == pre) ++j;
    while (!stack.empty() && !stack.back().first.contains(pre)) stack.pop_back();
    Decision d{first.prec, pre.len, first.pos};
    if (!stack.empty() && stack.back().second.prec > d.prec) d = stack.back().second;
    stack.emplace_back(pre, d);
    emit(pre, d, c.v6);
    i = j;
  }
  v4_thread.join();
  c.compile_state = std::move(state);

  if (c.v4.size() > policy.v4_entries)
    return absl::InvalidArgumentError(absl::StrCat(policy.path, ": limits.v4_entries: ", c.v4.size(),
                                                   " distinct IPv4 prefixes, more than the limit ",
                                                   policy.v4_entries));
  if (c.v6.size() > policy.v6_entries)
    return absl::InvalidArgumentError(absl::StrCat(policy.path, ": limits.v6_entries: ", c.v6.size(),
                                                   " distinct IPv6 prefixes, more than the limit ",
                                                   policy.v6_entries));
  return c;
}

const CompiledList* CompiledPolicy::list(uint32_t id) const {
  for (const CompiledList& l : lists)
    if (l.id == id) return &l;
  return nullptr;
}

const CompiledEntry* CompiledPolicy::entry(uint32_t ref) const {
  if (!entry_slot.empty()) {
    uint32_t i = ref < entry_slot.size() ? entry_slot[ref] : 0;
    return i ? &entries[i - 1] : nullptr;
  }
  if (entry_index.empty()) return ref >= 1 && ref <= entries.size() ? &entries[ref - 1] : nullptr;
  auto it = entry_index.find(ref);
  return it == entry_index.end() ? nullptr : &entries[it->second];
}

std::string CompiledPolicy::EntryLocation(uint32_t ref) const {
  const CompiledEntry* e = entry(ref);
  if (!e) return "?";
  const std::string& file = e->file < files.size() ? files[e->file] : "?";
  if (numbered_file != 0 && e->file == numbered_file) return absl::StrCat(file, " entry ", e->line);
  if (decisions_file != 0 && e->file == decisions_file)
    return absl::StrCat("crowdsec decision ", e->line, " (", file, ")");
  return absl::StrCat(file, ":", e->line);
}

const KernelEntry* CompiledPolicy::Lookup(const Prefix& query) const {
  const std::vector<KernelEntry>& t = query.is_v4() ? v4 : v6;
  for (int len = query.len; len >= 0; --len) {
    Prefix k = Prefix::Make(query.family, query.addr.data(), static_cast<unsigned>(len));
    auto it = std::lower_bound(t.begin(), t.end(), k,
                               [](const KernelEntry& e, const Prefix& p) { return e.prefix < p; });
    if (it != t.end() && it->prefix == k) return &*it;
  }
  return nullptr;
}

Explanation CompiledPolicy::Explain(const Prefix& query) const {
  Explanation x;
  x.query = query;
  for (const CompiledEntry& e : entries)
    if (e.prefix.contains(query)) {
      const CompiledList* l = list(e.list_id);
      x.covering.push_back({e.ref, l && l->expired});
    }
  std::stable_sort(x.covering.begin(), x.covering.end(), [&](const auto& a, const auto& b) {
    return entry(a.entry_ref)->prefix.len > entry(b.entry_ref)->prefix.len;
  });
  if (const KernelEntry* m = Lookup(query)) {
    x.match = *m;
    x.deciding_entry = m->value.entry_ref;
  }
  return x;
}

std::string CompiledPolicy::ExplainText(const Prefix& query) const {
  Explanation x = Explain(query);
  std::string out;
  if (!x.match) {
    absl::StrAppend(&out, query.HumanString(), ": not listed\n");
  } else {
    const CompiledEntry* e = entry(x.deciding_entry);
    const CompiledList* l = e ? list(e->list_id) : nullptr;
    absl::StrAppend(&out, query.HumanString(), ": ",
                    ListActionName(static_cast<ListAction>(x.match->value.action)), " (kernel key ",
                    x.match->prefix.ToString(), ", decided by list '", l ? l->name : "?", "' entry ",
                    e ? e->prefix.ToString() : "?", " at ", EntryLocation(x.deciding_entry), ")\n");
  }
  for (const auto& cv : x.covering) {
    const CompiledEntry& e = *entry(cv.entry_ref);
    const CompiledList& l = *list(e.list_id);
    absl::StrAppend(&out, cv.entry_ref == x.deciding_entry ? "  * " : "    ", e.prefix.ToString(),
                    "  ", ListActionName(l.action), "  list '", l.name, "'  ",
                    EntryLocation(cv.entry_ref), e.source_id.empty() ? "" : "  ", e.source_id.view(),
                    cv.expired ? "  (expired)" : "", cv.entry_ref == x.deciding_entry ? "  <- decides" : "",
                    "\n");
  }
  return out;
}

ReloadBufferSizes ReloadBufferSizesOf(const Policy& policy, const CompiledPolicy& compiled) {
  ReloadBufferSizes s;
  for (const ListSpec& l : policy.lists)
    if (l.entries.size() >= kReuseMin) s.list_entries.push_back(WithReloadRoom(l.entries.size()));
  s.entries = WithReloadRoom(compiled.entries.size());
  // A reload's refs are no longer 1..n: it indexes them by a table of the highest ref's size.
  s.entry_slot = WithReloadRoom(size_t{compiled.max_entry_ref} + 1);
  size_t items4 = compiled.compile_state ? compiled.compile_state->items4.size() : 0;
  if (items4) s.items4 = WithReloadRoom(items4);
  // The sweep reserves room for every item (duplicates and covered prefixes included).
  s.v4 = WithReloadRoom(std::max(compiled.v4.size(), items4));
  return s;
}

ReloadBuffers MakeReloadBuffers(const ReloadBufferSizes& sizes) {
  ReloadBuffers b;
  for (size_t n : sizes.list_entries) {
    ListSpec l;
    l.entries = WrittenStorage<PolicyEntry>(n);
    b.policy.lists.push_back(std::move(l));
  }
  b.compiled = std::make_unique<CompiledPolicy>();
  b.compiled->entries = WrittenStorage<CompiledEntry>(sizes.entries);
  b.compiled->v4 = WrittenStorage<KernelEntry>(sizes.v4);
  b.compiled->entry_slot = WrittenStorage<uint32_t>(sizes.entry_slot);
  if (sizes.items4) {
    auto state = std::make_shared<CompileState>();
    state->items4 = WrittenStorage<Item4>(sizes.items4);
    b.compiled->compile_state = std::move(state);
  }
  return b;
}

size_t ReusableBytes(const Policy& policy) {
  size_t n = 0;
  for (const ListSpec& l : policy.lists) n += l.entries.capacity() * sizeof(PolicyEntry);
  return n;
}

size_t ReusableBytes(const CompiledPolicy& compiled) {
  size_t n = compiled.entries.capacity() * sizeof(CompiledEntry) +
             compiled.v4.capacity() * sizeof(KernelEntry) +
             compiled.entry_slot.capacity() * sizeof(uint32_t);
  if (compiled.compile_state) n += compiled.compile_state->items4.capacity() * sizeof(Item4);
  return n;
}

}  // namespace bw
