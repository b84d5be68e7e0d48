// Package nfq is deepwall's packet path for hosts without XDP or AF_XDP:
// the same dataplane.Inspector (the DPI engine) judges packets that
// netfilter hands over through NFQUEUE.
//
// It owns deepwall's iptables chains between two ports (routed: -i/-o;
// bridged with br_netfilter: physdev), the queues (one per worker,
// --queue-balance), the connmark fast path that carries decided flows in
// the kernel (a generation in the mark lets a rule change revoke every
// verdict at once), the ACL compiled to iptables rules (ipset for CIDR
// lists), resets for blocked TCP flows, and flow ends read from conntrack.
// It touches no rule it did not add: one jump from FORWARD, everything else
// in its own chains, all removed on Detach and on the next start after a
// crash.
package nfq
