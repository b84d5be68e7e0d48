package afxdp

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket defaults and limits.
const (
	// DefaultRingSize is the entry count of each ring when not configured.
	DefaultRingSize = 2048
	// MaxRingSize bounds a configured ring.
	MaxRingSize = 1 << 16
	// DefaultBusyPollUsec is SO_BUSY_POLL's time when busy polling is on.
	DefaultBusyPollUsec = 20
	// DefaultBusyPollBudget is SO_BUSY_POLL_BUDGET when busy polling is on.
	DefaultBusyPollBudget = 64
	// maxTxBudget caps XDP_MAX_TX_SKB_BUDGET: how many TX descriptors one
	// sendto processes in copy mode (the kernel default is 32).
	maxTxBudget = 256
)

// SocketConfig sizes a socket's rings and chooses its mode. Zero sizes take
// DefaultRingSize; set NoRx or NoTx for a one-way socket.
type SocketConfig struct {
	RxSize, TxSize, FillSize, CompSize uint32
	NoRx, NoTx                         bool
	// ZeroCopy asks for XDP_ZEROCOPY first and falls back to copy mode
	// when the driver cannot (veth cannot). Sockets sharing a UMEM inherit
	// the mode of the socket that registered it.
	ZeroCopy bool
	// BusyPoll sets SO_PREFER_BUSY_POLL, SO_BUSY_POLL and
	// SO_BUSY_POLL_BUDGET so that poll() and sendto() drive the device's
	// NAPI directly; failures are ignored (BusyPolling reports the result).
	BusyPoll       bool
	BusyPollUsec   int
	BusyPollBudget int
}

func (c *SocketConfig) setDefaults() error {
	for _, p := range []*uint32{&c.RxSize, &c.TxSize, &c.FillSize, &c.CompSize} {
		if *p == 0 {
			*p = DefaultRingSize
		}
		if *p > MaxRingSize || *p&(*p-1) != 0 {
			return fmt.Errorf("ring size %d: %w", *p, ErrRingSize)
		}
	}
	if c.NoRx && c.NoTx {
		return fmt.Errorf("socket with neither rx nor tx ring: %w", ErrRingSize)
	}
	if c.BusyPollUsec == 0 {
		c.BusyPollUsec = DefaultBusyPollUsec
	}
	if c.BusyPollBudget == 0 {
		c.BusyPollBudget = DefaultBusyPollBudget
	}
	return nil
}

// Socket is an AF_XDP socket bound to one queue of one device, with its
// own fill, completion, RX and TX rings over a (possibly shared) UMEM.
type Socket struct {
	fd       int
	umem     *Umem
	ifindex  int
	queue    int
	zeroCopy bool
	busyPoll bool
	closed   bool

	// Rings; Rx or Tx is nil for a one-way socket.
	Fill *ProdRing[uint64]
	Comp *ConsRing[uint64]
	Rx   *ConsRing[Desc]
	Tx   *ProdRing[Desc]

	maps   [][]byte
	inFill int // frames this socket handed to the kernel for receiving
	inTx   int // frames this socket handed to the kernel for sending
	addrs  []uint64
	stats  SocketStats
}

// SocketStats are user-space counters of one socket.
type SocketStats struct {
	RxFrames, TxFrames, Completed uint64
	TxKicks, FillWakeups          uint64
	BadDescs                      uint64 // descriptors outside the UMEM (never expected)
}

