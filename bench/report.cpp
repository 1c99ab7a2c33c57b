// report.cpp — merges benchmark fragments into bench/results/latest.json and prints one table.
//
//   bw_bench_report --out results/latest.json --meta_file meta.txt frag1.json frag2.json
//       writes {"meta": {...}, "sections": [...]} and prints the table (text)
//   bw_bench_report --from results/latest.json [--markdown]
//       prints an existing result again (Markdown: the tables of BENCHMARKS.md)
// The metadata always carries the date (UTC), the CPU model, the CPU count and the kernel; bench/run
// adds the command, the duration and the load average in a file of key=value lines.
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "bench/lib/report.hpp"
#include "bench/lib/sys.hpp"

ABSL_FLAG(std::string, out, "", "write the merged result here (latest.json)");
ABSL_FLAG(std::string, from, "", "print this merged result instead of merging fragments");
ABSL_FLAG(std::string, meta_file, "", "metadata to add: one key=value per line");
ABSL_FLAG(bool, markdown, false, "print Markdown instead of text");

namespace {

absl::StatusOr<nlohmann::json> ReadJson(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("open ", path));
  try {
    return nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
}

std::string UtcNow() {
  time_t t = time(nullptr);
  tm u{};
  gmtime_r(&t, &u);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &u);
  return buf;
}

std::string Header(const nlohmann::json& meta, bool md) {
  std::ostringstream o;
  auto get = [&](const char* k) { return meta.contains(k) ? meta[k].get<std::string>() : ""; };
  if (md) {
    o << "- date: " << get("date") << "\n- CPU: " << get("cpu") << " (" << get("cpus")
      << " CPUs)\n- kernel: " << get("kernel") << "\n";
    if (!get("command").empty()) o << "- command: `" << get("command") << "`\n";
    if (!get("duration_seconds").empty())
      o << "- run time: " << get("duration_seconds") << " s of benchmarks ("
        << get("total_seconds_with_build") << " s with the build)\n";
    if (!get("commit").empty()) o << "- code: " << get("commit") << "\n";
    if (!get("loadavg_start").empty())
      o << "- load average (1/5/15 min) at start: " << get("loadavg_start")
        << "; at end: " << get("loadavg_end") << "\n";
    o << "\n";
  } else {
    o << "bannerwatch benchmarks  " << get("date") << "\n"
      << "CPU: " << get("cpu") << " x" << get("cpus") << "   kernel: " << get("kernel") << "\n";
    if (!get("command").empty()) o << "command: " << get("command") << "\n";
    if (!get("commit").empty()) o << "code: " << get("commit") << "\n";
    if (!get("loadavg_start").empty())
      o << "load average (1/5/15 min) at start: " << get("loadavg_start")
        << "; at end: " << get("loadavg_end") << "\n";
  }
  return o.str();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  using namespace bw::bench;
  nlohmann::json merged;
  if (!absl::GetFlag(FLAGS_from).empty()) {
    auto j = ReadJson(absl::GetFlag(FLAGS_from));
    if (!j.ok()) {
      std::fprintf(stderr, "report: %s\n", j.status().ToString().c_str());
      return 1;
    }
    merged = *j;
  } else {
    nlohmann::json meta = {{"date", UtcNow()},
                           {"cpu", CpuModel()},
                           {"cpus", std::to_string(sysconf(_SC_NPROCESSORS_ONLN))},
                           {"kernel", KernelRelease()}};
    if (!absl::GetFlag(FLAGS_meta_file).empty()) {
      std::ifstream f(absl::GetFlag(FLAGS_meta_file));
      if (!f) {
        std::fprintf(stderr, "report: cannot open %s\n", absl::GetFlag(FLAGS_meta_file).c_str());
        return 2;
      }
      std::string kv;
      while (std::getline(f, kv)) {
        if (kv.empty()) continue;
        size_t eq = kv.find('=');
        if (eq == std::string::npos) {
          std::fprintf(stderr, "report: metadata wants key=value, got %s\n", kv.c_str());
          return 2;
        }
        meta[kv.substr(0, eq)] = kv.substr(eq + 1);
      }
    }
    nlohmann::json sections = nlohmann::json::array();
    for (size_t i = 1; i < rest.size(); ++i) {
      auto j = ReadJson(rest[i]);
      if (!j.ok()) {
        std::fprintf(stderr, "report: %s\n", j.status().ToString().c_str());
        return 1;
      }
      sections.push_back(*j);
    }
    merged = {{"meta", meta}, {"sections", sections}};
    if (!absl::GetFlag(FLAGS_out).empty()) {
      absl::Status st = WriteJson(absl::GetFlag(FLAGS_out), merged);
      if (!st.ok()) {
        std::fprintf(stderr, "report: %s\n", st.ToString().c_str());
        return 1;
      }
    }
  }
  std::vector<Section> sections;
  for (const auto& s : merged.value("sections", nlohmann::json::array()))
    sections.push_back(Section::FromJson(s));
  bool md = absl::GetFlag(FLAGS_markdown);
  std::string text = Header(merged.value("meta", nlohmann::json::object()), md) +
                     (md ? RenderMarkdown(sections) : RenderText(sections));
  std::fputs(text.c_str(), stdout);
  return 0;
}
