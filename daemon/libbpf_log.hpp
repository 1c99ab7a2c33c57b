// libbpf_log.hpp — the one bridge from libbpf's print callback to stderr.
// Debug-level messages (section walks, relocations) are hidden unless verbose; warnings and the
// verifier log on a failed load always show.
#pragma once

namespace bw {
void InstallLibbpfLog(bool verbose);
}
