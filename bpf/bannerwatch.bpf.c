// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bannerwatch.bpf.c — the data plane: an XDP program for ingress and a TC (clsact) program for
 * egress, sharing every map, the counters and the ring buffer.
 *
 * For each frame: parse (parse.bpf.h); look the remote address up in the watchlists (the source on
 * ingress, the destination on egress); safelist -> pass, block -> drop; then, on watched TCP ports,
 * drop the rest of banner-dropped flows and match "SSH-" at payload offset zero. The verdict is
 * decided before any event is written; a full ring buffer only bumps events_lost.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "bannerwatch_abi.h"
#include "parse.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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

/* What the decision found out about a packet, for the event writer. */
struct bw_match {
	struct bw_list_value *entry; /* remote's watchlist entry, NULL if unlisted */
	__u32 ifindex;
	__u8 dir;
};

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

/* Copies up to BW_BANNER_MAX payload bytes into the event. XDP and TC read payload through their
 * load_bytes helpers so payload in fragments / non-linear skb data is reachable. */
static __always_inline void bw_copy_banner(void *ctx, int is_xdp, const struct bw_pkt *p,
					   struct bw_event *ev)
{
	__u32 n = p->payload_len;

	if (n > BW_BANNER_MAX)
		n = BW_BANNER_MAX;
	/* The verifier needs the length provably in [1, BW_BANNER_MAX]. */
	n &= 0x7f;
	if (n == 0 || n > BW_BANNER_MAX)
		return;
	long r = is_xdp ? bpf_xdp_load_bytes(ctx, p->payload_off, ev->banner, n)
			: bpf_skb_load_bytes(ctx, p->payload_off, ev->banner, n);
	if (r == 0)
		ev->banner_len = n;
}

static __always_inline void bw_emit(void *ctx, int is_xdp, struct bw_counters *cnt,
				    const struct bw_pkt *p, const struct bw_match *m, __u8 kind,
				    __u8 verdict, __u8 side, __u32 suppressed, __u64 now)
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
	if (m->entry) {
		ev->list_id = m->entry->list_id;
		ev->entry_ref = m->entry->entry_ref;
		ev->list_action = m->entry->action;
		ev->prefixlen = m->entry->prefixlen;
	} else {
		ev->list_id = 0;
		ev->entry_ref = 0;
		ev->list_action = BW_ACTION_NONE;
		ev->prefixlen = 0;
	}
	ev->l4proto = p->l4proto;
	ev->tcp_flags = p->tcp_flags;
	__builtin_memcpy(ev->saddr, p->saddr, 16);
	__builtin_memcpy(ev->daddr, p->daddr, 16);
	ev->sport = p->sport;
	ev->dport = p->dport;
	ev->banner_side = side;
	ev->banner_len = 0;
	ev->_pad0 = 0;
	if (kind == BW_EV_BANNER)
		bw_copy_banner(ctx, is_xdp, p, ev);
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

/* At most one block event per remote address per interval on each CPU; the rest are counted. */
static __always_inline void bw_block_event(void *ctx, int is_xdp, struct bw_counters *cnt,
					   const struct bw_pkt *p, const struct bw_match *m)
{
	const __u8 *a = bw_remote(p, m->dir);
	__u32 slot = bw_addr_hash(a) & (BW_BLOCK_RL_SLOTS - 1);
	struct bw_block_rl_slot *s = bpf_map_lookup_elem(&bw_block_rl, &slot);
	__u32 zero = 0;
	struct bw_config *cfg = bpf_map_lookup_elem(&bw_config, &zero);
	__u64 now = bpf_ktime_get_ns();
	__u32 held = 0;

	if (!s || !cfg)
		return;
	int same = s->family == p->family && bw_addr_eq(s->addr, a);

	if (same && s->last_ns && now - s->last_ns < cfg->block_event_interval_ns) {
		s->suppressed++;
		cnt->events_suppressed++;
		return;
	}
	if (same)
		held = s->suppressed;
	__builtin_memcpy(s->addr, a, 16);
	s->family = p->family;
	s->last_ns = now;
	s->suppressed = 0;
	bw_emit(ctx, is_xdp, cnt, p, m, BW_EV_BLOCK, BW_VERDICT_DROP, 0, held, now);
}

