// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bwbench.bpf.c — the benchmarks' own XDP and TC programs (never part of the data plane).
 *
 * BPF_PROG_TEST_RUN runs one frame over and over. A benchmark that did only that would look the
 * same remote address up every time: the trie path stays in L1 and the figure flatters the trie.
 * So every program here first rewrites the frame's remote IPv4 address (the source for ingress
 * traffic, the destination for egress traffic: bwb_addr_off) and the IPv4 and L4 checksums that
 * go with it, precomputed by userspace, from a table of up to BWB_ADDRS_MAX addresses, a
 * different one on every run (with a destination port of its own when the traffic varies the
 * client's port), and then:
 *   bwb_wrap_base     tail-calls bwb_tgt_base[0]    (the baseline, an XDP_PASS program),
 *   bwb_wrap_bw       tail-calls bwb_tgt_bw[0]      (bannerwatch's bw_xdp_ingress),
 *   bwb_tc_wrap_base  tail-calls bwb_tgt_tc_base[0] (the baseline, a TC_ACT_OK program),
 *   bwb_tc_wrap_bw    tail-calls bwb_tgt_tc_bw[0]   (bannerwatch's bw_tc_egress),
 *   bwb_gen           returns XDP_TX (with BPF_F_TEST_XDP_LIVE_FRAMES: a packet generator).
 * Both wrappers of a hook do exactly the same work before the tail call (a constant key, so the
 * JIT turns it into a direct jump), so their difference is the difference between the two
 * targets. A program array takes programs of one type only: each hook has its own.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "bwbench_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Written by userspace through the skeleton's mmaped .bss before a run. */
struct bwb_addr bwb_addrs[BWB_ADDRS_MAX];
__u32 bwb_mask;        /* rows in use - 1 (rows in use: a power of two) */
__u32 bwb_addr_off;    /* frame offset of the address rewritten: 26 source, 30 destination */
__u32 bwb_l4_csum_off; /* frame offset of the L4 checksum, 0: none */
__u32 bwb_dport_off;   /* frame offset of the L4 destination port, 0: not rewritten */
__u32 bwb_next;        /* next row (single writer: each benchmark runs on one CPU) */
__u64 bwb_bad;         /* frames too short to rewrite */

/* Tail-call targets: one array per wrapper so that each key is a constant. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bwb_tgt_base SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bwb_tgt_bw SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bwb_tgt_tc_base SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bwb_tgt_tc_bw SEC(".maps");

/* Ethernet (no VLAN) + IPv4 without options: header checksum at 24, source at 26, destination
 * at 30. [data, end): the frame (an XDP buffer or an skb's linear data, which holds all of a
 * BPF_PROG_TEST_RUN frame). */
static __always_inline int bwb_rewrite(void *data, void *end)
{
	__u32 i = bwb_next++ & bwb_mask & (BWB_ADDRS_MAX - 1);
	struct bwb_addr *a = &bwb_addrs[i];
	__u32 off = bwb_addr_off & 0xff; /* bounded for the verifier */

	if (data + 34 > end || data + off + 4 > end) {
		bwb_bad++;
		return -1;
	}
	*(__u32 *)(data + off) = a->addr;
	*(__u16 *)(data + 24) = a->ip_csum;
	off = bwb_l4_csum_off & 0xff;
	if (off) {
		if (data + off + 2 > end) {
			bwb_bad++;
			return -1;
		}
		*(__u16 *)(data + off) = a->l4_csum;
	}
	off = bwb_dport_off & 0xff;
	if (off) {
		if (data + off + 2 > end) {
			bwb_bad++;
			return -1;
		}
		*(__u16 *)(data + off) = a->dport;
	}
	return 0;
}

static __always_inline int bwb_rewrite_xdp(struct xdp_md *ctx)
{
	return bwb_rewrite((void *)(long)ctx->data, (void *)(long)ctx->data_end);
}

static __always_inline int bwb_rewrite_skb(struct __sk_buff *skb)
{
	return bwb_rewrite((void *)(long)skb->data, (void *)(long)skb->data_end);
}

SEC("xdp")
int bwb_wrap_base(struct xdp_md *ctx)
{
	if (bwb_rewrite_xdp(ctx))
		return XDP_ABORTED;
	bpf_tail_call(ctx, &bwb_tgt_base, 0);
	return XDP_ABORTED; /* empty slot: the benchmark notices the return value */
}

SEC("xdp")
int bwb_wrap_bw(struct xdp_md *ctx)
{
	if (bwb_rewrite_xdp(ctx))
		return XDP_ABORTED;
	bpf_tail_call(ctx, &bwb_tgt_bw, 0);
	return XDP_ABORTED;
}

SEC("xdp")
int bwb_gen(struct xdp_md *ctx)
{
	if (bwb_rewrite_xdp(ctx))
		return XDP_ABORTED;
	return XDP_TX;
}

/* TC_ACT_UNSPEC: a value neither target returns, so the benchmark notices a failed rewrite or an
 * empty slot. */
SEC("tc")
int bwb_tc_wrap_base(struct __sk_buff *skb)
{
	if (bwb_rewrite_skb(skb))
		return TC_ACT_UNSPEC;
	bpf_tail_call(skb, &bwb_tgt_tc_base, 0);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int bwb_tc_wrap_bw(struct __sk_buff *skb)
{
	if (bwb_rewrite_skb(skb))
		return TC_ACT_UNSPEC;
	bpf_tail_call(skb, &bwb_tgt_tc_bw, 0);
	return TC_ACT_UNSPEC;
}
