// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * probe_global_args.bpf.c — a feature probe, loaded (and closed) by daemon/dataplane/kernel_probe.cpp: does
 * the verifier take a pointer to memory as an argument of a global function (Linux 5.12)? The full
 * data plane passes its parsed packet to its banner stage that way; where this fails to load, the
 * daemon loads the core object, which inlines the stage.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct bw_probe_arg {
	__u32 v;
};

__noinline int bw_probe_callee(const struct bw_probe_arg *a)
{
	return a ? (int)a->v : 0;
}

SEC("xdp")
int bw_probe_global_args(struct xdp_md *ctx)
{
	struct bw_probe_arg a = { .v = ctx->ingress_ifindex };

	/* The result is used: a call whose result is not is dropped by clang, and libbpf then leaves
	 * the function out of the program (the verifier would never see it). */
	return bw_probe_callee(&a) == 0x7fffffff ? XDP_DROP : XDP_PASS;
}
