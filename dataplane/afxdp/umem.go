package afxdp

import (
	"fmt"
	"math/bits"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UMEM defaults and limits.
const (
	// DefaultFrameSize is one page: a 1500-byte MTU frame plus the kernel's
	// XDP_PACKET_HEADROOM fits with room, and 9000-byte jumbo frames do not
	// fit any aligned chunk anyway.
	DefaultFrameSize = 4096
	// DefaultNumFrames gives a queue pair 16 MiB: enough for two fill rings,
	// frames in flight through the workers and two TX rings.
	DefaultNumFrames = 4096
	// MinFrameSize is the kernel's smallest aligned chunk.
	MinFrameSize = 2048
	// MaxUmemBytes bounds one UMEM's mapping.
	MaxUmemBytes = 1 << 30
)

// UmemConfig sizes a UMEM. Zero fields take the defaults.
type UmemConfig struct {
	FrameSize uint32 // bytes per frame, power of two, MinFrameSize..page size
	NumFrames uint32
}

func (c *UmemConfig) setDefaults() error {
	if c.FrameSize == 0 {
		c.FrameSize = DefaultFrameSize
	}
	if c.NumFrames == 0 {
		c.NumFrames = DefaultNumFrames
	}
	if c.FrameSize < MinFrameSize || c.FrameSize > uint32(os.Getpagesize()) || c.FrameSize&(c.FrameSize-1) != 0 {
		return fmt.Errorf("frame size %d: %w", c.FrameSize, ErrFrameSize)
	}
	if uint64(c.FrameSize)*uint64(c.NumFrames) > MaxUmemBytes {
		return fmt.Errorf("%d frames of %d bytes exceed %d bytes: %w", c.NumFrames, c.FrameSize, MaxUmemBytes, ErrFrameCount)
	}
	return nil
}

// Umem is a packet buffer area shared with the kernel, cut into equal
// frames. It is registered with the kernel by the first socket created on
// it; later sockets share it (XDP_SHARED_UMEM), each with its own fill and
// completion ring.
type Umem struct {
	mem       []byte
	frameSize uint32
	numFrames uint32
	alloc     *Allocator
	regFD     int // the socket that registered the UMEM, -1 before
	sockets   []*Socket
	closed    bool
}

// NewUmem maps (and pre-faults) the memory of a UMEM. Nothing is
// registered with the kernel until the first NewSocket.
func NewUmem(cfg UmemConfig) (*Umem, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	size := int(cfg.FrameSize) * int(cfg.NumFrames)
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap %d-byte umem: %w", size, err)
	}
	return &Umem{
		mem:       mem,
		frameSize: cfg.FrameSize,
		numFrames: cfg.NumFrames,
		alloc:     newAllocator(cfg.NumFrames, uint(bits.TrailingZeros32(cfg.FrameSize))),
		regFD:     -1,
	}, nil
}

// FrameSize is the size of one frame in bytes.
func (u *Umem) FrameSize() uint32 { return u.frameSize }

// NumFrames is the number of frames.
func (u *Umem) NumFrames() uint32 { return u.numFrames }

// Allocator returns the UMEM's frame allocator.
func (u *Umem) Allocator() *Allocator { return u.alloc }

// Frame returns the n bytes at addr, or nil when they do not lie inside one
// frame of the UMEM (a descriptor must never reach past its chunk).
func (u *Umem) Frame(addr uint64, n uint32) []byte {
	off := addr & uint64(u.frameSize-1)
	if addr >= uint64(len(u.mem)) || off+uint64(n) > uint64(u.frameSize) {
		return nil
	}
	return u.mem[addr : addr+uint64(n) : addr+uint64(n)]
}

// Chunk returns the whole frame that holds addr, from its base, for
// building a frame in place; nil when addr is outside the UMEM.
func (u *Umem) Chunk(addr uint64) []byte {
	if addr >= uint64(len(u.mem)) {
		return nil
	}
	base := addr &^ uint64(u.frameSize-1)
	return u.mem[base : base+uint64(u.frameSize) : base+uint64(u.frameSize)]
}

// register hands the memory to the kernel on fd (XDP_UMEM_REG).
func (u *Umem) register(fd int) error {
	reg := unix.XDPUmemReg{
		Addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(u.mem)))),
		Len:  uint64(len(u.mem)),
		Size: u.frameSize,
	}
	if err := setsockoptPtr(fd, unix.SOL_XDP, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return fmt.Errorf("register %d-byte umem: %w", len(u.mem), err)
	}
	return nil
}

// Close unmaps the memory. Every socket on the UMEM must be closed first:
// the kernel keeps writing into registered memory while a socket lives.
func (u *Umem) Close() error {
	if u.closed {
		return nil
	}
	for _, s := range u.sockets {
		if !s.closed {
			return fmt.Errorf("close umem: socket on ifindex %d queue %d still open", s.ifindex, s.queue)
		}
	}
	u.closed = true
	if err := unix.Munmap(u.mem); err != nil {
		return fmt.Errorf("unmap umem: %w", err)
	}
	u.mem = nil
	return nil
}

func setsockoptPtr(fd, level, opt int, p unsafe.Pointer, n uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), n, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockoptPtr(fd, level, opt int, p unsafe.Pointer, n uintptr) (uintptr, error) {
	l := uint32(n)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return uintptr(l), nil
}
