// Package defrag reassembles IPv4 and IPv6 fragments the way the Linux
// receiver does, for an inline inspector: the engine inspects the datagram
// the receiver will build, and only then lets its fragments through.
//
// A Table belongs to one worker. Add takes one fragment and either keeps a
// copy of its frame (the datagram is not complete), refuses it, or — when
// it completes the datagram — returns a Datagram: the reassembled frame for
// inspection and the frames held so far, for the caller to forward in
// front of the completing fragment if the datagram is allowed. Nothing of
// a datagram reaches the receiver before all of it was inspected, so the
// receiver only ever reassembles complete sets the inspector saw, sent
// back to back. That makes the receiver's view the inspector's whatever
// its own queue rules are; the rules below matter for what is refused.
//
// # Overlap policy: the receiver's (Linux, RFC 5722)
//
// The rules follow net/ipv4/ip_fragment.c, net/ipv6/reassembly.c and
// inet_frag_queue_insert in net/ipv4/inet_fragment.c:
//
//   - A fragment that lies wholly inside a run of contiguous fragments
//     already held is a duplicate: it is dropped, the datagram kept, and
//     its bytes are ignored even when they differ (the first copy wins, as
//     in Linux; the inspector saw the first copy). A run is what Linux
//     calls one: fragments appended in order at the end; a fragment placed
//     out of order starts a run of its own.
//   - Any other overlap discards the whole datagram and every fragment of
//     it (OutcomeOverlap): Linux does the same since 4.19.
//   - A last fragment (no more-fragments flag) that ends before data
//     already held, or a second last fragment with another end, discards
//     the datagram; so do data past a known end and a fragment with no
//     data (OutcomeMalformed).
//   - IPv4: a non-last fragment whose length is not a multiple of 8 is
//     cut to a multiple of 8, as Linux cuts it; the receiver ignores the
//     bytes past the cut and so does the inspector. IPv6: such a fragment
//     is dropped (OutcomeBadFragment; Linux answers a parameter problem).
//   - IPv6: a first fragment that does not hold the upper-layer header
//     (RFC 7112; 20 bytes of TCP, 8 of UDP) is dropped (OutcomeBadFragment).
//   - A datagram larger than IP allows (65,535 bytes with the IPv4
//     header, a 65,535-byte IPv6 payload) is discarded (OutcomeMalformed).
//
// Fragments are keyed as Linux keys them: IPv4 by source, destination,
// protocol and identification; IPv6 by source, destination and
// identification (the upper-layer protocol is the first fragment's). The
// ingress port is part of the key too (Linux keys IPv6 by interface):
// fragments of one datagram come in on one port, and are released on its
// peer.
//
// # Limits
//
// Config bounds every table: Timeout (a datagram not complete this long
// after its first fragment is dropped, Linux's ipfrag_time), MaxBytes (the
// frame copies held, Linux's ipfrag_high_thresh: past it new fragments are
// refused, as Linux refuses them), MaxDatagrams in progress, MaxPerPair
// datagrams in progress between two addresses (so one sender cannot take
// the whole table), and MaxFragments per datagram. Memory never grows past
// MaxBytes plus the per-datagram records and one reassembly buffer of
// 64 KiB plus a frame header.
//
// A Table is not safe for concurrent use.
package defrag
