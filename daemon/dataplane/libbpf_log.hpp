// libbpf_log.hpp — the one bridge from libbpf's print callback to stderr.
// Debug-level messages (section walks, relocations) are hidden unless verbose; warnings always
// show, except where a caller captures them to report them itself (ScopedLibbpfCapture).
#pragma once

#include <string>
#include <vector>

namespace bw {
void InstallLibbpfLog(bool verbose);
bool LibbpfLogVerbose();

// While alive, libbpf's warnings on this thread are treated as debug output: for calls whose
// failure is expected and handled (probing whether a clsact qdisc exists).
class ScopedLibbpfQuiet {
 public:
  ScopedLibbpfQuiet();
  ~ScopedLibbpfQuiet();
  ScopedLibbpfQuiet(const ScopedLibbpfQuiet&) = delete;
  ScopedLibbpfQuiet& operator=(const ScopedLibbpfQuiet&) = delete;
};

// While alive, libbpf's warnings on this thread are kept here instead of printed (printed too when
// verbose), so that the caller can say in one error what failed and why: a program's verifier log
// (which libbpf fetches and prints when a load fails) is kept whole, apart from the other lines.
class ScopedLibbpfCapture {
 public:
  struct ProgLog {
    std::string prog;  // the program's name
    std::string log;   // the verifier's log of the failed load
  };
  ScopedLibbpfCapture();
  ~ScopedLibbpfCapture();
  ScopedLibbpfCapture(const ScopedLibbpfCapture&) = delete;
  ScopedLibbpfCapture& operator=(const ScopedLibbpfCapture&) = delete;

  const std::vector<std::string>& warnings() const { return warnings_; }
  const std::vector<ProgLog>& prog_logs() const { return prog_logs_; }
  void Add(const std::string& message);

 private:
  ScopedLibbpfCapture* outer_;
  std::vector<std::string> warnings_;
  std::vector<ProgLog> prog_logs_;
};
}  // namespace bw
