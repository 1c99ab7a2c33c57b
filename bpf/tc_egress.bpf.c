// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tc_egress.bpf.c — the TC (clsact egress) program: every packet the host sends through an
 * interface. The decision is decide.bpf.h's, compiled here against the skb context layer; the
 * maps are maps.bpf.c's, shared with the XDP program in the one linked object (CMakeLists.txt).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "ctx_skb.bpf.h"
#include "decide.bpf.h"

SEC("tc")
int bw_tc_egress(struct __sk_buff *skb)
{
	struct bw_pkt p = {};
	int parsed = bw_parse(ctx_data(skb), ctx_data_end(skb), skb->len, &p);

	if (parsed == BW_PARSE_NEED_PULL) {
		/* Headers reach into non-linear data: make up to 256 bytes linear and parse again. */
		__u32 want = skb->len < 256 ? skb->len : 256;

		if (bpf_skb_pull_data(skb, want) == 0) {
			__builtin_memset(&p, 0, sizeof(p));
			parsed = bw_parse(ctx_data(skb), ctx_data_end(skb), skb->len, &p);
		}
	}
	return bw_handle(skb, &p, parsed, skb->ifindex, BW_DIR_EGRESS) == BW_VERDICT_DROP
		       ? TC_ACT_SHOT
		       : TC_ACT_OK;
}
