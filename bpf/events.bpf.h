/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * events.bpf.h — events to the daemon through the ring buffer (struct bw_event): bw_emit writes
 * one, with the banner's bytes where the packet has them; bw_limited_event holds block, watch and
 * unparsed events to one per remote address and interval, and a budget per second, per CPU.
 * Needs the context layer (ctx_*.bpf.h) included first.
 */
#ifndef BANNERWATCH_EVENTS_BPF_H
#define BANNERWATCH_EVENTS_BPF_H

#include "lists.bpf.h"
#include "maps.bpf.h"
#include "read.bpf.h"

/* Where an event's banner bytes come from: `len` packet bytes at offset `off`, after the four
 * bytes "SSH-" when `lead` is set (a split banner whose start came in earlier segments). */
struct bw_banner_src {
	__u32 off;
	__u32 len;
	__u8 lead;
	__u8 match; /* enum bw_banner_match */
};

/* Copies up to BW_BANNER_MAX bytes into the event: in place when the payload is linear, through the
 * XDP and TC load_bytes helpers otherwise, so payload in fragments / non-linear skb data is
 * reachable. */
static __always_inline void bw_copy_banner(struct bw_ctx *ctx, const struct bw_banner_src *b,
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
		if (bw_read_direct(ctx, b->off, ev->banner + 4, n, BW_BANNER_MAX - 4) == 0 ||
		    bw_load_upto(ctx, b->off, ev->banner + 4, n, BW_BANNER_MAX - 4) == 0)
			ev->banner_len = 4 + n;
		return;
	}
	if (n > BW_BANNER_MAX)
		n = BW_BANNER_MAX;
	n &= 0x7f;
	if (n == 0 || n > BW_BANNER_MAX)
		return;
	if (bw_read_direct(ctx, b->off, ev->banner, n, BW_BANNER_MAX) == 0 ||
	    bw_load_upto(ctx, b->off, ev->banner, n, BW_BANNER_MAX) == 0)
		ev->banner_len = n;
}

static __always_inline void bw_emit(struct bw_ctx *ctx, struct bw_counters *cnt,
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
		bw_copy_banner(ctx, b, ev);
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
static __always_inline void bw_limited_event(struct bw_ctx *ctx, struct bw_counters *cnt,
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
	bw_emit(ctx, cnt, p, m, kind, verdict, 0, held, 0, 0);
}

#endif /* BANNERWATCH_EVENTS_BPF_H */