// NewSocket creates an AF_XDP socket on (ifindex, queue) over u. The first
// socket on a UMEM registers it; later ones share it with XDP_SHARED_UMEM
// and must be on a different device or queue (each socket keeps its own
// fill and completion ring, which the kernel allows across devices since
// 5.10). The caller puts the socket into an XSKMAP to receive.
func NewSocket(u *Umem, ifindex, queue int, cfg SocketConfig) (*Socket, error) {
	if u.closed {
		return nil, ErrClosed
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	for _, o := range u.sockets {
		if !o.closed && o.ifindex == ifindex && o.queue == queue {
			return nil, fmt.Errorf("socket on ifindex %d queue %d: umem already has one there", ifindex, queue)
		}
	}
	shared := u.regFD >= 0
	var flags uint16
	if !shared {
		flags = unix.XDP_USE_NEED_WAKEUP
		if cfg.ZeroCopy {
			s, err := newSocket(u, ifindex, queue, cfg, flags|unix.XDP_ZEROCOPY)
			if err == nil {
				return s, nil
			}
			// Not every driver has a zero-copy path (veth has none): fall
			// back to copy mode on a fresh socket.
		}
		flags |= unix.XDP_COPY
	} else {
		// Shared sockets take their mode from the registering socket and
		// may not state flags of their own.
		flags = unix.XDP_SHARED_UMEM
	}
	return newSocket(u, ifindex, queue, cfg, flags)
}

func newSocket(u *Umem, ifindex, queue int, cfg SocketConfig, flags uint16) (_ *Socket, err error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("create af_xdp socket: %w", err)
	}
	s := &Socket{fd: fd, umem: u, ifindex: ifindex, queue: queue, addrs: make([]uint64, 64)}
	registered := false
	defer func() {
		if err != nil {
			s.release()
			if registered {
				u.regFD = -1
			}
		}
	}()
	if u.regFD < 0 {
		if err = u.register(fd); err != nil {
			return nil, err
		}
		registered = true
	}
	ringOpts := []struct {
		opt  int
		size uint32
		on   bool
		name string
	}{
		{unix.XDP_UMEM_FILL_RING, cfg.FillSize, true, "fill"},
		{unix.XDP_UMEM_COMPLETION_RING, cfg.CompSize, true, "completion"},
		{unix.XDP_RX_RING, cfg.RxSize, !cfg.NoRx, "rx"},
		{unix.XDP_TX_RING, cfg.TxSize, !cfg.NoTx, "tx"},
	}
	for _, r := range ringOpts {
		if !r.on {
			continue
		}
		if err = unix.SetsockoptInt(fd, unix.SOL_XDP, r.opt, int(r.size)); err != nil {
			return nil, fmt.Errorf("size %s ring to %d: %w", r.name, r.size, err)
		}
	}
	var off unix.XDPMmapOffsets
	n, err := getsockoptPtr(fd, unix.SOL_XDP, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off))
	if err != nil {
		return nil, fmt.Errorf("get ring offsets: %w", err)
	}
	if n != unsafe.Sizeof(off) {
		// Kernels before 5.4 lack the flags field and need_wakeup.
		return nil, fmt.Errorf("ring offsets of %d bytes, want %d (kernel too old): %w", n, unsafe.Sizeof(off), ErrRingLayout)
	}
	if s.Fill, err = mapRing(s, unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, cfg.FillSize, newProdRing[uint64]); err != nil {
		return nil, fmt.Errorf("map fill ring: %w", err)
	}
	if s.Comp, err = mapRing(s, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, cfg.CompSize, newConsRing[uint64]); err != nil {
		return nil, fmt.Errorf("map completion ring: %w", err)
	}
	if !cfg.NoRx {
		if s.Rx, err = mapRing(s, unix.XDP_PGOFF_RX_RING, off.Rx, cfg.RxSize, newConsRing[Desc]); err != nil {
			return nil, fmt.Errorf("map rx ring: %w", err)
		}
	}
	if !cfg.NoTx {
		if s.Tx, err = mapRing(s, unix.XDP_PGOFF_TX_RING, off.Tx, cfg.TxSize, newProdRing[Desc]); err != nil {
			return nil, fmt.Errorf("map tx ring: %w", err)
		}
	}
	sa := &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(ifindex), QueueID: uint32(queue)}
	if flags&unix.XDP_SHARED_UMEM != 0 {
		sa.SharedUmemFD = uint32(u.regFD)
	}
	if err = unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("bind af_xdp socket to ifindex %d queue %d (flags %#x): %w", ifindex, queue, flags, err)
	}
	var opts uint32
	if _, err := getsockoptPtr(fd, unix.SOL_XDP, unix.XDP_OPTIONS, unsafe.Pointer(&opts), unsafe.Sizeof(opts)); err == nil {
		s.zeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0
	}
	if !cfg.NoTx {
		// Larger sendto batches in copy mode; older kernels lack the option.
		_ = unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, int(min(cfg.TxSize, maxTxBudget)))
	}
	if cfg.BusyPoll {
		s.busyPoll = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PREFER_BUSY_POLL, 1) == nil &&
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL, cfg.BusyPollUsec) == nil &&
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL_BUDGET, cfg.BusyPollBudget) == nil
	}
	if u.regFD < 0 {
		u.regFD = fd
	}
	u.sockets = append(u.sockets, s)
	return s, nil
}

