// Package reasm reassembles each direction of a TCP connection into the
// in-order byte stream the receiver will see, for an inline inspector that
// decides, packet by packet, whether to forward or drop.
//
// A Reassembler belongs to one worker and owns that worker's buffer pool;
// a Stream (one per direction, a small pointer-free value that lives in the
// flow's state) holds one direction's position and buffers. Push feeds a
// segment and hands the bytes that became in order to a callback: straight
// from the segment's payload when it is the next one expected (the common
// case, no copy), from the pool for bytes that had been buffered.
//
// # Sequence numbers
//
// Offsets are 64-bit and counted from the first byte of the stream;
// sequence numbers are turned into offsets relative to the next expected
// byte with serial-number arithmetic, so wraparound at 2^32 is invisible. A
// SYN takes one sequence number (its data, for TCP Fast Open, follows it).
// Without a SYN the stream starts at the first segment seen (pick-up
// mid-stream; FlagMidstream), and anything before it counts as old.
//
// # Overlaps: first data wins
//
// Bytes are accepted once. A segment that overlaps bytes seen before is
// compared with them: with delivered bytes while they are still kept (the
// history: delivered bytes the receiver has not acknowledged yet, at most
// MaxHistory per direction; Ack trims it) and with buffered out-of-order
// bytes. Identical bytes are a retransmission (StatusDuplicate, or
// FlagOverlap on a segment that also brings new bytes). Different bytes are
// an evasion attempt — the receiver may keep either copy, and the DPI
// inspected the first — so the whole segment is rejected with
// StatusConflict and the engine drops the packet: the receiver never sees
// the second version either. Bytes the receiver already acknowledged are
// ignored (FlagOld). Bytes delivered but neither kept nor acknowledged
// cannot be compared: the receiver may never have got them (lost after the
// DPI, beyond its window, expired on the way), so a segment overlapping
// them is refused whole (StatusUnverified, FlagUnverified) and the engine
// drops it rather than forward bytes nobody inspected. Once the receiver
// acknowledges those bytes, retransmissions of them are old and pass.
//
// # Limits
//
// Per direction: MaxBufferedBytes and MaxSegments for out-of-order data,
// MaxHistory for delivered bytes kept for comparison, MaxAhead for how far
// beyond the next expected byte a segment may reach. Per worker: PoolBytes
// for all buffers together. A segment that would exceed an out-of-order
// limit is refused whole (StatusLimit with FlagLimitBytes, FlagLimitSegments
// or FlagLimitPool) and buffers nothing; one beyond MaxAhead is
// StatusOutOfWindow. The engine drops these packets: forwarding them would
// let the receiver assemble bytes the DPI never sees, and TCP retransmits
// them once the gap before them is filled. History that does not fit the
// pool is dropped (FlagHistoryLost) rather than refused. Memory never grows
// past PoolBytes plus small per-stream records.
//
// # Inspection depth
//
// Config.Depth (or Stream.SetDepth) bounds how many bytes of a direction
// are delivered. The push that reaches it reports FlagDepthReached and the
// stream frees its buffers and stops buffering; later pushes return
// StatusDepth. The engine marks the flow final once it needs nothing more.
//
// # Inline semantics
//
// The Status of Push is about this packet:
//
//	Empty, Delivered, Buffered, Duplicate, Depth, Reset, Closed  forward
//	Conflict                                                     drop, evasion event
//	OutOfWindow, Limit, Unverified                               drop (TCP retransmits)
//
// (Status.Drop tells.) An out-of-order segment is forwarded before its bytes
// are inspected; the segment that fills the gap triggers their delivery, and
// if the engine drops it the receiver cannot assemble the attack either.
//
// FIN: the FIN's position is recorded; once every byte before it is
// delivered the push reports FlagFIN. Data past the FIN is
// StatusOutOfWindow (FlagAfterFIN), a second FIN elsewhere or a FIN before
// delivered bytes StatusOutOfWindow too (FlagBadFIN): it could only end the
// receiver's stream early, never change its bytes. RST: accepted (StatusReset, buffers freed) only at the exact
// next sequence number, as RFC 5961 receivers do; any other RST is ignored
// with FlagInvalidRST. Keep-alives and zero-window probes one byte below
// the next expected byte are recognised (FlagKeepAlive) and not compared.
package reasm
