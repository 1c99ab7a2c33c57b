/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * bannerwatch_abi.h — THE kernel<->user contract.
 *
 * Compiled by clang -target bpf (bpf/ programs) and by g++ (maps/, daemon/, tests/). Every map key,
 * map value, event record, enum, limit and map/pin name that both sides use is declared here once.
 * Rules: only <linux/types.h>; fixed-width fields; network-order fields are __be*; every padding
 * byte is explicit; a layout change is caught by tests/unit/abi_test.cpp.
 */
#ifndef BANNERWATCH_ABI_H
#define BANNERWATCH_ABI_H

#include <linux/types.h>

/* ---- names ----------------------------------------------------------------------------------- */
/* Map names stay <= 15 characters so `bpftool map show` prints them whole. The pin path of a map is
 * <pin root>/<map name>; links are pinned as <pin root>/link_xdp_<ifname>. */
#define BW_PIN_ROOT_DEFAULT "/sys/fs/bpf/bannerwatch"
#define BW_MAP_WATCH_V4 "bw_watch_v4"
#define BW_MAP_WATCH_V6 "bw_watch_v6"
#define BW_MAP_CONFIG "bw_config"
#define BW_MAP_PORTS "bw_ports"
#define BW_MAP_FLOWS "bw_flows"
#define BW_MAP_COUNTERS "bw_counters"
#define BW_MAP_EVENTS "bw_events"
#define BW_MAP_BLOCK_RL "bw_block_rl"
#define BW_MAP_BLOCK_BUD "bw_block_bud"
#define BW_MAP_STREAM "bw_stream"
#define BW_MAP_PARTIAL "bw_partial"
#define BW_MAP_FRAGS "bw_frags"
#define BW_MAP_TUNNELS "bw_tunnels"
#define BW_MAP_SCRATCH "bw_scratch"
#define BW_MAP_V4_PRE "bw_v4_pre"
#define BW_MAP_V4_SUM "bw_v4_sum"
#define BW_MAP_V4_HOST "bw_v4_host"
#define BW_MAP_V4_CLASS "bw_v4_class"
#define BW_MAP_V4_CLS_CNT "bw_v4_cls_cnt"
/* The host-context object (bpf/host.bpf.c): its own maps, not pinned (they live with the daemon) */
#define BW_MAP_SOCKS "bw_socks"
#define BW_MAP_SOCK_EV "bw_sock_ev"
#define BW_MAP_HOST_CFG "bw_host_cfg"
#define BW_MAP_HOST_CNT "bw_host_cnt"
#define BW_MAP_HOST_BUD "bw_host_bud"
#define BW_MAP_EXES "bw_exes"
#define BW_PROG_XDP "bw_xdp_ingress"
#define BW_PROG_TC "bw_tc_egress"

/* ---- limits ---------------------------------------------------------------------------------- */
#define BW_V4_ENTRIES_DEFAULT (1U << 21)   /* LPM trie capacity (max_entries), settable before load */
#define BW_V6_ENTRIES_DEFAULT (1U << 18)
#define BW_FLOWS_DEFAULT (1U << 16)        /* banner-dropped flows remembered (LRU) */
#define BW_EVENTS_BYTES_DEFAULT (1U << 25) /* ring buffer, a power of two >= page size: 32 MiB holds
                                            * ~230 k events, a quarter second at 1 M/s, so a
                                            * reader held up by a slow disk loses none */
#define BW_BLOCK_RL_SLOTS 1024U            /* per-CPU slots of the block-event rate limiter */
#define BW_BANNER_MAX 64U                  /* banner bytes copied into an event */
#define BW_VLAN_MAX 3                      /* 802.1Q / 802.1ad tags parsed (beyond: vlan_limit):
                                            * QinQ and one more; each tag walked costs the
                                            * verifier a copy of everything after the parse */
