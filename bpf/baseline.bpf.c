// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* baseline.bpf.c — the floor that benchmarks compare bannerwatch with: programs that return at
 * once (XDP, and TC for the egress program), one that counts what it passes (a veth needs an XDP program on the receiving side to
 * take XDP_TX frames), and two floors of a drop decided by the source address: one that reads the
 * address and drops, and one that also reads one byte per /24 of a 16 MiB array (the simplest
 * constant-time IPv4 pre-filter) and drops. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Frames seen by bw_base_count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} base_seen SEC(".maps");

/* One byte per IPv4 /24, 8 to an element; sized by the benchmark that uses it (1 << 21 elements:
 * 16 MiB), one element otherwise. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} base_v4_bytes SEC(".maps");

/* The IPv4 source address of an Ethernet frame (network order), 0 for anything else. */
static __always_inline __u32 base_saddr(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	return ip->saddr;
}

/* Folds a value into base_seen, so that the reads it came from are not optimised away. */
static __always_inline void base_fold(__u64 x)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&base_seen, &k);

	if (v)
		*v += x;
}

SEC("xdp")
int bw_base_read_drop(struct xdp_md *ctx)
{
	base_fold(base_saddr(ctx));
	return XDP_DROP;
}

SEC("xdp")
int bw_base_byte_drop(struct xdp_md *ctx)
{
	__u64 h = bpf_ntohl(base_saddr(ctx));
	__u64 idx = h >> 8;
	__u32 elem = idx >> 3;
	__u8 *e = bpf_map_lookup_elem(&base_v4_bytes, &elem);

	if (e)
		base_fold(e[idx & 7]);
	return XDP_DROP;
}

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

/* The egress floor: a TC program that lets every packet go on at once. */
SEC("tc")
int bw_base_tc_ok(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
