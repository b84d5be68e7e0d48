package afxdp

import "errors"

var (
	// ErrRingSize: a ring size that is zero or not a power of two.
	ErrRingSize = errors.New("ring size must be a power of two")
	// ErrRingLayout: the kernel's ring offsets do not fit the mapping.
	ErrRingLayout = errors.New("ring layout does not fit its mapping")
	// ErrFrameSize: a UMEM frame size the kernel does not accept in aligned
	// mode (a power of two from 2048 to the page size).
	ErrFrameSize = errors.New("frame size must be a power of two between 2048 and the page size")
	// ErrFrameCount: a UMEM without frames or too large to map.
	ErrFrameCount = errors.New("bad frame count")
	// ErrAccounting: the frame allocator found a frame lost, doubly owned or
	// moved from the wrong place.
	ErrAccounting = errors.New("umem frame accounting broken")
	// ErrBadDesc: a descriptor pointing outside the UMEM.
	ErrBadDesc = errors.New("descriptor outside the umem")
	// ErrClosed: the socket or UMEM is closed.
	ErrClosed = errors.New("afxdp: closed")
)
