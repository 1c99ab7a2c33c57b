/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * frags.bpf.h — TCP over IP fragments: the first fragment's TCP header is noted in bw_frags
 * (keyed by addresses, protocol and IP id, as the receiver reassembles), so that a later
 * fragment's payload is checked as its segment's (RFC 1858 / RFC 3128: a first fragment may hold
 * the header alone).
 */
#ifndef BANNERWATCH_FRAGS_BPF_H
#define BANNERWATCH_FRAGS_BPF_H

#include "maps.bpf.h"

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

#endif /* BANNERWATCH_FRAGS_BPF_H */
