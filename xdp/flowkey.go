package xdp

import (
	"bytes"
	"fmt"
	"net/netip"
)

// FlowKey is the normalised 5-tuple that names a flow in both directions.
// Its layout is struct flow_key in bpf/deepwall.h; the two must not drift
// (TestFlowKeyLayout checks them against the program's BTF).
//
// The endpoint that sorts lower (address bytes, then port) is "lo", so a
// packet and its reply produce the same key. IPv4 addresses are stored as
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d). For ICMP echo the identifier
// is stored as both ports; other ICMP messages use port 0.
type FlowKey struct {
	AddrLo [16]byte
	AddrHi [16]byte
	PortLo uint16 // host byte order
	PortHi uint16
	Proto  uint8
	_      [3]byte
}

// Direction says which endpoint of a FlowKey sent a packet.
type Direction uint8

const (
	// FromLo: the packet's source is the key's lo endpoint.
	FromLo Direction = 0
	// FromHi: the packet's source is the key's hi endpoint.
	FromHi Direction = 1
)

// MakeFlowKey normalises a packet's 5-tuple and reports which side sent it.
func MakeFlowKey(src, dst netip.Addr, sport, dport uint16, proto uint8) (FlowKey, Direction) {
	return MakeFlowKey16(src.As16(), dst.As16(), sport, dport, proto)
}

// MakeFlowKey16 is MakeFlowKey for addresses already in 16-byte form
// (IPv4-mapped for IPv4), the form decoders hold without allocating.
func MakeFlowKey16(src, dst [16]byte, sport, dport uint16, proto uint8) (FlowKey, Direction) {
	k := FlowKey{Proto: proto}
	c := bytes.Compare(src[:], dst[:])
	if c < 0 || (c == 0 && sport <= dport) {
		k.AddrLo, k.PortLo, k.AddrHi, k.PortHi = src, sport, dst, dport
		return k, FromLo
	}
	k.AddrLo, k.PortLo, k.AddrHi, k.PortHi = dst, dport, src, sport
	return k, FromHi
}

// Lo returns the lo endpoint.
func (k FlowKey) Lo() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(k.AddrLo).Unmap(), k.PortLo)
}

// Hi returns the hi endpoint.
func (k FlowKey) Hi() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(k.AddrHi).Unmap(), k.PortHi)
}

// Hash is a symmetric hash of the key: both directions of a flow give the
// same value (the key is already normalised), and it spreads flows over
// workers. FNV-1a over the fields, no allocation.
func (k *FlowKey) Hash() uint32 {
	h := uint32(2166136261)
	for _, b := range k.AddrLo {
		h = (h ^ uint32(b)) * 16777619
	}
	for _, b := range k.AddrHi {
		h = (h ^ uint32(b)) * 16777619
	}
	for _, b := range [5]byte{byte(k.PortLo >> 8), byte(k.PortLo), byte(k.PortHi >> 8), byte(k.PortHi), k.Proto} {
		h = (h ^ uint32(b)) * 16777619
	}
	return h
}

// Worker is the one of n workers that handles the key's flow. Every
// dataplane dispatches frames by it, and the engine relies on it to find
// the worker of a flow it did not receive a frame of (a datagram
// reassembled from fragments, which carry no ports).
func (k *FlowKey) Worker(n int) int { return int(k.Hash() % uint32(n)) }

// String formats the key as "proto lo <-> hi".
func (k FlowKey) String() string {
	return fmt.Sprintf("%s %s <-> %s", ProtoName(k.Proto), k.Lo(), k.Hi())
}

// ProtoName names common IP protocols and prints others as numbers.
func ProtoName(p uint8) string {
	switch p {
	case 1:
		return "ICMP"
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 58:
		return "IPv6-ICMP"
	}
	return fmt.Sprintf("proto-%d", p)
}
