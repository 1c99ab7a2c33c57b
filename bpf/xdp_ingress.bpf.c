// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_ingress.bpf.c — the XDP program: every frame an interface receives, before the stack sees
 * it. The decision is decide.bpf.h's, compiled here against the XDP context layer; the maps are
 * maps.bpf.c's, shared with the TC program in the one linked object (CMakeLists.txt).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ctx_xdp.bpf.h"
#include "decide.bpf.h"

SEC("xdp")
int bw_xdp_ingress(struct xdp_md *ctx)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct bw_pkt p = {};
	/* Headers are read directly; a frame's headers are all in its first buffer. */
	int parsed = bw_parse(data, data_end, data_end - data, &p);

#ifdef BW_TEST_REJECT
	/* tests/bpf/loader_test.cpp only: a packet read without a bounds check, which every verifier
	 * refuses, to see how the daemon reports a rejected program. */
	if (*(volatile __u8 *)(data + 100) == 0x42)
		return XDP_DROP;
#endif

	return bw_handle(ctx, &p, parsed, ctx->ingress_ifindex, BW_DIR_INGRESS) == BW_VERDICT_DROP
		       ? XDP_DROP
		       : XDP_PASS;
}
