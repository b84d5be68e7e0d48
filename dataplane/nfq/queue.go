package nfq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
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
)

// queue is one NFQUEUE queue: its socket, the goroutine the library runs
// its callback on, and that goroutine's buffers.
type queue struct {
	p    *Pair
	num  uint16
	nf   *nfqueue.Nfqueue
	raw  int // AF_PACKET socket for resets to the sender; -1 if none
	once sync.Once

	frame []byte // synthetic Ethernet header + packet
	pkt   dataplane.Packet
	fr    dataplane.Frame
	rst   []byte
	msg   []byte

	side [2]sideCounters
}

type sideCounters struct {
	rx, accepted, dropped, malformed, nonIP, resets, errors atomic.Uint64
}

func (p *Pair) openQueue(num uint16) (*queue, error) {
	flags := uint32(0)
	if !p.cfg.FailClosed {
		// A full queue accepts instead of dropping.
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	nf, err := nfqueue.Open(&nfqueue.Config{NfQueue: num, MaxPacketLen: maxPacket, MaxQueueLen: p.cfg.QueueLen,
		Copymode: nfqueue.NfQnlCopyPacket, Flags: flags, Logger: nfLogger{p.log}})
	if err != nil {
		return nil, fmt.Errorf("nfqueue %d: %w", num, err)
	}
	q := &queue{p: p, num: num, nf: nf, raw: -1, frame: make([]byte, ethLen+maxPacket),
		rst: make([]byte, dataplane.MaxRSTLen+64), msg: make([]byte, 0, 128)}
	_ = nf.SetOption(netlink.NoENOBUFS, true)
	_ = nf.Con.SetReadBuffer(sockBuf)
	// Resets to a blocked flow's sender go out of its ingress port.
	if fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err == nil {
		q.raw = fd
	} else {
		p.log.Warn("no packet socket: blocked TCP senders get no reset", "error", err)
	}
	return q, nil
}

// register binds the queue and starts its callback; errors that end it
// go to errc.
func (q *queue) register(ctx context.Context, errc chan<- error) error {
	err := q.nf.RegisterWithErrorFunc(ctx, q.handle, func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		var op *netlink.OpError
		if errors.As(err, &op) && (op.Timeout() || errors.Is(op.Err, unix.ENOBUFS)) {
			return 0
		}
		if errors.Is(err, unix.ENOBUFS) {
			return 0
		}
		errc <- fmt.Errorf("nfqueue %d: receive: %w", q.num, err)
		return 1
	})
	if err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("nfqueue %d: %w", q.num, ErrQueueBusy)
		}
		return fmt.Errorf("nfqueue %d: bind: %w", q.num, err)
	}
	return nil
}

func (q *queue) close() error {
	var err error
	q.once.Do(func() {
		err = q.nf.Close()
		if q.raw >= 0 {
			unix.Close(q.raw)
			q.raw = -1
		}
	})
	return err
}

// side tells which port a packet came in on.
func (q *queue) sideOf(a *nfqueue.Attribute) dataplane.Side {
	dev := a.InDev
	if q.p.bridged {
		dev = a.PhysInDev
	}
	if dev != nil && int32(*dev) == q.p.ports[dataplane.Outer].ifindex {
		return dataplane.Outer
	}
	return dataplane.Inner
}