#define BW_V6_EXT_MAX 8                    /* IPv6 extension headers walked (beyond: v6_ext_limit) */
#define BW_PORTS_MAX 65536U                /* bw_ports is indexed by the TCP port number */
#define BW_BLOCK_EVENT_INTERVAL_NS_DEFAULT 1000000000ULL
#define BW_BLOCK_EVENT_BUDGET_DEFAULT 1000U /* block events per second per CPU */
#define BW_STREAM_DEFAULT (1U << 16)   /* server streams followed to their version line (LRU) */
#define BW_PARTIAL_DEFAULT (1U << 14)  /* split banners awaiting their rest (LRU) */
#define BW_TUNNELS_DEFAULT (1U << 14)  /* HTTP CONNECT tunnels to watched ports (LRU) */
#define BW_FRAGS_DEFAULT (1U << 13)    /* fragmented TCP datagrams on watched ports (LRU) */
#define BW_SOCKS_DEFAULT (1U << 16)   /* TCP connections' processes remembered (LRU): ~8 MiB */
#define BW_SOCK_EV_BYTES_DEFAULT (1U << 22) /* host-context events' ring buffer: 4 MiB */
#define BW_SOCK_EVENT_BUDGET_DEFAULT 1000U  /* host-context events per second per CPU */
#define BW_EXES_DEFAULT (1U << 13)    /* processes' executable paths remembered (LRU): ~2.7 MiB */
#define BW_EXE_PATH 256U              /* bytes of an executable's path kept (components + NULs) */
#define BW_EXE_NAME 64U               /* bytes kept of one path component (longer ones cut) */
#define BW_EXE_DEPTH 24U              /* path components and mount crossings walked */
#define BW_SCAN_MAX 1024U              /* first-payload bytes searched for lines / header end */
#define BW_LINE_MAX 255U               /* RFC 4253 4.2: lines before the version line */
#define BW_PRELINES_BYTES 4096U        /* stream bytes followed for a version line after lines */
#define BW_PRELINES_SEGS 8U            /* ... and segments (bw_stream) */
/* IPv4 pre-filter (bw_v4_pre): one byte per /24, eight to a __u64 element: 2^24 bytes = 16 MiB.
 * The /24 with index i = (host-order address >> 8) is byte (i & 7), in memory order, of element
 * (i >> 3). */
#define BW_V4_PRE_ELEMS (1U << 21)
#define BW_V4_PRE_CLASS_MASK 0x0fU  /* low 4 bits: the /24's class (0 unlisted, 1..14 classes) */
#define BW_V4_PRE_TRIE 15U          /* class 15: decide through the trie (bw_watch_v4) */
#define BW_V4_PRE_HOSTS 0x10U       /* bit 4: /32s inside with another class: bw_v4_host first */
#define BW_V4_PRE_CHUNKS 0x20U      /* bit 5: /25-/27s inside with another class: a chunk entry of
				     * bw_v4_host gives the class of the address's /27 (before
				     * the hosts, which are more specific) */
/* IPv4 pre-filter summary (bw_v4_sum), read before bw_v4_pre, one array of __u64:
 *  level 0, elements [0, BW_V4_SUM_L0_ELEMS): one bit per /22 (BW_V4_SUM_L0_SHIFT), bit (j & 63)
 *   of element (j >> 6) for j = host-order address >> 10; set when a /24 inside has a non-zero
 *   level-1 code.
 *  level 1, the BW_V4_SUM_L1_ELEMS elements after it: two bits per /24, bits 2 * (i & 31) and up
 *   of element BW_V4_SUM_L0_ELEMS + (i >> 5) for i = address >> 8: 0 unlisted, 1 the whole /24 is
 *   of class 1 (its bw_v4_pre byte is exactly 1), 2 (BW_V4_SUM_HOSTS) only addresses of the /24
 *   are listed, each with its class in bw_v4_host (its byte is exactly BW_V4_PRE_HOSTS: an
 *   address not in the table is unlisted), 3 read bw_v4_pre.
 * 512 KiB + 4 MiB: unlisted traffic is mostly answered without touching the 16 MiB of bytes, and
 * where the list leaves whole /22s empty (three quarters of them with a million feed-shaped
 * prefixes; half of the /20s) by a bitmap small enough for the L2 cache. */
#define BW_V4_SUM_L0_SHIFT 10U /* a level-0 bit per 2^10 addresses: a /22, four /24s */
#define BW_V4_SUM_L0_ELEMS (1U << (32 - BW_V4_SUM_L0_SHIFT - 6))
#define BW_V4_SUM_L1_ELEMS (1U << 19)
/* Elements past the two levels: never read, their number marks this meaning of the codes and
 * bytes (2 = single addresses only, since the first; BW_V4_PRE_CHUNKS, since the second), so that
 * a summary pinned by a build that reads them otherwise has another size and is not reused: the
 * daemon asks for `bannerwatch detach` instead of sharing the maps with a program that would
 * misread them. */
