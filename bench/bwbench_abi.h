/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* bwbench_abi.h — what bench/bwbench.bpf.c and the benchmark programs share (clang -target bpf and
 * g++): the rewrite table's row and its size. Only <linux/types.h>; network-order fields. */
#ifndef BWBENCH_ABI_H
#define BWBENCH_ABI_H

#include <linux/types.h>

#define BWB_ADDRS_MAX (1U << 17) /* rows of the rewrite table (a .bss array: 1.5 MiB) */

/* One row: a remote address (written at bwb_addr_off: the source of ingress traffic, the
 * destination of egress traffic), a destination port (written when bwb_dport_off is set) and both
 * checksums a frame needs with them, all in network order. */
struct bwb_addr {
	__u32 addr;
	__u16 ip_csum;
	__u16 l4_csum;
	__u16 dport;
	__u16 _pad0;
};

#endif /* BWBENCH_ABI_H */
