/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parse.bpf.h — header parsing shared by the XDP and TC programs.
 *
 * A cursor walks Ethernet (up to BW_VLAN_MAX tags), IPv4 (IHL) or IPv6 (up to BW_V6_EXT_MAX
 * extension headers), then TCP (doff) or UDP. A frame with more tags or extension headers than
 * that says so (BW_PARSE_VLAN_LIMIT, BW_PARSE_EXT_LIMIT): the program then applies the policy's
 * `unparsed` action rather than treat it as harmless. Each helper checks its header against the end of the
 * directly readable data and against the lengths the headers themselves claim, and returns what
 * comes next or why it stopped. Offsets come from IHL, extension lengths and doff; payload length
 * comes from the IP length fields, never from the frame end (Ethernet pads short frames).
 */
#ifndef BANNERWATCH_PARSE_BPF_H
#define BANNERWATCH_PARSE_BPF_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bannerwatch_abi.h"

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

enum bw_parse_result {
	BW_PARSE_OK = 0,        /* L3 and L4 (if TCP/UDP, and not a later fragment) parsed */
	BW_PARSE_NON_IP,        /* not IPv4/IPv6 */
	BW_PARSE_BAD_L3,        /* Ethernet/VLAN/IP header unusable: addresses are not trusted */
	BW_PARSE_BAD_L4,        /* addresses are good, the TCP/UDP header is not */
	BW_PARSE_EXT_LIMIT,     /* addresses are good, more IPv6 extension headers than we walk */
	BW_PARSE_NEED_PULL,     /* a header lies past the linear data but inside the packet (TC) */
	BW_PARSE_VLAN_LIMIT,    /* more VLAN tags than we walk: addresses unknown */
};

/* What the programs need to know about a packet, in the packet's own byte order. */
struct bw_pkt {
	__u8 saddr[16]; /* IPv4 in the first 4 bytes, rest zero */
	__u8 daddr[16];
	__u32 payload_off; /* from the start of the frame */
	__u32 payload_len; /* TCP payload bytes according to the IP length fields */
	__u32 seq;         /* TCP sequence number, host order */
	__be16 sport;    /* ICMP, ICMPv6: the type (bw_parse_icmp) */
	__be16 dport;    /* ICMP, ICMPv6: the code */
	__u8 family;     /* enum bw_family */
	__u8 l4proto;    /* IPPROTO_*; 0 for a later fragment */
	__u8 tcp_flags;
	__u8 later_frag; /* non-first IP fragment: no L4 header */
	__u16 urg_ptr;   /* TCP urgent pointer, host order (meaningful with URG set) */
	/* IP fragments (frag_more or later_frag): where this fragment's data goes in the datagram
	 * (bytes), where the fragmentable part starts in the frame, the datagram's id and protocol.
	 * A later fragment's payload_off/payload_len are its data. */
	__u16 frag_off;
	__u16 frag_start;
	__u8 frag_more;  /* more fragments follow (IPv4 MF, IPv6 M) */
	__u8 frag_proto;
	__u32 frag_id;   /* IPv4's 16-bit id or IPv6's 32-bit one, as read */
};

struct bw_cursor {
	void *pos;
	void *end;   /* end of directly readable data */
	__u32 off;   /* pos - start of frame */
	__u32 len;   /* whole packet length (skb->len on TC; may exceed end - start) */
};

/* Returns BW_PARSE_OK when [pos, pos+n) is readable, NEED_PULL when it is in the packet but not
 * in the linear data, BAD otherwise. */
static __always_inline int bw_cursor_check(const struct bw_cursor *c, __u32 n, int bad)
{
	if (c->pos + n <= c->end)
		return BW_PARSE_OK;
	if (c->off + n <= c->len)
		return BW_PARSE_NEED_PULL;
	return bad;
}

static __always_inline void bw_cursor_advance(struct bw_cursor *c, __u32 n)
{
	c->pos += n;
	c->off += n;
}

