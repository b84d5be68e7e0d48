package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/xdp"
)

// nfqueue netlink constants (linux/netfilter/nfnetlink_queue.h).
const (
	nfnlSubsysQueue = 3
	nfqnlMsgVerdict = 1
	nfqaVerdictHdr  = 2
	nfqaMark        = 3
	nfqaPayload     = 10
	nfDrop          = 0
	nfAccept        = 1
	nfRepeat        = 4
	etherTypeIPv4   = 0x0800
	etherTypeIPv6   = 0x86dd
	protoTCP        = 6
	tcpFlagRST      = 0x04
)

// queue is one NFQUEUE queue: its socket, the goroutine that reads it
// and judges what it reads, and that goroutine's buffers.
type queue struct {
	p    *Pair
	num  uint16
	nl   *nlSock
	raw  int // AF_PACKET socket for resets to the sender; -1 if none
	once sync.Once
	done chan struct{} // closed when the reader returns; nil before register

	cur nfqPacket
	pkt dataplane.Packet
	now int64 // when the batch being judged was received (mono ns)
	rst []byte
	// peerMAC is the MAC address the judged packet's receiver sent its
	// own packets of the flow from (set by judge when known).
	peerMAC     [6]byte
	havePeerMAC bool
	// rewritten: the Inspector rewrote the packet being judged.
	rewritten bool

	side [2]sideCounters
}

type sideCounters struct {
	rx, accepted, dropped, malformed, nonIP, resets, errors atomic.Uint64
}

func (p *Pair) openQueue(num uint16) (*queue, error) {
	nl, err := openNLSock(num, sockBuf)
	if err != nil {
		return nil, fmt.Errorf("nfqueue %d: %w", num, err)
	}
	q := &queue{p: p, num: num, nl: nl, raw: -1, rst: make([]byte, dataplane.MaxRSTLen+64)}
	// Resets to a blocked flow's sender go out of its ingress port.
	if fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err == nil {
		q.raw = fd
	} else {
		p.log.Warn("no packet socket: blocked TCP senders get no reset", "error", err)
	}
	return q, nil
}

// register binds the queue and starts its reader; an error that ends
// the reader goes to errc.
func (q *queue) register(errc chan<- error) error {
	flags, v := uint32(0), uint32(nfAccept)
	if !q.p.cfg.FailClosed {
		// A full queue accepts instead of dropping.
		flags |= nfqaCfgFFailOpen
	} else {
		v = nfDrop
	}
	// GSO packets queued whole, not cut into segments by the kernel first
	// (one verdict per up to 64 KiB instead of one per segment); kernels
	// without the flag queue segments.
	err := q.nl.bind(maxPacket, q.p.cfg.QueueLen, flags|nfqaCfgFGSO, v)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		err = q.nl.bind(maxPacket, q.p.cfg.QueueLen, flags, v)
	}
	if err != nil {
		// The kernel answers EPERM when another socket holds the queue
		// (EBUSY only when this one does); EPERM is also its answer to a
		// caller without CAP_NET_ADMIN, which is told apart here.
		if errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EPERM) && haveNetAdmin() {
			return fmt.Errorf("nfqueue %d: %w", q.num, ErrQueueBusy)
		}
		return fmt.Errorf("nfqueue %d: %w", q.num, err)
	}
	q.done = make(chan struct{})
	go q.read(errc)
	return nil
}

// read receives batches of queued packets, judges each and sends the
// batch's verdicts together, until the socket is closed.
func (q *queue) read(errc chan<- error) {
	defer close(q.done)
	for {
		n, err := q.nl.recv()
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, unix.ENOBUFS) {
				q.side[0].errors.Add(1)
				continue
			}
			select {
			case errc <- fmt.Errorf("nfqueue %d: receive: %w", q.num, err):
			default:
			}
			return
		}
		q.now = dataplane.MonoNow()
		for i := range n {
			q.datagram(q.nl.bufs[i][:q.nl.hdrs[i].Len], q.nl.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0)
		}
		if err := q.nl.flush(); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			q.side[0].errors.Add(1)
		}
	}
}

