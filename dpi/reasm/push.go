package reasm

import "github.com/deepwall/deepwall/dpi/decode"

// Push feeds one segment of s's direction. In-order bytes — the
// segment's own, then any buffered bytes it makes contiguous — go to
// deliver, possibly in several calls, before Push returns: the segment's
// bytes straight from seg.Payload (no copy), buffered ones from the pool.
// The slices are valid only during the call. The Result says what happened
// to the segment so the engine can forward or drop this packet.
//
// deliver must not call the Reassembler.
//
// Overlaps resolve first-wins: bytes seen before (delivered and kept in the
// history, or buffered) are compared with the segment's; any difference
// rejects the whole segment with StatusConflict and nothing of it is used.
func (r *Reassembler) Push(s *Stream, seg Segment, deliver func([]byte)) Result {
	r.stats.Segments++
	if s.flags&stReset != 0 {
		return Result{Status: StatusClosed}
	}
	var res Result
	fl, seq := seg.Flags, seg.Seq
	if fl&decode.TCPSyn != 0 {
		switch {
		case s.flags&stStarted == 0:
			s.base = seq + 1
			s.flags |= stStarted | stSYN
		case s.flags&stSYN != 0 && seq+1 == s.base:
			// retransmitted SYN
		case s.next == 0 && s.ooo == 0 && s.flags&stFIN == 0:
			// nothing seen yet: a new initial sequence number, start over
			s.base, s.acked = seq+1, 0
			s.flags = s.flags&^stMidstream | stSYN
		default:
			// A new connection attempt on a tuple still in use. Without
			// data the SYN is harmless to the stream and must pass: the
			// receiver answers it (challenge ACK, or a SYN-ACK if its side
			// is gone, on which the flow table starts a new flow). Data in
			// it (Fast Open) would bypass inspection: drop, the client
			// retries without.
			if len(seg.Payload) == 0 {
				return Result{Status: StatusEmpty, Flags: FlagBadSYN}
			}
			r.stats.OutOfWindow++
			return Result{Status: StatusOutOfWindow, Flags: FlagBadSYN}
		}
		seq++ // the SYN takes one sequence number; data (TCP Fast Open) follows
	}
	if s.flags&stStarted == 0 {
		// picked up mid-stream: the stream starts at this segment
		s.base = seq
		s.flags |= stStarted | stMidstream
		res.Flags |= FlagMidstream
	}
	if fl&decode.TCPRst != 0 {
		return r.rst(s, seq, res)
	}
	if s.flags&stDepth != 0 {
		res.Status = StatusDepth
		return res
	}

	payload := seg.Payload
	start := s.offset(seq)
	end := start + int64(len(payload))
	if end-s.next > int64(r.cfg.MaxAhead) {
		// Past any window the receiver offers: it discards the segment,
		// a FIN in it too (so a FIN there is not a second FIN).
		r.stats.OutOfWindow++
		res.Status = StatusOutOfWindow
		return res
	}
	if fl&decode.TCPFin != 0 && ((s.flags&stFIN != 0 && end != s.fin) || (s.flags&stFIN == 0 && end < s.next)) {
		// A FIN before bytes already delivered, or a second FIN elsewhere:
		// a receiver that has those bytes ignores it, one that has not
		// would end the stream early — with fewer bytes than inspected,
		// never others. Dropping this segment is enough; it is no evasion
		// of the bytes (VPN gateways and middleboxes send such FINs on
		// ordinary connections: nDPI's webex, waze, tunnelbear captures).
		r.stats.OutOfWindow++
		res.Status, res.Flags = StatusOutOfWindow, res.Flags|FlagBadFIN
		return res
	}
	if s.flags&stFIN != 0 && end > s.fin && len(payload) > 0 {
		// data past the FIN (bare ACKs after it carry the FIN's seq + 1)
		r.stats.OutOfWindow++
		res.Status, res.Flags = StatusOutOfWindow, res.Flags|FlagAfterFIN
		return res
	}
	if len(payload) == 0 {
		if start == s.next-1 {
			res.Flags |= FlagKeepAlive
		}
		if fl&decode.TCPFin != 0 {
			r.setFIN(s, end, &res)
		}
		res.Status = StatusEmpty
		return res
	}
	if len(payload) == 1 && start == s.next-1 {
		// keep-alive with a garbage byte (or a zero-window probe): the
		// receiver discards it, so it is neither compared nor delivered
		res.Status, res.Flags = StatusDuplicate, res.Flags|FlagKeepAlive
		r.stats.Duplicates++
		return res
	}

	// Check every byte seen before, without changing anything yet.
	if start < s.next {
		if !r.checkHistory(s, start, min(end, s.next), payload[:min(end, s.next)-start], &res) {
			if res.Flags&FlagUnverified != 0 {
				res.Status = StatusUnverified
				return res
			}
			return r.conflict(res, 0)
		}
	}
	ns := max(start, s.next)
	if ns < end && !r.checkBuffered(s, ns, end, payload[ns-start:], &res) {
		return r.conflict(res, 0)
	}
	depth := r.depthOf(s)
	ne := min(end, depth)

	switch {
	case ns >= ne && ns >= depth && end > ns:
		// new bytes, but all beyond the inspection depth
		res.Status = StatusDepth
	case ns >= ne:
		res.Status = StatusDuplicate
		r.stats.Duplicates++
	case ns == s.next:
		r.advance(s, payload[ns-start:ne-start], deliver, &res)
		r.drain(s, depth, deliver, &res)
		res.Status = StatusDelivered
	default:
		added, ok := r.buffer(s, ns, ne, payload[ns-start:ne-start], &res)
		switch {
		case !ok:
			r.stats.Limits++
			res.Status = StatusLimit
			return res
		case added == 0:
			r.stats.Duplicates++
			res.Status = StatusDuplicate
		default:
			r.stats.Buffered++
			res.Status = StatusBuffered
		}
	}
	if fl&decode.TCPFin != 0 {
		r.setFIN(s, end, &res)
	}
	if s.next >= depth && s.flags&stDepth == 0 {
		s.flags |= stDepth
		res.Flags |= FlagDepthReached
		r.dropBuffers(s)
	}
	return res
}

