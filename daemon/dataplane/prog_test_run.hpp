// prog_test_run.hpp — one frame through a loaded program with BPF_PROG_TEST_RUN (`scan`, tests).
//
// Contract: RunFrame() runs `frame` once through prog_fd, as XDP (received on ifindex 1, the
// loopback device of every network namespace) or as TC (skb->ifindex 1), and returns the
// program's return value. Kernels before 5.15 take no XDP context in a test run; there the run is
// repeated without one, which gives the same ingress device (the kernel then picks the loopback
// device itself), and later runs go without one straight away. Thread-safe.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace bw {

absl::StatusOr<uint32_t> RunFrame(int prog_fd, bool xdp, absl::Span<const uint8_t> frame);

}  // namespace bw
