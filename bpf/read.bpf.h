/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * read.bpf.h — packet bytes beyond the parsed headers (payload heads, banners, scan buffers): in
 * place where the linear data holds them, through the context's load helper otherwise. Built on
 * the context layer (ctx_xdp.bpf.h / ctx_skb.bpf.h), so it is the same code for both programs.
 */
#ifndef BANNERWATCH_READ_BPF_H
#define BANNERWATCH_READ_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "bannerwatch_abi.h"

/* ctx_load_bytes of n bytes, n checked right here against [1, max] on the register passed on.
 * Written for every verifier: clang folds `n == 0 || n > max` into one unsigned compare of n - 1
 * on a copy, which older verifiers (6.1's among them) do not relate back to n: they reject the
 * load as possibly 0 bytes. So the upper bound first, a barrier so the two checks cannot be merged,
 * and the lower bound as a signed compare: `n != 0` teaches an older verifier nothing, `n s> 0`
 * gives it the minimum of 1. */
static __always_inline long bw_load_upto(struct bw_ctx *ctx, __u32 off, __u8 *to, __u64 n,
					 __u64 max)
{
	barrier_var(n);
	if (n > max)
		return -1;
	barrier_var(n);
	if ((__s64)n <= 0)
		return -1;
	return ctx_load_bytes(ctx, off, to, n);
}

/* The payload's first hn bytes (hn in [1, 4]), read in place when the linear data holds them
 * (saves a helper call and a copy on every watched-port segment; and without
 * bpf_xdp_load_bytes, in the core object, it is the only way on XDP), through the helper
 * otherwise. */
static __always_inline long bw_head(struct bw_ctx *ctx, __u32 off, __u8 *head, __u64 hn)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);

	/* A bounded offset: the verifier learns a packet range only while offset + access stays
	 * within MAX_PACKET_OFF (0xffff); payloads further in take the helper. */
	__u8 *h = data + (off & 0x3fff);

	if (off <= 0x3fff) {
		if (hn == 4 && (void *)(h + 4) <= end) {
			__builtin_memcpy(head, h, 4);
			return 0;
		}
		/* A segment of one to three bytes: the start of a split banner. */
		if (hn < 4 && (void *)(h + hn) <= end) {
#pragma unroll
			for (int i = 0; i < 3; i++) {
				if (i >= hn || (void *)(h + i + 1) > end)
					break;
				head[i] = h[i];
			}
			return 0;
		}
	}
	return bw_load_upto(ctx, off, head, hn, 4);
}

/* Copies n packet bytes at `off` (n in [1, max], max a constant <= BW_BANNER_MAX) to `to` in
 * place, when the linear data holds them: fewer than 8 byte by byte, else in 8-byte words, the last
 * one overlapping its predecessor when n is not a multiple of 8. Returns -1 (nothing copied, or a
 * part) when it cannot: the caller then takes the load helper. Word loads and stores need not be
 * aligned: the verifier allows that where the CPU does (no BPF_F_STRICT_ALIGNMENT). */
static __always_inline int bw_read_direct(struct bw_ctx *ctx, __u32 off, __u8 *to, __u64 n,
					  __u64 max)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);

	__u8 *h = data + (off & 0x3fff); /* bounded for the verifier, as in bw_head */

	if (off > 0x3fff || n > max)
		return -1;
	if (n < 8) {
#pragma unroll
		for (int i = 0; i < 7; i++) {
			if (i >= n)
				break;
			if ((void *)(h + i + 1) > end)
				return -1;
			to[i] = h[i];
		}
		return 0;
	}
#pragma unroll
	for (int i = 0; i < BW_BANNER_MAX / 8; i++) {
		if ((__u64)(i + 1) * 8 > n)
			break;
		if ((void *)(h + i * 8 + 8) > end)
			return -1;
		*(__u64 *)(to + i * 8) = *(__u64 *)(h + i * 8);
	}
	__u64 t = (n - 8) & (BW_BANNER_MAX - 1);

	if (t > max - 8 || (void *)(h + t + 8) > end)
		return -1;
	*(__u64 *)(to + t) = *(__u64 *)(h + t);
	return 0;
}

#endif /* BANNERWATCH_READ_BPF_H */