func (r *Reassembler) conflict(res Result, f Flags) Result {
	r.stats.Conflicts++
	res.Status, res.Flags = StatusConflict, res.Flags|f
	return res
}

// rst accepts an RST only at the exact sequence number the receiver
// expects next (RFC 5961 3.2), which is what an endpoint does too: any
// other RST is ignored by the receiver, so the stream must go on.
func (r *Reassembler) rst(s *Stream, seq uint32, res Result) Result {
	next := s.NextSeq()
	if seq == next || (s.flags&stFINDone != 0 && seq == next+1) {
		r.dropBuffers(s)
		s.flags |= stReset
		r.stats.Resets++
		res.Status = StatusReset
		return res
	}
	res.Status, res.Flags = StatusEmpty, res.Flags|FlagInvalidRST
	return res
}

func (r *Reassembler) setFIN(s *Stream, end int64, res *Result) {
	s.fin = end
	s.flags |= stFIN
	if s.next == s.fin && s.flags&stFINDone == 0 {
		s.flags |= stFINDone
		res.Flags |= FlagFIN
	}
}

// checkHistory compares the part [a, b) of a segment that lies below next
// with the delivered bytes still kept; old is those bytes of the segment.
// It fails with FlagUnverified when part of [a, b) is neither acknowledged
// nor kept: the receiver may not have those bytes, and whatever it takes
// of the segment there could differ from what was inspected.
func (r *Reassembler) checkHistory(s *Stream, a, b int64, old []byte, res *Result) bool {
	start := a
	if a < s.acked {
		res.Flags |= FlagOld
		a = min(s.acked, b)
	}
	histStart := s.next - int64(s.hist.n)
	if a < histStart && a < b {
		res.Flags |= FlagUnverified
		r.stats.Unverified++
		return false
	}
	if a >= b {
		return true
	}
	res.Flags |= FlagOverlap
	return s.hist.equal(&r.pool, int(a-histStart), old[a-start:b-start])
}

// checkBuffered compares [a, b) of a segment (data) with the buffered
// ranges it overlaps.
func (r *Reassembler) checkBuffered(s *Stream, a, b int64, data []byte, res *Result) bool {
	nodes := r.pool.nodes
	for id := s.ooo; id != 0; id = nodes[id].next {
		nd := &nodes[id]
		ndEnd := nd.start + int64(nd.n)
		if nd.start >= b {
			break
		}
		if ndEnd <= a {
			continue
		}
		x, y := max(a, nd.start), min(b, ndEnd)
		if !r.pool.nodeEqual(nd, int(x-nd.start), data[x-a:y-a]) {
			return false
		}
		res.Flags |= FlagOverlap
	}
	return true
}

// advance delivers in-order bytes and records them in the history.
func (r *Reassembler) advance(s *Stream, b []byte, deliver func([]byte), res *Result) {
	deliver(b)
	s.next += int64(len(b))
	res.Delivered += len(b)
	r.stats.DeliveredBytes += uint64(len(b))
	if r.cfg.MaxHistory <= 0 {
		return
	}
	limit := r.cfg.MaxHistory
	if len(b) >= limit {
		s.hist.reset(&r.pool)
		b = b[len(b)-limit:]
	} else if over := int(s.hist.n) + len(b) - limit; over > 0 {
		s.hist.drop(&r.pool, over)
	}
	if !s.hist.push(&r.pool, b) {
		s.hist.reset(&r.pool)
		res.Flags |= FlagHistoryLost
		r.stats.HistoryLost++
	}
}

