/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * tries.bpf.h — the watchlists' LPM tries, the one part of the data plane's maps that the
 * host-context object (host.bpf.c) reads too. Included by maps.bpf.h (the data plane) and by
 * host.bpf.c, which defines them in its own object; its loader hands them the data plane's maps
 * (bpf_map__reuse_fd), so both objects read the same tries.
 */
#ifndef BANNERWATCH_TRIES_BPF_H
#define BANNERWATCH_TRIES_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "bannerwatch_abi.h"

#ifndef BW_MAP
#ifdef BW_DEFINE_MAPS
#define BW_MAP
#else
#define BW_MAP extern
#endif
#endif

/* IPv4 watchlist: longest-prefix match of the remote address -> its effective entry. */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* LPM tries must not be preallocated */
	__uint(max_entries, BW_V4_ENTRIES_DEFAULT);
	__type(key, struct bw_lpm_v4_key);
	__type(value, struct bw_list_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_watch_v4 SEC(".maps");

/* IPv6 watchlist (IPv4-mapped addresses are looked up in bw_watch_v4). */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, BW_V6_ENTRIES_DEFAULT);
	__type(key, struct bw_lpm_v6_key);
	__type(value, struct bw_list_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_watch_v6 SEC(".maps");

#endif /* BANNERWATCH_TRIES_BPF_H */
