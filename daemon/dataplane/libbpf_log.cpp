#include "daemon/dataplane/libbpf_log.hpp"

#include <bpf/libbpf.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/time/clock.h"
#include "daemon/service/log.hpp"

namespace bw {
namespace {
std::atomic<bool> g_verbose{false};
thread_local int t_quiet = 0;
thread_local ScopedLibbpfCapture* t_capture = nullptr;

constexpr const char kBeginLog[] = "-- BEGIN PROG LOAD LOG --\n";
constexpr const char kEndLog[] = "-- END PROG LOAD LOG --";

// Most of libbpf's messages start with "libbpf: " already; the others get it.
const char* Prefix(const char* fmt) {
  return std::strncmp(fmt, "libbpf: ", 8) == 0 ? "" : "libbpf: ";
}

// libbpf's message, formatted.
std::string Format(const char* fmt, va_list args) {
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  std::string msg(n > 0 ? n : 0, '\0');
  if (n > 0) std::vsnprintf(msg.data(), msg.size() + 1, fmt, args);
  return msg;
}

int Print(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (t_quiet > 0 && level != LIBBPF_DEBUG) level = LIBBPF_DEBUG;
  bool verbose = g_verbose.load(std::memory_order_relaxed);
  if (t_capture && level == LIBBPF_WARN) {
    std::string msg = Format(fmt, args);
    t_capture->Add(msg);
    if (verbose) std::fprintf(stderr, "%s%s", Prefix(fmt), msg.c_str());
    return static_cast<int>(msg.size());
  }
  if (level == LIBBPF_DEBUG && !verbose) return 0;
  if (LogToJournal()) {
    // The journal: a priority on every line (a verifier log is many), as Log writes them.
    std::string msg = Format(fmt, args);
    std::string text = FormatLog(std::string(Prefix(fmt)) + msg,
                                 level == LIBBPF_WARN   ? LogLevel::kWarning
                                 : level == LIBBPF_INFO ? LogLevel::kInfo
                                                        : LogLevel::kDebug,
                                 true, absl::Now());
    std::fwrite(text.data(), 1, text.size(), stderr);
    return static_cast<int>(msg.size());
  }
  std::fputs(Prefix(fmt), stderr);
  return std::vfprintf(stderr, fmt, args);
}
}  // namespace

ScopedLibbpfQuiet::ScopedLibbpfQuiet() { ++t_quiet; }
ScopedLibbpfQuiet::~ScopedLibbpfQuiet() { --t_quiet; }

ScopedLibbpfCapture::ScopedLibbpfCapture() : outer_(t_capture) { t_capture = this; }
ScopedLibbpfCapture::~ScopedLibbpfCapture() { t_capture = outer_; }

// libbpf prints a failed program's log as one message:
//   prog 'NAME': -- BEGIN PROG LOAD LOG --\n<log>-- END PROG LOAD LOG --\n
void ScopedLibbpfCapture::Add(const std::string& message) {
  size_t begin = message.find(kBeginLog);
  if (begin == std::string::npos) {
    std::string m = message;
    while (!m.empty() && m.back() == '\n') m.pop_back();
    warnings_.push_back(std::move(m));
    return;
  }
  ProgLog pl;
  size_t q1 = message.find('\'');
  size_t q2 = q1 == std::string::npos ? q1 : message.find('\'', q1 + 1);
  if (q2 != std::string::npos && q2 < begin) pl.prog = message.substr(q1 + 1, q2 - q1 - 1);
  size_t start = begin + sizeof(kBeginLog) - 1;
  size_t end = message.rfind(kEndLog);
  pl.log = message.substr(start, end == std::string::npos || end < start ? std::string::npos
                                                                         : end - start);
  prog_logs_.push_back(std::move(pl));
}

void InstallLibbpfLog(bool verbose) {
  g_verbose.store(verbose, std::memory_order_relaxed);
  libbpf_set_print(Print);
}

bool LibbpfLogVerbose() { return g_verbose.load(std::memory_order_relaxed); }
}  // namespace bw
