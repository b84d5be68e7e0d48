package flow

import (
	"fmt"
	"net/netip"

	"github.com/deepwall/deepwall/xdp"
)

// Dir is a packet's direction relative to the flow's client.
type Dir uint8

const (
	// ToServer: sent by the client (the side that opened the flow).
	ToServer Dir = 0
	// ToClient: sent by the server.
	ToClient Dir = 1
)

func (d Dir) String() string {
	if d == ToServer {
		return "to_server"
	}
	return "to_client"
}

// TCPState is the connection state of a TCP flow, seen from the middle.
type TCPState uint8

// TCP states, in the order a connection normally goes through them.
const (
	TCPNone        TCPState = iota // not TCP, or no packet tracked yet
	TCPSynSent                     // the client's SYN was seen
	TCPSynRecv                     // the server's SYN-ACK was seen
	TCPEstablished                 // handshake completed, or mid-stream flow heard from both sides
	TCPMidstream                   // picked up without a handshake, one side heard so far
	TCPClosing                     // FIN seen from one side (Flags say which)
	TCPClosed                      // FIN seen from both sides; lingering
	TCPReset                       // an accepted RST; lingering
)

var tcpStateNames = [...]string{"none", "syn_sent", "syn_recv", "established", "midstream", "closing", "closed", "reset"}

func (s TCPState) String() string {
	if int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return fmt.Sprintf("tcp-state-%d", s)
}

// Flags record facts about a flow.
type Flags uint16

// Flow flags.
const (
	// FlagMidstream: the flow was picked up without its TCP handshake, so
	// its first bytes were never seen.
	FlagMidstream Flags = 1 << iota
	// FlagReplied: packets were seen in both directions.
	FlagReplied
	// FlagFinToServer and FlagFinToClient: a FIN was seen from the client,
	// from the server.
	FlagFinToServer
	FlagFinToClient
	// FlagInvalidRST: an RST whose sequence number was not the expected one
	// was ignored (injection attempt or a very late RST).
	FlagInvalidRST

	// sequence tracking, per Dir: the next sequence number and the last ACK
	// of that direction are known.
	flagSeqToServer
	flagSeqToClient
	flagAckToServer
	flagAckToClient
	// a SYN with a new sequence number arrived on a live connection, from
	// the client or from the server (see Table.stale)
	flagSynToServer
	flagSynToClient
	flagISN
)

// Reason says why a flow ended.
type Reason uint8

// Reasons passed to the end callback.
const (
	ReasonIdle     Reason = iota + 1 // idle past the timeout of its state
	ReasonLifetime                   // older than Config.Lifetime
	ReasonClosed                     // FIN both ways or RST, after the linger time, or reopened by a SYN
	ReasonEvicted                    // made room for a new flow in a full table
	ReasonRemoved                    // Table.Remove
	ReasonFlush                      // Table.Flush
)

var reasonNames = [...]string{"", "idle", "lifetime", "closed", "evicted", "removed", "flush"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) && r != 0 {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason-%d", r)
}

// Flow is one flow of the table. The table owns it: the pointer Lookup
// returns is valid until the flow ends (the end callback is the last place
// it may be used); after that the entry is recycled for another flow, with a
// different ID.
type Flow[S any] struct {
	// Key is the normalised 5-tuple.
	Key xdp.FlowKey
	// ID is unique among the flows of a table (1, 2, ...): use it to detect
	// a stale pointer and as the flow id of events.
	ID uint64
	// FirstSeen and LastSeen are the caller's clock (ns) at the first and
	// the latest packet.
	FirstSeen, LastSeen int64
	// Packets and Bytes (frame bytes) per direction, indexed by Dir.
	Packets, Bytes [2]uint64
	// TCP is the connection state (TCPNone for other protocols).
	TCP   TCPState
	Flags Flags

	client xdp.Direction // key side of the client
	class  uint8         // timeout class, the list the flow is in
	seq    [2]uint32     // next sequence number expected from each Dir
	ack    [2]uint32     // last ACK sent by each Dir
	queued int64         // clock when last put at the tail of its class list
	isn    uint32        // the client's initial sequence number, when flagISN
	synSeq uint32        // sequence number of a SYN seen on a live connection
	tag    uint32        // low 32 bits of the key's hash
	self   int32         // slot of this entry
	link   [2]link       // places in its class list (free list when unused) and in the age list

	// State is the engine's per-flow state, zero when the flow is created
	// and zeroed again after the end callback. Keep it free of pointers
	// where possible (reasm.Stream is): the entries then hold no pointers
	// at all and the garbage collector never scans the table, which at a
	// million flows is hundreds of megabytes per GC cycle.
	State S
}

// ClientSide is the endpoint of Key that is the client.
func (f *Flow[S]) ClientSide() xdp.Direction { return f.client }

// Client returns the client's address and port.
func (f *Flow[S]) Client() netip.AddrPort {
	if f.client == xdp.FromLo {
		return f.Key.Lo()
	}
	return f.Key.Hi()
}

// Server returns the server's address and port.
func (f *Flow[S]) Server() netip.AddrPort {
	if f.client == xdp.FromLo {
		return f.Key.Hi()
	}
	return f.Key.Lo()
}

// DirOf converts a key-relative direction into a client-relative one.
func (f *Flow[S]) DirOf(d xdp.Direction) Dir { return Dir(d ^ f.client) }

// A flow is on two lists, each a doubly linked list of slots: the list of
// its timeout class (the free list when unused) and the age list (creation
// order). Flow.link holds its place in each, indexed by these.
const (
	classLink = iota
	ageLink
)

type link struct{ prev, next int32 }

// Timeout classes: one list each, kept in last-seen order.
const (
	classLinger = iota
	classEmbryonic
	classUnreplied
	classClosing
	classEstablished
	classUDP
	classICMP
	classOther
	numClasses
	noClass = 0xff
)

var classNames = [numClasses]string{"linger", "embryonic", "unreplied", "closing", "established", "udp", "icmp", "other"}

// Eviction tiers of the classes (see the package doc): lingering flows go
// first, then flows that never proved two-way or are closing, then
// confirmed flows.
var classTier = [numClasses]uint8{0, 1, 1, 1, 2, 2, 2, 2}

func (f *Flow[S]) classify() uint8 {
	replied := f.Flags&FlagReplied != 0
	switch f.Key.Proto {
	case 6:
		switch f.TCP {
		case TCPEstablished:
			return classEstablished
		case TCPClosing:
			return classClosing
		case TCPClosed, TCPReset:
			return classLinger
		}
		return classEmbryonic
	case 17:
		if replied {
			return classUDP
		}
	case 1, 58:
		if replied {
			return classICMP
		}
	default:
		if replied {
			return classOther
		}
	}
	return classUnreplied
}

func seqFlag(d Dir) Flags { return flagSeqToServer << d }
func ackFlag(d Dir) Flags { return flagAckToServer << d }
func finFlag(d Dir) Flags { return FlagFinToServer << d }
func synFlag(d Dir) Flags { return flagSynToServer << d }

// seqAfter reports a > b in sequence-number (serial) arithmetic.
func seqAfter(a, b uint32) bool { return int32(a-b) > 0 }
