package testnet

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// PacketSocket is a raw AF_PACKET socket on a namespace's EndpointIf: it
// sends crafted frames onto the wire as they are and receives every frame
// the interface sees, both ways.
type PacketSocket struct {
	fd      int
	ifindex int
}

// OpenPacketSocket opens a PacketSocket in ns whose reads time out after
// timeout; it is closed at cleanup.
func OpenPacketSocket(tb testing.TB, ns *NS, timeout time.Duration) *PacketSocket {
	tb.Helper()
	s := &PacketSocket{fd: -1}
	ns.MustDo(tb, func() error {
		ifi, err := net.InterfaceByName(EndpointIf)
		if err != nil {
			return err
		}
		s.ifindex = ifi.Index
		proto := int(unix.ETH_P_ALL>>8 | unix.ETH_P_ALL&0xff<<8) // network order
		if s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(timeout.Nanoseconds())
		if err := unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(s.fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: s.ifindex})
	})
	tb.Cleanup(func() {
		if s.fd >= 0 {
			unix.Close(s.fd)
		}
	})
	return s
}

// Send writes one frame.
func (s *PacketSocket) Send(frame []byte) error {
	return unix.Sendto(s.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: s.ifindex})
}

// Recv reads the next frame into buf (an error after the timeout).
func (s *PacketSocket) Recv(buf []byte) (int, error) {
	n, _, err := unix.Recvfrom(s.fd, buf, 0)
	return n, err
}
