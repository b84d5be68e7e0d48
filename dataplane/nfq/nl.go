package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The queue's netlink socket, spoken to directly: go-nfqueue (on
// mdlayher/netlink) peeks before every read, allocates a page and a
// dozen attribute pointers per packet and sends one verdict per system
// call; this reads up to recvBatch packets per recvmmsg into fixed
// buffers, decodes them in place and sends the batch's verdicts in one
// sendmsg (the kernel runs every message of a netlink datagram).

// nfnetlink_queue protocol (linux/netfilter/nfnetlink_queue.h).
const (
	nfqnlMsgPacket = 0
	nfqnlMsgConfig = 2

	nfqaPacketHdr      = 1
	nfqaIfindexIndev   = 5
	nfqaIfindexPhysIn  = 7
	nfqaHwaddr         = 9
	nfqaCapLen         = 13
	nfqaSkbInfo        = 14
	nfqaCfgCmd         = 1
	nfqaCfgParams      = 2
	nfqaCfgQueueMaxlen = 3
	nfqaCfgMask        = 4
	nfqaCfgFlags       = 5

	nfqnlCfgCmdBind     = 1
	nfqnlCopyPacket     = 2
	nfqaCfgFFailOpen    = 1
	nfqaCfgFGSO         = 4
	nfqaSkbCsumNotReady = 1 // NFQA_SKB_INFO: CHECKSUM_PARTIAL, the TCP/UDP checksum is completed later
	nfqaSkbGSO          = 2 // NFQA_SKB_INFO: a GSO packet, queued whole

	nlmsgHdrLen = 16
	nlmsgError  = 2
	nlmsgDone   = 3
	nlmFRequest = 1
	nlmFAck     = 4

	solNetlink       = 270
	netlinkNoENOBUFS = 5
	netlinkCapAck    = 10
)

// Limits of the queue socket.
const (
	// recvBatch is the most packets one recvmmsg takes (and whose
	// verdicts go in one sendmsg).
	recvBatch = 16
	// recvBufLen holds the largest queued packet (the copy range is at
	// most 65531 bytes) and its attributes.
	recvBufLen = 68 << 10
	// verdictMsgMax is one verdict message without a replacement payload:
	// header, nfgenmsg, verdict header, mark.
	verdictMsgMax = nlmsgHdrLen + nfgenHeaderLen + 12 + 8
)

// ErrNFQMsg: a queue message that does not decode.
var ErrNFQMsg = errors.New("malformed nfqueue message")

// nfqPacket is what deepwall reads of one queued packet; Payload points
// into the receive buffer at PayloadOff.
type nfqPacket struct {
	ID                 uint32
	Mark               uint32
	InDev, PhysInDev   uint32
	HwAddr             [6]byte
	HaveID             bool
	HaveIn, HavePhysIn bool
	HaveHwAddr         bool
	// GSO: the kernel queued a GSO packet whole (NFQA_CFG_F_GSO); its
	// TCP/UDP checksum may be partial, its length above the MTU.
	GSO bool
	// CsumNotReady: the kernel has the packet as CHECKSUM_PARTIAL; its
	// TCP/UDP checksum field holds only the pseudo-header sum.
	CsumNotReady bool
	// CapLen is the packet's length when Payload was cut to the copy
	// range; 0 when it is whole.
	CapLen  uint32
	Payload []byte
	// PayloadOff is Payload's offset in the buffer (parseNFQPacket's base
	// plus its place in b).
	PayloadOff int
}

// parseNFQPacket decodes the attributes of one NFQNL_MSG_PACKET message
// (b: nfgenmsg and attributes; base: b's offset in its buffer, added to
// PayloadOff) in place, without allocating. It never reads outside b; a
// packet id found before an error is kept (HaveID), so the caller can
// still give the packet a verdict.
func parseNFQPacket(b []byte, base int, p *nfqPacket) error {
	*p = nfqPacket{}
	if len(b) < nfgenHeaderLen {
		return fmt.Errorf("%d bytes: %w", len(b), ErrNFQMsg)
	}
	off := nfgenHeaderLen
	for len(b)-off >= 4 {
		l := int(binary.NativeEndian.Uint16(b[off:]))
		typ := binary.NativeEndian.Uint16(b[off+2:]) & nlaTypeMask
		if l < 4 || l > len(b)-off {
			return fmt.Errorf("attribute %d length %d of %d bytes: %w", typ, l, len(b)-off, ErrNFQMsg)
		}
		d := b[off+4 : off+l]
		switch typ {
		case nfqaPacketHdr:
			if len(d) < 7 {
				return fmt.Errorf("packet header of %d bytes: %w", len(d), ErrNFQMsg)
			}
			p.ID, p.HaveID = binary.BigEndian.Uint32(d), true
		case nfqaMark:
			if len(d) >= 4 {
				p.Mark = binary.BigEndian.Uint32(d)
			}
		case nfqaIfindexIndev:
			if len(d) >= 4 {
				p.InDev, p.HaveIn = binary.BigEndian.Uint32(d), true
			}
		case nfqaIfindexPhysIn:
			if len(d) >= 4 {
				p.PhysInDev, p.HavePhysIn = binary.BigEndian.Uint32(d), true
			}
		case nfqaHwaddr:
			// struct nfqnl_msg_packet_hw: be16 length, 2 pad, 8 address.
			if len(d) >= 4+6 && binary.BigEndian.Uint16(d) >= 6 {
				copy(p.HwAddr[:], d[4:10])
				p.HaveHwAddr = true
			}
		case nfqaCapLen:
			if len(d) >= 4 {
				p.CapLen = binary.BigEndian.Uint32(d)
			}
		case nfqaSkbInfo:
			if len(d) >= 4 {
				info := binary.BigEndian.Uint32(d)
				p.GSO = info&nfqaSkbGSO != 0
				p.CsumNotReady = info&nfqaSkbCsumNotReady != 0
			}
		case nfqaPayload:
			p.Payload, p.PayloadOff = d, base+off+4
		}
		off += (l + 3) &^ 3
	}
	if !p.HaveID {
		return fmt.Errorf("no packet header: %w", ErrNFQMsg)
	}
	return nil
}