static __always_inline int bw_port_watched(__be16 port)
{
	__u32 k = bpf_ntohs(port);
	__u8 *v = bpf_map_lookup_elem(&bw_ports, &k);

	return v && (*v & BW_PORT_WATCHED);
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

/* The whole decision. Returns enum bw_verdict; counters and events are side effects. */
static __always_inline int bw_handle(void *ctx, int is_xdp, struct bw_pkt *p, int parsed,
				     __u32 ifindex, int dir)
{
	__u32 k = dir, zero = 0;
	struct bw_counters *cnt = bpf_map_lookup_elem(&bw_counters, &k);
	struct bw_match m = { .entry = 0, .ifindex = ifindex, .dir = dir };

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

	/* 1. The remote address: safelist > block > watch, whatever else the packet carries. */
	m.entry = bw_lookup(p, dir);
	if (m.entry) {
		__u8 act = m.entry->action;

		if (act & BW_ACTION_SAFELIST) {
			cnt->safelist_passes++;
			return BW_VERDICT_PASS;
		}
		if (act & BW_ACTION_BLOCK) {
			cnt->block_drops++;
			__sync_fetch_and_add(&m.entry->drops, 1);
			bw_block_event(ctx, is_xdp, cnt, p, &m);
			return BW_VERDICT_DROP;
		}
	}
	if (parsed != BW_PARSE_OK || p->l4proto != IPPROTO_TCP)
		return BW_VERDICT_PASS;

	/* 2. Connection starts with a watched remote. */
	if (m.entry && (m.entry->action & BW_ACTION_WATCH) && (p->tcp_flags & 0x02 /* SYN */)) {
		cnt->watch_hits++;
		__sync_fetch_and_add(&m.entry->hits, 1);
		bw_emit(ctx, is_xdp, cnt, p, &m, BW_EV_WATCH, BW_VERDICT_PASS, 0, 0, 0);
	}

	/* 3. Banners on watched ports. */
	int sw = bw_port_watched(p->sport), dw = bw_port_watched(p->dport);

	if (!sw && !dw)
		return BW_VERDICT_PASS;
	struct bw_config *cfg = bpf_map_lookup_elem(&bw_config, &zero);

	if (!cfg)
		return BW_VERDICT_PASS;
	__u8 act_srv = sw ? cfg->banner_action[BW_SIDE_SERVER] : BW_BANNER_OFF;
	__u8 act_cli = dw ? cfg->banner_action[BW_SIDE_CLIENT] : BW_BANNER_OFF;

	/* Either side's drop action may have recorded this flow, seen from either end. */
	if (cfg->banner_action[BW_SIDE_SERVER] == BW_BANNER_DROP ||
	    cfg->banner_action[BW_SIDE_CLIENT] == BW_BANNER_DROP) {
		struct bw_flow_key fk;

		bw_flow_key(p, &fk);
		struct bw_flow_value *fv = bpf_map_lookup_elem(&bw_flows, &fk);

		if (fv) {
			cnt->flow_drops++;
			__sync_fetch_and_add(&fv->packets, 1);
			return BW_VERDICT_DROP;
		}
	}
	if (act_srv == BW_BANNER_OFF && act_cli == BW_BANNER_OFF)
		return BW_VERDICT_PASS;
	if (p->payload_len < 4)
		return BW_VERDICT_PASS;

	__u8 head[4];
	long r = is_xdp ? bpf_xdp_load_bytes(ctx, p->payload_off, head, 4)
			: bpf_skb_load_bytes(ctx, p->payload_off, head, 4);

	if (r || head[0] != 'S' || head[1] != 'S' || head[2] != 'H' || head[3] != '-')
		return BW_VERDICT_PASS;

	__u8 side = act_srv != BW_BANNER_OFF ? BW_SIDE_SERVER : BW_SIDE_CLIENT;
	__u8 act = side == BW_SIDE_SERVER ? act_srv : act_cli;
	int verdict = BW_VERDICT_PASS;

	if (side == BW_SIDE_SERVER)
		cnt->banner_server++;
	else
		cnt->banner_client++;
	if (act == BW_BANNER_DROP) {
		struct bw_flow_key fk;
		struct bw_flow_value fv = { .since_ns = bpf_ktime_get_ns(), .packets = 0 };

		bw_flow_key(p, &fk);
		bpf_map_update_elem(&bw_flows, &fk, &fv, BPF_ANY);
		cnt->banner_drops++;
		verdict = BW_VERDICT_DROP;
	}
	bw_emit(ctx, is_xdp, cnt, p, &m, BW_EV_BANNER, verdict, side, 0, 0);
	return verdict;
}

SEC("xdp")
int bw_xdp_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bw_pkt p = {};
	/* Headers are read directly; a frame's headers are all in its first buffer. */
	int parsed = bw_parse(data, data_end, data_end - data, &p);

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