// drain delivers the buffered ranges that have become contiguous, up to
// depth.
func (r *Reassembler) drain(s *Stream, depth int64, deliver func([]byte), res *Result) {
	p := &r.pool
	for s.ooo != 0 && s.next < depth {
		id := s.ooo
		nd := &p.nodes[id]
		if nd.start > s.next {
			return
		}
		if ndEnd := nd.start + int64(nd.n); ndEnd <= s.next {
			// fully covered by what was just delivered (compared equal)
			r.popNode(s)
			continue
		}
		if k := s.next - nd.start; k > 0 {
			p.nodeTrim(nd, int(k))
			s.oooBytes -= int32(k)
		}
		n := int(min(int64(nd.n), depth-s.next))
		blk, off := nd.blk, int(nd.off)
		for n > 0 {
			c := min(blockSize-off, n)
			// copy-free from the pool; advance appends to the history,
			// which may take blocks but never this node's
			r.advance(s, p.buf(blk)[off:off+c], deliver, res)
			n -= c
			blk, off = p.link[blk], 0
		}
		r.popNode(s)
	}
	if s.flags&stFIN != 0 && s.next == s.fin && s.flags&stFINDone == 0 {
		s.flags |= stFINDone
		res.Flags |= FlagFIN
	}
}

func (r *Reassembler) popNode(s *Stream) {
	id := s.ooo
	nd := &r.pool.nodes[id]
	s.ooo = nd.next
	s.oooBytes -= nd.n
	s.oooSegs--
	r.pool.putNode(id)
}

// buffer holds the parts of [a, b) (data) that no buffered range covers,
// all or nothing, and returns how many bytes it added; it reports false and
// sets the limit flag when a limit would be exceeded.
func (r *Reassembler) buffer(s *Stream, a, b int64, data []byte, res *Result) (int64, bool) {
	p := &r.pool
	var bytes, segs, blocks int64
	cur := a
	for id := s.ooo; id != 0 && cur < b; id = p.nodes[id].next {
		nd := &p.nodes[id]
		ndEnd := nd.start + int64(nd.n)
		if ndEnd <= cur {
			continue
		}
		if nd.start >= b {
			break
		}
		if nd.start > cur {
			bytes, segs, blocks = bytes+nd.start-cur, segs+1, blocks+(nd.start-cur+blockSize-1)/blockSize
		}
		cur = max(cur, ndEnd)
	}
	if cur < b {
		bytes, segs, blocks = bytes+b-cur, segs+1, blocks+(b-cur+blockSize-1)/blockSize
	}
	switch {
	case int64(s.oooBytes)+bytes > int64(r.cfg.MaxBufferedBytes):
		res.Flags |= FlagLimitBytes
		return 0, false
	case int64(s.oooSegs)+segs > int64(r.cfg.MaxSegments):
		res.Flags |= FlagLimitSegments
		return 0, false
	case !p.avail(int(blocks)):
		res.Flags |= FlagLimitPool
		return 0, false
	}
	// insert the gaps, in order
	cur = a
	var prev int32
	id := s.ooo
	for cur < b {
		if id != 0 {
			nd := p.nodes[id]
			ndEnd := nd.start + int64(nd.n)
			if ndEnd <= cur || nd.start <= cur {
				cur = max(cur, ndEnd)
				prev, id = id, nd.next
				continue
			}
			gEnd := min(nd.start, b)
			prev = r.insert(s, prev, cur, data[cur-a:gEnd-a])
			cur = gEnd
			continue
		}
		prev = r.insert(s, prev, cur, data[cur-a:b-a])
		cur = b
	}
	return bytes, true
}

// insert makes a node for data at offset start after node prev (0: at the
// head) and returns it.
func (r *Reassembler) insert(s *Stream, prev int32, start int64, data []byte) int32 {
	p := &r.pool
	id := p.getNode() // may move p.nodes: take pointers after
	nd := &p.nodes[id]
	nd.start, nd.n = start, int32(len(data))
	p.nodeFill(nd, data)
	if prev == 0 {
		nd.next, s.ooo = s.ooo, id
	} else {
		nd.next, p.nodes[prev].next = p.nodes[prev].next, id
	}
	s.oooBytes += int32(len(data))
	s.oooSegs++
	return id
}