// nlMsg is one netlink message found in a datagram.
type nlMsg struct {
	Type, Flags uint16
	Seq         uint32
	Body        []byte
	BodyOff     int // Body's offset in the datagram
}

// nextNLMsg returns the message at the start of b and the rest of b;
// ok is false when b holds no complete message (trailing bytes are
// dropped: a datagram is never continued in the next).
func nextNLMsg(b []byte, off int) (m nlMsg, next int, ok bool) {
	if len(b)-off < nlmsgHdrLen {
		return m, len(b), false
	}
	l := int(binary.NativeEndian.Uint32(b[off:]))
	if l < nlmsgHdrLen || l > len(b)-off {
		return m, len(b), false
	}
	m = nlMsg{Type: binary.NativeEndian.Uint16(b[off+4:]), Flags: binary.NativeEndian.Uint16(b[off+6:]),
		Seq: binary.NativeEndian.Uint32(b[off+8:]), Body: b[off+nlmsgHdrLen : off+l], BodyOff: off + nlmsgHdrLen}
	next = off + (l+3)&^3
	if next > len(b) {
		next = len(b)
	}
	return m, next, true
}

// nlErrno is the error an NLMSG_ERROR body carries (0: an ack).
func nlErrno(body []byte) syscall.Errno {
	if len(body) < 4 {
		return syscall.EBADMSG
	}
	return syscall.Errno(-int32(binary.NativeEndian.Uint32(body)))
}

// nlSock is one NFQUEUE socket: non-blocking, in the Go poller (Close
// wakes a blocked receive), with fixed receive buffers.
type nlSock struct {
	f   *os.File
	rc  syscall.RawConn
	num uint16
	seq uint32

	bufs [recvBatch][]byte
	iov  [recvBatch]unix.Iovec
	hdrs [recvBatch]unix.Mmsghdr
	out  []byte // verdicts waiting for flush

	// readFn and writeFn are the callbacks recv and write give rc, made
	// once (a closure per call is allocated per batch), with what they
	// pass back.
	readFn, writeFn func(fd uintptr) bool
	rn              int
	rerr            error
	wb              []byte
	werr            error
}

