#include "bench/lib/report.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <cerrno>
#include <cstdio>
#include <fstream>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/lib/sys.hpp"
#include "daemon/dataplane/libbpf_log.hpp"

namespace bw::bench {

nlohmann::json Section::ToJson() const {
  return {{"part", part},       {"key", key},   {"title", title}, {"command", command},
          {"columns", columns}, {"rows", rows}, {"notes", notes}, {"results", results}};
}

Section Section::FromJson(const nlohmann::json& j) {
  Section s;
  s.part = j.value("part", 0);
  s.key = j.value("key", "");
  s.title = j.value("title", "");
  s.command = j.value("command", "");
  s.columns = j.value("columns", std::vector<std::string>{});
  s.rows = j.value("rows", std::vector<std::vector<std::string>>{});
  s.notes = j.value("notes", std::vector<std::string>{});
  if (j.contains("results")) s.results = j["results"];
  return s;
}

absl::Status WriteJson(const std::string& path, const nlohmann::json& j) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) return absl::InternalError(absl::StrCat("open ", tmp, " for writing"));
    f << j.dump(2) << "\n";
    if (!f) return absl::InternalError(absl::StrCat("write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return absl::InternalError(absl::StrCat("rename ", tmp, " -> ", path, ": ", std::strerror(errno)));
  return absl::OkStatus();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Fixed(double v, int digits) { return absl::StrFormat("%.*f", digits, v); }

namespace {
// Display width of UTF-8 text (continuation bytes do not count).
size_t Width(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s) w += (c & 0xc0) != 0x80;
  return w;
}

std::string Pad(const std::string& s, size_t w, bool right) {
  std::string fill(w > Width(s) ? w - Width(s) : 0, ' ');
  return right ? fill + s : s + fill;
}

bool Numeric(const std::string& s) {
  return !s.empty() && (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '-' ||
                        s[0] == '+' || s[0] == '~');
}
}  // namespace

std::string RenderText(const std::vector<Section>& sections) {
  std::string out;
  for (const Section& s : sections) {
    std::vector<size_t> w(s.columns.size(), 0);
    for (size_t i = 0; i < s.columns.size(); ++i) w[i] = Width(s.columns[i]);
    for (const auto& r : s.rows)
      for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], Width(r[i]));
    size_t total = 0;
    for (size_t x : w) total += x + 2;
    absl::StrAppend(&out, "\n", s.part ? absl::StrCat(s.part, ". ") : "", s.title, "\n");
    absl::StrAppend(&out, std::string(std::max<size_t>(total, 20), '='), "\n");
    // A header sits over its column: right-aligned where the column holds figures.
    for (size_t i = 0; i < s.columns.size(); ++i) {
      bool num = false;
      for (const auto& r : s.rows) num = num || (i < r.size() && Numeric(r[i]));
      absl::StrAppend(&out, Pad(s.columns[i], w[i], i > 0 && num), "  ");
    }
    absl::StrAppend(&out, "\n", std::string(std::max<size_t>(total, 20), '-'), "\n");
    for (const auto& r : s.rows) {
      for (size_t i = 0; i < r.size() && i < w.size(); ++i)
        absl::StrAppend(&out, Pad(r[i], w[i], i > 0 && Numeric(r[i])), "  ");
      absl::StrAppend(&out, "\n");
    }
    for (const std::string& n : s.notes) absl::StrAppend(&out, "  * ", n, "\n");
  }
  return out;
}

std::string RenderMarkdown(const std::vector<Section>& sections) {
  std::string out;
  for (const Section& s : sections) {
    absl::StrAppend(&out, "### ", s.part ? absl::StrCat(s.part, ". ") : "", s.title, "\n\n");
    absl::StrAppend(&out, "| ", absl::StrJoin(s.columns, " | "), " |\n|");
    // Right-aligned where the column holds figures.
    for (size_t i = 0; i < s.columns.size(); ++i) {
      bool num = false;
      for (const auto& r : s.rows) num = num || (i < r.size() && Numeric(r[i]));
      absl::StrAppend(&out, num ? " ---: |" : " --- |");
    }
    absl::StrAppend(&out, "\n");
    for (const auto& r : s.rows) absl::StrAppend(&out, "| ", absl::StrJoin(r, " | "), " |\n");
    absl::StrAppend(&out, "\n");
    for (const std::string& n : s.notes) absl::StrAppend(&out, "- ", n, "\n");
    absl::StrAppend(&out, "\n");
  }
  return out;
}

int FinishSection(const char* who, const absl::Status& run, Section section,
                  const std::string& command, const std::string& out_path) {
  if (!run.ok()) {
    std::fprintf(stderr, "%s: %s\n", who, run.ToString().c_str());
    return Stopped() ? 130 : 1;
  }
  section.command = command;
  if (out_path.empty()) {
    std::fputs(RenderText({section}).c_str(), stdout);
    return 0;
  }
  absl::Status st = WriteJson(out_path, section.ToJson());
  if (!st.ok()) {
    std::fprintf(stderr, "%s: %s\n", who, st.ToString().c_str());
    return 1;
  }
  return 0;
}

int BenchMain(const char* who, const char* root_for, int argc, char** argv, bool verbose,
              const std::string& out_path, const std::function<absl::Status(Section*)>& run) {
  InstallStopHandler();
  InstallLibbpfLog(verbose);
  if (geteuid() != 0) {
    std::fprintf(stderr, "%s: needs root (%s)\n", who, root_for);
    return 77;
  }
  std::string cmd;
  for (int i = 0; i < argc; ++i) absl::StrAppend(&cmd, i ? " " : "", argv[i]);
  Section section;
  absl::Status st = run(&section);
  return FinishSection(who, st, std::move(section), cmd, out_path);
}

std::string SizeLabel(size_t n) {
  if (n >= 1000000 && n % 1000000 == 0) return absl::StrCat(n / 1000000, " M");
  if (n >= 1000 && n % 1000 == 0) return absl::StrCat(n / 1000, " k");
  return absl::StrCat(n);
}

}  // namespace bw::bench