func mapRing[R any](s *Socket, pgoff int64, o unix.XDPRingOffset, size uint32, mk func([]byte, ringLayout, uint32) (*R, error)) (*R, error) {
	var esz uint64 = 8
	if pgoff == unix.XDP_PGOFF_RX_RING || pgoff == unix.XDP_PGOFF_TX_RING {
		esz = uint64(unsafe.Sizeof(Desc{}))
	}
	length := o.Desc + uint64(size)*esz
	mem, err := unix.Mmap(s.fd, pgoff, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, err
	}
	s.maps = append(s.maps, mem)
	return mk(mem, ringLayout{producer: o.Producer, consumer: o.Consumer, flags: o.Flags, desc: o.Desc}, size)
}

// FD is the socket's file descriptor (for the XSKMAP and poll).
func (s *Socket) FD() int { return s.fd }

// Ifindex is the device the socket is bound to.
func (s *Socket) Ifindex() int { return s.ifindex }

// Queue is the queue the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// ZeroCopy reports whether the kernel bound the socket in zero-copy mode.
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// BusyPolling reports whether the busy-poll socket options took.
func (s *Socket) BusyPolling() bool { return s.busyPoll }

// Umem is the UMEM the socket's descriptors point into.
func (s *Socket) Umem() *Umem { return s.umem }

// InFill is how many frames this socket has handed to the kernel for
// receiving and not got back yet.
func (s *Socket) InFill() int { return s.inFill }

// InTx is how many frames this socket has queued for sending and not seen
// completed yet.
func (s *Socket) InTx() int { return s.inTx }

// Stats returns the socket's user-space counters.
func (s *Socket) Stats() SocketStats { return s.stats }

// KernelStats returns the kernel's counters for the socket (XDP_STATISTICS).
func (s *Socket) KernelStats() (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	if _, err := getsockoptPtr(s.fd, unix.SOL_XDP, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st)); err != nil {
		return st, fmt.Errorf("xdp statistics: %w", err)
	}
	return st, nil
}

// Refill tops the fill ring up so that the kernel holds target frames for
// this socket, taking frames from the allocator while it has some. It
// returns how many it added and wakes the kernel if it asked for it.
func (s *Socket) Refill(target int) int {
	want := target - s.inFill
	if want <= 0 {
		return 0
	}
	a := s.umem.alloc
	want = min(want, len(a.free))
	if want <= 0 {
		return 0
	}
	idx, got := s.Fill.Reserve(uint32(want))
	for i := uint32(0); i < got; i++ {
		addr, _ := a.take(PlaceFill)
		s.Fill.Set(idx+i, addr)
	}
	if got > 0 {
		s.Fill.Submit(got)
		s.inFill += int(got)
	}
	if s.Fill.NeedWakeup() {
		s.WakeFill()
	}
	return int(got)
}

