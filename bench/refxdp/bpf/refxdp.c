//go:build ignore

/* refxdp.c — the reference XDP forwarder for benchmarks: every frame that
 * enters a port is redirected to the port's peer through a devmap, with no
 * parsing and no state. It is the floor deepwall's program is measured
 * against: the cost of XDP plus bpf_redirect_map and nothing else.
 *
 * refxdp_redirect_frags is the same forwarder declared multi-buffer
 * capable (SEC("xdp.frags") sets BPF_F_XDP_HAS_FRAGS): it lets a veth take
 * frames larger than a page, and is what the GSO experiment in
 * gso_test.go compares with the plain one.
 */

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Keyed by ingress ifindex, the value is the egress ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 64);
} ref_peers SEC(".maps");

SEC("xdp")
int refxdp_redirect(struct xdp_md *ctx)
{
	/* A port without an entry drops: a benchmark must never leak frames
	 * into the host stack. */
	return bpf_redirect_map(&ref_peers, ctx->ingress_ifindex, XDP_DROP);
}

SEC("xdp.frags")
int refxdp_redirect_frags(struct xdp_md *ctx)
{
	/* Touches no packet byte, so a multi-buffer frame needs no care. */
	return bpf_redirect_map(&ref_peers, ctx->ingress_ifindex, XDP_DROP);
}
