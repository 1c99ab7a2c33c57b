/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.bpf.h — every map of the data plane, and the per-CPU scratch element's layout.
 *
 * maps.bpf.c defines them (BW_DEFINE_MAPS); the program units declare them extern, and the BPF
 * linker (bpftool gen object) makes one object in which both programs share each map. Key and
 * value types are the ABI's (bannerwatch_abi.h) where userspace reads or writes the map.
 */
#ifndef BANNERWATCH_MAPS_BPF_H
#define BANNERWATCH_MAPS_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "bannerwatch_abi.h"
#include "parse.bpf.h"

#ifdef BW_DEFINE_MAPS
#define BW_MAP
#else
#define BW_MAP extern
#endif

#include "tries.bpf.h"

/* IPv4 pre-filter: one byte per /24 (class, "hosts inside" bit), mmapped by the daemon. */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE); /* the daemon writes the bytes through a shared mapping */
	__uint(max_entries, BW_V4_PRE_ELEMS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_v4_pre SEC(".maps");

/* IPv4 pre-filter summary: a bit per /22, two bits per /24 (BW_V4_SUM_*), mmapped by the daemon. */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, BW_V4_SUM_ELEMS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_v4_sum SEC(".maps");

/* IPv4 addresses whose class differs from their /24's: an open-addressed table (BW_V4_HOST_*),
 * mmapped by the daemon. */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, BW_V4_HOST_BUCKETS);
	__type(key, __u32);
	__type(value, struct bw_v4_host_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_v4_host SEC(".maps");

/* Pre-filter classes: class -> (effective action, deciding list). */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BW_V4_CLASSES);
	__type(key, __u32);
	__type(value, struct bw_v4_class);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_v4_class SEC(".maps");

/* Hits and drops of packets decided by a pre-filter class, per CPU. */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BW_V4_CLASSES);
	__type(key, __u32);
	__type(value, struct bw_v4_cls_cnt);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_v4_cls_cnt SEC(".maps");

/* Run-time settings: banner actions per side, block-event interval. */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bw_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_config SEC(".maps");

/* Watched TCP ports, indexed by port number (host order): BW_PORT_WATCHED. */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BW_PORTS_MAX);
	__type(key, __u32);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_ports SEC(".maps");

/* Flows whose banner was dropped: the rest of them is dropped too (both directions). */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_FLOWS_DEFAULT);
	__type(key, struct bw_flow_key);
	__type(value, struct bw_flow_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_flows SEC(".maps");

/* Outcome counters, one element per direction (enum bw_direction), per CPU. */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BW_DIR__MAX);
	__type(key, __u32);
	__type(value, struct bw_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_counters SEC(".maps");

/* Events to the daemon (struct bw_event records). */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, BW_EVENTS_BYTES_DEFAULT);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_events SEC(".maps");

/* Block-event rate limiter: hashed per-source slots, per CPU (no cross-CPU contention). */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BW_BLOCK_RL_SLOTS);
	__type(key, __u32);
	__type(value, struct bw_block_rl_slot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_block_rl SEC(".maps");

/* Block-event budget: events written in the current second, per CPU. */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bw_block_budget);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_block_bud SEC(".maps");

/* Servers' streams on watched ports, from the SYN-ACK to the version line (struct bw_stream). */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_STREAM_DEFAULT);
	__type(key, struct bw_flow_key);
	__type(value, struct bw_stream);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_stream SEC(".maps");

/* Split banners: the start of "SSH-" seen in a short segment, waiting for the rest. */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_PARTIAL_DEFAULT);
	__type(key, struct bw_flow_key);
	__type(value, struct bw_partial);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_partial SEC(".maps");

/* HTTP CONNECT tunnels to watched ports, keyed proxy -> client. */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_TUNNELS_DEFAULT);
	__type(key, struct bw_flow_key);
	__type(value, struct bw_tunnel);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_tunnels SEC(".maps");

/* Fragmented TCP datagrams on watched or proxy ports: their first fragment's TCP header. */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_FRAGS_DEFAULT);
	__type(key, struct bw_frag_key);
	__type(value, struct bw_frag);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bw_frags SEC(".maps");

/* What the decision found out about a packet, for the event writer: scalars only, so it can be
 * handed to a global (separately verified) function. */
struct bw_match {
	__u32 ifindex;
	__u32 list_id;   /* remote's entry, 0 if unlisted */
	__u32 entry_ref;
	__u8 dir;
	__u8 list_action;
	__u8 prefixlen;
	__u8 detail; /* decided by the pre-filter: userspace fills entry_ref/prefixlen (BW_EVF_DETAIL) */
};

/* What the core object's banner stage is handed (see bw_stage). */
struct bw_stage_args {
	struct bw_pkt p;
	struct bw_match m;
};

/* The loops bpf_loop runs (the first-payload scan, the CONNECT parser) keep their state in a
 * per-CPU map element, not on the stack, and on purpose: the verifier knows nothing of a map
 * value's contents, so it checks a loop step for every value the state can hold. State on the
 * stack starts as constants it tracks, and verifiers before 6.7 (Debian 12's 6.1 among them) check
 * a bpf_loop step as if it ran once from there: code that only a later step reaches (the CONNECT
 * parser's digits after a ':') is then judged dead and removed. */
struct bw_scan_state {
	__u32 n;          /* bytes loaded into buf */
	__u32 mode;       /* enum bw_scan_mode */
	__u32 line_start;
	__s32 found;      /* offset of "SSH-", or -1 */
};

struct bw_connect_state {
	__u8 line[64];
	__u32 n;      /* bytes of line loaded */
	__u32 port;   /* digits after the current ':' */
	__u32 digits;
	__u8 colon;   /* inside a ':' group */
	__u8 bad;     /* the group's number passed 65535 */
	__u8 spaced;  /* the space that ends the target was seen */
	__u8 _pad0;
};

/* Per-CPU: a program runs to its end on its CPU before another can use the element (XDP in
 * softirq, TC egress with bottom halves off; not so on PREEMPT_RT kernels). */
struct bw_scratch {
	__u8 buf[BW_SCAN_MAX + 8]; /* a first payload (more than the 512-byte stack holds) */
	struct bw_scan_state scan;
	struct bw_connect_state connect;
	struct bw_stage_args stage;
	/* bw_frags' key and value: off the stack, which the main program's frame and the banner
	 * stage's share with the bpf_loop callback's within 512 bytes (6.1 counts all three). */
	struct bw_frag_key frag_key;
	struct bw_frag frag;
};

/* What bpf_loop hands a step (its context must be on the stack): the scratch element. */
struct bw_loop_arg {
	struct bw_scratch *s;
};

/* Per-CPU room and state for the bpf_loop scans, and the core object's stage arguments. */
BW_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bw_scratch);
} bw_scratch SEC(".maps");

#endif /* BANNERWATCH_MAPS_BPF_H */