// datagram judges the packets of one datagram (one, from the kernel's
// queue) and counts the errors the kernel reports for verdicts.
func (q *queue) datagram(b []byte, truncated bool) {
	for off := 0; ; {
		m, next, ok := nextNLMsg(b, off)
		if !ok {
			// Cannot happen with recvBufLen above the copy range; if it
			// did, the packet still gets a verdict (its id comes first).
			if truncated && off == 0 && len(b) > nlmsgHdrLen {
				if parseNFQPacket(b[nlmsgHdrLen:], nlmsgHdrLen, &q.cur); q.cur.HaveID {
					q.side[0].malformed.Add(1)
					q.verdict(q.cur.ID, nfDrop, 0, 0, nil)
				}
			}
			return
		}
		off = next
		switch m.Type {
		case nfnlSubsysQueue<<8 | nfqnlMsgPacket:
			q.handle(b, m)
		case nlmsgError:
			if nlErrno(m.Body) != 0 {
				q.side[0].errors.Add(1)
			}
		}
	}
}

func (q *queue) close() error {
	var err error
	q.once.Do(func() {
		err = q.nl.close()
		if q.done != nil {
			<-q.done
		}
		if q.raw >= 0 {
			unix.Close(q.raw)
			q.raw = -1
		}
	})
	return err
}

// sideOf tells which port a packet came in on.
func (q *queue) sideOf(a *nfqPacket) dataplane.Side {
	dev, ok := a.InDev, a.HaveIn
	if q.p.bridged {
		dev, ok = a.PhysInDev, a.HavePhysIn
	}
	if ok && int32(dev) == q.p.ports[dataplane.Outer].ifindex {
		return dataplane.Outer
	}
	return dataplane.Inner
}

// handle judges one queued packet (message m of datagram b): the flow
// table's verdict for decided flows, else the Inspector's. The frame the
// Inspector gets is the payload in place in b with a synthetic Ethernet
// header written over the attributes before it (already decoded).
func (q *queue) handle(b []byte, m nlMsg) {
	a := &q.cur
	if err := parseNFQPacket(m.Body, m.BodyOff, a); err != nil {
		if a.HaveID {
			q.side[0].malformed.Add(1)
			q.verdict(a.ID, nfDrop, 0, 0, nil)
		}
		return
	}
	id := a.ID
	if len(a.Payload) == 0 {
		q.verdict(id, nfAccept, 0, 0, nil)
		return
	}
	pl, pm := a.Payload, a.Mark
	side := q.sideOf(a)
	c := &q.side[side]
	c.rx.Add(1)
	if a.PayloadOff < ethLen {
		c.malformed.Add(1)
		c.dropped.Add(1)
		q.verdict(id, nfDrop, 0, 0, nil)
		return
	}
	frame := b[a.PayloadOff-ethLen : a.PayloadOff+len(pl)]
	// A synthetic Ethernet header: destination the ingress port, source
	// the sender's MAC when the kernel gives it (a reset to the sender is
	// addressed back to it).
	copy(frame[0:6], q.p.ports[side].mac[:])
	clear(frame[6:12])
	if a.HaveHwAddr {
		copy(frame[6:12], a.HwAddr[:])
	}
	clear(frame[12:14])
	switch pl[0] >> 4 {
	case 4:
		binary.BigEndian.PutUint16(frame[12:], etherTypeIPv4)
	case 6:
		binary.BigEndian.PutUint16(frame[12:], etherTypeIPv6)
	}
	switch dataplane.ParsePacket(frame, &q.pkt) {
	case dataplane.KindOther:
		c.nonIP.Add(1)
		c.accepted.Add(1)
		q.verdict(id, nfAccept, 0, 0, nil)
		return
	case dataplane.KindMalformed:
		c.malformed.Add(1)
		c.dropped.Add(1)
		q.verdict(id, nfDrop, 0, 0, nil)
		return
	}
	w := q.p.work[q.pkt.Key.Worker(len(q.p.work))]
	w.mu.Lock()
	act, reset, mk := w.judge(q, frame, side)
	w.mu.Unlock()
	if act == dataplane.Forward {
		c.accepted.Add(1)
		var payload []byte
		if q.rewritten {
			// The Inspector rewrote the packet in place (same length,
			// checksums right): the kernel takes it back with the
			// verdict.
			payload = frame[ethLen:]
		}
		q.verdict(id, nfAccept, mk, pm, payload)
		return
	}
	c.dropped.Add(1)
	if reset {
		if a.GSO && q.havePeerMAC && q.raw >= 0 {
			q.resetGSO(id, frame, side, mk, pm)
		} else {
			q.reset(id, frame, side, mk, pm)
		}
		return
	}
	q.verdict(id, nfDrop, mk, pm, nil)
}