#define BW_V4_SUM_ELEMS (BW_V4_SUM_L0_ELEMS + BW_V4_SUM_L1_ELEMS + 2)
#define BW_V4_SUM_HOSTS 2U
#define BW_V4_SUM_READ_PRE 3U
#define BW_V4_CLASSES 16U           /* bw_v4_class / bw_v4_cls_cnt elements (0 and 15 unused) */
/* IPv4 pre-filter hosts (bw_v4_host): the addresses of a /24 with BW_V4_PRE_HOSTS that have a
 * class of their own, in an open-addressed table the daemon writes through a shared mapping:
 * BW_V4_HOST_BUCKETS buckets (array elements) of BW_V4_HOST_SLOTS __u64 slots, a cache line each.
 * A slot is 0 (empty), or BW_V4_HOST_LIVE | class << 32 | host-order address, or a chunk entry
 * (BW_V4_HOST_CHUNK also set; the address is a /27's first, of a /24 with BW_V4_PRE_CHUNKS, the
 * class that of the /27), or a removed entry (BW_V4_HOST_DEAD set, never empty again until the
 * daemon rebuilds the table). An address's (or chunk's)
 * entry is in its home bucket bw_v4_host_home() or one of the next BW_V4_HOST_PROBES - 1
 * (wrapping); it is placed in the first slot that is empty or removed, so a bucket with an empty
 * slot ends the search. 2^17 buckets, 2^20 slots: 8 MiB, filled at most half (2^19 entries). */
#define BW_V4_HOST_BUCKET_BITS 17U
#define BW_V4_HOST_BUCKETS (1U << BW_V4_HOST_BUCKET_BITS)
#define BW_V4_HOST_SLOTS 8U
#define BW_V4_HOST_PROBES 4U
#define BW_V4_HOST_CAPACITY (BW_V4_HOST_BUCKETS * BW_V4_HOST_SLOTS / 2)
#define BW_V4_HOST_CHUNK (1ULL << 36)
#define BW_V4_HOST_LIVE (1ULL << 62)
#define BW_V4_HOST_DEAD (1ULL << 63)

/* ---- object variants ------------------------------------------------------------------------- */
/* The data plane (bpf/, one linked object) is built twice (CMakeLists.txt). The full object needs
 * bpf_loop (5.17), bpf_xdp_load_bytes (5.18), bpf_ktime_get_coarse_ns (5.11) and pointer arguments
 * to global functions (5.12); the core object (BW_CORE=1) needs none of them and loads on 5.10.
 * The daemon probes the kernel and loads the full object where it can. Both have the same maps,
 * programs and globals, so either is opened through the one skeleton. What the core object leaves out: */
enum bw_feature {
	BW_FEAT_PRELINES = 1 << 0,      /* lines before a server's version line (bpf_loop) */
	BW_FEAT_CONNECT = 1 << 1,       /* HTTP CONNECT tunnels through proxy_ports (bpf_loop) */
	BW_FEAT_XDP_FRAGS = 1 << 2,     /* banner bytes beyond an XDP frame's first buffer
					 * (bpf_xdp_load_bytes; multi-buffer XDP is 5.18 too) */
};
#define BW_FEATURES_FULL (BW_FEAT_PRELINES | BW_FEAT_CONNECT | BW_FEAT_XDP_FRAGS)
#define BW_FEATURES_CORE 0U

/* ---- enums ----------------------------------------------------------------------------------- */
/* Watchlist action bits. The daemon stores the effective action of each prefix (a watched /32
 * inside a blocked /16 carries BLOCK); the kernel honours the highest bit it finds:
 * SAFELIST > BLOCK > WATCH. */
enum bw_action {
	BW_ACTION_NONE = 0,
	BW_ACTION_WATCH = 1 << 0,
	BW_ACTION_BLOCK = 1 << 1,
	BW_ACTION_SAFELIST = 1 << 2,
};

/* What to do with an "SSH-" payload on a watched port, per banner direction. */
enum bw_banner_action {
	BW_BANNER_OFF = 0,
	BW_BANNER_ALERT = 1, /* pass and report */
	BW_BANNER_DROP = 2,  /* drop, report, and drop the rest of the flow */
};

/* Which side spoke the banner. SERVER: from a watched source port (sid 1000146, the seed's rule);
 * CLIENT: to a watched destination port (sid 1000147). */
enum bw_banner_side {
	BW_SIDE_SERVER = 0,
	BW_SIDE_CLIENT = 1,
	BW_SIDE__MAX = 2,
};

/* Where the packet was seen: XDP ingress or TC egress. The remote address is the source on
 * ingress and the destination on egress. */
enum bw_direction {
	BW_DIR_INGRESS = 0,
	BW_DIR_EGRESS = 1,
	BW_DIR__MAX = 2,
};

