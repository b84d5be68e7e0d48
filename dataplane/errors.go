package dataplane

import "errors"

var (
	// ErrNotTCP: a reset was asked for a frame that is not a keyed TCP
	// segment.
	ErrNotTCP = errors.New("not a tcp segment")
	// ErrShortBuffer: a destination buffer is too small for the frame.
	ErrShortBuffer = errors.New("buffer too small")
	// ErrNotVeth: a port's peer cannot be prepared because the port is not
	// a veth (its peer is not a device deepwall can reach).
	ErrNotVeth = errors.New("not a veth")
	// ErrPeerNamespace: the namespace of a port's veth peer could not be
	// found among /run/netns and /proc/*/ns/net.
	ErrPeerNamespace = errors.New("peer namespace not found")
	// ErrQueues: the two ports' queue counts cannot be served.
	ErrQueues = errors.New("unsupported queue layout")
	// ErrClosed: the pair is closed.
	ErrClosed = errors.New("pair closed")
)