// openNLSock opens a netlink socket for queue num (not yet bound).
func openNLSock(num uint16, rcvbuf int) (*nlSock, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	// A full socket buffer drops the packet message (the packet waits in
	// the queue until it overflows): no error to the reader for it.
	_ = unix.SetsockoptInt(fd, solNetlink, netlinkNoENOBUFS, 1)
	// Errors for verdicts carry the header only, not the whole request.
	_ = unix.SetsockoptInt(fd, solNetlink, netlinkCapAck, 1)
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	s := &nlSock{f: os.NewFile(uintptr(fd), fmt.Sprintf("nfqueue-%d", num)), num: num,
		out: make([]byte, 0, recvBatch*(verdictMsgMax+128))}
	if s.rc, err = s.f.SyscallConn(); err != nil {
		s.f.Close()
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	s.readFn, s.writeFn = s.recvmmsg, s.writeOnce
	for i := range s.bufs {
		s.bufs[i] = make([]byte, recvBufLen)
		s.iov[i].Base = &s.bufs[i][0]
		s.iov[i].SetLen(recvBufLen)
		s.hdrs[i].Hdr.Iov = &s.iov[i]
		s.hdrs[i].Hdr.SetIovlen(1)
	}
	return s, nil
}

// appendNLMsg appends a netlink message header for a body of n bytes.
func appendNLMsg(b []byte, typ, flags uint16, seq uint32, n int) []byte {
	b = binary.NativeEndian.AppendUint32(b, uint32(nlmsgHdrLen+n))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	return binary.NativeEndian.AppendUint32(b, 0)
}

// appendNLAttr appends an attribute (payload padded to 4).
func appendNLAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// config sends one NFQNL_MSG_CONFIG for the queue with attrs (already
// encoded) and waits for its ack. Packets queued meanwhile (there are
// none: the rules come after the queues) get verdict v.
func (s *nlSock) config(attrs []byte, v uint32) error {
	s.seq++
	msg := appendNLMsg(nil, nfnlSubsysQueue<<8|nfqnlMsgConfig, nlmFRequest|nlmFAck, s.seq, nfgenHeaderLen+len(attrs))
	msg = append(msg, unix.AF_UNSPEC, 0, byte(s.num>>8), byte(s.num))
	msg = append(msg, attrs...)
	if err := s.write(msg); err != nil {
		return err
	}
	for {
		n, err := s.recv()
		if err != nil {
			return err
		}
		for i := range n {
			b := s.bufs[i][:s.hdrs[i].Len]
			for off := 0; ; {
				m, next, ok := nextNLMsg(b, off)
				if !ok {
					break
				}
				off = next
				switch {
				case m.Type == nlmsgError && m.Seq == s.seq:
					if e := nlErrno(m.Body); e != 0 {
						return e
					}
					return nil
				case m.Type == nfnlSubsysQueue<<8|nfqnlMsgPacket:
					var p nfqPacket
					if parseNFQPacket(m.Body, 0, &p); p.HaveID {
						s.appendVerdict(p.ID, v, 0, false, nil)
					}
				}
			}
		}
		if err := s.flush(); err != nil {
			return err
		}
	}
}

// bind binds the queue to this socket and configures it: whole packets
// up to maxPacket bytes, maxLen packets at most, flags.
func (s *nlSock) bind(maxPacket, maxLen, flags uint32, v uint32) error {
	if err := s.config(appendNLAttr(nil, nfqaCfgCmd, []byte{nfqnlCfgCmdBind, 0, 0, 0}), v); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	var a []byte
	params := binary.BigEndian.AppendUint32(nil, maxPacket)
	a = appendNLAttr(a, nfqaCfgParams, append(params, nfqnlCopyPacket))
	a = appendNLAttr(a, nfqaCfgQueueMaxlen, binary.BigEndian.AppendUint32(nil, maxLen))
	if flags != 0 {
		a = appendNLAttr(a, nfqaCfgMask, binary.BigEndian.AppendUint32(nil, flags))
		a = appendNLAttr(a, nfqaCfgFlags, binary.BigEndian.AppendUint32(nil, flags))
	}
	if err := s.config(a, v); err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	return nil
}

// recv waits for at least one datagram and reads up to recvBatch; the
// i-th is s.bufs[i][:s.hdrs[i].Len].
func (s *nlSock) recv() (int, error) {
	s.rn, s.rerr = 0, nil
	if err := s.rc.Read(s.readFn); err != nil {
		return 0, err
	}
	return s.rn, s.rerr
}

// recvmmsg is recv's callback: false (wait for the poller) while there is
// nothing to read.
func (s *nlSock) recvmmsg(fd uintptr) bool {
	r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), recvBatch, unix.MSG_DONTWAIT, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	s.rn = int(r)
	if e != 0 {
		s.rerr = e
	}
	return true
}

// appendVerdict queues a verdict for packet id: v, with the packet mark
// set to mark when setMark, and the packet replaced by payload if not nil.
func (s *nlSock) appendVerdict(id, v uint32, mark uint32, setMark bool, payload []byte) {
	n := nfgenHeaderLen + 12
	if setMark {
		n += 8
	}
	if payload != nil {
		n += 4 + (len(payload)+3)&^3
	}
	b := appendNLMsg(s.out, nfnlSubsysQueue<<8|nfqnlMsgVerdict, nlmFRequest, 0, n)
	b = append(b, unix.AF_UNSPEC, 0, byte(s.num>>8), byte(s.num))
	b = binary.NativeEndian.AppendUint16(b, 12)
	b = binary.NativeEndian.AppendUint16(b, nfqaVerdictHdr)
	b = binary.BigEndian.AppendUint32(b, v)
	b = binary.BigEndian.AppendUint32(b, id)
	if setMark {
		b = binary.NativeEndian.AppendUint16(b, 8)
		b = binary.NativeEndian.AppendUint16(b, nfqaMark)
		b = binary.BigEndian.AppendUint32(b, mark)
	}
	if payload != nil {
		b = appendNLAttr(b, nfqaPayload, payload)
	}
	s.out = b
}

// flush sends the verdicts queued since the last flush in one datagram.
func (s *nlSock) flush() error {
	if len(s.out) == 0 {
		return nil
	}
	err := s.write(s.out)
	s.out = s.out[:0]
	return err
}

func (s *nlSock) write(b []byte) error {
	s.wb, s.werr = b, nil
	err := s.rc.Write(s.writeFn)
	s.wb = nil
	if err != nil {
		return err
	}
	return s.werr
}

// writeOnce is write's callback.
func (s *nlSock) writeOnce(fd uintptr) bool {
	_, s.werr = unix.Write(int(fd), s.wb)
	return s.werr != unix.EAGAIN && s.werr != unix.EINTR
}

// close closes the socket; the kernel unbinds the queue and drops what
// waits in it for a verdict.
func (s *nlSock) close() error { return s.f.Close() }