// handle judges one queued packet: the flow table's verdict for decided
// flows, else the Inspector's. It always returns 0 (keep receiving).
func (q *queue) handle(a nfqueue.Attribute) int {
	if a.PacketID == nil {
		return 0
	}
	id := *a.PacketID
	if a.Payload == nil || len(*a.Payload) == 0 {
		q.verdict(id, nfAccept, 0, 0, nil)
		return 0
	}
	pl := *a.Payload
	var pm uint32
	if a.Mark != nil {
		pm = *a.Mark
	}
	side := q.sideOf(&a)
	c := &q.side[side]
	c.rx.Add(1)
	n := copy(q.frame[ethLen:], pl)
	frame := q.frame[:ethLen+n]
	// A synthetic Ethernet header: destination the ingress port, source
	// the sender's MAC when the kernel gives it (a reset to the sender is
	// addressed back to it).
	copy(frame[0:6], q.p.ports[side].mac[:])
	clear(frame[6:12])
	if a.HwAddr != nil && len(*a.HwAddr) >= 6 {
		copy(frame[6:12], (*a.HwAddr)[:6])
	}
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
		return 0
	case dataplane.KindMalformed:
		c.malformed.Add(1)
		c.dropped.Add(1)
		q.verdict(id, nfDrop, 0, 0, nil)
		return 0
	}
	w := q.p.work[q.pkt.Key.Hash()%uint32(len(q.p.work))]
	w.mu.Lock()
	act, reset, mk := w.judge(q, frame, side)
	w.mu.Unlock()
	if act == dataplane.Forward {
		c.accepted.Add(1)
		q.verdict(id, nfAccept, mk, pm, nil)
		return 0
	}
	c.dropped.Add(1)
	if reset {
		q.reset(id, frame, side, mk, pm)
		return 0
	}
	q.verdict(id, nfDrop, mk, pm, nil)
	return 0
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
	// The flow's drop mark is set by its next packet (the table
	// remembers the verdict): a marked reset would be dropped itself.
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
	sa := &unix.SockaddrLinklayer{Ifindex: int(q.p.ports[side].ifindex), Halen: 6, Protocol: htons(binary.BigEndian.Uint16(frame[12:]))}
	copy(sa.Addr[:6], q.rst[0:6])
	if err := unix.Sendto(q.raw, q.rst[:n], 0, sa); err != nil {
		c.errors.Add(1)
		return
	}
	c.resets.Add(1)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// verdict sends one verdict. With mk (a decided flow's mark) the packet
// goes back to the chain (NF_REPEAT) carrying mk in deepwall's bits of its
// packet mark (the others kept from pktMark), where a CONNMARK rule gives
// it to the connection and the fast-path rule accepts or drops it. With
// payload the packet is replaced (a reset) and accepted.
func (q *queue) verdict(id uint32, v uint32, mk, pktMark uint32, payload []byte) {
	b := q.msg[:0]
	b = append(b, unix.AF_UNSPEC, 0, byte(q.num>>8), byte(q.num))
	if mk != 0 && payload == nil {
		v = nfRepeat
	}
	b = appendAttr(b, nfqaVerdictHdr, be32(v), be32(id))
	if v == nfRepeat {
		b = appendAttr(b, nfqaMark, be32(pktMark&^MarkMask|mk))
	}
	if payload != nil {
		b = appendAttr(b, nfqaPayload, payload)
	}
	q.msg = b[:0]
	_, err := q.nf.Con.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysQueue<<8 | nfqnlMsgVerdict), Flags: netlink.Request},
		Data:   b,
	})
	if err != nil {
		q.side[0].errors.Add(1)
	}
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// appendAttr appends a netlink attribute made of parts, padded to 4.
func appendAttr(b []byte, typ uint16, parts ...[]byte) []byte {
	l := 4
	for _, p := range parts {
		l += len(p)
	}
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	for _, p := range parts {
		b = append(b, p...)
	}
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
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
	kernel  bool
	queued  [2][2]uint64 // [dir][packets, bytes] through the queue
	ct      [2][2]uint64 // conntrack totals, last read
	last    int64        // last packet through the queue (mono ns)
	created int64
	ctSeen  int64 // last sweep that found it in conntrack
}

// judge decides one parsed packet (w.mu held): a decided flow's packets
// (in flight when its mark was set, or back after a generation change)
// follow the table and are marked again; the others go to the Inspector.
func (w *worker) judge(q *queue, frame []byte, side dataplane.Side) (dataplane.Action, bool, uint32) {
	pk := &q.pkt
	now := monoNow()
	var e *entry
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
		if e.verdict != xdp.VerdictInspect {
			w.cacheHits.Add(1)
			mk := mark(e.verdict, w.p.gen.Load())
			if e.verdict == xdp.VerdictAllow {
				w.forwarded.Add(1)
				return dataplane.Forward, false, mk
			}
			w.dropped.Add(1)
			return dataplane.Drop, false, mk
		}
	}
	w.frame = dataplane.Frame{Data: frame, Ingress: side, Key: pk.Key, Dir: pk.Dir, Timestamp: now}
	v := w.p.cfg.Inspector.Inspect(w.id, &w.frame)
	w.frame = dataplane.Frame{}
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
	return dataplane.Drop, v.Reset && pk.Keyed && pk.Proto == protoTCP, mk
}
