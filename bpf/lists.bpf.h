/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * lists.bpf.h — the remote address's place in the watchlists: the LPM tries (bw_lookup) and the
 * IPv4 pre-filter (bw_pre_class), which answers for most IPv4 addresses in constant time.
 */
#ifndef BANNERWATCH_LISTS_BPF_H
#define BANNERWATCH_LISTS_BPF_H

#include "maps.bpf.h"

static __always_inline const __u8 *bw_remote(const struct bw_pkt *p, int dir)
{
	return dir == BW_DIR_INGRESS ? p->saddr : p->daddr;
}

static __always_inline struct bw_list_value *bw_lookup(const struct bw_pkt *p, int dir)
{
	const __u8 *a = bw_remote(p, dir);

	if (p->family == BW_FAMILY_V4 || bw_is_v4_mapped(a)) {
		struct bw_lpm_v4_key k = { .prefixlen = 32 };

		__builtin_memcpy(k.addr, p->family == BW_FAMILY_V4 ? a : a + 12, 4);
		return bpf_map_lookup_elem(&bw_watch_v4, &k);
	}
	struct bw_lpm_v6_key k6 = { .prefixlen = 128 };

	__builtin_memcpy(k6.addr, a, 16);
	return bpf_map_lookup_elem(&bw_watch_v6, &k6);
}

/* The class of host-order address `a` in bw_v4_host (`chunk` 0), or of the /27 starting at `a`
 * (`chunk` BW_V4_HOST_CHUNK), or `dflt` when it has none. A bucket is one cache line; the search
 * ends at the entry, or at a bucket with an empty slot. */
static __always_inline __u32 bw_host_class(__u32 a, __u64 chunk, __u32 dflt)
{
	__u32 home = bw_v4_host_home(a);

#pragma unroll
	for (__u32 i = 0; i < BW_V4_HOST_PROBES; i++) {
		__u32 k = (home + i) & (BW_V4_HOST_BUCKETS - 1);
		struct bw_v4_host_bucket *bk = bpf_map_lookup_elem(&bw_v4_host, &k);
		int open = 0;

		if (!bk)
			return BW_V4_PRE_TRIE;
#pragma unroll
		for (__u32 j = 0; j < BW_V4_HOST_SLOTS; j++) {
			__u64 v = bk->slot[j];

			if ((__u32)v == a &&
			    (v & (BW_V4_HOST_LIVE | BW_V4_HOST_DEAD | BW_V4_HOST_CHUNK)) ==
				    (BW_V4_HOST_LIVE | chunk))
				return (v >> 32) & BW_V4_PRE_CLASS_MASK;
			open |= v == 0;
		}
		if (open)
			return dflt;
	}
	return dflt;
}

/* The IPv4 pre-filter: the class deciding the remote address (0 unlisted, 1..14 a class of
 * bw_v4_class, BW_V4_PRE_TRIE: ask the trie). Constant time: the summary's bit and code, the
 * /24's byte when the code says so, and a bucket or few of bw_v4_host for /24s holding /27s or
 * addresses of another class (straight from the code for /24s holding single addresses only). */
static __always_inline __u32 bw_pre_class(const struct bw_pkt *p, int dir)
{
	const __u8 *a = bw_remote(p, dir);
	__be32 addr;

	__builtin_memcpy(&addr, a, 4);
	/* 64-bit index and masks so the verifier keeps the bounds. */
	__u64 h = bpf_ntohl(addr);
	/* The summary first: a /22 with nothing listed, then a /24's 2-bit code. */
	__u32 k = h >> (BW_V4_SUM_L0_SHIFT + 6);
	__u64 *w = bpf_map_lookup_elem(&bw_v4_sum, &k);

	if (!w)
		return BW_V4_PRE_TRIE;
	if (!((*w >> ((h >> BW_V4_SUM_L0_SHIFT) & 63)) & 1))
		return 0;
	k = BW_V4_SUM_L0_ELEMS + (__u32)(h >> 13);
	w = bpf_map_lookup_elem(&bw_v4_sum, &k);
	if (!w)
		return BW_V4_PRE_TRIE;
	__u32 code = (*w >> (((h >> 8) & 31) * 2)) & 3;

	/* A /24 of single addresses only (most /32s of a feed): its byte would only say so. */
	if (code == BW_V4_SUM_HOSTS)
		return bw_host_class((__u32)h, 0, 0);
	if (code != BW_V4_SUM_READ_PRE)
		return code;

	__u64 idx = h >> 8;
	__u32 elem = idx >> 3;
	__u8 *e = bpf_map_lookup_elem(&bw_v4_pre, &elem);

	if (!e)
		return BW_V4_PRE_TRIE;
	__u8 b = e[idx & 7];
	__u32 cls = b & BW_V4_PRE_CLASS_MASK;

	/* /25-/27s of another class: the /27's chunk entry, then (more specific) the address's. */
	if (b & BW_V4_PRE_CHUNKS)
		cls = bw_host_class((__u32)h & ~31U, BW_V4_HOST_CHUNK, cls);
	if (b & BW_V4_PRE_HOSTS)
		return bw_host_class((__u32)h, 0, cls);
	return cls;
}

#endif /* BANNERWATCH_LISTS_BPF_H */
