// libbpf_log.hpp — the one bridge from libbpf's print callback to stderr.
// Debug-level messages (section walks, relocations) are hidden unless verbose; warnings and the
// verifier log on a failed load always show.
#pragma once

namespace bw {
void InstallLibbpfLog(bool verbose);

// While alive, libbpf's warnings on this thread are treated as debug output: for calls whose
// failure is expected and handled (probing whether a clsact qdisc exists).
class ScopedLibbpfQuiet {
 public:
  ScopedLibbpfQuiet();
  ~ScopedLibbpfQuiet();
  ScopedLibbpfQuiet(const ScopedLibbpfQuiet&) = delete;
  ScopedLibbpfQuiet& operator=(const ScopedLibbpfQuiet&) = delete;
};
}  // namespace bw
