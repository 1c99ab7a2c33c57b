/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * decide.bpf.h — the whole decision for one packet, shared by both programs (bw_handle).
 *
 * Parse results first (non-IP, malformed, more VLAN tags than walked); then 1. the remote address
 * (the source on ingress, the destination on egress) in the watchlists: safelist -> pass,
 * block -> drop, whatever else the packet carries; more IPv6 extension headers than walked -> the
 * policy's `unparsed` action (pass, alert, drop); 2. connection starts with a watched remote ->
 * a watch event; 3. TCP on watched or proxy ports -> the banner stage (banner.bpf.h), later IP
 * fragments as their segment's (frags.bpf.h). The verdict is decided before any event is written;
 * a full ring buffer only bumps events_lost. Needs the context layer (ctx_*.bpf.h) included first.
 */
#ifndef BANNERWATCH_DECIDE_BPF_H
#define BANNERWATCH_DECIDE_BPF_H

#include "banner.bpf.h"
#include "events.bpf.h"
#include "frags.bpf.h"
#include "lists.bpf.h"
#include "maps.bpf.h"
#include "parse.bpf.h"

/* The whole decision. Returns enum bw_verdict; counters and events are side effects. */
static __always_inline int bw_handle(struct bw_ctx *ctx, struct bw_pkt *p, int parsed,
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
		bw_limited_event(ctx, cnt, p, &m, cfg, BW_EV_BLOCK, BW_VERDICT_DROP);
		return BW_VERDICT_DROP;
	}
	/* A longer IPv6 header chain than walked: the transport header, ports and payload are unknown
	 * (a banner could hide behind it), so the policy decides. */
	if (parsed == BW_PARSE_EXT_LIMIT && cfg && cfg->unparsed != BW_UNPARSED_PASS) {
		if (cfg->unparsed == BW_UNPARSED_DROP) {
			cnt->unparsed_drops++;
			return BW_VERDICT_DROP;
		}
		bw_limited_event(ctx, cnt, p, &m, cfg, BW_EV_UNPARSED, BW_VERDICT_PASS);
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
			bw_limited_event(ctx, cnt, p, &m, cfg, BW_EV_WATCH, BW_VERDICT_PASS);
		}
	}

	/* 3. Banners on watched ports, and tunnels through proxy ports. */
	__u8 sf = bw_port_flags(p->sport), df = bw_port_flags(p->dport);

	if (!((sf | df) & (BW_PORT_WATCHED | BW_PORT_PROXY)))
		return BW_VERDICT_PASS;
	if (p->frag_more && !p->later_frag)
		bw_frag_note(p);
	return bw_stage(ctx, p, &m, sf, df);
}

#endif /* BANNERWATCH_DECIDE_BPF_H */
