// report.hpp — how a benchmark hands its figures to bench/run.
//
// Contract: every benchmark program writes one Section as a JSON "fragment" (--out FILE):
// a part number and title, a printable table (columns + rows of strings), notes, and the raw
// results (every round, medians, ratios, checks) for latest.json. bw_bench_report merges the
// fragments, in the order given, into bench/results/latest.json with the run's metadata, and
// prints them as one table (text, or Markdown for BENCHMARKS.md). A new benchmark (issue 5 parts 2
// and 3) is one more program that writes a fragment, and one more line in bench/run.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include <nlohmann/json.hpp>

namespace bw::bench {

struct Section {
  int part = 0;
  std::string key;    // "kernel_cost", "veth_peers"
  std::string title;  // one line
  std::string command;
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> notes;
  nlohmann::json results = nlohmann::json::object();

  nlohmann::json ToJson() const;
  static Section FromJson(const nlohmann::json& j);
};

absl::Status WriteJson(const std::string& path, const nlohmann::json& j);

// Medians of rounds: the middle value (the mean of the two middle values for an even count).
double Median(std::vector<double> v);
// "1.23", with `digits` after the point.
std::string Fixed(double v, int digits);

// The whole table, as text (aligned columns) or Markdown.
std::string RenderText(const std::vector<Section>& sections);

// The end of a benchmark program: reports a failed run (exit 130 when stopped by a signal, else 1),
// or writes the section as JSON to `out_path` (printed as a table when empty). Returns the exit code.
int FinishSection(const char* who, const absl::Status& run, Section section,
                  const std::string& command, const std::string& out_path);

// A benchmark program's main after absl::ParseCommandLine: the stop handler, libbpf's log, the
// root check (exit 77, saying what root is needed for), then `run`, which fills the section and
// releases everything it made (namespaces, pins, processes) before it returns, then
// FinishSection with the command line.
int BenchMain(const char* who, const char* root_for, int argc, char** argv, bool verbose,
              const std::string& out_path, const std::function<absl::Status(Section*)>& run);
// BenchMain for a benchmark class with Run() and a `section` member: constructed inside `run`, so
// that its destructor releases what it made, also after an error.
template <typename Bench>
int BenchMainOf(const char* who, const char* root_for, int argc, char** argv, bool verbose,
                const std::string& out_path) {
  return BenchMain(who, root_for, argc, argv, verbose, out_path, [](Section* section) {
    Bench b;
    absl::Status st = b.Run();
    *section = b.section;
    return st;
  });
}

// "10 k", "1 M", or the number: a prefix count as the tables print it.
std::string SizeLabel(size_t n);
std::string RenderMarkdown(const std::vector<Section>& sections);

}  // namespace bw::bench
