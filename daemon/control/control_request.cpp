#include "daemon/control/control_request.hpp"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace bw {
namespace {

using json = nlohmann::json;

enum class Type { kString, kInteger, kBool };

struct Field {
  const char* name;
  Type type;
  bool required;
  int64_t min, max;  // kInteger: the value; kString: the length in bytes
};

struct Command {
  const char* name;
  std::vector<Field> fields;
};

constexpr int64_t kTenYears = int64_t{10} * 366 * 24 * 3600;

const std::vector<Command>& Table() {
  static const std::vector<Field> kListChange = {
      {"cidr", Type::kString, true, 1, 64},
      {"list", Type::kString, false, 1, 64},
      {"reason", Type::kString, false, 0, 512},
      {"ttl_seconds", Type::kInteger, false, 1, kTenYears},
  };
  static const std::vector<Command> k = {
      {"status", {}},
      {"reload", {}},
      {"list", {}},
      {"block", kListChange},
      {"watch", kListChange},
      {"allow", kListChange},
      {"unlist", {{"cidr", Type::kString, true, 1, 64}}},
      {"query", {{"ip", Type::kString, true, 1, 64}}},
      {"events", {{"count", Type::kInteger, false, 0, 1000}, {"follow", Type::kBool, false, 0, 0}}},
  };
  return k;
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kString:
      return "a string";
    case Type::kInteger:
      return "a whole number";
    case Type::kBool:
      return "true or false";
  }
  return "?";
}

bool Printable(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u != 0x7f;  // UTF-8 bytes (>= 0x80) pass; control characters do not
  });
}

absl::Status Bad(const std::string& cmd, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(cmd.empty() ? "request" : cmd, ": ", what));
}

}  // namespace

bool ValidListName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
  });
}

absl::StatusOr<ControlRequest> ParseControlRequest(const json& request) {
  if (!request.is_object()) return Bad("", "must be a JSON object");
  auto c = request.find("cmd");
  if (c == request.end() || !c->is_string()) return Bad("", "needs \"cmd\", a string");
  ControlRequest r;
  r.cmd = c->get<std::string>();
  const auto& table = Table();
  auto cmd = std::find_if(table.begin(), table.end(),
                          [&](const Command& k) { return r.cmd == k.name; });
  if (cmd == table.end()) {
    std::vector<std::string> names;
    for (const Command& k : table) names.push_back(k.name);
    return Bad("", absl::StrCat("unknown command '", r.cmd.substr(0, 64), "' (known: ",
                                absl::StrJoin(names, ", "), ")"));
  }
  for (auto it = request.begin(); it != request.end(); ++it) {
    if (it.key() == "cmd") continue;
    bool known = std::any_of(cmd->fields.begin(), cmd->fields.end(),
                             [&](const Field& f) { return it.key() == f.name; });
    if (!known) return Bad(r.cmd, absl::StrCat("takes no field \"", it.key().substr(0, 64), "\""));
  }
  for (const Field& f : cmd->fields) {
    auto v = request.find(f.name);
    if (v == request.end()) {
      if (f.required) return Bad(r.cmd, absl::StrCat("needs \"", f.name, "\""));
      continue;
    }
    std::string want = absl::StrCat("\"", f.name, "\" must be ", TypeName(f.type));
    switch (f.type) {
      case Type::kString: {
        if (!v->is_string()) return Bad(r.cmd, want);
        const std::string& s = v->get_ref<const std::string&>();
        if (static_cast<int64_t>(s.size()) < f.min || static_cast<int64_t>(s.size()) > f.max)
          return Bad(r.cmd, absl::StrCat("\"", f.name, "\" must be ", f.min, " to ", f.max,
                                         " bytes long"));
        if (!Printable(s))
          return Bad(r.cmd, absl::StrCat("\"", f.name, "\" must not hold control characters"));
        std::string name = f.name;
        if (name == "cidr") r.cidr = s;
        if (name == "list") {
          if (!ValidListName(s))
            return Bad(r.cmd, "\"list\" must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
          r.list = s;
        }
        if (name == "reason") r.reason = s;
        if (name == "ip") r.ip = s;
        break;
      }
      case Type::kInteger: {
        // Whole numbers only: a float such as 1.5 or 1e3 is refused, as is a string "12h".
        if (!v->is_number_integer()) return Bad(r.cmd, want);
        bool in_range;
        int64_t n = 0;
        if (v->is_number_unsigned()) {
          uint64_t u = v->get<uint64_t>();
          in_range = u <= static_cast<uint64_t>(f.max) && static_cast<int64_t>(u) >= f.min;
          n = static_cast<int64_t>(u);
        } else {
          n = v->get<int64_t>();
          in_range = n >= f.min && n <= f.max;
        }
        if (!in_range)
          return Bad(r.cmd, absl::StrCat("\"", f.name, "\" must be from ", f.min, " to ", f.max));
        if (std::string(f.name) == "ttl_seconds") r.ttl_seconds = n;
        if (std::string(f.name) == "count") r.count = static_cast<uint64_t>(n);
        break;
      }
      case Type::kBool:
        if (!v->is_boolean()) return Bad(r.cmd, want);
        r.follow = v->get<bool>();
        break;
    }
  }
  return r;
}

}  // namespace bw