// resetGSO is reset for a packet the kernel queued as GSO: replacing its
// payload would leave the kernel a GSO packet shorter than one segment
// (dropped, with a warning, by software segmentation on a port without
// TSO), so it is dropped and both resets go out on the packet socket, the
// receiver's addressed to the MAC its own packets of the flow came from.
func (q *queue) resetGSO(id uint32, frame []byte, side dataplane.Side, mk, pm uint32) {
	q.verdict(id, nfDrop, mk, pm, nil)
	select {
	case q.p.ctDel <- q.pkt.Key:
	default:
	}
	out := side.Peer()
	if n, err := dataplane.BuildRST(q.rst, frame, &q.pkt, false); err == nil {
		copy(q.rst[0:6], q.peerMAC[:])
		copy(q.rst[6:12], q.p.ports[out].mac[:])
		if q.sendRaw(q.rst[:n], out, frame) {
			q.side[out].resets.Add(1)
		}
	}
	if n, err := dataplane.BuildRST(q.rst, frame, &q.pkt, true); err == nil {
		if q.sendRaw(q.rst[:n], side, frame) {
			q.side[side].resets.Add(1)
		}
	}
}

// sendRaw sends frame f out of port side on the packet socket, after
// the verdicts judged before it: a reset must not overtake the segments
// before it (the receiver takes a reset only at the sequence it expects).
func (q *queue) sendRaw(f []byte, side dataplane.Side, orig []byte) bool {
	if err := q.nl.flush(); err != nil {
		q.side[0].errors.Add(1)
	}
	sa := &unix.SockaddrLinklayer{Ifindex: int(q.p.ports[side].ifindex), Halen: 6, Protocol: htons(binary.BigEndian.Uint16(orig[12:]))}
	copy(sa.Addr[:6], f[0:6])
	if err := unix.Sendto(q.raw, f, 0, sa); err != nil {
		q.side[side].errors.Add(1)
		return false
	}
	return true
}