enum bw_event_kind {
	BW_EV_BANNER = 1,  /* an SSH version line on a watched port (see enum bw_banner_match) */
	BW_EV_BLOCK = 2,   /* packet dropped because the remote address is blocked (rate-limited) */
	BW_EV_WATCH = 3,   /* connection start (SYN or SYN-ACK) with a watched remote address */
	BW_EV_NON_TLS = 4, /* a server's first payload on a watched port is neither TLS nor HTTP */
	BW_EV_UNPARSED = 5, /* a packet with more IPv6 extension headers than the program walks
			     * (bw_config.unparsed: alert; rate-limited as block events are) */
	BW_EV_BEACON = 6,   /* periodic connections to one remote: made by the daemon from
			     * connection starts (beacon detection), never written by the kernel */
};

/* What happens to a frame the program cannot parse to its transport header because it has more
 * headers than it walks (bw_config.unparsed). A blocked or safelisted source is decided first
 * wherever its address could be read. */
enum bw_unparsed_action {
	BW_UNPARSED_PASS = 0,  /* counted only */
	BW_UNPARSED_ALERT = 1, /* counted; an event where the addresses are known (IPv6 chains) */
	BW_UNPARSED_DROP = 2,  /* counted and dropped */
};

/* How a banner was found. */
enum bw_banner_match {
	BW_MATCH_DIRECT = 0,   /* "SSH-" at payload offset 0 of one segment */
	BW_MATCH_SPLIT = 1,    /* "SSH-" spread over consecutive segments of a flow */
	BW_MATCH_PRELINES = 2, /* after other lines in a server's first payload (RFC 4253 4.2) */
	BW_MATCH_CONNECT = 3,  /* from a proxy after its 200 reply to a CONNECT to a watched port */
	BW_MATCH_STREAM = 4,   /* at a server stream's first byte where the receiver puts it: inside a
				* segment that overlaps bytes already delivered, or after the urgent
				* byte the receiver takes out of the stream */
};

/* bw_event.flags */
/* An ICMP or ICMPv6 event's sport and dport when the type and code were not read. */
#define BW_ICMP_UNREAD 0xffff

enum bw_event_flags {
	/* The IPv4 pre-filter decided: list_id and list_action are the deciding class's, entry_ref
	 * and prefixlen are not filled in the kernel (a trie walk per event would cost the drop path
	 * a microsecond at a million prefixes). Userspace looks them up in bw_watch_v4, the source
	 * of truth for details, when it reads the event (see bw::CompleteEvent). */
	BW_EVF_DETAIL = 1,
};

enum bw_verdict {
	BW_VERDICT_PASS = 0,
	BW_VERDICT_DROP = 1,
};

enum bw_family {
	BW_FAMILY_V4 = 4,
	BW_FAMILY_V6 = 6,
};

/* bw_ports values */
enum bw_port_flags {
	BW_PORT_WATCHED = 1 << 0, /* banner checks on this port */
	BW_PORT_PROXY = 1 << 1,   /* an HTTP proxy port: CONNECTs to watched ports are followed */
};

/* bw_config.flags */
enum bw_config_flags {
	BW_CFG_NON_TLS = 1 << 0, /* report a server's first payload that is neither TLS nor HTTP */
	/* IPv4 verdicts from the pre-filter (bw_v4_pre, bw_v4_host, bw_v4_class); clear: the trie
	 * alone, as before. Set by the daemon's apply once the pre-filter holds the policy. */
	BW_CFG_PREFILTER = 1 << 1,
};

/* ---- counters -------------------------------------------------------------------------------- */
/* One X-macro gives the counter struct its named fields (so `bpftool map dump` prints names), the
 * enum its indices and userspace its name table. bw_counters is a per-CPU array with one element
 * per direction (enum bw_direction). */
