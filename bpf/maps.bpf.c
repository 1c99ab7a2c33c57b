// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * maps.bpf.c — the unit that defines the data plane's maps (maps.bpf.h) and its license; linked
 * with xdp_ingress.bpf.c and tc_egress.bpf.c into one object (CMakeLists.txt, bw_bpf_object).
 */
#define BW_DEFINE_MAPS
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
