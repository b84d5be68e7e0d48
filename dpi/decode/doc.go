// Package decode turns one Ethernet frame into the fields the DPI engine
// needs — flow key and direction, addresses, ports, TCP sequence state, IP
// fragment information and the L4 payload — without allocating and without
// copying the payload.
//
// A Decoder wraps a gopacket DecodingLayerParser whose layers are allocated
// once, in a sparse container (the fastest lookup for the handful of layer
// types involved). It owns the gopacket pitfalls so callers do not have to:
//
//   - Unsupported layers (ARP, AH, GRE, ...) are not errors
//     (IgnoreUnsupported): decoding stops there and the Packet says how far
//     it got (IPVersion, FlagL4).
//   - gopacket layers may report truncation through DecodeFeedback and still
//     return no error; the Decoder checks the parser's Truncated flag and
//     turns it into an error.
//   - gopacket picks the layer after TCP/UDP by port number (53 → DNS,
//     4789 → VXLAN, ...) and decodes tunnels (IP-in-IP) into the same layer
//     values, overwriting the outer header. The Decoder's own wrappers stop
//     at the transport payload and never follow tunnels, so Packet always
//     describes the outer headers that the kernel and the flow map see.
//   - layers.TCP allocates for every MPTCP option and layers.IPv6 for every
//     hop-by-hop option, so those two are replaced by allocation-free
//     DecodingLayers of this package; IPv6 extension headers are skipped with
//     layers.IPv6ExtensionSkipper, authentication headers with
//     layers.IPSecAH, and fragment headers decoded with layers.IPv6Fragment.
//   - Stacked VLAN tags and chained IPv6 extension headers are bounded
//     (MaxVLANTags, MaxExtHeaders), so the decoded-layer slice never grows.
//
// The flow key follows the XDP program's parser (see dataplane.ParsePacket):
// the same VLAN and extension-header limits, IPv6 AH skipped, ICMP echo
// keyed by its identifier, fragments keyed without ports, so that a verdict
// the engine writes for a flow is the one the kernel looks up. Where the
// kernel would give up (a longer extension chain), Decode returns an error.
//
// # Fragments
//
// A fragment (IPv4 MF flag or non-zero offset, or an IPv6 fragment header
// with either) is reported with FlagFragment and Frag filled in, Proto set
// to the upper-layer protocol, no transport fields (FlagL4 unset, ports 0,
// so Key is the 3-tuple) and Payload set to the fragment's data. A
// fragment is never stream or L7 input by itself: the engine reassembles
// the datagram (dpi/defrag) and decodes that. IPv6 atomic fragments
// (offset 0, no more fragments) are whole packets and decode normally with
// FlagAtomicFrag.
//
// # Errors
//
// Malformed or truncated frames return a *Error with a Reason; it never
// panics. The *Error is owned by the Decoder and valid until the next
// Decode. Valid frames never allocate; a malformed frame may allocate inside
// gopacket, which builds its error messages with fmt.Errorf.
//
// A Decoder is not safe for concurrent use: each worker owns one.
package decode
