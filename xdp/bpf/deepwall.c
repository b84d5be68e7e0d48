//go:build ignore

/* deepwall.c — deepwall's XDP and tc programs.
 *
 * Two data paths share the maps, the parser, the ACL and the flow verdicts.
 *
 * XDP path: deepwall_xdp runs on both ports of a pair; it tells them apart
 * by ctx->ingress_ifindex and its port config. Per packet, in this order:
 *
 *   1. no port config for the ifindex  → XDP_PASS (not ours to judge)
 *   2. parse L2..L4, bounded            → malformed: XDP_DROP
 *   3. non-IP, ICMPv6 ND (133–137)      → peer port (dw_peers), no ACL
 *   4. L3/L4 ACL, first match           → deny: XDP_DROP
 *   5. fragments, too many ext headers  → user space (no ports to key on)
 *   6. flow verdict (dw_flows)          → ALLOW: peer, DROP: XDP_DROP,
 *                                         INSPECT or none: user space
 *   7. user space = the AF_XDP socket of (slot, rx queue) in dw_xsks; none
 *      bound → the port's fail policy (peer or drop).
 *
 * tc path: an XDP program on a veth takes TSO and checksum offload away
 * from its peer, so decided flows through the XDP path lose most of their
 * bulk throughput. In the tc path each port has a shadow veth pair
 * (near, far) in its namespace. deepwall_tc runs at tcx ingress of the
 * port, of the shadow's near end and of its far end, and acts by role:
 *
 *   port      steps 1–6 above on the skb; ALLOW and non-IP go to the peer
 *             port's egress (bpf_redirect keeps GSO packets whole and their
 *             checksum state), undecided traffic to the near end's egress
 *   near end  frames user space sent on the far end (AF_XDP TX): out of
 *             the port
 *   far end   frames the far end's XDP program passed (fail-open): out of
 *             the peer port
 *
 * and deepwall_xsk runs at XDP on the far end, where the kernel has
 * segmented GSO packets (a veth whose peer has XDP has no TSO): the AF_XDP
 * socket of (slot, rx queue), or with none bound the fail policy — drop, or
 * XDP_PASS up to the far end's tc program, which keeps the skb's checksum
 * state (an XDP redirect would not).
 *
 * Every outcome has a per-CPU counter (CNT_* in deepwall.h). There is no
 * loop except over named bounds (VLAN tags, IPv6 extension headers, bitmap
 * words), all unrolled.
 */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "deepwall.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* ---- maps ------------------------------------------------------------ */