// Receive moves up to len(dst) received descriptors into dst, their frames
// into user hands, and returns how many. A descriptor outside the UMEM
// (a kernel bug) is counted and skipped.
func (s *Socket) Receive(dst []Desc) int {
	n := s.Rx.Take(dst)
	if n == 0 {
		return 0
	}
	a := s.umem.alloc
	j := 0
	for i := 0; i < n; i++ {
		d := dst[i]
		if s.umem.Frame(d.Addr, d.Len) == nil || !a.takeBack(d.Addr, PlaceFill) {
			s.stats.BadDescs++
			continue
		}
		dst[j] = d
		j++
	}
	s.inFill -= n
	s.stats.RxFrames += uint64(j)
	return j
}

// Transmit queues as many of descs as fit on the TX ring, in order, moves
// their frames to the kernel and returns how many it queued; the caller
// still owns the rest. Call Kick to make the kernel send them.
func (s *Socket) Transmit(descs []Desc) int {
	n := s.Tx.Put(descs)
	a := s.umem.alloc
	for i := 0; i < n; i++ {
		a.handOver(descs[i].Addr, PlaceTx)
	}
	s.inTx += n
	s.stats.TxFrames += uint64(n)
	return n
}

// TxFree is how many descriptors the TX ring can take now.
func (s *Socket) TxFree() int { return int(s.Tx.Free(s.Tx.Size())) }

// Complete reads the completion ring, returns the sent frames to the free
// list and returns how many it reclaimed.
func (s *Socket) Complete() int {
	total := 0
	a := s.umem.alloc
	for {
		n := s.Comp.Take(s.addrs)
		for i := 0; i < n; i++ {
			if !a.reclaim(s.addrs[i]) {
				s.stats.BadDescs++
			}
		}
		total += n
		if n < len(s.addrs) {
			break
		}
	}
	s.inTx -= total
	s.stats.Completed += uint64(total)
	return total
}

// NeedsKick reports whether queued TX descriptors need a sendto to go out:
// always in copy mode, where the kernel sends only from the syscall, and
// when the kernel set need_wakeup otherwise.
func (s *Socket) NeedsKick() bool {
	return s.Tx != nil && (!s.zeroCopy || s.Tx.NeedWakeup())
}

// Kick makes the kernel process the TX ring (sendto with MSG_DONTWAIT).
// Transient conditions (EAGAIN: more left than one call's budget, EBUSY,
// ENOBUFS, ENETDOWN) are not errors; more reports whether the kernel left
// descriptors for another call.
func (s *Socket) Kick() (more bool, err error) {
	s.stats.TxKicks++
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0:
		return false, nil
	case unix.EAGAIN, unix.EBUSY:
		return true, nil
	case unix.ENOBUFS, unix.ENETDOWN, unix.EINTR:
		return false, nil
	}
	return false, fmt.Errorf("kick tx on ifindex %d queue %d: %w", s.ifindex, s.queue, e)
}

// WakeFill tells the kernel that the fill ring has frames again
// (recvfrom with MSG_DONTWAIT), as need_wakeup asks.
func (s *Socket) WakeFill() {
	s.stats.FillWakeups++
	_, _, _ = unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

// Close unmaps the rings and closes the socket. Frames the kernel held for
// it are gone with it: they count as fill/tx in the allocator until the
// UMEM is closed.
func (s *Socket) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.release()
}

func (s *Socket) release() error {
	var errs []error
	for _, m := range s.maps {
		if err := unix.Munmap(m); err != nil {
			errs = append(errs, fmt.Errorf("unmap ring: %w", err))
		}
	}
	s.maps = nil
	s.Fill, s.Comp, s.Rx, s.Tx = nil, nil, nil, nil
	if s.fd >= 0 {
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("close af_xdp socket: %w", err))
		}
		s.fd = -1
	}
	return errors.Join(errs...)
}

// Poll waits until one of fds is readable (or writable, as asked in each
// PollFd) or timeoutMs passes; EINTR counts as a timeout.
func Poll(fds []unix.PollFd, timeoutMs int) (int, error) {
	n, err := unix.Poll(fds, timeoutMs)
	if err == unix.EINTR {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("poll af_xdp sockets: %w", err)
	}
	return n, nil
}
