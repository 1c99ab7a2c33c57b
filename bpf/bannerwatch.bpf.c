// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bannerwatch.bpf.c — the data plane: an XDP program for ingress and a TC (clsact) program for
 * egress, sharing every map, the counters and the ring buffer.
 *
 * For each frame: parse (parse.bpf.h); look the remote address up in the watchlists (the source on
 * ingress, the destination on egress); safelist -> pass, block -> drop; frames with more VLAN tags
 * or IPv6 extension headers than parsed -> the policy's `unparsed` action (pass, alert, drop);
 * then, on watched TCP ports, drop the rest of banner-dropped flows and look for "SSH-": at payload
 * offset zero, split over segments, after other lines in a server's first payload, through HTTP
 * CONNECT tunnels; a server's first payload that is neither TLS nor HTTP may be reported. The
 * verdict is decided before any event is written; a full ring buffer only bumps events_lost.
 *
 * Built twice (see "object variants" in bannerwatch_abi.h): as is, and with BW_CORE=1 for kernels
 * without bpf_loop, bpf_xdp_load_bytes, bpf_ktime_get_coarse_ns or pointer arguments to global
 * functions. BW_CORE removes code (what enum bw_feature names), picks the older clock helper and
 * hands the banner stage its arguments through a map (bw_stage); maps, programs and the
 * decision's order are the same in both.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "bannerwatch_abi.h"
#include "parse.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#ifndef BW_CORE
#define BW_CORE 0
#endif
/* bpf_loop: the first-payload line scan and the CONNECT parser run under it. */
#define BW_HAVE_LOOP (!BW_CORE)