#define BW_COUNTERS(X)                                                                             \
	X(packets)           /* frames the program ran on */                                   \
	X(non_ip)            /* not IPv4/IPv6 after the VLAN tags */                           \
	X(ipv4)                                                                                    \
	X(ipv6)                                                                                    \
	X(tcp)                                                                                     \
	X(udp)                                                                                     \
	X(other_l4)          /* neither TCP nor UDP (ICMP, ...) */                              \
	X(fragments)         /* non-first IP fragments: address checks only */                 \
	X(malformed)         /* bad IHL/doff/lengths, truncated headers: never alerted */      \
	X(v6_ext_limit)      /* more IPv6 extension headers than BW_V6_EXT_MAX */              \
	X(banner_server)     /* "SSH-" from a watched port */                                 \
	X(banner_client)     /* "SSH-" to a watched port */                                   \
	X(banner_drops)      /* packets dropped because their banner matched a drop action */ \
	X(banner_split)      /* banners completed across segments (also in banner_*) */    \
	X(banner_prelines)   /* banners after other lines (also in banner_server) */        \
	X(banner_connect)    /* banners through a CONNECT tunnel (also in banner_server) */  \
	X(banner_stream)     /* banners past an overlap or an urgent byte (also in banner_server) */ \
	X(tunnels)           /* CONNECTs to a watched port seen on a proxy port */           \
	X(non_tls)           /* first server payloads neither TLS nor HTTP */               \
	X(flow_drops)        /* later packets of a banner-dropped flow */                      \
	X(watch_hits)        /* connection starts with a watched remote */                     \
	X(block_drops)       /* packets dropped for a blocked remote */                        \
	X(safelist_passes)   /* packets passed because the remote is safelisted */             \
	X(events)            /* records committed to the ring buffer */                        \
	X(events_lost)       /* bpf_ringbuf_reserve failures (verdict unchanged) */            \
	X(events_suppressed) /* block events held back by the per-source rate limit */         \
	X(events_budget)     /* block events not written: this CPU's budget for the second spent */ \
	X(vlan_limit)        /* more VLAN tags than BW_VLAN_MAX: addresses unknown */          \
	X(unparsed_drops)    /* vlan_limit and v6_ext_limit frames dropped (unparsed: drop) */ \
	X(frag_followed)     /* later TCP fragments whose payload was checked (bw_frags) */  \
	X(frag_unmatched)    /* later TCP fragments without their first one's record */

#define BW_COUNTER_FIELD(name) __u64 name;
struct bw_counters {
	BW_COUNTERS(BW_COUNTER_FIELD)
};
#undef BW_COUNTER_FIELD

#define BW_COUNTER_ENUM(name) BW_CNT_##name,
enum bw_counter {
	BW_COUNTERS(BW_COUNTER_ENUM) BW_CNT__MAX
};
#undef BW_COUNTER_ENUM

/* ---- watchlists ------------------------------------------------------------------------------ */
/* LPM trie keys: prefixlen first (the trie's contract), then the address in network order.
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are looked up in the IPv4 trie. */
struct bw_lpm_v4_key {
	__u32 prefixlen; /* 0..32 */
	__u8 addr[4];
};

struct bw_lpm_v6_key {
	__u32 prefixlen; /* 0..128 */
	__u8 addr[16];
};

/* Value of both tries: one prefix of one list. */
struct bw_list_value {
	__u32 list_id;   /* the daemon's id of the list whose entry decided the effective action */
	__u32 entry_ref; /* the daemon's id of the entry (source ids such as a Spamhaus SBL number) */
	__u8 action;     /* enum bw_action bits: effective action (SAFELIST > BLOCK > WATCH) */
	__u8 prefixlen;  /* length of the deciding entry's prefix (it covers the key), for events */
	__u8 _pad0[6];
	/* hits/drops count only packets decided through the trie: with BW_CFG_PREFILTER, IPv4
	 * packets decided by a pre-filter class are counted per class in bw_v4_cls_cnt instead (the
	 * daemon's per-list figures add both). IPv6 and IPv4-mapped addresses always use the trie. */
	__u64 hits;  /* watch: connection starts seen (atomic add from every CPU) */
	__u64 drops; /* block: packets dropped and connect()/sendmsg() calls refused (atomic add
		      * from every CPU) */
};

/* ---- IPv4 pre-filter ----------------------------------------------------------------------------
 * A constant-time IPv4 verdict: the /24's byte in bw_v4_pre (BW_V4_PRE_*), for a /24 with /32s of
 * another class bw_v4_host first (a miss falls back to the /24's class; see BW_V4_HOST_BUCKETS), then the class's action
 * and list in bw_v4_class. Class 15 (or a missing element) sends the lookup to bw_watch_v4, which
 * stays the source of truth for an event's list, entry and prefix length. */
struct bw_v4_host_bucket {
	__u64 slot[BW_V4_HOST_SLOTS];
};

/* The home bucket of a host-order address: the top bits of a multiplicative hash. */
static inline __u32 bw_v4_host_home(__u32 addr)
{
	return (__u32)(addr * 2654435761U) >> (32 - BW_V4_HOST_BUCKET_BITS);
}

struct bw_v4_class {
	__u32 list_id; /* the deciding list, as bw_list_value.list_id */
	__u8 action;   /* enum bw_action bits: the effective action */
	__u8 _pad0[3];
};