/* Ethernet and up to BW_VLAN_MAX VLAN tags. On OK, *proto is the inner EtherType (host order). */
static __always_inline int bw_parse_eth(struct bw_cursor *c, __u16 *proto)
{
	struct ethhdr *eth = c->pos;
	int r = bw_cursor_check(c, sizeof(*eth), BW_PARSE_BAD_L3);

	if (r)
		return r;
	__u16 type = bpf_ntohs(eth->h_proto);
	bw_cursor_advance(c, sizeof(*eth));

#pragma unroll
	for (int i = 0; i < BW_VLAN_MAX; i++) {
		if (type != ETH_P_8021Q && type != ETH_P_8021AD)
			break;
		/* struct vlan_hdr is kernel-internal: TCI then the encapsulated EtherType. */
		__be16 *vlan = c->pos;
		r = bw_cursor_check(c, 4, BW_PARSE_BAD_L3);
		if (r)
			return r;
		type = bpf_ntohs(vlan[1]);
		bw_cursor_advance(c, 4);
	}
	if (type == ETH_P_8021Q || type == ETH_P_8021AD)
		return BW_PARSE_VLAN_LIMIT;
	*proto = type;
	return BW_PARSE_OK;
}

/* IPv4 with options. On OK the cursor is at the L4 header, *ip_end is where the datagram ends. */
static __always_inline int bw_parse_ipv4(struct bw_cursor *c, struct bw_pkt *p, __u32 *ip_end)
{
	struct iphdr *ip = c->pos;
	int r = bw_cursor_check(c, sizeof(*ip), BW_PARSE_BAD_L3);

	if (r)
		return r;
	if (ip->version != 4 || ip->ihl < 5)
		return BW_PARSE_BAD_L3;
	__u32 hlen = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);

	if (tot < hlen || c->off + tot > c->len)
		return BW_PARSE_BAD_L3;
	r = bw_cursor_check(c, hlen, BW_PARSE_BAD_L3);
	if (r)
		return r;

	p->family = BW_FAMILY_V4;
	__builtin_memcpy(p->saddr, &ip->saddr, 4);
	__builtin_memcpy(p->daddr, &ip->daddr, 4);
	__u16 frag = bpf_ntohs(ip->frag_off);

	p->later_frag = (frag & 0x1fff) != 0;
	p->l4proto = p->later_frag ? 0 : ip->protocol;
	p->frag_off = (frag & 0x1fff) << 3;
	p->frag_more = (frag & 0x2000) != 0;
	p->frag_proto = ip->protocol;
	p->frag_id = ip->id;
	*ip_end = c->off + tot;
	bw_cursor_advance(c, hlen);
	p->frag_start = c->off;
	if (p->later_frag) {
		p->payload_off = c->off;
		p->payload_len = *ip_end - c->off;
	}
	return BW_PARSE_OK;
}

static __always_inline int bw_is_v4_mapped(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

/* IPv6 and up to BW_V6_EXT_MAX extension headers (hop-by-hop, routing, destination options,
 * fragment, AH). On OK the cursor is at the L4 header (or p->later_frag is set). */
static __always_inline int bw_parse_ipv6(struct bw_cursor *c, struct bw_pkt *p, __u32 *ip_end)
{
	struct ipv6hdr *ip6 = c->pos;
	int r = bw_cursor_check(c, sizeof(*ip6), BW_PARSE_BAD_L3);

	if (r)
		return r;
	if (ip6->version != 6)
		return BW_PARSE_BAD_L3;
	__u32 end = c->off + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);

	if (end > c->len)
		return BW_PARSE_BAD_L3;

	p->family = BW_FAMILY_V6;
	__builtin_memcpy(p->saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->daddr, &ip6->daddr, 16);
	*ip_end = end;
	__u8 next = ip6->nexthdr;

	bw_cursor_advance(c, sizeof(*ip6));

	/* Bounded walk: the verifier needs a constant trip count. */
#pragma unroll
	for (int i = 0; i < BW_V6_EXT_MAX; i++) {
		__u32 hlen;
		__u8 *h = c->pos;

		switch (next) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
		case IPPROTO_AH:
			r = bw_cursor_check(c, 2, BW_PARSE_BAD_L3);
			if (r)
				return r;
			hlen = next == IPPROTO_AH ? ((__u32)h[1] + 2) * 4 : ((__u32)h[1] + 1) * 8;
			break;
		case IPPROTO_FRAGMENT:
			hlen = 8;
			if (c->off + hlen > end)
				return BW_PARSE_BAD_L3;
			r = bw_cursor_check(c, hlen, BW_PARSE_BAD_L3);
			if (r)
				return r;
			/* offset (13 bits) << 3 | res | M, after next header and a reserved byte */
			p->frag_off = bpf_ntohs(*(__be16 *)(h + 2)) & 0xfff8;
			p->frag_more = h[3] & 1;
			p->frag_proto = h[0];
			__builtin_memcpy(&p->frag_id, h + 4, 4);
			p->frag_start = c->off + hlen;
			if (p->frag_off != 0) {
				p->later_frag = 1;
				p->l4proto = 0;
				p->payload_off = c->off + hlen;
				p->payload_len = end - (c->off + hlen);
				return BW_PARSE_OK;
			}
			break;
		default:
			p->l4proto = next;
			return BW_PARSE_OK;
		}
		if (c->off + hlen > end)
			return BW_PARSE_BAD_L3;
		r = bw_cursor_check(c, hlen, BW_PARSE_BAD_L3);
		if (r)
			return r;
		next = h[0];
		bw_cursor_advance(c, hlen);
	}
	switch (next) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_FRAGMENT:
		return BW_PARSE_EXT_LIMIT;
	}
	p->l4proto = next;
	return BW_PARSE_OK;
}