/* IPv4 watchlist: longest-prefix match of the remote address -> its effective entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* LPM tries must not be preallocated */
	__uint(max_entries, BW_V4_ENTRIES_DEFAULT);
	__type(key, struct bw_lpm_v4_key);
	__type(value, struct bw_list_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_watch_v4 SEC(".maps");

/* IPv6 watchlist (IPv4-mapped addresses are looked up in bw_watch_v4). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, BW_V6_ENTRIES_DEFAULT);
	__type(key, struct bw_lpm_v6_key);
	__type(value, struct bw_list_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_watch_v6 SEC(".maps");

/* IPv4 pre-filter: one byte per /24 (class, "hosts inside" bit), mmapped by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE); /* the daemon writes the bytes through a shared mapping */
	__uint(max_entries, BW_V4_PRE_ELEMS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_v4_pre SEC(".maps");

/* IPv4 pre-filter summary: a bit per /22, two bits per /24 (BW_V4_SUM_*), mmapped by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, BW_V4_SUM_ELEMS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_v4_sum SEC(".maps");

/* IPv4 addresses whose class differs from their /24's: an open-addressed table (BW_V4_HOST_*),
 * mmapped by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, BW_V4_HOST_BUCKETS);
	__type(key, __u32);
	__type(value, struct bw_v4_host_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_v4_host SEC(".maps");

/* Pre-filter classes: class -> (effective action, deciding list). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BW_V4_CLASSES);
	__type(key, __u32);
	__type(value, struct bw_v4_class);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_v4_class SEC(".maps");

/* Hits and drops of packets decided by a pre-filter class, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BW_V4_CLASSES);
	__type(key, __u32);
	__type(value, struct bw_v4_cls_cnt);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_v4_cls_cnt SEC(".maps");

/* Run-time settings: banner actions per side, block-event interval. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bw_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_config SEC(".maps");

/* Watched TCP ports, indexed by port number (host order): BW_PORT_WATCHED. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BW_PORTS_MAX);
	__type(key, __u32);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_ports SEC(".maps");

/* Flows whose banner was dropped: the rest of them is dropped too (both directions). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_FLOWS_DEFAULT);
	__type(key, struct bw_flow_key);
	__type(value, struct bw_flow_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_flows SEC(".maps");

/* Outcome counters, one element per direction (enum bw_direction), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BW_DIR__MAX);
	__type(key, __u32);
	__type(value, struct bw_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_counters SEC(".maps");

/* Events to the daemon (struct bw_event records). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, BW_EVENTS_BYTES_DEFAULT);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_events SEC(".maps");

/* Block-event rate limiter: hashed per-source slots, per CPU (no cross-CPU contention). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BW_BLOCK_RL_SLOTS);
	__type(key, __u32);
	__type(value, struct bw_block_rl_slot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_block_rl SEC(".maps");

/* Block-event budget: events written in the current second, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bw_block_budget);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_block_bud SEC(".maps");

/* Servers' streams on watched ports, from the SYN-ACK to the version line (struct bw_stream). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_STREAM_DEFAULT);
	__type(key, struct bw_flow_key);
	__type(value, struct bw_stream);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_stream SEC(".maps");

/* Split banners: the start of "SSH-" seen in a short segment, waiting for the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_PARTIAL_DEFAULT);
	__type(key, struct bw_flow_key);
	__type(value, struct bw_partial);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_partial SEC(".maps");

/* HTTP CONNECT tunnels to watched ports, keyed proxy -> client. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_TUNNELS_DEFAULT);
	__type(key, struct bw_flow_key);
	__type(value, struct bw_tunnel);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_tunnels SEC(".maps");

/* Fragmented TCP datagrams on watched or proxy ports: their first fragment's TCP header. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_FRAGS_DEFAULT);
	__type(key, struct bw_frag_key);
	__type(value, struct bw_frag);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_frags SEC(".maps");

/* What the decision found out about a packet, for the event writer: scalars only, so it can be
 * handed to a global (separately verified) function. */
struct bw_match {
	__u32 ifindex;
	__u32 list_id;   /* remote's entry, 0 if unlisted */
	__u32 entry_ref;
	__u8 dir;
	__u8 list_action;
	__u8 prefixlen;
	__u8 detail; /* decided by the pre-filter: userspace fills entry_ref/prefixlen (BW_EVF_DETAIL) */
};

/* What the core object's banner stage is handed (see bw_stage). */
struct bw_stage_args {
	struct bw_pkt p;
	struct bw_match m;
};

/* The loops bpf_loop runs (the first-payload scan, the CONNECT parser) keep their state in a
 * per-CPU map element, not on the stack, and on purpose: the verifier knows nothing of a map
 * value's contents, so it checks a loop step for every value the state can hold. State on the
 * stack starts as constants it tracks, and verifiers before 6.7 (Debian 12's 6.1 among them) check
 * a bpf_loop step as if it ran once from there: code that only a later step reaches (the CONNECT
 * parser's digits after a ':') is then judged dead and removed. */
struct bw_scan_state {
	__u32 n;          /* bytes loaded into buf */
	__u32 mode;       /* enum bw_scan_mode */
	__u32 line_start;
	__s32 found;      /* offset of "SSH-", or -1 */
};

struct bw_connect_state {
	__u8 line[64];
	__u32 n;      /* bytes of line loaded */
	__u32 port;   /* digits after the current ':' */
	__u32 digits;
	__u8 colon;   /* inside a ':' group */
	__u8 bad;     /* the group's number passed 65535 */
	__u8 spaced;  /* the space that ends the target was seen */
	__u8 _pad0;
};

/* Per-CPU: a program runs to its end on its CPU before another can use the element (XDP in
 * softirq, TC egress with bottom halves off; not so on PREEMPT_RT kernels). */
struct bw_scratch {
	__u8 buf[BW_SCAN_MAX + 8]; /* a first payload (more than the 512-byte stack holds) */
	struct bw_scan_state scan;
	struct bw_connect_state connect;
	struct bw_stage_args stage;
	/* bw_frags' key and value: off the stack, which the main program's frame and the banner
	 * stage's share with the bpf_loop callback's within 512 bytes (6.1 counts all three). */
	struct bw_frag_key frag_key;
	struct bw_frag frag;
};

/* What bpf_loop hands a step (its context must be on the stack): the scratch element. */
struct bw_loop_arg {
	struct bw_scratch *s;
};

/* Per-CPU room and state for the bpf_loop scans, and the core object's stage arguments. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bw_scratch);
} bw_scratch SEC(".maps");

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

/* Where an event's banner bytes come from: `len` packet bytes at offset `off`, after the four
 * bytes "SSH-" when `lead` is set (a split banner whose start came in earlier segments). */
struct bw_banner_src {
	__u32 off;
	__u32 len;
	__u8 lead;
	__u8 match; /* enum bw_banner_match */
};

/* Packet bytes that may lie outside the linear data. Without bpf_xdp_load_bytes (core) an XDP
 * frame is one buffer, all of it linear: what the direct reads cannot reach is not there. */
static __always_inline long bw_load(void *ctx, int is_xdp, __u32 off, void *to, __u64 len)
{
	if (is_xdp)
		return BW_CORE ? -1 : bpf_xdp_load_bytes(ctx, off, to, len);
	return bpf_skb_load_bytes(ctx, off, to, len);
}

/* bw_load of n bytes, n checked right here against [1, max] on the register passed on.
 * Written for every verifier: clang folds `n == 0 || n > max` into one unsigned compare of n - 1
 * on a copy, which older verifiers (6.1's among them) do not relate back to n: they reject the
 * load as possibly 0 bytes. So the upper bound first, a barrier so the two checks cannot be merged,
 * and the lower bound as a signed compare: `n != 0` teaches an older verifier nothing, `n s> 0`
 * gives it the minimum of 1. */
static __always_inline long bw_load_upto(void *ctx, int is_xdp, __u32 off, __u8 *to, __u64 n,
					 __u64 max)
{
	barrier_var(n);
	if (n > max)
		return -1;
	barrier_var(n);
	if ((__s64)n <= 0)
		return -1;
	return bw_load(ctx, is_xdp, off, to, n);
}

/* The packet's linear data: [*data, *end). */
static __always_inline void bw_linear(void *ctx, int is_xdp, void **data, void **end)
{
	if (is_xdp) {
		*data = (void *)(long)((struct xdp_md *)ctx)->data;
		*end = (void *)(long)((struct xdp_md *)ctx)->data_end;
	} else {
		*data = (void *)(long)((struct __sk_buff *)ctx)->data;
		*end = (void *)(long)((struct __sk_buff *)ctx)->data_end;
	}
}

/* The payload's first hn bytes (hn in [1, 4]), read in place when the linear data holds them
 * (saves a helper call and a copy on every watched-port segment; and without
 * bpf_xdp_load_bytes, in the core object, it is the only way on XDP), through the helper
 * otherwise. */
static __always_inline long bw_head(void *ctx, int is_xdp, __u32 off, __u8 *head, __u64 hn)
{
	void *data, *end;

	bw_linear(ctx, is_xdp, &data, &end);
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
	return bw_load_upto(ctx, is_xdp, off, head, hn, 4);
}

/* Copies n packet bytes at `off` (n in [1, max], max a constant <= BW_BANNER_MAX) to `to` in
 * place, when the linear data holds them: fewer than 8 byte by byte, else in 8-byte words, the last
 * one overlapping its predecessor when n is not a multiple of 8. Returns -1 (nothing copied, or a
 * part) when it cannot: the caller then takes the load helper. Word loads and stores need not be
 * aligned: the verifier allows that where the CPU does (no BPF_F_STRICT_ALIGNMENT). */
static __always_inline int bw_read_direct(void *ctx, int is_xdp, __u32 off, __u8 *to, __u64 n,
					  __u64 max)
{
	void *data, *end;

	bw_linear(ctx, is_xdp, &data, &end);
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

/* Copies up to BW_BANNER_MAX bytes into the event: in place when the payload is linear, through the
 * XDP and TC load_bytes helpers otherwise, so payload in fragments / non-linear skb data is
 * reachable. */
static __always_inline void bw_copy_banner(void *ctx, int is_xdp, const struct bw_banner_src *b,
					   struct bw_event *ev)
{
	/* 64-bit: a 32-bit length gets zero-extended after the checks below, and the verifier then
	 * loses the bounds it learnt from them. */
	__u64 n = b->len;

	if (b->lead) {
		ev->banner[0] = 'S';
		ev->banner[1] = 'S';
		ev->banner[2] = 'H';
		ev->banner[3] = '-';
		ev->banner_len = 4;
		if (n > BW_BANNER_MAX - 4)
			n = BW_BANNER_MAX - 4;
		/* The verifier needs the length provably in [1, BW_BANNER_MAX - 4]. */
		n &= 0x3f;
		if (n == 0 || n > BW_BANNER_MAX - 4)
			return;
		if (bw_read_direct(ctx, is_xdp, b->off, ev->banner + 4, n, BW_BANNER_MAX - 4) == 0 ||
		    bw_load_upto(ctx, is_xdp, b->off, ev->banner + 4, n, BW_BANNER_MAX - 4) == 0)
			ev->banner_len = 4 + n;
		return;
	}
	if (n > BW_BANNER_MAX)
		n = BW_BANNER_MAX;
	n &= 0x7f;
	if (n == 0 || n > BW_BANNER_MAX)
		return;
	if (bw_read_direct(ctx, is_xdp, b->off, ev->banner, n, BW_BANNER_MAX) == 0 ||
	    bw_load_upto(ctx, is_xdp, b->off, ev->banner, n, BW_BANNER_MAX) == 0)
		ev->banner_len = n;
}

static __always_inline void bw_emit(void *ctx, int is_xdp, struct bw_counters *cnt,
				    const struct bw_pkt *p, const struct bw_match *m, __u8 kind,
				    __u8 verdict, __u8 side, __u32 suppressed, __u64 now,
				    const struct bw_banner_src *b)
{
	struct bw_event *ev = bpf_ringbuf_reserve(&bw_events, sizeof(*ev), 0);

	if (!ev) {
		cnt->events_lost++;
		return;
	}
	ev->ts_ns = now ? now : bpf_ktime_get_ns();
	ev->ifindex = m->ifindex;
	ev->suppressed = suppressed;
	ev->kind = kind;
	ev->direction = m->dir;
	ev->family = p->family;
	ev->verdict = verdict;
	ev->list_id = m->list_id;
	ev->entry_ref = m->entry_ref;
	ev->list_action = m->list_action;
	ev->prefixlen = m->prefixlen;
	/* The pre-filter gave the verdict: no trie walk here, the reader fills in the entry. */
	ev->flags = m->detail ? BW_EVF_DETAIL : 0;
	ev->l4proto = p->l4proto;
	ev->tcp_flags = p->tcp_flags;
	__builtin_memcpy(ev->saddr, p->saddr, 16);
	__builtin_memcpy(ev->daddr, p->daddr, 16);
	ev->sport = p->sport;
	ev->dport = p->dport;
	ev->banner_side = side;
	ev->banner_len = 0;
	ev->match = b ? b->match : 0;
	if (b)
		bw_copy_banner(ctx, is_xdp, b, ev);
	bpf_ringbuf_submit(ev, 0);
	cnt->events++;
}

static __always_inline __u32 bw_addr_hash(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return ((w[0] ^ w[1] ^ w[2] ^ w[3]) * 2654435761U) >> 22; /* 10 bits: BW_BLOCK_RL_SLOTS */
}

static __always_inline int bw_addr_eq(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* Block and watch events: at most one per remote address, kind and direction per interval on each
 * CPU, and at most the budget per second on each CPU, whatever the sources; the rest are counted.
 * A flood of connection starts from a watched source (the default policy watches a /24) is one
 * event a second, as a flood of blocked packets is. */
static __always_inline void bw_limited_event(void *ctx, int is_xdp, struct bw_counters *cnt,
					     const struct bw_pkt *p, const struct bw_match *m,
					     const struct bw_config *cfg, __u8 kind, __u8 verdict)
{
	const __u8 *a = bw_remote(p, m->dir);
	/* A slot per remote address, event kind and direction: a watched host's SYN-ACK to our SYN
	 * is not held back by the SYN's event, nor do the two evict each other. */
	__u8 owner = (kind << 1) | (m->dir & 1);
	__u32 slot = (bw_addr_hash(a) ^ (owner * 97U)) & (BW_BLOCK_RL_SLOTS - 1);
	struct bw_block_rl_slot *s = bpf_map_lookup_elem(&bw_block_rl, &slot);
	__u32 zero = 0;
	struct bw_block_budget *bb = bpf_map_lookup_elem(&bw_block_bud, &zero);
	__u32 held = 0;

	if (!s || !cfg || !bb)
		return;
	/* The coarse clock (jiffy resolution, since 5.11) is enough for an interval of a second; it
	 * is read once per jiffy on this CPU (a flood of drops would otherwise pay for it on every
	 * packet). Emitted events take the precise clock in bw_emit. */
	__u64 j = bpf_jiffies64();

	if (j != bb->jiffies) {
		bb->jiffies = j;
		bb->coarse_ns = BW_CORE ? bpf_ktime_get_ns() : bpf_ktime_get_coarse_ns();
	}
	__u64 now = bb->coarse_ns;
	int same = s->family == p->family && s->owner == owner && bw_addr_eq(s->addr, a);

	if (same && s->last_ns && now - s->last_ns < cfg->block_event_interval_ns) {
		s->suppressed++;
		cnt->events_suppressed++;
		return;
	}
	/* A source not seen within the interval: an event, if this CPU's budget for the second has
	 * one left. Over budget the slot is left as it is, so the source is reported once there is. */
	if (cfg->block_event_budget) {
		if (now - bb->window_ns >= 1000000000ULL) {
			bb->window_ns = now;
			bb->used = 0;
		}
		if (bb->used >= cfg->block_event_budget) {
			cnt->events_budget++;
			return;
		}
		bb->used++;
	}
	if (same)
		held = s->suppressed;
	__builtin_memcpy(s->addr, a, 16);
	s->family = p->family;
	s->owner = owner;
	s->last_ns = now;
	s->suppressed = 0;
	bw_emit(ctx, is_xdp, cnt, p, m, kind, verdict, 0, held, 0, 0);
}

static __always_inline __u8 bw_port_flags(__be16 port)
{
	__u32 k = bpf_ntohs(port);
	__u8 *v = bpf_map_lookup_elem(&bw_ports, &k);

	return v ? *v : 0;
}

/* Directional flow key: "a" is this packet's sender. */
static __always_inline void bw_dir_key(const struct bw_pkt *p, struct bw_flow_key *k, int reverse)
{
	if (!reverse) {
		__builtin_memcpy(k->a_addr, p->saddr, 16);
		__builtin_memcpy(k->b_addr, p->daddr, 16);
		k->a_port = p->sport;
		k->b_port = p->dport;
	} else {
		__builtin_memcpy(k->a_addr, p->daddr, 16);
		__builtin_memcpy(k->b_addr, p->saddr, 16);
		k->a_port = p->dport;
		k->b_port = p->sport;
	}
	k->family = p->family;
	k->_pad0[0] = k->_pad0[1] = k->_pad0[2] = 0;
}

/* "SSH-"[i] without a static table (libbpf 1.1 cannot finalize BTF for function-local statics). */
static __always_inline __u8 bw_ssh_char(__u32 i)
{
	return i < 2 ? 'S' : i == 2 ? 'H' : '-';
}

static __always_inline int bw_is_ssh(const __u8 *h)
{
	return h[0] == 'S' && h[1] == 'S' && h[2] == 'H' && h[3] == '-';
}

enum bw_scan_mode {
	BW_SCAN_LINES = 0,      /* "SSH-" at the start of a later line; lines of at most 255 bytes */
	BW_SCAN_AFTER_HEAD = 1, /* "SSH-" right after the blank line that ends an HTTP head */
};
/* bw_scan's answer when not an offset: nothing found, or (LINES) a line too long to be part of a
 * version exchange, which ends the search. */
#define BW_SCAN_NONE (-1)
#define BW_SCAN_TOO_LONG (-2)

/* One step of the scan, run by bpf_loop: the verifier checks the body once, however many steps
 * run (a plain 1024-step loop branches on every byte and exhausts the 1 M instruction budget). */
static long bw_scan_step(__u32 index, void *arg)
{
	struct bw_scratch *s = ((struct bw_loop_arg *)arg)->s;
	/* 64-bit and masked: BW_SCAN_MAX is a power of two, and the mask is a bound the verifier
	 * keeps (a compared 32-bit index is zero-extended into a register that forgot it). */
	__u64 i = index & (BW_SCAN_MAX - 1);

	if (!s)
		return 1;
	struct bw_scan_state *st = &s->scan;

	if (index >= BW_SCAN_MAX || i + 5 > st->n)
		return 1; /* stop */
	if (s->buf[i] != '\n')
		return 0;
	if (st->mode == BW_SCAN_LINES) {
		if (i - st->line_start > BW_LINE_MAX) {
			st->found = BW_SCAN_TOO_LONG;
			return 1; /* a line too long for a protocol-version exchange preamble */
		}
		st->line_start = i + 1;
		if (bw_is_ssh(&s->buf[i + 1])) {
			st->found = i + 1;
			return 1;
		}
		return 0;
	}
	if (i < 3)
		return 0;
	/* "\r\n\r" before this '\n', read from k = i - 3 up: masked, so the bound is on the index
	 * register itself (6.12's verifier learnt no lower bound on i from the compare above). */
	__u64 k = (i - 3) & (BW_SCAN_MAX - 1);

	if (s->buf[k] == '\r' && s->buf[k + 1] == '\n' && s->buf[k + 2] == '\r') {
		if (bw_is_ssh(&s->buf[i + 1]))
			st->found = i + 1;
		return 1; /* the head ends here either way */
	}
	return 0;
}

/* Loads up to BW_SCAN_MAX payload bytes into the per-CPU scratch buffer and scans them. */
static __always_inline int bw_scan(void *ctx, int is_xdp, __u32 payload_off, __u32 payload_len,
				   int mode)
{
	__u32 zero = 0;
	struct bw_scratch *s = bpf_map_lookup_elem(&bw_scratch, &zero);
	__u64 n = payload_len; /* 64-bit for the verifier, see bw_copy_banner */

	if (!s)
		return -1;
	if (n > BW_SCAN_MAX)
		n = BW_SCAN_MAX;
	n &= 0x7ff;
	if (n < 5 || n > BW_SCAN_MAX)
		return -1;
	if (bw_load_upto(ctx, is_xdp, payload_off, s->buf, n, BW_SCAN_MAX))
		return -1;
	struct bw_loop_arg arg = { .s = s };

	s->scan.n = (__u32)n;
	s->scan.mode = mode;
	s->scan.line_start = 0;
	s->scan.found = BW_SCAN_NONE;
	bpf_loop(BW_SCAN_MAX, bw_scan_step, &arg, 0);
	return s->scan.found;
}

/* The target runs to the first space, which must lie in the bytes read; the port is the digits
 * after its last ':' and nothing else ("host:443", "[2001:db8::1]:443"; a ']' or any other byte
 * after a colon means that colon did not start a port: "[2001:db8::22]"). One step per byte, under
 * bpf_loop: inlined, the per-byte state multiplies the verifier's paths past its budget. */
static long bw_connect_step(__u32 index, void *arg)
{
	struct bw_scratch *s = ((struct bw_loop_arg *)arg)->s;
	__u64 i = (index + 8) & 63;

	if (!s)
		return 1;
	struct bw_connect_state *st = &s->connect;

	if (index + 8 >= 64 || index + 8 >= st->n)
		return 1;
	__u8 c = st->line[i];

	if (c == ' ') {
		st->spaced = 1;
		return 1;
	}
	if (c == ':') {
		st->colon = 1;
		st->port = 0;
		st->digits = 0;
		st->bad = 0;
		return 0;
	}
	if (!st->colon)
		return 0;
	if (c >= '0' && c <= '9') {
		if (!st->bad) {
			st->port = st->port * 10 + (c - '0');
			if (st->port > 65535)
				st->bad = 1; /* this group only: a later ':' starts afresh */
		}
		st->digits++;
	} else {
		st->colon = 0;
	}
	return 0;
}

/* A client's "CONNECT host:port HTTP/1.x" to a proxy port: follow it when port is watched. */
static __always_inline void bw_note_connect(void *ctx, int is_xdp, struct bw_counters *cnt,
					    const struct bw_pkt *p)
{
	__u32 zero = 0;
	struct bw_scratch *s = bpf_map_lookup_elem(&bw_scratch, &zero);

	if (!s)
		return;
	struct bw_connect_state *st = &s->connect;
	__u64 n = p->payload_len > sizeof(st->line) ? sizeof(st->line) : p->payload_len;

	n &= 0x7f;
	if (n < 12 || n > sizeof(st->line))
		return;
	if (bw_load_upto(ctx, is_xdp, p->payload_off, st->line, n, sizeof(st->line)))
		return;
	if (st->line[4] != 'E' || st->line[5] != 'C' || st->line[6] != 'T' || st->line[7] != ' ')
		return;
	st->n = (__u32)n;
	st->port = 0;
	st->digits = 0;
	st->colon = 0;
	st->bad = 0;
	st->spaced = 0;
	struct bw_loop_arg arg = { .s = s };

	bpf_loop(sizeof(st->line) - 8, bw_connect_step, &arg, 0);
	if (!st->spaced || !st->colon || !st->digits || st->bad)
		return;
	__u32 port = st->port;
	__be16 bport = bpf_htons((__u16)port);

	if (!(bw_port_flags(bport) & BW_PORT_WATCHED))
		return;
	struct bw_flow_key k;
	struct bw_tunnel t = { .state = BW_TUNNEL_REQUESTED, .target_port = (__u16)port };

	bw_dir_key(p, &k, 1); /* proxy -> client */
	bpf_map_update_elem(&bw_tunnels, &k, &t, BPF_ANY);
	cnt->tunnels++;
}

static __always_inline void bw_flow_key(const struct bw_pkt *p, struct bw_flow_key *k)
{
	const __u32 *s = (const __u32 *)p->saddr, *d = (const __u32 *)p->daddr;
	int src_first = 1;

	/* Canonical order as the ABI states it: addresses compared in network byte order (word by
	 * word, most significant first), then ports as numbers. */
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (s[i] != d[i]) {
			src_first = bpf_ntohl(s[i]) < bpf_ntohl(d[i]);
			goto ordered;
		}
	}
	src_first = bpf_ntohs(p->sport) <= bpf_ntohs(p->dport);
ordered:
	if (src_first) {
		__builtin_memcpy(k->a_addr, p->saddr, 16);
		__builtin_memcpy(k->b_addr, p->daddr, 16);
		k->a_port = p->sport;
		k->b_port = p->dport;
	} else {
		__builtin_memcpy(k->a_addr, p->daddr, 16);
		__builtin_memcpy(k->b_addr, p->saddr, 16);
		k->a_port = p->dport;
		k->b_port = p->sport;
	}
	k->family = p->family;
	k->_pad0[0] = k->_pad0[1] = k->_pad0[2] = 0;
}

/* A banner found: count it, apply the side's action, report it. */
static __always_inline int bw_banner_hit(void *ctx, int is_xdp, struct bw_counters *cnt,
					 const struct bw_pkt *p, const struct bw_match *m, __u8 side,
					 __u8 act, const struct bw_banner_src *b)
{
	int verdict = BW_VERDICT_PASS;

	if (side == BW_SIDE_SERVER)
		cnt->banner_server++;
	else
		cnt->banner_client++;
	if (b->match == BW_MATCH_SPLIT)
		cnt->banner_split++;
	else if (b->match == BW_MATCH_PRELINES)
		cnt->banner_prelines++;
	else if (b->match == BW_MATCH_CONNECT)
		cnt->banner_connect++;
	else if (b->match == BW_MATCH_STREAM)
		cnt->banner_stream++;
	if (act == BW_BANNER_DROP) {
		struct bw_flow_key fk;
		struct bw_flow_value fv = { .since_ns = bpf_ktime_get_ns(), .packets = 0 };

		bw_flow_key(p, &fk);
		bpf_map_update_elem(&bw_flows, &fk, &fv, BPF_ANY);
		cnt->banner_drops++;
		verdict = BW_VERDICT_DROP;
	}
	bw_emit(ctx, is_xdp, cnt, p, m, BW_EV_BANNER, verdict, side, 0, 0, b);
	return verdict;
}

/* The first (up to four) bytes the receiver delivers from this segment when its stream continues
 * at payload offset `start`: the bytes from there on, less the urgent byte at payload offset `urg`
 * when it lies among them (without SO_OOBINLINE the receiver takes it out of the stream). Returns
 * how many it found (0..4); *span: the packet bytes they take up (one more with the urgent byte). */
static __always_inline __u32 bw_stream_head(void *ctx, int is_xdp, const struct bw_pkt *p,
					    __u32 start, __u32 urg, __u8 *head, __u32 *span)
{
	__u8 raw[8] = {};
	__u32 avail = p->payload_len - start;
	__u32 skip = urg >= start && urg < p->payload_len && urg - start < 4;
	/* 64-bit for the verifier, see bw_copy_banner. */
	__u64 n = avail < 4 + skip ? avail : 4 + skip;

	*span = 0;
	if (n == 0 || n > 5)
		return 0;
	if (bw_read_direct(ctx, is_xdp, p->payload_off + start, raw, n, 5) &&
	    bw_load_upto(ctx, is_xdp, p->payload_off + start, raw, n, 5))
		return 0;
	__u32 u = skip ? urg - start : 4;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u8 here = raw[i], next = raw[i + 1];

		/* Both loaded first: clang would otherwise pick the address (raw + i + (i >= u)),
		 * arithmetic on a stack pointer the verifier refuses. */
		barrier_var(here);
		barrier_var(next);
		head[i] = i < u ? here : next;
	}
	*span = (__u32)n;
	return (__u32)n - skip;
}

/* A server's stream on a watched port, as the receiving stack delivers it (RFC 793 / Linux's
 * tcp_data_queue and tcp_urg): bw_stream holds the sequence number of the byte the receiver
 * awaits. A segment holding that byte is read from there, however far before it the segment
 * starts (the bytes before are ones the receiver has delivered already and trims), with the
 * urgent byte taken out. Its first four bytes "SSH-": the banner. Otherwise, in the first payload,
 * TLS or HTTP ends the following; other text is reported (non-TLS) and searched for a version line
 * after other lines (RFC 4253 4.2), and so are the segments after it, in sequence, up to
 * BW_PRELINES_BYTES / BW_PRELINES_SEGS. Segments before or after the awaited byte change nothing
 * (retransmissions; out-of-order segments, a known limit). */
static __always_inline int bw_server_stream(void *ctx, int is_xdp, struct bw_counters *cnt,
					    const struct bw_pkt *p, const struct bw_match *m,
					    __u8 act_srv, int non_tls, struct bw_flow_key *k,
					    __u8 *head, struct bw_banner_src *b)
{
	/* k, head and b are the caller's: copies of its own would take stack that 6.1's verifier
	 * counts against 512 bytes together with the main program's and the bpf_loop callback's. */
	bw_dir_key(p, k, 0);
	struct bw_stream *st = bpf_map_lookup_elem(&bw_stream, k);

	if (!st)
		return BW_VERDICT_PASS;
	__u32 start = st->next_seq - p->seq; /* payload offset of the awaited byte */

	if (start >= p->payload_len)
		return BW_VERDICT_PASS;
	/* Linux's urgent pointer (tcp_stdurg off) points one past the urgent byte. */
	__u32 urg = (p->tcp_flags & 0x20) ? (p->urg_ptr ? p->urg_ptr - 1U : 0) : 0xffffffffU;
	__u32 span;
	__u32 got = bw_stream_head(ctx, is_xdp, p, start, urg, head, &span);

	b->off = p->payload_off + start;
	b->len = p->payload_len - start;
	b->lead = 0;
	b->match = BW_MATCH_DIRECT;

	if (got == 4 && bw_is_ssh(head) && act_srv != BW_BANNER_OFF) {
		bpf_map_delete_elem(&bw_stream, k);
		b->match = BW_MATCH_STREAM;
		if (span == 5) {
			/* The event's banner: "SSH-", then what follows the five bytes it spans. */
			b->lead = 1;
			b->off += 5;
			b->len -= 5;
		}
		return bw_banner_hit(ctx, is_xdp, cnt, p, m, BW_SIDE_SERVER, act_srv, b);
	}
	__u32 rest = p->payload_len - start;
	int first = st->state == BW_STREAM_FIRST, too_long = 0;

	/* A first payload of TLS records (content types 20..23) or an HTTP reply: nothing to follow. */
	if (first && ((got && head[0] >= 20 && head[0] <= 23) ||
		      (got == 4 && head[0] == 'H' && head[1] == 'T' && head[2] == 'T' &&
		       head[3] == 'P'))) {
		bpf_map_delete_elem(&bw_stream, k);
		return BW_VERDICT_PASS;
	}
	if (BW_HAVE_LOOP && act_srv != BW_BANNER_OFF) {
		int at = bw_scan(ctx, is_xdp, b->off, rest, BW_SCAN_LINES);

		if (at > 0) {
			bpf_map_delete_elem(&bw_stream, k);
			b->match = BW_MATCH_PRELINES;
			b->off += (__u32)at;
			b->len -= (__u32)at;
			return bw_banner_hit(ctx, is_xdp, cnt, p, m, BW_SIDE_SERVER, act_srv, b);
		}
		too_long = at == BW_SCAN_TOO_LONG;
	}
	if (first && non_tls) {
		cnt->non_tls++;
		bw_emit(ctx, is_xdp, cnt, p, m, BW_EV_NON_TLS, BW_VERDICT_PASS, BW_SIDE_SERVER, 0, 0,
			b);
	}
	if (!BW_HAVE_LOOP || act_srv == BW_BANNER_OFF || too_long) {
		bpf_map_delete_elem(&bw_stream, k);
		return BW_VERDICT_PASS;
	}
	/* No version line yet: follow the lines into the next segment, within the limits. */
	__u32 seen = st->seen + rest;

	if (seen >= BW_PRELINES_BYTES || st->segs + 1 >= BW_PRELINES_SEGS) {
		bpf_map_delete_elem(&bw_stream, k);
		return BW_VERDICT_PASS;
	}
	st->next_seq = p->seq + p->payload_len;
	st->seen = (__u16)seen;
	st->segs++;
	st->state = BW_STREAM_LINES;
	return BW_VERDICT_PASS;
}

/* Stage 3 of the decision: TCP with a watched or proxy port at either end. */
static __always_inline int bw_banners(void *ctx, int is_xdp, const struct bw_pkt *p,
				      const struct bw_match *m, __u8 sf, __u8 df)
{
	__u32 zero = 0, dk = m->dir;
	struct bw_counters *cnt = bpf_map_lookup_elem(&bw_counters, &dk);
	struct bw_config *cfg = bpf_map_lookup_elem(&bw_config, &zero);

	if (!cnt || !cfg)
		return BW_VERDICT_PASS;
	__u8 act_srv = (sf & BW_PORT_WATCHED) ? cfg->banner_action[BW_SIDE_SERVER] : BW_BANNER_OFF;
	__u8 act_cli = (df & BW_PORT_WATCHED) ? cfg->banner_action[BW_SIDE_CLIENT] : BW_BANNER_OFF;
	int non_tls = (sf & BW_PORT_WATCHED) && (cfg->flags & BW_CFG_NON_TLS);
	/* Tunnels carry a far server's banner: the server side's action applies. */
	__u8 act_tun = cfg->banner_action[BW_SIDE_SERVER];
	int proxy_srv = BW_HAVE_LOOP && (sf & BW_PORT_PROXY) && act_tun != BW_BANNER_OFF;
	int proxy_cli = BW_HAVE_LOOP && (df & BW_PORT_PROXY) && act_tun != BW_BANNER_OFF;
	struct bw_flow_key k;

	/* Either side's drop action may have recorded this flow, seen from either end. */
	if (cfg->banner_action[BW_SIDE_SERVER] == BW_BANNER_DROP ||
	    cfg->banner_action[BW_SIDE_CLIENT] == BW_BANNER_DROP) {
		bw_flow_key(p, &k);
		struct bw_flow_value *fv = bpf_map_lookup_elem(&bw_flows, &k);

		if (fv) {
			cnt->flow_drops++;
			__sync_fetch_and_add(&fv->packets, 1);
			return BW_VERDICT_DROP;
		}
	}
	if (act_srv == BW_BANNER_OFF && act_cli == BW_BANNER_OFF && !non_tls && !proxy_srv &&
	    !proxy_cli)
		return BW_VERDICT_PASS;

	/* A server's SYN-ACK: its stream starts at sequence number ISN + 1. */
	if ((p->tcp_flags & 0x12) == 0x12 && p->payload_len == 0) {
		if (act_srv != BW_BANNER_OFF || non_tls) {
			struct bw_stream st = { .next_seq = p->seq + 1, .state = BW_STREAM_FIRST };

			bw_dir_key(p, &k, 0);
			bpf_map_update_elem(&bw_stream, &k, &st, BPF_ANY);
		}
		return BW_VERDICT_PASS;
	}
	if (p->payload_len == 0)
		return BW_VERDICT_PASS;

	__u8 head[4] = {};
	__u64 hn = p->payload_len < 4 ? p->payload_len : 4;

	/* The verifier needs the length provably in [1, 4]. */
	hn &= 7;
	if (hn == 0 || hn > 4)
		return BW_VERDICT_PASS;
	if (bw_head(ctx, is_xdp, p->payload_off, head, hn))
		return BW_VERDICT_PASS;
	int ssh = hn == 4 && bw_is_ssh(head);
	struct bw_banner_src b = { .off = p->payload_off, .len = p->payload_len,
				   .match = BW_MATCH_DIRECT };

	/* A client asks a proxy for a tunnel. */
	if (proxy_cli && p->payload_len >= 12 && head[0] == 'C' && head[1] == 'O' &&
	    head[2] == 'N' && head[3] == 'N') {
		bw_note_connect(ctx, is_xdp, cnt, p);
		return BW_VERDICT_PASS;
	}
	/* A proxy answers on a tunnel to a watched port. */
	if (proxy_srv) {
		bw_dir_key(p, &k, 0);
		struct bw_tunnel *t = bpf_map_lookup_elem(&bw_tunnels, &k);

		if (t) {
			b.match = BW_MATCH_CONNECT;
			if (t->state == BW_TUNNEL_OPEN) {
				bpf_map_delete_elem(&bw_tunnels, &k);
				if (ssh)
					return bw_banner_hit(ctx, is_xdp, cnt, p, m, BW_SIDE_SERVER,
							     act_tun, &b);
				return BW_VERDICT_PASS;
			}
			/* "HTTP/1.x 200": open; the banner may follow in this very segment. */
			if (head[0] == 'H' && head[1] == 'T' && head[2] == 'T' && head[3] == 'P') {
				__u8 st[12];

				if (p->payload_len < sizeof(st) ||
				    bw_load(ctx, is_xdp, p->payload_off, st, sizeof(st)) ||
				    st[9] != '2' || st[10] != '0' || st[11] != '0') {
					bpf_map_delete_elem(&bw_tunnels, &k);
					return BW_VERDICT_PASS;
				}
				int at = bw_scan(ctx, is_xdp, p->payload_off, p->payload_len,
						 BW_SCAN_AFTER_HEAD);

				if (at > 0) {
					bpf_map_delete_elem(&bw_tunnels, &k);
					b.off = p->payload_off + (__u32)at;
					b.len = p->payload_len - (__u32)at;
					return bw_banner_hit(ctx, is_xdp, cnt, p, m, BW_SIDE_SERVER,
							     act_tun, &b);
				}
				t->state = BW_TUNNEL_OPEN;
			}
			return BW_VERDICT_PASS;
		}
	}
	if (act_srv == BW_BANNER_OFF && act_cli == BW_BANNER_OFF && !non_tls)
		return BW_VERDICT_PASS;
	__u8 side = act_srv != BW_BANNER_OFF ? BW_SIDE_SERVER : BW_SIDE_CLIENT;
	__u8 act = side == BW_SIDE_SERVER ? act_srv : act_cli;

	/* "SSH-" at offset 0: the seed's rule. */
	if (ssh && act != BW_BANNER_OFF)
		return bw_banner_hit(ctx, is_xdp, cnt, p, m, side, act, &b);
	/* A split banner: a segment shorter than four bytes that starts "SSH-" waits for the rest;
	 * only segments that could continue it ('S', 'H' or '-' first) look it up. */
	if (act != BW_BANNER_OFF && (head[0] == 'S' || head[0] == 'H' || head[0] == '-')) {
		bw_dir_key(p, &k, 0);
		struct bw_partial *pt = bpf_map_lookup_elem(&bw_partial, &k);
		__u32 have = 0;

		if (pt && pt->next_seq == p->seq)
			have = pt->len & 3;
		/* Bytes of this segment that must continue "SSH-" from position `have`. */
		__u32 need = 4 - have, got = hn < need ? hn : need;
		int ok = 1;

#pragma unroll
		for (int i = 0; i < 4; i++)
			if (i < got && head[i] != bw_ssh_char(have + i))
				ok = 0;
		if (ok && have + got == 4) {
			if (pt)
				bpf_map_delete_elem(&bw_partial, &k);
			if (have) {
				b.match = BW_MATCH_SPLIT;
				b.lead = 1;
				b.off = p->payload_off + got;
				b.len = p->payload_len - got;
			}
			return bw_banner_hit(ctx, is_xdp, cnt, p, m, side, act, &b);
		}
		if (ok && p->payload_len < 4 && have + got < 4) {
			struct bw_partial np = { .next_seq = p->seq + p->payload_len,
						 .len = (__u8)(have + got) };

			bpf_map_update_elem(&bw_partial, &k, &np, BPF_ANY);
			return BW_VERDICT_PASS;
		}
		if (pt)
			bpf_map_delete_elem(&bw_partial, &k);
	}
	/* A server's stream: its first bytes where the receiver puts them, the lines before its
	 * version line, the non-TLS flag. */
	if ((sf & BW_PORT_WATCHED) && (act_srv != BW_BANNER_OFF || non_tls))
		return bw_server_stream(ctx, is_xdp, cnt, p, m, act_srv, non_tls, &k, head, &b);
	return BW_VERDICT_PASS;
}

/* Stage 3 as global functions, one per program type: the verifier checks each once, on its own,
 * rather than once for every combination of facts the caller's paths carry (inlined, the banner
 * stage exhausts the 1 M instruction budget). bw_stage calls the one for the program. */
#if !BW_CORE
__noinline int bw_banners_xdp(struct xdp_md *ctx, const struct bw_pkt *p, const struct bw_match *m,
			      __u8 sf, __u8 df)
{
	if (!p || !m)
		return BW_VERDICT_PASS;
	return bw_banners(ctx, 1, p, m, sf, df);
}

__noinline int bw_banners_tc(struct __sk_buff *ctx, const struct bw_pkt *p,
			     const struct bw_match *m, __u8 sf, __u8 df)
{
	if (!p || !m)
		return BW_VERDICT_PASS;
	return bw_banners(ctx, 0, p, m, sf, df);
}

static __always_inline int bw_stage(void *ctx, int is_xdp, const struct bw_pkt *p,
				    const struct bw_match *m, __u8 sf, __u8 df)
{
	return is_xdp ? bw_banners_xdp(ctx, p, m, sf, df) : bw_banners_tc(ctx, p, m, sf, df);
}
#else
/* Before 5.12 a global function takes the context and scalars only: the core object hands the
 * packet and the match over in this CPU's scratch element. */
static __always_inline int bw_banners_scratch(void *ctx, int is_xdp, __u8 sf, __u8 df)
{
	__u32 zero = 0;
	struct bw_scratch *s = bpf_map_lookup_elem(&bw_scratch, &zero);

	if (!s)
		return BW_VERDICT_PASS;
	return bw_banners(ctx, is_xdp, &s->stage.p, &s->stage.m, sf, df);
}

__noinline int bw_banners_xdp(struct xdp_md *ctx, __u8 sf, __u8 df)
{
	return bw_banners_scratch(ctx, 1, sf, df);
}

__noinline int bw_banners_tc(struct __sk_buff *ctx, __u8 sf, __u8 df)
{
	return bw_banners_scratch(ctx, 0, sf, df);
}

static __always_inline int bw_stage(void *ctx, int is_xdp, const struct bw_pkt *p,
				    const struct bw_match *m, __u8 sf, __u8 df)
{
	__u32 zero = 0;
	struct bw_scratch *s = bpf_map_lookup_elem(&bw_scratch, &zero);

	if (!s)
		return BW_VERDICT_PASS;
	__builtin_memcpy(&s->stage.p, p, sizeof(*p));
	__builtin_memcpy(&s->stage.m, m, sizeof(*m));
	return is_xdp ? bw_banners_xdp(ctx, sf, df) : bw_banners_tc(ctx, sf, df);
}
#endif

/* This CPU's scratch element with bw_frags' key for `p` filled in (NULL if the lookup fails). */
static __always_inline struct bw_scratch *bw_frag_key(const struct bw_pkt *p)
{
	__u32 zero = 0;
	struct bw_scratch *s = bpf_map_lookup_elem(&bw_scratch, &zero);

	if (!s)
		return 0;
	__builtin_memcpy(s->frag_key.saddr, p->saddr, 16);
	__builtin_memcpy(s->frag_key.daddr, p->daddr, 16);
	s->frag_key.id = p->frag_id;
	s->frag_key.family = p->family;
	s->frag_key.proto = IPPROTO_TCP;
	s->frag_key._pad0[0] = s->frag_key._pad0[1] = 0;
	return s;
}

/* The first fragment of a TCP datagram on a watched or proxy port: its header, for the later
 * fragments (RFC 1858 / 3128: a first fragment may hold the header alone, the payload follows). */
static __always_inline void bw_frag_note(const struct bw_pkt *p)
{
	struct bw_scratch *s = bw_frag_key(p);

	if (!s)
		return;
	s->frag.sport = p->sport;
	s->frag.dport = p->dport;
	s->frag.seq = p->seq;
	s->frag.pay_start = (__u16)(p->payload_off - p->frag_start);
	s->frag.urg_ptr = p->urg_ptr;
	s->frag.tcp_flags = p->tcp_flags;
	s->frag._pad0[0] = s->frag._pad0[1] = s->frag._pad0[2] = 0;
	bpf_map_update_elem(&bw_frags, &s->frag_key, &s->frag, BPF_ANY);
}

/* A later fragment of a TCP datagram: the segment it belongs to, from its first fragment's record,
 * with the payload bytes it carries as the segment's (sequence number and urgent pointer moved to
 * where they start). 0 when it carries none or its first fragment was not seen. */
static __always_inline int bw_frag_resume(struct bw_pkt *p, struct bw_counters *cnt)
{
	struct bw_scratch *s = bw_frag_key(p);

	if (!s)
		return 0;
	struct bw_frag *f = bpf_map_lookup_elem(&bw_frags, &s->frag_key);

	if (!f) {
		cnt->frag_unmatched++;
		return 0;
	}
	__u32 end = (__u32)p->frag_off + p->payload_len;
	__u32 start = p->frag_off > f->pay_start ? p->frag_off : f->pay_start;

	if (end <= start)
		return 0; /* TCP header bytes only */
	__u32 moved = start - f->pay_start;

	p->sport = f->sport;
	p->dport = f->dport;
	p->seq = f->seq + moved;
	p->tcp_flags = f->tcp_flags;
	p->urg_ptr = f->urg_ptr > moved ? f->urg_ptr - moved : 0;
	if (!p->urg_ptr)
		p->tcp_flags &= ~0x20; /* the urgent byte lies before this fragment */
	p->payload_off += start - p->frag_off;
	p->payload_len = end - start;
	p->l4proto = IPPROTO_TCP;
	cnt->frag_followed++;
	return 1;
}

/* The whole decision. Returns enum bw_verdict; counters and events are side effects. */
static __always_inline int bw_handle(void *ctx, int is_xdp, struct bw_pkt *p, int parsed,
				     __u32 ifindex, int dir)
{
	__u32 k = dir;
	struct bw_counters *cnt = bpf_map_lookup_elem(&bw_counters, &k);
	struct bw_match m = { .ifindex = ifindex, .dir = dir };
	struct bw_list_value *entry;

	__u32 zero = 0;
	/* Read once: the unparsed action and pre-filter switch here, the event limits below. */
	const struct bw_config *cfg = bpf_map_lookup_elem(&bw_config, &zero);

	if (!cnt)
		return BW_VERDICT_PASS;
	cnt->packets++;
	switch (parsed) {
	case BW_PARSE_NON_IP:
		cnt->non_ip++;
		return BW_VERDICT_PASS;
	case BW_PARSE_BAD_L3:
	case BW_PARSE_NEED_PULL:
		cnt->malformed++;
		return BW_VERDICT_PASS;
	case BW_PARSE_VLAN_LIMIT:
		/* More tags than walked: no address to check, so the policy decides (fail closed under
		 * unparsed: drop; an alert needs addresses, so it is the counter alone here). */
		cnt->vlan_limit++;
		if (cfg && cfg->unparsed == BW_UNPARSED_DROP) {
			cnt->unparsed_drops++;
			return BW_VERDICT_DROP;
		}
		return BW_VERDICT_PASS;
	}
	if (p->family == BW_FAMILY_V4)
		cnt->ipv4++;
	else
		cnt->ipv6++;
	if (p->later_frag)
		cnt->fragments++;
	else if (parsed == BW_PARSE_EXT_LIMIT)
		cnt->v6_ext_limit++;
	else if (p->l4proto == IPPROTO_TCP)
		cnt->tcp++;
	else if (p->l4proto == IPPROTO_UDP)
		cnt->udp++;
	else
		cnt->other_l4++;
	if (parsed == BW_PARSE_BAD_L4)
		cnt->malformed++;

	/* 1. The remote address: safelist > block > watch, whatever else the packet carries. IPv4 with
	 * the pre-filter on: its class decides and the per-CPU class counters count; otherwise (class
	 * 15, IPv6, IPv4-mapped, pre-filter off) the trie decides and its entry counts. */
	__u32 cls = BW_V4_PRE_TRIE;
	struct bw_v4_cls_cnt *cc = 0;
	__u8 act = 0;

	if (p->family == BW_FAMILY_V4 && cfg && (cfg->flags & BW_CFG_PREFILTER))
		cls = bw_pre_class(p, dir);
	entry = 0;
	if (cls == BW_V4_PRE_TRIE) {
		entry = bw_lookup(p, dir);
		if (entry) {
			act = entry->action;
			m.list_id = entry->list_id;
			m.entry_ref = entry->entry_ref;
			m.list_action = act;
			m.prefixlen = entry->prefixlen;
		}
	} else if (cls) {
		struct bw_v4_class *c = bpf_map_lookup_elem(&bw_v4_class, &cls);

		cc = bpf_map_lookup_elem(&bw_v4_cls_cnt, &cls);
		if (c) {
			act = c->action;
			m.list_id = c->list_id;
			m.list_action = act;
			m.detail = 1;
		}
	}
	if (act & BW_ACTION_SAFELIST) {
		cnt->safelist_passes++;
		return BW_VERDICT_PASS;
	}
	if (act & BW_ACTION_BLOCK) {
		cnt->block_drops++;
		if (entry)
			__sync_fetch_and_add(&entry->drops, 1);
		else if (cc)
			cc->drops++;
		bw_limited_event(ctx, is_xdp, cnt, p, &m, cfg, BW_EV_BLOCK, BW_VERDICT_DROP);
		return BW_VERDICT_DROP;
	}
	/* A longer IPv6 header chain than walked: the transport header, ports and payload are unknown
	 * (a banner could hide behind it), so the policy decides. */
	if (parsed == BW_PARSE_EXT_LIMIT && cfg && cfg->unparsed != BW_UNPARSED_PASS) {
		if (cfg->unparsed == BW_UNPARSED_DROP) {
			cnt->unparsed_drops++;
			return BW_VERDICT_DROP;
		}
		bw_limited_event(ctx, is_xdp, cnt, p, &m, cfg, BW_EV_UNPARSED, BW_VERDICT_PASS);
		return BW_VERDICT_PASS;
	}
	if (p->later_frag) {
		/* A later fragment of a TCP datagram: its payload goes to the banner stage as its
		 * segment's (stage 2 saw the segment's flags in the first fragment). */
		if (parsed != BW_PARSE_OK || p->frag_proto != IPPROTO_TCP || !bw_frag_resume(p, cnt))
			return BW_VERDICT_PASS;
	} else {
		if (parsed != BW_PARSE_OK || p->l4proto != IPPROTO_TCP)
			return BW_VERDICT_PASS;
		/* 2. Connection starts with a watched remote. */
		if ((act & BW_ACTION_WATCH) && (p->tcp_flags & 0x02 /* SYN */)) {
			cnt->watch_hits++;
			if (entry)
				__sync_fetch_and_add(&entry->hits, 1);
			else if (cc)
				cc->hits++;
			bw_limited_event(ctx, is_xdp, cnt, p, &m, cfg, BW_EV_WATCH, BW_VERDICT_PASS);
		}
	}

	/* 3. Banners on watched ports, and tunnels through proxy ports. */
	__u8 sf = bw_port_flags(p->sport), df = bw_port_flags(p->dport);

	if (!((sf | df) & (BW_PORT_WATCHED | BW_PORT_PROXY)))
		return BW_VERDICT_PASS;
	if (p->frag_more && !p->later_frag)
		bw_frag_note(p);
	return bw_stage(ctx, is_xdp, p, &m, sf, df);
}

SEC("xdp")
int bw_xdp_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bw_pkt p = {};
	/* Headers are read directly; a frame's headers are all in its first buffer. */
	int parsed = bw_parse(data, data_end, data_end - data, &p);

#ifdef BW_TEST_REJECT
	/* tests/bpf/loader_test.cpp only: a packet read without a bounds check, which every verifier
	 * refuses, to see how the daemon reports a rejected program. */
	if (*(volatile __u8 *)(data + 100) == 0x42)
		return XDP_DROP;
#endif

	return bw_handle(ctx, 1, &p, parsed, ctx->ingress_ifindex, BW_DIR_INGRESS) ==
			       BW_VERDICT_DROP
		       ? XDP_DROP
		       : XDP_PASS;
}

SEC("tc")
int bw_tc_egress(struct __sk_buff *skb)
{
	struct bw_pkt p = {};
	int parsed = bw_parse((void *)(long)skb->data, (void *)(long)skb->data_end, skb->len, &p);

	if (parsed == BW_PARSE_NEED_PULL) {
		/* Headers reach into non-linear data: make up to 256 bytes linear and parse again. */
		__u32 want = skb->len < 256 ? skb->len : 256;

		if (bpf_skb_pull_data(skb, want) == 0) {
			__builtin_memset(&p, 0, sizeof(p));
			parsed = bw_parse((void *)(long)skb->data, (void *)(long)skb->data_end,
					  skb->len, &p);
		}
	}
	return bw_handle(skb, 0, &p, parsed, skb->ifindex, BW_DIR_EGRESS) == BW_VERDICT_DROP
		       ? TC_ACT_SHOT
		       : TC_ACT_OK;
}
