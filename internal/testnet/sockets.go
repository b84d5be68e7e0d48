package testnet

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// Listen opens a listener inside ns, closed at cleanup.
func Listen(tb testing.TB, ns *NS, network string, addr netip.AddrPort) net.Listener {
	tb.Helper()
	var ln net.Listener
	ns.MustDo(tb, func() error {
		var err error
		ln, err = net.Listen(network, addr.String())
		return err
	})
	tb.Cleanup(func() { ln.Close() })
	return ln
}

// ListenPacket opens a packet socket inside ns, closed at cleanup.
func ListenPacket(tb testing.TB, ns *NS, network string, addr netip.AddrPort) net.PacketConn {
	tb.Helper()
	var pc net.PacketConn
	ns.MustDo(tb, func() error {
		var err error
		pc, err = net.ListenPacket(network, addr.String())
		return err
	})
	tb.Cleanup(func() { pc.Close() })
	return pc
}

// Dial connects from inside ns, closed at cleanup. It fails tb after 5s.
func Dial(tb testing.TB, ns *NS, network string, addr netip.AddrPort) net.Conn {
	tb.Helper()
	var c net.Conn
	ns.MustDo(tb, func() error {
		var err error
		c, err = net.DialTimeout(network, addr.String(), 5*time.Second)
		return err
	})
	tb.Cleanup(func() { c.Close() })
	return c
}

// Serve accepts connections on ln until it is closed and runs handle on
// each in a goroutine of its own, closing the connection when handle
// returns. Run it in a goroutine: it returns when ln is closed.
func Serve(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}