/* Per CPU and per class: packets decided by the pre-filter (those decided through the trie are
 * counted in bw_list_value.hits/drops instead). */
struct bw_v4_cls_cnt {
	__u64 hits;  /* watch: connection starts */
	__u64 drops; /* block: packets dropped */
};

/* ---- run-time configuration ------------------------------------------------------------------- */
/* bw_config: a one-element array, written by the daemon at any time. */
struct bw_config {
	__u8 banner_action[BW_SIDE__MAX]; /* enum bw_banner_action, by enum bw_banner_side */
	__u8 flags;                       /* enum bw_config_flags */
	__u8 unparsed;                    /* enum bw_unparsed_action */
	/* At most this many block events per second on each CPU (0: no budget). A flood of spoofed
	 * blocked sources then costs a counter, not an event, per packet: the drop stays cheap and the
	 * ring buffer keeps room for banner alerts. */
	__u32 block_event_budget;
	__u64 block_event_interval_ns; /* at most one block event per source per interval (per CPU) */
};

/* ---- flows dropped for their banner (LRU hash) -------------------------------------------------- */
/* Canonical key: the endpoint that sorts lower is "a" (addresses compared as 16 bytes in network
 * order, then ports as numbers), so both directions of a flow map to one key. IPv4 addresses
 * occupy the first 4 bytes, the rest is zero. */
struct bw_flow_key {
	__u8 a_addr[16];
	__u8 b_addr[16];
	__be16 a_port;
	__be16 b_port;
	__u8 family; /* enum bw_family */
	__u8 _pad0[3];
};

struct bw_flow_value {
	__u64 since_ns; /* bpf_ktime_get_ns() when the banner was dropped */
	__u64 packets;  /* later packets dropped */
};

/* bw_stream, bw_partial and bw_tunnels use struct bw_flow_key directionally: "a" is the sender of
 * the segments awaited (a server, a proxy), "b" the receiver. */

/* bw_stream: a server's stream on a watched port, followed from its SYN-ACK to its version line. */
enum bw_stream_state {
	BW_STREAM_FIRST = 0, /* waiting for the stream's first byte (the SYN-ACK's sequence + 1) */
	BW_STREAM_LINES = 1, /* the first payload had other lines: the version line may follow */
};
struct bw_stream {
	__u32 next_seq; /* the sequence number of the stream byte the receiver awaits next */
	__u16 seen;     /* stream bytes seen before the version line (BW_PRELINES_BYTES) */
	__u8 state;     /* enum bw_stream_state */
	__u8 segs;      /* segments seen with lines (BW_PRELINES_SEGS) */
};

/* bw_partial: the start of "SSH-" seen in a segment shorter than four bytes. */
struct bw_partial {
	__u32 next_seq; /* sequence number the continuation must carry */
	__u8 len;       /* bytes of "SSH-" seen so far (1..3) */
	__u8 _pad0[3];
};

/* bw_frags: a fragmented TCP datagram on a watched or proxy port, keyed as the receiver
 * reassembles it (addresses, protocol, id), so that its later fragments' payload is checked. */
struct bw_frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 id;     /* as read from the packet (IPv4: 16 bits) */
	__u8 family;  /* enum bw_family */
	__u8 proto;
	__u8 _pad0[2];
};
struct bw_frag {
	__be16 sport;
	__be16 dport;
	__u32 seq;       /* the segment's sequence number, host order */
	__u16 pay_start; /* where the TCP payload starts in the fragmentable part (bytes) */
	__u16 urg_ptr;
	__u8 tcp_flags;
	__u8 _pad0[3];
};

/* bw_tunnels: a CONNECT to a watched port through a proxy port. */
enum bw_tunnel_state {
	BW_TUNNEL_REQUESTED = 1, /* CONNECT seen, waiting for the proxy's 200 */
	BW_TUNNEL_OPEN = 2,      /* 200 seen: the next segment is the far server's first */
};
struct bw_tunnel {
	__u8 state;      /* enum bw_tunnel_state */
	__u8 _pad0;
	__u16 target_port; /* host order, from the CONNECT line */
	__u32 _pad1;
};

/* ---- block-event rate limiter (per-CPU array of hashed slots) ---------------------------------- */
/* bw_block_bud: this CPU's block-event budget for the current second, and its clock for the
 * limiter: bpf_ktime_get_coarse_ns() read once per jiffy (the coarse clock advances with the tick;
 * reading it cost ~20 ns per blocked packet, bpf_jiffies64() a few). */
