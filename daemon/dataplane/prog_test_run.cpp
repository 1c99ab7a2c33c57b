#include "daemon/dataplane/prog_test_run.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <atomic>
#include <cerrno>

#include "maps/bannerwatch_abi.h"
#include "maps/maps.hpp"

namespace bw {
namespace {
// Cleared on the first EINVAL of an XDP run with a context (a kernel before 5.15).
std::atomic<bool> g_xdp_ctx{true};
}  // namespace

absl::StatusOr<uint32_t> RunFrame(int prog_fd, bool xdp, absl::Span<const uint8_t> frame) {
  uint32_t retval = 0;
  auto run = [&](bool with_ctx) {
    xdp_md xctx{};
    __sk_buff sctx{};
    xctx.ingress_ifindex = 1;  // lo: events name a real interface
    xctx.data_end = static_cast<uint32_t>(frame.size());  // the kernel wants data_end == size
    sctx.ifindex = 1;
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame.data(),
                .data_size_in = static_cast<uint32_t>(frame.size()), .repeat = 1);
    if (with_ctx) {
      o.ctx_in = xdp ? static_cast<void*>(&xctx) : static_cast<void*>(&sctx);
      o.ctx_size_in = static_cast<uint32_t>(xdp ? sizeof(xctx) : sizeof(sctx));
    }
    int r = bpf_prog_test_run_opts(prog_fd, &o);
    retval = o.retval;
    return r == 0;
  };
  bool with_ctx = !xdp || g_xdp_ctx.load(std::memory_order_relaxed);
  if (run(with_ctx)) return retval;
  int err = errno;
  // EINVAL with an XDP context: a kernel before 5.15, or a frame the kernel refuses either way;
  // a run without the context tells them apart.
  if (xdp && with_ctx && err == EINVAL) {
    if (run(false)) {
      g_xdp_ctx.store(false, std::memory_order_relaxed);
      return retval;
    }
    err = errno;
  }
  return ErrnoStatus(xdp ? BW_PROG_XDP : BW_PROG_TC, "bpf_prog_test_run_opts", err);
}

}  // namespace bw
