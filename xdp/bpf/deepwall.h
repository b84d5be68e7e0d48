/* deepwall.h — layouts and limits shared by the XDP program (deepwall.c) and
 * package xdp. bpf2go generates Go types for the structs (-type), and
 * package xdp's tests compare them with its own typed structs and compare
 * every #define below with the Go constants of the same meaning, so change
 * both sides together.
 *
 * Every struct spells out its padding so that C and Go agree byte for byte
 * and no uninitialised hole ever reaches a map key.
 */
#ifndef DEEPWALL_H
#define DEEPWALL_H

#include <linux/types.h>

/* AF_XDP: the XSKMAP index of a socket is slot * MAX_QUEUES + rx queue. */
#define MAX_QUEUES 64
#define MAX_SLOTS 2
#define XSKMAP_SIZE (MAX_SLOTS * MAX_QUEUES)

/* Default size of the flow verdict LRU (Options.MaxFlows overrides it). */
#define DEFAULT_MAX_FLOWS 65536

/* Parser bounds: tags in front of the L3 header, IPv6 extension headers in
 * front of the L4 header. */
#define MAX_VLAN_DEPTH 2
#define MAX_IPV6_EXT 4

/* ACL limits. A rule set is compiled into one bitmap of MAX_ACL_RULES bits
 * per lookup result; prefixes and port classes are counted per dimension
 * (src, dst) and per generation. */
#define MAX_ACL_RULES 512
#define ACL_WORDS (MAX_ACL_RULES / 64)
#define MAX_ACL_PREFIXES 4096
#define MAX_PORT_CLASSES 4096
#define ACL_GENS 2
#define ACL_PROTOS 256
#define ACL_PORTS 65536

/* LPM keys: prefixlen counts bits from gen on. 8 bits of gen + 8 of family
 * come before the address, so a key of prefixlen ACL_LPM_ANY matches every
 * address of its generation, and ACL_LPM_FULL is a host lookup. */
#define ACL_LPM_ANY 8
#define ACL_LPM_BASE 16
#define ACL_LPM_FULL (ACL_LPM_BASE + 128)
#define ACL_FAMILY_V4 4
#define ACL_FAMILY_V6 6

/* Flow verdicts (xdp.Verdict). */
#define VERDICT_INSPECT 0
#define VERDICT_ALLOW 1
#define VERDICT_DROP 2

/* flow_value.flags (xdp.FlowFlag…). */
#define FLOW_FLAG_CLOSING 1

/* ACL actions (xdp.ACLAction). */
#define ACL_ALLOW 0
#define ACL_DENY 1

/* Per-CPU counters (indexes into dw_stats). The first group are outcomes:
 * every packet the program sees increments exactly one of them. The second
 * group are informational and come on top of an outcome. */
#define CNT_FAST_ALLOW 0   /* flow ALLOW, redirected to the peer port */
#define CNT_FAST_DROP 1    /* flow DROP, dropped */
#define CNT_ACL_DROP 2     /* ACL deny, dropped */
#define CNT_TO_USER 3      /* redirected to an AF_XDP socket */
#define CNT_FAIL_OPEN 4    /* no socket for the queue, fail-open: to the peer */
#define CNT_FAIL_CLOSED 5  /* no socket for the queue, fail-closed: dropped */
#define CNT_NON_IP 6       /* non-IP or ICMPv6 ND, redirected to the peer */
#define CNT_PARSE_ERR 7    /* truncated or malformed, dropped */
#define CNT_UNCONFIGURED 8 /* no port config for the ingress ifindex, passed */
#define CNT_REDIRECT_ERR 9 /* peer redirect failed (no devmap entry), dropped */
#define CNT_FRAGMENT 10    /* IP fragment, sent to user space */
#define CNT_HDR_LIMIT 11   /* VLAN or IPv6 extension header limit reached */
#define CNT_FLOW_MISS 12   /* no flow entry, sent to user space */
#define CNT_QUEUE_RANGE 13 /* rx queue >= MAX_QUEUES, fail policy applied */
#define CNT_SYN_REOPEN 14  /* SYN on a decided flow: entry back to INSPECT, to user space */
#define CNT_MAX 15

/* struct flow_key names a flow in both directions (xdp.FlowKey): the
 * endpoint that sorts lower (address bytes, then port) is "lo". Addresses are
 * IPv6 or IPv4-mapped (::ffff:a.b.c.d); ports are in host byte order; ICMP
 * echo stores its identifier as both ports. */
struct flow_key {
	__u8 addr_lo[16];
	__u8 addr_hi[16];
	__u16 port_lo;
	__u16 port_hi;
	__u8 proto;
	__u8 pad[3];
};

/* struct flow_value is a flow's verdict and its fast-path counters
 * (xdp.FlowValue); packets and bytes are indexed by direction (0: sent by
 * lo, 1: sent by hi). last_seen is CLOCK_MONOTONIC in ns at tick resolution
 * (bpf_ktime_get_coarse_ns). */
struct flow_value {
	__u8 verdict;
	__u8 flags;
	__u8 pad[2];
	__u32 rule_id;
	__u64 packets[2];
	__u64 bytes[2];
	__u64 last_seen;
};

/* struct port_config is one port's setup, at index slot in dw_ports. */
struct port_config {
	__u32 ifindex;     /* the port; 0 = slot unused */
	__u32 slot;        /* its own index: XSKMAP slot, 0 inner, 1 outer */
	__u32 peer;        /* ifindex of the other port (also in dw_peers) */
	__u8 fail_closed;  /* no socket bound: drop (1) or forward (0) */
	__u8 pad[3];
};

/* struct shadow_config is the tc path's part of a port's setup, at index
 * slot in dw_shadows (a map of its own, so that pins of an agent without
 * the tc path keep their layout). near == 0: the port is on the XDP path. */
struct shadow_config {
	__u32 near; /* the shadow end undecided traffic enters */
	__u32 far;  /* its peer, with deepwall_xsk and the sockets */
};

/* struct acl_lpm_key is the key of the dw_acl_src/dw_acl_dst tries. IPv4
 * addresses fill the first 4 bytes of addr. */
struct acl_lpm_key {
	__u32 prefixlen;
	__u8 gen;
	__u8 family;
	__u8 addr[16];
	__u8 pad[2];
};

/* struct acl_bits: bit i set = rule i of the generation matches. */
struct acl_bits {
	__u64 w[ACL_WORDS];
};

/* struct acl_rule is what the program needs of rule i: its action, and its
 * ID for user space. */
struct acl_rule {
	__u32 id;
	__u8 action;
	__u8 pad[3];
};

/* struct acl_meta describes one ACL generation. */
struct acl_meta {
	__u32 nrules;
	__u8 default_action;
	__u8 pad[3];
};

#endif /* DEEPWALL_H */