struct bw_block_budget {
	__u64 window_ns; /* coarse clock when the second began */
	__u32 used;      /* block events written in it */
	__u32 _pad0;
	__u64 jiffies;   /* bpf_jiffies64() when coarse_ns was read */
	__u64 coarse_ns; /* bpf_ktime_get_coarse_ns() then */
};

struct bw_block_rl_slot {
	__u8 addr[16];   /* remote address owning the slot (IPv4 in the first 4 bytes) */
	__u64 last_ns;   /* when the last event for it was emitted */
	__u32 suppressed; /* events held back since */
	__u8 family;
	__u8 owner;      /* the event kind and direction owning the slot: kind << 1 | direction */
	__u8 _pad0[2];
};

/* ---- events (ring buffer records) ------------------------------------------------------------ */
struct bw_event {
	__u64 ts_ns;      /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) at the decision */
	__u32 ifindex;    /* interface the packet was seen on */
	__u32 list_id;    /* remote address's effective list, 0 if unlisted */
	__u32 entry_ref;  /* remote address's entry, 0 if unlisted */
	__u32 suppressed; /* BW_EV_BLOCK: events of this source held back before this one */
	__u8 kind;        /* enum bw_event_kind */
	__u8 direction;   /* enum bw_direction */
	__u8 family;      /* enum bw_family of the packet */
	__u8 verdict;     /* enum bw_verdict */
	__u8 list_action; /* enum bw_action of the remote's entry, BW_ACTION_NONE if unlisted */
	__u8 prefixlen;   /* matched prefix length (IPv4 space when the lookup was IPv4) */
	__u8 l4proto;     /* IPPROTO_*, 0 for later fragments */
	__u8 tcp_flags;   /* TCP flags byte (FIN=0x01 .. CWR=0x80) */
	__u8 saddr[16];   /* network order; IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__be16 sport; /* TCP, UDP: the ports; ICMP, ICMPv6: the type and the code (0..255, or */
	__be16 dport; /* BW_ICMP_UNREAD each when not read); otherwise 0 */
	__u8 banner_side; /* BW_EV_BANNER: enum bw_banner_side */
	__u8 banner_len;  /* bytes valid in banner[] */
	__u8 match;       /* BW_EV_BANNER: enum bw_banner_match */
	__u8 flags;       /* enum bw_event_flags */
	__u8 banner[BW_BANNER_MAX]; /* BW_EV_BANNER: the version line; BW_EV_NON_TLS: the payload */
};

/* ---- host context (bpf/host.bpf.c) -------------------------------------------------------------
 * Which process is behind a TCP connection, recorded once when it connects (fentry tcp_connect:
 * after the local port is chosen, before the SYN) or accepts (fexit inet_csk_accept), in the
 * process's own context; the daemon joins it to the data plane's events of that connection by
 * the addresses and ports. And connect()/sendmsg() refused with EPERM for blocked remotes by
 * cgroup socket-address programs. Nothing here runs per packet. */

/* bw_socks key: one connection as this host sees it. IPv4 (also an IPv6 socket's IPv4-mapped
 * connection: its packets are IPv4) in the first 4 bytes of each address, family 4. */
struct bw_sock_key {
	__u8 laddr[16];
	__u8 raddr[16];
	__be16 lport;
	__be16 rport;
	__u8 family; /* enum bw_family */
	__u8 _pad0[3];
};

/* Where a process record was taken. */
enum bw_proc_origin {
	BW_PROC_CONNECT = 1, /* tcp_connect: the connecting process */
	BW_PROC_ACCEPT = 2,  /* inet_csk_accept: the accepting process (not the one that listened) */
	BW_PROC_SOCKADDR = 3, /* a cgroup connect/sendmsg program: tgid, tid and comm only where
			       * the kernel gives that program type its helpers (probed) */
};

/* The process behind a connection (bw_socks value; also inside struct bw_sock_event). */
struct bw_proc {
	__u64 ts_ns;             /* bpf_ktime_get_ns() when recorded */
	__u64 start_boottime_ns; /* the thread group leader's start, ns since boot (0: unknown);
				  * with tgid it names one process even after the pid is reused */
	__u64 cgroup_id;         /* cgroup v2 id (0: unknown) */
	__u64 closed_ns;         /* bw_socks: when the connection closed (0: open, or not seen).
				  * An event after it belongs to a later connection on the same
				  * addresses and ports, never to this record's process. */
	__u32 tgid;              /* the process id (0: unknown) */
	__u32 tid;               /* the thread's */
	__u32 ppid;              /* the parent's process id (0: unknown) */
	__u32 uid;
	__u32 gid;
	__u8 origin;             /* enum bw_proc_origin */
	__u8 _pad0[3];
	char comm[16];           /* the thread's name, NUL-terminated */
};

