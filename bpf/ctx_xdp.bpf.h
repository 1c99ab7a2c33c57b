/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ctx_xdp.bpf.h — the context layer for XDP (as Cilium's lib/ctx/xdp.h): what the shared pipeline
 * (decide.bpf.h and the headers it includes) needs from a packet's context, for struct xdp_md.
 * xdp_ingress.bpf.c includes it first; ctx_skb.bpf.h is the same interface for TC. The choice is
 * made at compile time, once per program unit: no program-type argument runs through the code.
 *
 *   struct bw_ctx               the program's context type
 *   ctx_data(), ctx_data_end()  the linear data, [data, data_end)
 *   ctx_load_bytes()            bytes at any offset of the packet (0, or < 0 if out of reach)
 *   BW_STAGE_FN                 the name of this program's banner stage (a global function)
 */
#ifndef BANNERWATCH_CTX_BPF_H
#define BANNERWATCH_CTX_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "bannerwatch_abi.h"
#include "variant.bpf.h"

#define bw_ctx xdp_md
#define BW_STAGE_FN bw_banners_xdp

static __always_inline void *ctx_data(const struct xdp_md *ctx)
{
	return (void *)(long)ctx->data;
}

static __always_inline void *ctx_data_end(const struct xdp_md *ctx)
{
	return (void *)(long)ctx->data_end;
}

/* Without bpf_xdp_load_bytes (core) an XDP frame is one buffer, all of it linear: what the direct
 * reads cannot reach is not there. */
static __always_inline long ctx_load_bytes(struct xdp_md *ctx, __u32 off, void *to, __u64 len)
{
	return BW_CORE ? -1 : bpf_xdp_load_bytes(ctx, off, to, len);
}

#endif /* BANNERWATCH_CTX_BPF_H */
