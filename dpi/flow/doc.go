// Package flow owns the per-worker flow table of the DPI engine: it maps
// packets to flows, says which side opened each flow, follows TCP
// connection state, expires idle flows and bounds memory.
//
// # Ownership
//
// A Table belongs to one worker. The dataplane sends both directions of a
// flow to the same worker, so the table needs no locks on the hot path, and
// it has none: it is not safe for concurrent use.
//
// # Client and direction
//
// The client is the sender of the first SYN (without ACK). A flow picked up
// from a SYN-ACK has the receiver as client; a flow picked up mid-stream (or
// any non-TCP flow) has the sender of its first packet as client. Lookup
// returns the packet's direction relative to the client: ToServer or
// ToClient. Counters are indexed by that direction.
//
// # TCP state
//
// SYN → SynSent, SYN-ACK → SynRecv, the client's ACK → Established; a flow
// picked up without a handshake is Midstream until the other side speaks,
// then Established. A FIN from either side → Closing, FINs from both →
// Closed; an accepted RST → Reset. Closed and Reset flows linger
// (Timeouts.Linger) so that retransmitted FINs and the last ACKs still find
// their flow, then end with ReasonClosed. A SYN on a lingering flow ends it
// and starts a new one (port reuse). A SYN with a new sequence number on a
// live flow (its end was missed, or it is forged) changes nothing until the
// other side answers it with a SYN-ACK: then the old flow ends
// (ReasonClosed) and the SYN-ACK starts the new one, as conntrack does.
//
// A RST is accepted only when its sequence number is the one the receiver
// expects next (the sender's highest sequence seen, or the receiver's last
// ACK), as RFC 5961 receivers do; any other RST leaves the flow as it is and
// sets FlagInvalidRST, so that an injected RST cannot make the DPI forget a
// connection the endpoints keep using. Config.LooseRST turns the check off.
//
// # Timeouts and expiry
//
// Each flow sits in one list per timeout class (embryonic, established,
// closing, linger, unreplied, UDP, ICMP, other) in the order it was last
// queued, so the flows that expire first are at the head of their list and
// expiry never scans. A packet moves its flow to the tail at most once per
// granularity (timeout/16, at most a second), which spares busy flows the
// list updates and makes Expire late by at most that granularity. Expire(now)
// ends at most Config.ExpireBatch flows per call, so it can run between
// packet batches; a flow met by Lookup after its timeout is ended there
// (exactly on time) and replaced by a new one. Flows also end after
// Config.Lifetime whatever their activity.
//
// The clock is the caller's: every call takes now in nanoseconds (the
// dataplane's CLOCK_MONOTONIC frame timestamps).
//
// # Memory bound and eviction
//
// The table holds at most Config.MaxFlows flows; entries live in chunks that
// are allocated as the table grows and then recycled through a free list, so
// a table at steady state allocates nothing. When the table is full, a new
// flow evicts, in this order:
//
//  1. the oldest lingering flow (closed or reset);
//  2. the least recently seen flow that never proved to be a two-way
//     conversation or is closing: TCP embryonic or mid-stream, unreplied UDP,
//     ICMP or other, half-closed TCP;
//  3. the least recently seen confirmed flow (established TCP, replied UDP,
//     ICMP, other), but only if it has been idle for Config.EvictIdle.
//
// If none qualifies, Lookup fails with ErrFull and the engine drops the
// packet (like conntrack's "table full, dropping packet"). A SYN flood
// therefore only ever displaces embryonic flows — its own, and legitimate
// handshakes that survive as long as MaxFlows/(flood rate), far above a
// container RTT — and never an established connection.
//
// Every flow that ends — expired, closed, evicted, removed or flushed —
// passes through the callback given to New with its Reason before its entry
// is recycled, so the engine can free what its State holds (Hyperscan
// streams, reassembly buffers) and emit a flow event. State is zeroed after
// the callback.
package flow