/* bw_exes: a process's executable, read from its task (mm->exe_file) when it first connects or
 * accepts, so that processes gone before their events are read, and processes the daemon may not
 * look at in /proc, are still named. Key: the process (tgid and the leader's start time). */
struct bw_exe_key {
	__u64 start_boottime_ns;
	__u32 tgid;
	__u32 _pad0;
};
enum bw_exe_flags {
	BW_EXE_COMPLETE = 1 << 0, /* the walk reached the root of the process's mount tree */
};
struct bw_exe {
	__u16 len;   /* bytes used in path[] */
	__u8 flags;  /* enum bw_exe_flags */
	__u8 _pad0[5];
	/* The path's components from the file up, each NUL-terminated ("ssh\0bin\0usr\0" for
	 * /usr/bin/ssh): the walk goes up, and writing forward keeps every store's offset bounded.
	 * BW_EXE_NAME bytes of slack past BW_EXE_PATH for the last component's read. */
	char path[BW_EXE_PATH + BW_EXE_NAME];
};

enum bw_sock_event_kind {
	BW_SEV_REFUSED = 1, /* connect() or sendmsg() to a blocked remote refused (EPERM) */
	BW_SEV_CONNECT = 2, /* an outbound TCP connection started (bw_host_cfg: connect events on) */
};

/* The hook that refused a connect() or sendmsg(). */
enum bw_sock_hook {
	BW_HOOK_CONNECT = 1,
	BW_HOOK_SENDMSG = 2,
	BW_HOOK_TCP_CONNECT = 3, /* BW_SEV_CONNECT's */
};

/* bw_sock_ev records. A refused send may have no local address or port yet (zero). */
struct bw_sock_event {
	__u64 ts_ns;
	struct bw_proc proc;
	__u8 laddr[16];
	__u8 raddr[16];
	__be16 lport;
	__be16 rport;
	__u32 list_id;    /* the remote's effective list (bw_list_value) */
	__u32 entry_ref;
	__u8 kind;        /* enum bw_sock_event_kind */
	__u8 family;      /* enum bw_family of the traffic (IPv4-mapped: 4) */
	__u8 l4proto;     /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 list_action; /* enum bw_action */
	__u8 prefixlen;
	__u8 hook;        /* enum bw_sock_hook */
	__u8 _pad0[6];
};

/* bw_host_cfg.flags */
enum bw_host_flags {
	BW_HOST_REFUSE = 1 << 0,         /* refuse connect()/sendmsg() to blocked remotes */
	BW_HOST_CONNECT_EVENTS = 1 << 1, /* a BW_SEV_CONNECT event per outbound TCP connection */
};

/* bw_host_cfg: a one-element array, written by the daemon at any time. */
struct bw_host_cfg {
	__u32 flags;        /* enum bw_host_flags */
	__u32 event_budget; /* bw_sock_ev records per second per CPU (0: no budget) */
};

/* bw_host_bud: this CPU's event budget for the current second. */
struct bw_host_budget {
	__u64 window_ns;
	__u32 used;
	__u32 _pad0;
};

#define BW_HOST_COUNTERS(X)                                                                        \
	X(connects)          /* outbound TCP connections recorded (tcp_connect) */             \
	X(accepts)           /* inbound TCP connections recorded (inet_csk_accept) */          \
	X(refused_connect)   /* connect() refused: blocked remote */                          \
	X(refused_sendmsg)   /* sendmsg()/sendto() refused: blocked remote */                 \
	X(record_errors)     /* bw_socks updates that failed (the connection goes unnamed) */  \
	X(sock_events)       /* records committed to bw_sock_ev */                             \
	X(sock_events_lost)  /* bpf_ringbuf_reserve failures (the refusal stands) */           \
	X(sock_events_budget) /* events not written: this CPU's budget for the second spent */

#define BW_COUNTER_FIELD(name) __u64 name;
struct bw_host_counters {
	BW_HOST_COUNTERS(BW_COUNTER_FIELD)
};
#undef BW_COUNTER_FIELD

#define BW_COUNTER_ENUM(name) BW_HCNT_##name,
enum bw_host_counter {
	BW_HOST_COUNTERS(BW_COUNTER_ENUM) BW_HCNT__MAX
};
#undef BW_COUNTER_ENUM

#endif /* BANNERWATCH_ABI_H */
