/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * banner.bpf.h — stage 3 of the decision: TCP with a watched or proxy port at either end.
 *
 * "SSH-" where the receiver delivers it: at payload offset zero (the seed's rule), split over
 * segments (bw_partial), at a server's stream start however the segment holding it is shaped
 * (overlap, urgent byte; bw_stream from the SYN-ACK), after other lines before a server's version
 * line (RFC 4253 4.2, across segments), and through HTTP CONNECT tunnels of proxy ports
 * (bw_tunnels). A server's first payload that is neither TLS nor HTTP may be reported (non-TLS);
 * flows whose banner was dropped are dropped whole (bw_flows). Needs the context layer
 * (ctx_*.bpf.h) included first.
 */
#ifndef BANNERWATCH_BANNER_BPF_H
#define BANNERWATCH_BANNER_BPF_H

#include "events.bpf.h"
#include "maps.bpf.h"
#include "read.bpf.h"
#include "variant.bpf.h"

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
static __always_inline int bw_scan(struct bw_ctx *ctx, __u32 payload_off, __u32 payload_len,
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
	if (bw_load_upto(ctx, payload_off, s->buf, n, BW_SCAN_MAX))
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
static __always_inline void bw_note_connect(struct bw_ctx *ctx, struct bw_counters *cnt,
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
	if (bw_load_upto(ctx, p->payload_off, st->line, n, sizeof(st->line)))
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
	bw_dir_key(p, k, !src_first);
}

/* A banner found: count it, apply the side's action, report it. */
static __always_inline int bw_banner_hit(struct bw_ctx *ctx, struct bw_counters *cnt,
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
	bw_emit(ctx, cnt, p, m, BW_EV_BANNER, verdict, side, 0, 0, b);
	return verdict;
}

/* The first (up to four) bytes the receiver delivers from this segment when its stream continues
 * at payload offset `start`: the bytes from there on, less the urgent byte at payload offset `urg`
 * when it lies among them (without SO_OOBINLINE the receiver takes it out of the stream). Returns
 * how many it found (0..4); *span: the packet bytes they take up (one more with the urgent byte). */
static __always_inline __u32 bw_stream_head(struct bw_ctx *ctx, const struct bw_pkt *p,
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
	if (bw_read_direct(ctx, p->payload_off + start, raw, n, 5) &&
	    bw_load_upto(ctx, p->payload_off + start, raw, n, 5))
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
static __always_inline int bw_server_stream(struct bw_ctx *ctx, struct bw_counters *cnt,
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
	__u32 got = bw_stream_head(ctx, p, start, urg, head, &span);

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
		return bw_banner_hit(ctx, cnt, p, m, BW_SIDE_SERVER, act_srv, b);
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
		int at = bw_scan(ctx, b->off, rest, BW_SCAN_LINES);

		if (at > 0) {
			bpf_map_delete_elem(&bw_stream, k);
			b->match = BW_MATCH_PRELINES;
			b->off += (__u32)at;
			b->len -= (__u32)at;
			return bw_banner_hit(ctx, cnt, p, m, BW_SIDE_SERVER, act_srv, b);
		}
		too_long = at == BW_SCAN_TOO_LONG;
	}
	if (first && non_tls) {
		cnt->non_tls++;
		bw_emit(ctx, cnt, p, m, BW_EV_NON_TLS, BW_VERDICT_PASS, BW_SIDE_SERVER, 0, 0,
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

/* Flows whose banner was dropped (either side's drop action may have recorded the flow, seen from
 * either end): the rest of them is dropped too. */
static __always_inline int bw_dropped_flow(const struct bw_pkt *p, const struct bw_config *cfg,
					   struct bw_counters *cnt, struct bw_flow_key *k)
{
	if (cfg->banner_action[BW_SIDE_SERVER] != BW_BANNER_DROP &&
	    cfg->banner_action[BW_SIDE_CLIENT] != BW_BANNER_DROP)
		return 0;
	bw_flow_key(p, k);
	struct bw_flow_value *fv = bpf_map_lookup_elem(&bw_flows, k);

	if (!fv)
		return 0;
	cnt->flow_drops++;
	__sync_fetch_and_add(&fv->packets, 1);
	return 1;
}

/* Stage 3 of the decision: TCP with a watched or proxy port at either end. A segment goes to the
 * first of these that claims it: a flow already dropped (bw_dropped_flow); a server's SYN-ACK (its
 * stream starts); a client's CONNECT to a proxy (bw_note_connect); a proxy's answer on a tunnel;
 * "SSH-" at offset zero (the seed's rule); a split banner; a server's stream (bw_server_stream).
 * The tunnel answer and the split banner stay inline on purpose: as functions of their own (even
 * inlined) clang lays out 8 more bytes of this frame, past what 6.1's stack rule leaves (the
 * program's frame, this one's and the bpf_loop callback's, each rounded up to 32, within 512;
 * tests/bpf/verifier_test.cpp), and a "not mine, go on" answer between parts cost 6.1's verifier
 * 4.5 % more work. */
static __always_inline int bw_banners(struct bw_ctx *ctx, const struct bw_pkt *p,
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

	if (bw_dropped_flow(p, cfg, cnt, &k))
		return BW_VERDICT_DROP;
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
	if (bw_head(ctx, p->payload_off, head, hn))
		return BW_VERDICT_PASS;
	int ssh = hn == 4 && bw_is_ssh(head);
	struct bw_banner_src b = { .off = p->payload_off, .len = p->payload_len,
				   .match = BW_MATCH_DIRECT };

	/* A client asks a proxy for a tunnel. */
	if (proxy_cli && p->payload_len >= 12 && head[0] == 'C' && head[1] == 'O' &&
	    head[2] == 'N' && head[3] == 'N') {
		bw_note_connect(ctx, cnt, p);
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
					return bw_banner_hit(ctx, cnt, p, m, BW_SIDE_SERVER,
							     act_tun, &b);
				return BW_VERDICT_PASS;
			}
			/* "HTTP/1.x 200": open; the banner may follow in this very segment. */
			if (head[0] == 'H' && head[1] == 'T' && head[2] == 'T' && head[3] == 'P') {
				__u8 st[12];

				if (p->payload_len < sizeof(st) ||
				    ctx_load_bytes(ctx, p->payload_off, st, sizeof(st)) ||
				    st[9] != '2' || st[10] != '0' || st[11] != '0') {
					bpf_map_delete_elem(&bw_tunnels, &k);
					return BW_VERDICT_PASS;
				}
				int at = bw_scan(ctx, p->payload_off, p->payload_len,
						 BW_SCAN_AFTER_HEAD);

				if (at > 0) {
					bpf_map_delete_elem(&bw_tunnels, &k);
					b.off = p->payload_off + (__u32)at;
					b.len = p->payload_len - (__u32)at;
					return bw_banner_hit(ctx, cnt, p, m, BW_SIDE_SERVER,
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
		return bw_banner_hit(ctx, cnt, p, m, side, act, &b);
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
			return bw_banner_hit(ctx, cnt, p, m, side, act, &b);
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
		return bw_server_stream(ctx, cnt, p, m, act_srv, non_tls, &k, head, &b);
	return BW_VERDICT_PASS;
}

/* Stage 3 as a global function (named by the context layer: bw_banners_xdp, bw_banners_tc): the
 * verifier checks it once, on its own, rather than once for every combination of facts the
 * caller's paths carry (inlined, the banner stage exhausts the 1 M instruction budget). */
#if !BW_CORE
__noinline int BW_STAGE_FN(struct bw_ctx *ctx, const struct bw_pkt *p, const struct bw_match *m,
			   __u8 sf, __u8 df)
{
	if (!p || !m)
		return BW_VERDICT_PASS;
	return bw_banners(ctx, p, m, sf, df);
}

static __always_inline int bw_stage(struct bw_ctx *ctx, const struct bw_pkt *p,
				    const struct bw_match *m, __u8 sf, __u8 df)
{
	return BW_STAGE_FN(ctx, p, m, sf, df);
}
#else
/* Before 5.12 a global function takes the context and scalars only: the core object hands the
 * packet and the match over in this CPU's scratch element. */
__noinline int BW_STAGE_FN(struct bw_ctx *ctx, __u8 sf, __u8 df)
{
	__u32 zero = 0;
	struct bw_scratch *s = bpf_map_lookup_elem(&bw_scratch, &zero);

	if (!s)
		return BW_VERDICT_PASS;
	return bw_banners(ctx, &s->stage.p, &s->stage.m, sf, df);
}

static __always_inline int bw_stage(struct bw_ctx *ctx, const struct bw_pkt *p,
				    const struct bw_match *m, __u8 sf, __u8 df)
{
	__u32 zero = 0;
	struct bw_scratch *s = bpf_map_lookup_elem(&bw_scratch, &zero);

	if (!s)
		return BW_VERDICT_PASS;
	__builtin_memcpy(&s->stage.p, p, sizeof(*p));
	__builtin_memcpy(&s->stage.m, m, sizeof(*m));
	return BW_STAGE_FN(ctx, sf, df);
}
#endif

#endif /* BANNERWATCH_BANNER_BPF_H */