/* Every map is pinned by name under Options.PinDir, so a restarted agent
 * adopts live flows, the ACL and the socket slots. */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
	__uint(max_entries, DEFAULT_MAX_FLOWS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_flows SEC(".maps");

/* Port configs by slot. The program finds its port by scanning the
 * MAX_SLOTS entries for the ingress ifindex: two inlined array lookups cost
 * a fraction of one hash lookup (measured: 26 ns per packet less). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* slot */
	__type(value, struct port_config);
	__uint(max_entries, MAX_SLOTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_ports SEC(".maps");

/* The tc path's shadow pairs, by slot (struct shadow_config). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* slot */
	__type(value, struct shadow_config);
	__uint(max_entries, MAX_SLOTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_shadows SEC(".maps");

/* Keyed by ingress ifindex, the value is the peer's ifindex: one lookup
 * both finds and targets the other port. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, MAX_SLOTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__type(key, __u32); /* slot * MAX_QUEUES + rx queue */
	__type(value, __u32);
	__uint(max_entries, XSKMAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, CNT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_stats SEC(".maps");

/* The ACL is double-buffered: every ACL map holds two generations, the key
 * carries the generation, and dw_acl_gen[0] & 1 names the active one. User
 * space writes the inactive generation completely, then flips dw_acl_gen,
 * then waits for an RCU grace period, so a packet always reads one whole
 * generation. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_acl_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* gen */
	__type(value, struct acl_meta);
	__uint(max_entries, ACL_GENS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_acl_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* gen * MAX_ACL_RULES + rule index */
	__type(value, struct acl_rule);
	__uint(max_entries, ACL_GENS * MAX_ACL_RULES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_acl_rules SEC(".maps");

/* Source and destination prefixes. An LPM lookup returns only the longest
 * match, so user space stores in each prefix's bitmap the rules of every
 * shorter prefix that contains it, and the ACL_LPM_ANY entry holds the
 * rules without an address condition. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct acl_lpm_key);
	__type(value, struct acl_bits);
	__uint(max_entries, ACL_GENS * (MAX_ACL_PREFIXES + 1));
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_acl_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct acl_lpm_key);
	__type(value, struct acl_bits);
	__uint(max_entries, ACL_GENS * (MAX_ACL_PREFIXES + 1));
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_acl_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* gen * ACL_PROTOS + IP protocol */
	__type(value, struct acl_bits);
	__uint(max_entries, ACL_GENS * ACL_PROTOS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_acl_proto SEC(".maps");

/* Ports go through a class: the port array maps every port to the class of
 * the interval between two range boundaries, and the class array holds that
 * interval's bitmap. Rules make at most a few thousand distinct intervals,
 * so this stores 2 bytes per port instead of a 64-byte bitmap per port.
 * Class 0 is "no ports" (not TCP/UDP, or a fragment): only rules without a
 * port condition match it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* gen * ACL_PORTS + port */
	__type(value, __u16);
	__uint(max_entries, ACL_GENS * ACL_PORTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_acl_sport SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* gen * MAX_PORT_CLASSES + class */
	__type(value, struct acl_bits);
	__uint(max_entries, ACL_GENS * MAX_PORT_CLASSES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_acl_sclass SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u16);
	__uint(max_entries, ACL_GENS * ACL_PORTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_acl_dport SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct acl_bits);
	__uint(max_entries, ACL_GENS * MAX_PORT_CLASSES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dw_acl_dclass SEC(".maps");

/* ---- packet summary ---------------------------------------------------- */

/* Not in the UAPI headers. */
struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

struct sctp_common_hdr {
	__be16 source;
	__be16 dest;
	__be32 vtag;
	__le32 checksum;
};

struct icmp_echo_hdr {
	__u8 type;
	__u8 code;
	__be16 csum;
	__be16 id;
	__be16 seq;
};

#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
#define ICMPV6_ECHO_REQ 128
#define ICMPV6_ECHO_REP 129
#define ICMPV6_ND_FIRST 133 /* router solicitation */
#define ICMPV6_ND_LAST 137  /* redirect */
#define IPV4_FRAG_MASK 0x3fff /* MF + fragment offset */
#define IPV6_FRAG_MASK 0xfff9 /* fragment offset + M */
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* tc and tcx verdicts (linux/pkt_cls.h, which the hermetic include/ lacks). */
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT 2

/* TC_LINEAR is how much of an skb the tc program makes linear before it
 * parses: every header the parser reads fits in it, except long IPv6
 * extension header chains, which go to user space instead. */
#define TC_LINEAR 128

/* struct pkt is what the later stages need to know of a packet. */
struct pkt {
	__u32 src[4];    /* IPv6, or IPv4-mapped */
	__u32 dst[4];
	__u16 sport;     /* host order; TCP/UDP/SCTP ports or ICMP echo id, else 0 */
	__u16 dport;
	__u8 proto;      /* L4 protocol, or where the parser stopped */
	__u8 family;     /* ACL_FAMILY_V4 or ACL_FAMILY_V6 */
	__u8 has_ports;  /* TCP/UDP/SCTP header parsed: ACL port conditions apply */
	__u8 l4;         /* L4 located: the flow map can key on the packet */
	__u8 fragment;   /* IPv4 or IPv6 fragment (not an atomic one) */
	__u8 tcp_flags;
};

enum parse_result {
	PARSE_IP,       /* an IP packet, summarised in struct pkt */
	PARSE_PEER,     /* non-IP or ICMPv6 ND: straight to the peer */
	PARSE_ERR,      /* truncated or malformed */
	PARSE_TOO_DEEP, /* more VLAN tags than MAX_VLAN_DEPTH */
};

/* A cursor reads headers between pos and end (the linear part of the
 * packet); len is the whole packet's length from start, which is more than
 * end - start for a non-linear skb (a GSO packet), so length fields are
 * checked against len. */
struct cursor {
	void *start;
	void *pos;
	void *end;
	__u32 len;
};

/* beyond reports whether n bytes from p run past the packet's end. */
static __always_inline int beyond(const struct cursor *c, void *p, __u32 n)
{
	return (__u64)(p - c->start) + n > c->len;
}

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&dw_stats, &idx);

	if (v)
		*v += 1; /* per-CPU: no atomics needed */
}

/* ---- parsers ------------------------------------------------------------ */

/* parse_eth skips the Ethernet header and up to MAX_VLAN_DEPTH 802.1Q/802.1ad
 * tags and returns the inner EtherType. More tags are refused rather than
 * forwarded as "non-IP": a deeper stack would carry IP past the ACL. */
static __always_inline int parse_eth(struct cursor *c, __be16 *type)
{
	struct ethhdr *eth = c->pos;

	if ((void *)(eth + 1) > c->end)
		return PARSE_ERR;
	c->pos = eth + 1;
	*type = eth->h_proto;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_DEPTH; i++) {
		if (*type != bpf_htons(ETH_P_8021Q) && *type != bpf_htons(ETH_P_8021AD))
			return PARSE_IP;
		struct vlan_hdr *vh = c->pos;

		if ((void *)(vh + 1) > c->end)
			return PARSE_ERR;
		c->pos = vh + 1;
		*type = vh->encap_proto;
	}
	if (*type == bpf_htons(ETH_P_8021Q) || *type == bpf_htons(ETH_P_8021AD))
		return PARSE_TOO_DEEP;
	return PARSE_IP;
}

/* parse_l4 reads the ports (or ICMP echo id) and TCP flags. remain is what
 * the IP header says is left of the packet: headers must fit in it as well
 * as in the frame. Protocols without a parser here keep ports 0. */
static __always_inline int parse_l4(struct cursor *c, struct pkt *p, __u32 remain)
{
	switch (p->proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = c->pos;

		if ((void *)(th + 1) > c->end || remain < sizeof(*th))
			return PARSE_ERR;
		__u32 doff = th->doff * 4;

		if (doff < sizeof(*th) || doff > remain)
			return PARSE_ERR;
		p->sport = bpf_ntohs(th->source);
		p->dport = bpf_ntohs(th->dest);
		p->tcp_flags = ((__u8 *)th)[13];
		p->has_ports = 1;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = c->pos;

		if ((void *)(uh + 1) > c->end || remain < sizeof(*uh))
			return PARSE_ERR;
		p->sport = bpf_ntohs(uh->source);
		p->dport = bpf_ntohs(uh->dest);
		p->has_ports = 1;
		break;
	}
	case IPPROTO_SCTP: {
		/* Ports come first, as in UDP, in a 12-byte common header. */
		struct sctp_common_hdr *sh = c->pos;

		if ((void *)(sh + 1) > c->end || remain < sizeof(*sh))
			return PARSE_ERR;
		p->sport = bpf_ntohs(sh->source);
		p->dport = bpf_ntohs(sh->dest);
		p->has_ports = 1;
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		/* Every ICMP and ICMPv6 message has at least 8 bytes. */
		struct icmp_echo_hdr *ih = c->pos;

		if ((void *)(ih + 1) > c->end || remain < sizeof(*ih))
			return PARSE_ERR;
		if (p->family == ACL_FAMILY_V4 && p->proto == IPPROTO_ICMP) {
			if (ih->type == ICMP_ECHO_REQUEST || ih->type == ICMP_ECHO_REPLY)
				p->sport = p->dport = bpf_ntohs(ih->id);
		} else if (p->family == ACL_FAMILY_V6 && p->proto == IPPROTO_ICMPV6) {
			/* Neighbour discovery must work whatever the ACL says,
			 * or nothing on the link resolves anything. */
			if (ih->type >= ICMPV6_ND_FIRST && ih->type <= ICMPV6_ND_LAST)
				return PARSE_PEER;
			if (ih->type == ICMPV6_ECHO_REQ || ih->type == ICMPV6_ECHO_REP)
				p->sport = p->dport = bpf_ntohs(ih->id);
		}
		break;
	}
	}
	p->l4 = 1;
	return PARSE_IP;
}

static __always_inline int parse_ipv4(struct cursor *c, struct pkt *p)
{
	struct iphdr *ip = c->pos;

	if ((void *)(ip + 1) > c->end)
		return PARSE_ERR;
	if (ip->version != 4 || ip->ihl < 5)
		return PARSE_ERR;
	__u32 hlen = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);

	/* Shorter than the frame is Ethernet padding; longer is truncation. */
	if (tot < hlen || beyond(c, ip, tot))
		return PARSE_ERR;

	p->family = ACL_FAMILY_V4;
	p->src[2] = p->dst[2] = bpf_htonl(0x0000ffff);
	p->src[3] = ip->saddr;
	p->dst[3] = ip->daddr;
	p->proto = ip->protocol;

	/* Any fragment, first or not, goes to user space whole: only
	 * reassembly can tell what it carries, and fragments are a classic
	 * way around inspection. No ports: the ACL sees L3 only. */
	if (ip->frag_off & bpf_htons(IPV4_FRAG_MASK)) {
		p->fragment = 1;
		return PARSE_IP;
	}
	c->pos = (void *)ip + hlen; /* options skipped */
	return parse_l4(c, p, tot - hlen);
}

static __always_inline int ipv6_is_ext(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_FRAGMENT ||
	       nh == IPPROTO_DSTOPTS || nh == IPPROTO_AH;
}

/* parse_ipv6 walks up to MAX_IPV6_EXT extension headers. A longer chain is
 * not an error (it is legal), but the program cannot see the L4 header: the
 * packet goes to user space with the ACL applied on L3 only. */
static __always_inline int parse_ipv6(struct cursor *c, struct pkt *p)
{
	struct ipv6hdr *ip6 = c->pos;

	if ((void *)(ip6 + 1) > c->end)
		return PARSE_ERR;
	if (ip6->version != 6)
		return PARSE_ERR;
	__u32 remain = bpf_ntohs(ip6->payload_len);

	/* 0 would be a jumbogram, which Ethernet cannot carry. */
	if (remain == 0 || beyond(c, ip6 + 1, remain))
		return PARSE_ERR;

	p->family = ACL_FAMILY_V6;
	__builtin_memcpy(p->src, &ip6->saddr, 16);
	__builtin_memcpy(p->dst, &ip6->daddr, 16);
	c->pos = ip6 + 1;
	__u8 nh = ip6->nexthdr;

#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT; i++) {
		if (!ipv6_is_ext(nh))
			break;
		if (nh == IPPROTO_FRAGMENT) {
			struct frag_hdr {
				__u8 nexthdr;
				__u8 reserved;
				__be16 frag_off;
				__be32 id;
			} *fh = c->pos;

			if ((void *)(fh + 1) > c->end || remain < sizeof(*fh))
				return PARSE_ERR;
			nh = fh->nexthdr;
			/* An atomic fragment (offset 0, no M) is a whole packet. */
			if (fh->frag_off & bpf_htons(IPV6_FRAG_MASK)) {
				p->proto = nh;
				p->fragment = 1;
				return PARSE_IP;
			}
			c->pos = fh + 1;
			remain -= sizeof(*fh);
			continue;
		}
		struct ipv6_opt_hdr *oh = c->pos;

		if ((void *)(oh + 1) > c->end)
			return PARSE_ERR;
		/* AH counts 4-byte words minus 2, the others 8-byte words minus 1. */
		__u32 len = nh == IPPROTO_AH ? ((__u32)oh->hdrlen + 2) * 4 : ((__u32)oh->hdrlen + 1) * 8;

		if (len > remain)
			return PARSE_ERR;
		nh = oh->nexthdr;
		c->pos += len;
		remain -= len;
	}
	p->proto = nh;
	if (ipv6_is_ext(nh)) {
		count(CNT_HDR_LIMIT);
		return PARSE_IP; /* l4 stays 0 */
	}
	return parse_l4(c, p, remain);
}

static __always_inline int parse(struct cursor *c, struct pkt *p)
{
	__be16 type;
	int r = parse_eth(c, &type);

	if (r != PARSE_IP)
		return r;
	if (type == bpf_htons(ETH_P_IP))
		return parse_ipv4(c, p);
	if (type == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(c, p);
	return PARSE_PEER; /* ARP, LLDP, … */
}

/* ---- ACL ---------------------------------------------------------------- */

static __always_inline __u32 ctz64(__u64 w)
{
	/* BPF has no count-trailing-zeros instruction; binary search. */
	__u32 n = 0;

	if (!(w & 0xffffffffULL)) {
		n += 32;
		w >>= 32;
	}
	if (!(w & 0xffff)) {
		n += 16;
		w >>= 16;
	}
	if (!(w & 0xff)) {
		n += 8;
		w >>= 8;
	}
	if (!(w & 0xf)) {
		n += 4;
		w >>= 4;
	}
	if (!(w & 0x3)) {
		n += 2;
		w >>= 2;
	}
	if (!(w & 0x1))
		n += 1;
	return n;
}

/* and_bits narrows acc to the rules that also match b; 0 when none is left. */
static __always_inline int and_bits(struct acl_bits *acc, const struct acl_bits *b)
{
	__u64 any = 0;

#pragma unroll
	for (int i = 0; i < ACL_WORDS; i++) {
		acc->w[i] &= b->w[i];
		any |= acc->w[i];
	}
	return any != 0;
}

/* first_rule is the lowest set bit: the first rule in ACL order. */
static __always_inline int first_rule(const struct acl_bits *acc)
{
#pragma unroll
	for (int i = 0; i < ACL_WORDS; i++) {
		if (acc->w[i])
			return i * 64 + ctz64(acc->w[i]);
	}
	return -1;
}

static __always_inline struct acl_bits *port_bits(void *ports, void *classes, __u32 gen,
						  const struct pkt *p, __u16 port)
{
	__u32 class = 0;

	if (p->has_ports) {
		__u32 key = gen * ACL_PORTS + port;
		__u16 *cl = bpf_map_lookup_elem(ports, &key);

		if (!cl)
			return 0;
		class = *cl;
	}
	if (class >= MAX_PORT_CLASSES)
		return 0;
	class += gen * MAX_PORT_CLASSES;
	return bpf_map_lookup_elem(classes, &class);
}

/* addr_bits looks an address up in a prefix trie. An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) is looked up as the IPv4 address, as
 * netip.Addr.Unmap does before the rules package matches prefixes. */
static __always_inline struct acl_bits *addr_bits(void *trie, __u32 gen, const __u32 *addr)
{
	struct acl_lpm_key k = {
		.prefixlen = ACL_LPM_FULL,
		.gen = gen,
	};

	if (addr[0] == 0 && addr[1] == 0 && addr[2] == bpf_htonl(0x0000ffff)) {
		k.family = ACL_FAMILY_V4;
		__builtin_memcpy(k.addr, &addr[3], 4);
	} else {
		k.family = ACL_FAMILY_V6;
		__builtin_memcpy(k.addr, addr, 16);
	}
	return bpf_map_lookup_elem(trie, &k);
}

/* acl_denies evaluates the active ACL generation: the rules matching every
 * field are the AND of one bitmap per field, and the lowest bit left is the
 * first matching rule. Cheap fields go first so a mismatch stops early. */
static __always_inline int acl_denies(const struct pkt *p)
{
	__u32 zero = 0;
	__u32 *genp = bpf_map_lookup_elem(&dw_acl_gen, &zero);

	if (!genp)
		return 0;
	__u32 gen = *genp & 1; /* one bit: a torn read still names a whole generation */
	struct acl_meta *meta = bpf_map_lookup_elem(&dw_acl_meta, &gen);

	if (!meta)
		return 0;
	int deny_default = meta->default_action == ACL_DENY;

	if (meta->nrules == 0)
		return deny_default;

	struct acl_bits acc;
	__u32 key = gen * ACL_PROTOS + p->proto;
	struct acl_bits *b = bpf_map_lookup_elem(&dw_acl_proto, &key);

	if (!b)
		return deny_default;
	acc = *b;

	b = port_bits(&dw_acl_sport, &dw_acl_sclass, gen, p, p->sport);
	if (!b || !and_bits(&acc, b))
		return deny_default;
	b = port_bits(&dw_acl_dport, &dw_acl_dclass, gen, p, p->dport);
	if (!b || !and_bits(&acc, b))
		return deny_default;
	b = addr_bits(&dw_acl_src, gen, p->src);
	if (!b || !and_bits(&acc, b))
		return deny_default;
	b = addr_bits(&dw_acl_dst, gen, p->dst);
	if (!b || !and_bits(&acc, b))
		return deny_default;

	int idx = first_rule(&acc);

	if (idx < 0 || idx >= MAX_ACL_RULES)
		return deny_default;
	key = gen * MAX_ACL_RULES + idx;
	struct acl_rule *r = bpf_map_lookup_elem(&dw_acl_rules, &key);

	if (!r)
		return deny_default;
	return r->action == ACL_DENY;
}

/* ---- forwarding ---------------------------------------------------------- */

/* find_port returns the config of the port with this ifindex, or NULL. */
static __always_inline struct port_config *find_port(__u32 ifindex)
{
#pragma unroll
	for (__u32 slot = 0; slot < MAX_SLOTS; slot++) {
		__u32 key = slot;
		struct port_config *pc = bpf_map_lookup_elem(&dw_ports, &key);

		if (pc && pc->ifindex == ifindex)
			return pc;
	}
	return 0;
}

/* to_peer redirects to the other port of the pair. A missing devmap entry
 * is a broken setup: drop rather than let the host stack see the packet. */
static __always_inline int to_peer(__u32 ifindex, __u32 counter)
{
	if (bpf_redirect_map(&dw_peers, ifindex, 0) == XDP_REDIRECT) {
		count(counter);
		return XDP_REDIRECT;
	}
	count(CNT_REDIRECT_ERR);
	return XDP_DROP;
}

/* to_socket redirects to the AF_XDP socket of slot and the packet's rx
 * queue; it reports 0 when none is bound there. */
static __always_inline int to_socket(struct xdp_md *ctx, __u32 slot)
{
	__u32 queue = ctx->rx_queue_index;

	if (queue < MAX_QUEUES && slot < MAX_SLOTS) {
		/* Flags 0: a missing entry returns XDP_ABORTED, not a redirect. */
		if (bpf_redirect_map(&dw_xsks, slot * MAX_QUEUES + queue, 0) == XDP_REDIRECT) {
			count(CNT_TO_USER);
			return 1;
		}
	} else {
		count(CNT_QUEUE_RANGE);
	}
	return 0;
}

/* to_user hands the packet to the AF_XDP socket of its port slot and rx
 * queue. With no socket bound (the agent is down or restarting) the port's
 * fail policy decides. */
static __always_inline int to_user(struct xdp_md *ctx, const struct port_config *port,
				   __u32 ifindex)
{
	if (to_socket(ctx, port->slot))
		return XDP_REDIRECT;
	if (port->fail_closed) {
		count(CNT_FAIL_CLOSED);
		return XDP_DROP;
	}
	return to_peer(ifindex, CNT_FAIL_OPEN);
}

/* addr_cmp compares addresses as bytes, as xdp.MakeFlowKey16 does
 * (big-endian words compare like their bytes). */
static __always_inline int addr_cmp(const __u32 *a, const __u32 *b)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u32 x = bpf_ntohl(a[i]), y = bpf_ntohl(b[i]);

		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

/* flow_key_of normalises the packet's 5-tuple exactly like
 * xdp.MakeFlowKey16 and returns the direction (0: source is lo). */
static __always_inline __u32 flow_key_of(const struct pkt *p, struct flow_key *k)
{
	int c = addr_cmp(p->src, p->dst);

	k->proto = p->proto;
	if (c < 0 || (c == 0 && p->sport <= p->dport)) {
		__builtin_memcpy(k->addr_lo, p->src, 16);
		__builtin_memcpy(k->addr_hi, p->dst, 16);
		k->port_lo = p->sport;
		k->port_hi = p->dport;
		return 0;
	}
	__builtin_memcpy(k->addr_lo, p->dst, 16);
	__builtin_memcpy(k->addr_hi, p->src, 16);
	k->port_lo = p->dport;
	k->port_hi = p->sport;
	return 1;
}

/* account counts a fast-path packet on its flow. Both directions of a flow
 * may run on different CPUs, hence the atomics. last_seen is for idle
 * reaping, where tick resolution is plenty: the coarse clock costs ~10 ns
 * less per packet than bpf_ktime_get_ns and reads the same CLOCK_MONOTONIC
 * (a few ms behind at most). */
static __always_inline void account(struct flow_value *v, __u32 dir, __u32 len)
{
	dir &= 1;
	__sync_fetch_and_add(&v->packets[dir], 1);
	__sync_fetch_and_add(&v->bytes[dir], len);
	v->last_seen = bpf_ktime_get_coarse_ns();
}

/* What judge decided for a packet. */
enum fate {
	FATE_INSPECT, /* user space decides */
	FATE_ALLOW,   /* flow ALLOW: to the peer port */
	FATE_PEER,    /* non-IP or ICMPv6 ND: to the peer port, no ACL */
	FATE_DROP,    /* dropped (counted) */
	FATE_BAD,     /* parse error (not counted yet) */
};

/* flow_fate looks the packet's flow up: ALLOW, DROP (counted) or INSPECT. */
static __always_inline int flow_fate(const struct pkt *p, __u32 len)
{
	struct flow_key k = {};
	__u32 dir = flow_key_of(p, &k);
	struct flow_value *v = bpf_map_lookup_elem(&dw_flows, &k);

	if (!v) {
		count(CNT_FLOW_MISS);
		return FATE_INSPECT;
	}
	/* A SYN without ACK opens a connection. On a decided entry it means the
	 * 5-tuple is being reused (the old connection ended, or its end was
	 * never seen): the old verdict must not carry over, or the new
	 * connection would ride an earlier one's ALLOW uninspected (or be
	 * black-holed by its DROP). The entry goes back to INSPECT and the SYN
	 * to user space, which decides the new connection afresh. */
	if (p->proto == IPPROTO_TCP && v->verdict != VERDICT_INSPECT &&
	    (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN) {
		v->verdict = VERDICT_INSPECT;
		v->flags = 0;
		count(CNT_SYN_REOPEN);
		return FATE_INSPECT;
	}
	switch (v->verdict) {
	case VERDICT_ALLOW:
		account(v, dir, len);
		/* Tell user space the flow is ending so it can reap the entry
		 * (a plain store: the bit is only ever set here). */
		if ((p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) && !(v->flags & FLOW_FLAG_CLOSING))
			v->flags |= FLOW_FLAG_CLOSING;
		return FATE_ALLOW;
	case VERDICT_DROP:
		account(v, dir, len);
		count(CNT_FAST_DROP);
		return FATE_DROP;
	}
	return FATE_INSPECT;
}

/* judge runs the stages both paths share on a port's packet: parse, ACL,
 * flow verdict. */
static __always_inline int judge(struct cursor *c)
{
	struct pkt p = {};

	switch (parse(c, &p)) {
	case PARSE_PEER:
		return FATE_PEER;
	case PARSE_ERR:
		return FATE_BAD;
	case PARSE_TOO_DEEP:
		count(CNT_HDR_LIMIT);
		count(CNT_PARSE_ERR);
		return FATE_DROP;
	}
	if (acl_denies(&p)) {
		count(CNT_ACL_DROP);
		return FATE_DROP;
	}
	if (!p.l4) {
		/* Fragment or extension-header chain too long: no ports to key
		 * a flow on (CNT_HDR_LIMIT was counted by the parser). */
		if (p.fragment)
			count(CNT_FRAGMENT);
		return FATE_INSPECT;
	}
	return flow_fate(&p, c->len);
}

/* ---- XDP path ------------------------------------------------------------- */

SEC("xdp")
int deepwall_xdp(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	struct port_config *port = find_port(ifindex);

	if (!port) {
		count(CNT_UNCONFIGURED);
		return XDP_PASS;
	}
	struct cursor c = {
		.start = (void *)(long)ctx->data,
		.pos = (void *)(long)ctx->data,
		.end = (void *)(long)ctx->data_end,
	};
	c.len = c.end - c.start;

	switch (judge(&c)) {
	case FATE_ALLOW:
		return to_peer(ifindex, CNT_FAST_ALLOW);
	case FATE_PEER:
		return to_peer(ifindex, CNT_NON_IP);
	case FATE_BAD:
		count(CNT_PARSE_ERR);
		return XDP_DROP;
	case FATE_DROP:
		return XDP_DROP;
	}
	return to_user(ctx, port, ifindex);
}

/* ---- tc path --------------------------------------------------------------- */

/* Roles of an interface in the tc path. */
enum role {
	ROLE_NONE,
	ROLE_PORT, /* a port of the pair */
	ROLE_NEAR, /* a shadow's near end: frames from user space */
	ROLE_FAR,  /* a shadow's far end: frames passed by its XDP program */
};

/* find_role returns the config of the slot ifindex belongs to on the tc
 * path, its shadow pair and its role there. */
static __always_inline struct port_config *find_role(__u32 ifindex, struct shadow_config **sh,
						     int *role)
{
#pragma unroll
	for (__u32 slot = 0; slot < MAX_SLOTS; slot++) {
		__u32 key = slot;
		struct port_config *pc = bpf_map_lookup_elem(&dw_ports, &key);
		struct shadow_config *s = bpf_map_lookup_elem(&dw_shadows, &key);

		if (!pc || !s || !s->near)
			continue;
		*sh = s;
		if (pc->ifindex == ifindex) {
			*role = ROLE_PORT;
			return pc;
		}
		if (s->near == ifindex) {
			*role = ROLE_NEAR;
			return pc;
		}
		if (s->far == ifindex) {
			*role = ROLE_FAR;
			return pc;
		}
	}
	*role = ROLE_NONE;
	return 0;
}

/* tc_to sends the skb out of ifindex (its egress: to that veth's peer). */
static __always_inline int tc_to(__u32 ifindex, __u32 counter)
{
	count(counter);
	return bpf_redirect(ifindex, 0);
}

SEC("tc")
int deepwall_tc(struct __sk_buff *skb)
{
	int role;
	struct shadow_config *sh = 0;
	struct port_config *pc = find_role(skb->ifindex, &sh, &role);

	if (!pc || !sh) {
		count(CNT_UNCONFIGURED);
		return TC_ACT_UNSPEC;
	}
	switch (role) {
	case ROLE_NEAR:
		/* A frame user space sent (AF_XDP TX on the far end). */
		return bpf_redirect(pc->ifindex, 0);
	case ROLE_FAR:
		/* Counted as CNT_FAIL_OPEN by deepwall_xsk. */
		return bpf_redirect(pc->peer, 0);
	}

	__u32 want = skb->len < TC_LINEAR ? skb->len : TC_LINEAR;

	if (skb->data_end - skb->data < want)
		bpf_skb_pull_data(skb, want);
	struct cursor c = {
		.start = (void *)(long)skb->data,
		.pos = (void *)(long)skb->data,
		.end = (void *)(long)skb->data_end,
		.len = skb->len,
	};

	switch (judge(&c)) {
	case FATE_ALLOW:
		return tc_to(pc->peer, CNT_FAST_ALLOW);
	case FATE_PEER:
		return tc_to(pc->peer, CNT_NON_IP);
	case FATE_DROP:
		return TC_ACT_SHOT;
	case FATE_BAD:
		/* Headers past the linear part are not an error of the
		 * packet's: user space sees it whole. */
		if (c.end - c.start < c.len)
			break;
		count(CNT_PARSE_ERR);
		return TC_ACT_SHOT;
	}
	/* The outcome is counted by deepwall_xsk on the far end. */
	return bpf_redirect(sh->near, 0);
}

/* deepwall_xsk runs on a shadow's far end: everything goes to the AF_XDP
 * socket of its slot and rx queue, or with none bound to the fail policy. */
SEC("xdp")
int deepwall_xsk(struct xdp_md *ctx)
{
	int role;
	struct shadow_config *sh = 0;
	struct port_config *pc = find_role(ctx->ingress_ifindex, &sh, &role);

	if (!pc || role != ROLE_FAR) {
		count(CNT_UNCONFIGURED);
		return XDP_PASS;
	}
	if (to_socket(ctx, pc->slot))
		return XDP_REDIRECT;
	if (pc->fail_closed) {
		count(CNT_FAIL_CLOSED);
		return XDP_DROP;
	}
	/* Up to deepwall_tc on this interface, which sends it on. */
	count(CNT_FAIL_OPEN);
	return XDP_PASS;
}