static __always_inline int bw_parse_tcp(struct bw_cursor *c, struct bw_pkt *p, __u32 ip_end)
{
	struct tcphdr *tcp = c->pos;

	if (c->off + sizeof(*tcp) > ip_end)
		return BW_PARSE_BAD_L4;
	int r = bw_cursor_check(c, sizeof(*tcp), BW_PARSE_BAD_L4);

	if (r)
		return r;
	__u32 hlen = tcp->doff * 4;

	if (tcp->doff < 5 || c->off + hlen > ip_end)
		return BW_PARSE_BAD_L4;
	p->sport = tcp->source;
	p->dport = tcp->dest;
	p->tcp_flags = ((__u8 *)tcp)[13];
	p->seq = bpf_ntohl(tcp->seq);
	p->urg_ptr = bpf_ntohs(tcp->urg_ptr);
	p->payload_off = c->off + hlen;
	p->payload_len = ip_end - p->payload_off;
	return BW_PARSE_OK;
}

static __always_inline int bw_parse_udp(struct bw_cursor *c, struct bw_pkt *p, __u32 ip_end)
{
	struct udphdr *udp = c->pos;

	if (c->off + sizeof(*udp) > ip_end)
		return BW_PARSE_BAD_L4;
	int r = bw_cursor_check(c, sizeof(*udp), BW_PARSE_BAD_L4);

	if (r)
		return r;
	p->sport = udp->source;
	p->dport = udp->dest;
	return BW_PARSE_OK;
}

/* ICMP and ICMPv6: the type and code, carried in the port fields (an event's sport and dport say
 * them as numbers; nothing after the parse reads a non-TCP packet's ports). BW_ICMP_UNREAD in both
 * when the datagram holds less than the two bytes, or they are not in the directly readable data
 * (only events carry them: a packet is never pulled for them). */
static __always_inline void bw_parse_icmp(struct bw_cursor *c, struct bw_pkt *p, __u32 ip_end)
{
	__u8 *h = c->pos;

	if (c->off + 2 > ip_end || (void *)(h + 2) > c->end) {
		p->sport = p->dport = bpf_htons(BW_ICMP_UNREAD);
		return;
	}
	p->sport = bpf_htons(h[0]);
	p->dport = bpf_htons(h[1]);
}

/* Parses one frame. `len` is the whole packet length; [data, data_end) what can be read directly. */
static __always_inline int bw_parse(void *data, void *data_end, __u32 len, struct bw_pkt *p)
{
	struct bw_cursor c = { .pos = data, .end = data_end, .off = 0, .len = len };
	__u32 ip_end = 0;
	__u16 proto;
	int r;

	r = bw_parse_eth(&c, &proto);
	if (r)
		return r;
	if (proto == ETH_P_IP)
		r = bw_parse_ipv4(&c, p, &ip_end);
	else if (proto == ETH_P_IPV6)
		r = bw_parse_ipv6(&c, p, &ip_end);
	else
		return BW_PARSE_NON_IP;
	if (r || p->later_frag)
		return r;
	if (p->l4proto == IPPROTO_TCP)
		return bw_parse_tcp(&c, p, ip_end);
	if (p->l4proto == IPPROTO_UDP)
		return bw_parse_udp(&c, p, ip_end);
	if (p->l4proto == IPPROTO_ICMP || p->l4proto == IPPROTO_ICMPV6)
		bw_parse_icmp(&c, p, ip_end);
	return BW_PARSE_OK;
}

#endif /* BANNERWATCH_PARSE_BPF_H */
