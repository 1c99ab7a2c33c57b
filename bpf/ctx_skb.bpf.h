/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ctx_skb.bpf.h — the context layer for TC (as Cilium's lib/ctx/skb.h): the interface of
 * ctx_xdp.bpf.h, for struct __sk_buff. tc_egress.bpf.c includes it first.
 */
#ifndef BANNERWATCH_CTX_BPF_H
#define BANNERWATCH_CTX_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "bannerwatch_abi.h"
#include "variant.bpf.h"

#define bw_ctx __sk_buff
#define BW_STAGE_FN bw_banners_tc

static __always_inline void *ctx_data(const struct __sk_buff *ctx)
{
	return (void *)(long)ctx->data;
}

static __always_inline void *ctx_data_end(const struct __sk_buff *ctx)
{
	return (void *)(long)ctx->data_end;
}

/* Reaches into the skb's paged (non-linear) data too. */
static __always_inline long ctx_load_bytes(struct __sk_buff *ctx, __u32 off, void *to, __u64 len)
{
	return bpf_skb_load_bytes(ctx, off, to, len);
}

#endif /* BANNERWATCH_CTX_BPF_H */
