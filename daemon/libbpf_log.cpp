#include "daemon/libbpf_log.hpp"

#include <bpf/libbpf.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>

namespace bw {
namespace {
std::atomic<bool> g_verbose{false};
thread_local int t_quiet = 0;

int Print(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (t_quiet > 0 && level != LIBBPF_DEBUG) level = LIBBPF_DEBUG;
  if (level == LIBBPF_DEBUG && !g_verbose.load(std::memory_order_relaxed)) return 0;
  std::fputs("libbpf: ", stderr);
  return std::vfprintf(stderr, fmt, args);
}
}  // namespace

ScopedLibbpfQuiet::ScopedLibbpfQuiet() { ++t_quiet; }
ScopedLibbpfQuiet::~ScopedLibbpfQuiet() { --t_quiet; }

void InstallLibbpfLog(bool verbose) {
  g_verbose.store(verbose, std::memory_order_relaxed);
  libbpf_set_print(Print);
}
}  // namespace bw
