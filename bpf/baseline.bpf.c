// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* baseline.bpf.c — the floor that benchmarks compare bannerwatch with: programs that return at
 * once, and one that counts what it passes (a veth needs an XDP program on the receiving side to
 * take XDP_TX frames). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Frames seen by bw_base_count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} base_seen SEC(".maps");

SEC("xdp")
int bw_base_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int bw_base_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("xdp")
int bw_base_count(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&base_seen, &k);

	if (v)
		(*v)++;
	return XDP_PASS;
}