// reset answers a dropped TCP segment with a reset to each end: the
// receiver's is the dropped packet rewritten (accepted in its place, so
// routing and the bridge deliver it), the sender's goes out of the
// ingress port on the packet socket.
func (q *queue) reset(id uint32, frame []byte, side dataplane.Side, mk, pm uint32) {
	c := &q.side[side]
	n, err := dataplane.BuildRST(q.rst, frame, &q.pkt, false)
	if err != nil {
		q.verdict(id, nfDrop, mk, pm, nil)
		return
	}
	ip := q.rst[ethLen:n]
	ipLen := int(binary.BigEndian.Uint16(ip[2:])) // IPv4 total length
	if q.pkt.IPv6 {
		ipLen = 40 + int(binary.BigEndian.Uint16(ip[4:]))
	}
	if ipLen > len(ip) {
		q.verdict(id, nfDrop, mk, pm, nil)
		return
	}
	// Unmarked: a reset flow stays off the fast path (entry.reset), and
	// a marked reset would be dropped itself.
	q.verdict(id, nfAccept, 0, 0, ip[:ipLen])
	q.side[side.Peer()].resets.Add(1)
	// Conntrack saw neither reset (the rewrite happens after it, the
	// other leaves by the packet socket): without this the connection
	// would stay established for days.
	select {
	case q.p.ctDel <- q.pkt.Key:
	default:
	}
	if q.raw < 0 {
		return
	}
	n, err = dataplane.BuildRST(q.rst, frame, &q.pkt, true)
	if err != nil {
		return
	}
	if q.sendRaw(q.rst[:n], side, frame) {
		c.resets.Add(1)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// verdict queues one verdict (sent with the rest of the batch). With mk
// (a decided flow's mark) the packet goes back to the chain (NF_REPEAT)
// carrying mk in deepwall's bits of its packet mark (the others kept from
// pktMark), where a CONNMARK rule gives it to the connection and the
// fast-path rule accepts or drops it. With payload the packet is replaced
// (a reset) and accepted.
func (q *queue) verdict(id uint32, v uint32, mk, pktMark uint32, payload []byte) {
	if mk != 0 && payload == nil {
		v = nfRepeat
	}
	q.nl.appendVerdict(id, v, pktMark&^MarkMask|mk, v == nfRepeat, payload)
}

// worker is one inspection worker: Inspect for it runs under mu (queues
// share workers: a flow's worker is its key's hash, as in the AF_XDP
// path and the engine), and mu also guards its part of the flow table.
type worker struct {
	id    int
	p     *Pair
	mu    sync.Mutex
	flows map[xdp.FlowKey]*entry
	frame dataplane.Frame

	inspected, forwarded, dropped, finals, cacheHits, full atomic.Uint64
}

func newWorker(p *Pair, id int) *worker {
	return &worker{id: id, p: p, flows: make(map[xdp.FlowKey]*entry)}
}

// entry is the flow table's record of one flow: what came through the
// queue, its verdict, and the conntrack counters last read.
type entry struct {
	verdict xdp.Verdict
	ruleID  uint32
	// kernel: the flow had a final verdict (or a revoked one), so it is
	// listed as a kernel flow and reported when it ends.
	kernel bool
	// reset: the flow was dropped with resets. Its packets are not put on
	// the kernel's drop path: each one that comes later is answered with
	// resets too. A receiver takes a reset only at the sequence it expects
	// next, which is the dropped segment's only when nothing before it is
	// missing; when a segment the verdicts let through is lost on its way,
	// the receiver answers the first reset with a challenge ACK (RFC 5961)
	// naming what it expects, and that ACK's reset lands.
	reset  bool
	queued [2][2]uint64 // [dir][packets, bytes] through the queue
	ct     [2][2]uint64 // conntrack totals, last read
	last   int64        // last packet through the queue (mono ns)
	// mac is the source MAC of each direction's packets (the senders'),
	// for resets sent on the packet socket.
	mac     [2][6]byte
	haveMAC [2]bool
	created int64
	ctSeen  int64 // last sweep that found it in conntrack
}

// judge decides one parsed packet (w.mu held): a decided flow's packets
// (in flight when its mark was set, or back after a generation change)
// follow the table and are marked again; the others go to the Inspector.
func (w *worker) judge(q *queue, frame []byte, side dataplane.Side) (dataplane.Action, bool, uint32) {
	pk := &q.pkt
	now := q.now
	var e *entry
	q.havePeerMAC, q.rewritten = false, false
	if pk.Keyed {
		e = w.flows[pk.Key]
		if e == nil {
			if len(w.flows) < w.p.cfg.MaxFlows/len(w.p.work)+1 {
				e = &entry{created: now}
				w.flows[pk.Key] = e
			} else {
				w.full.Add(1)
			}
		}
	}
	if e != nil {
		e.queued[pk.Dir][0]++
		e.queued[pk.Dir][1] += uint64(len(frame) - ethLen)
		e.last = now
		if a := &q.cur; a.HaveHwAddr {
			e.mac[pk.Dir], e.haveMAC[pk.Dir] = a.HwAddr, true
		}
		q.peerMAC, q.havePeerMAC = e.mac[1-pk.Dir], e.haveMAC[1-pk.Dir]
		if e.verdict != xdp.VerdictInspect {
			w.cacheHits.Add(1)
			mk := mark(e.verdict, w.p.gen.Load())
			if e.verdict == xdp.VerdictAllow {
				w.forwarded.Add(1)
				return dataplane.Forward, false, mk
			}
			w.dropped.Add(1)
			if e.reset {
				// Never a reset for a reset.
				return dataplane.Drop, pk.TCPFlags&tcpFlagRST == 0, 0
			}
			return dataplane.Drop, false, mk
		}
	}
	w.frame = dataplane.Frame{Data: frame, Ingress: side, Ifindex: int(q.p.ports[side].ifindex), Key: pk.Key, Dir: pk.Dir, Timestamp: now, ChecksumComplete: !q.cur.CsumNotReady}
	v := w.p.cfg.Inspector.Inspect(w.id, &w.frame)
	w.frame = dataplane.Frame{}
	q.rewritten = v.Rewritten && v.Action == dataplane.Forward
	w.inspected.Add(1)
	var mk uint32
	if v.Final && pk.Keyed {
		kv := xdp.VerdictAllow
		if v.Action == dataplane.Drop {
			kv = xdp.VerdictDrop
		}
		mk = mark(kv, w.p.gen.Load())
		w.finals.Add(1)
		if e != nil {
			e.verdict, e.ruleID, e.kernel = kv, v.RuleID, true
		}
	}
	if v.Action == dataplane.Forward {
		w.forwarded.Add(1)
		return dataplane.Forward, false, mk
	}
	w.dropped.Add(1)
	reset := v.Reset && pk.Keyed && pk.Proto == protoTCP
	if reset && e != nil && v.Final {
		e.reset, mk = true, 0
	}
	return dataplane.Drop, reset, mk
}

// haveNetAdmin reports whether the calling thread has CAP_NET_ADMIN in
// its effective set.
func haveNetAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil {
		return false
	}
	return data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) != 0
}
