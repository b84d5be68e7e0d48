package dpi_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deepwall/deepwall/dpi/decode"
	"github.com/deepwall/deepwall/internal/agenttest"
	"github.com/deepwall/deepwall/internal/testnet"
)

// recorder is a server that keeps what the application read on each
// connection, and answers every request-looking read with a short
// response.
type recorder struct {
	mu   sync.Mutex
	read map[string][]byte // by client address
}

func (r *recorder) serve(c net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.read[c.RemoteAddr().String()] = append(r.read[c.RemoteAddr().String()], buf[:n]...)
			got := r.read[c.RemoteAddr().String()]
			r.mu.Unlock()
			if bytes.HasSuffix(got, []byte("\r\n\r\n")) {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *recorder) of(addr net.Addr) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.read[addr.String()]
}

// injector writes crafted frames onto the client's eth0 and learns a
// connection's addresses and initial sequence number from its SYN.
type injector struct {
	*testnet.PacketSocket
}

func newInjector(tb testing.TB, ns *testnet.NS) *injector {
	tb.Helper()
	return &injector{testnet.OpenPacketSocket(tb, ns, 5*time.Second)}
}

// syn waits for the SYN the client sends from port and returns the
// template of its later segments and its next sequence number.
func (in *injector) syn(tb testing.TB, port uint16) (testnet.FrameSpec, uint32) {
	tb.Helper()
	frame, p, ok := in.nextSYN(port, 5*time.Second)
	if !ok {
		tb.Fatal("no SYN captured")
	}
	spec := testnet.FrameSpec{
		DstMAC: append(net.HardwareAddr(nil), frame[0:6]...), SrcMAC: append(net.HardwareAddr(nil), frame[6:12]...),
		Src:   netip.AddrPortFrom(netip.AddrFrom16(p.Src).Unmap(), p.SrcPort),
		Dst:   netip.AddrPortFrom(netip.AddrFrom16(p.Dst).Unmap(), p.DstPort),
		Proto: testnet.ProtoTCP,
	}
	return spec, p.Seq + 1
}

// nextSYN captures frames until a TCP SYN from port, for at most d (and
// the socket's 5 s receive timeout): the frame, decoded.
func (in *injector) nextSYN(port uint16, d time.Duration) ([]byte, *decode.Packet, bool) {
	buf := make([]byte, 2048)
	dec := decode.NewDecoder()
	var p decode.Packet
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		n, err := in.Recv(buf)
		if err != nil {
			return nil, nil, false
		}
		if dec.Decode(buf[:n], &p) == nil && p.Proto == 6 && p.SrcPort == port && p.TCPFlags&decode.TCPSyn != 0 {
			return buf[:n], &p, true
		}
	}
	return nil, nil, false
}

// send writes a segment with the given flags and sequence number; bad
// makes its TCP checksum wrong.
func (in *injector) send(tb testing.TB, spec testnet.FrameSpec, flags uint8, seq uint32, payload []byte, bad bool) {
	tb.Helper()
	spec.Flags, spec.Seq, spec.Payload = flags, seq, payload
	b := testnet.Frame(tb, spec)
	if bad {
		off := 14 + 20 + 16
		binary.BigEndian.PutUint16(b[off:], binary.BigEndian.Uint16(b[off:])^0x5a5a)
	}
	if err := in.Send(b); err != nil {
		tb.Fatalf("inject: %v", err)
	}
}

// TestPrivilegedInlineNormalise runs the agent inline (XDP, NFQUEUE) with the
// default pack between a client and a recording server, and injects from
// the client segments the server drops: a bad-checksum RST before an
// attack, 70 KB of bad-checksum data before a request at the same
// offsets. The attack never reaches the server, the benign request does,
// byte-exact; a request written in 1-byte segments (held until
// identification decides) gets through in time.
func TestPrivilegedInlineNormalise(t *testing.T) {
	testnet.RequirePrivileged(t)
	forInlineModes(t, testInlineNormalise)
}

// forInlineModes runs fn once per dataplane (XDP, NFQUEUE on a bridged
// topology) with an agent inline between the client and the server
// namespaces, the default pack loaded, started with the extra arguments.
func forInlineModes(t *testing.T, fn func(*testing.T, *testnet.Topology, *agenttest.Agent), extra ...string) {
	for _, m := range []struct {
		mode string
		topo testnet.TopologyOptions
	}{
		{"xdp", testnet.TopologyOptions{}},
		{"nfqueue", testnet.TopologyOptions{Bridge: true}},
	} {
		t.Run(m.mode, func(t *testing.T) {
			topo := testnet.NewTopology(t, m.topo)
			a := agenttest.New(t.TempDir())
			a.Start(t, topo.FW, append([]string{"--inner", testnet.InnerIf, "--outer", testnet.OuterIf, "--mode", m.mode}, extra...)...)
			t.Cleanup(func() { a.Stop(t) })
			fn(t, topo, a)
		})
	}
}

func testInlineNormalise(t *testing.T, topo *testnet.Topology, a *agenttest.Agent) {
	rec := &recorder{read: map[string][]byte{}}
	ln := testnet.Listen(t, topo.Server, "tcp", netip.AddrPortFrom(testnet.ServerIP, 80))
	go testnet.Serve(ln, rec.serve)
	in := newInjector(t, topo.Client)
	attack := "GET /item?id=1%27%20OR%201=1-- HTTP/1.1\r\nHost: shop\r\n\r\n"
	benign := "GET /index.html HTTP/1.1\r\nHost: shop\r\nUser-Agent: curl/8\r\n\r\n"

	dial := func(t *testing.T) (net.Conn, testnet.FrameSpec, uint32) {
		c := testnet.Dial(t, topo.Client, "tcp", netip.AddrPortFrom(testnet.ServerIP, 80))
		spec, next := in.syn(t, uint16(c.LocalAddr().(*net.TCPAddr).Port))
		return c, spec, next
	}
	response := func(c net.Conn) (string, error) {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b []byte
		buf := make([]byte, 256)
		for !bytes.HasSuffix(b, []byte("\r\n\r\nok")) {
			n, err := c.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				return string(b), err
			}
		}
		return string(b), nil
	}

	t.Run("bad-checksum RST, then the attack", func(t *testing.T) {
		c, spec, next := dial(t)
		in.send(t, spec, testnet.RST|testnet.ACK, next, nil, true)
		time.Sleep(50 * time.Millisecond)
		_, _ = io.WriteString(c, attack)
		resp, err := response(c)
		time.Sleep(100 * time.Millisecond)
		if got := rec.of(c.LocalAddr()); bytes.Contains(got, []byte("OR%201=1")) || strings.Contains(resp, "200") {
			t.Fatalf("the attack reached the server: read %q, response %q (%v)", got, resp, err)
		}
	})
	t.Run("70 KB of bad-checksum data, then a request at the same offsets", func(t *testing.T) {
		c, spec, next := dial(t)
		junk := bytes.Repeat([]byte("X"), 70<<10)
		for off := 0; off < len(junk); off += 1400 {
			in.send(t, spec, testnet.PSH|testnet.ACK, next+uint32(off), junk[off:min(off+1400, len(junk))], true)
		}
		time.Sleep(50 * time.Millisecond)
		_, _ = io.WriteString(c, benign)
		resp, err := response(c)
		if got := rec.of(c.LocalAddr()); string(got) != benign || !strings.HasPrefix(resp, "HTTP/1.1 200") {
			t.Fatalf("server read %q, client got %q (%v)", got, resp, err)
		}
		c2, spec2, next2 := dial(t)
		for off := 0; off < len(junk); off += 1400 {
			in.send(t, spec2, testnet.PSH|testnet.ACK, next2+uint32(off), junk[off:min(off+1400, len(junk))], true)
		}
		time.Sleep(50 * time.Millisecond)
		_, _ = io.WriteString(c2, attack)
		resp, err = response(c2)
		time.Sleep(100 * time.Millisecond)
		if got := rec.of(c2.LocalAddr()); bytes.Contains(got, []byte("OR%201=1")) || strings.Contains(resp, "200") {
			t.Fatalf("the attack reached the server: read %q, response %q (%v)", got, resp, err)
		}
	})
	t.Run("events", func(t *testing.T) {
		for _, want := range []string{`"reason":"tcp.bad_checksum"`, `"signature_id":942100`} {
			deadline := time.Now().Add(5 * time.Second)
			for {
				b, _ := os.ReadFile(a.Log)
				if bytes.Contains(b, []byte(want)) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no event with %s in the log:\n%s", want, b)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
	t.Run("a request in 1-byte segments", func(t *testing.T) {
		c, _, _ := dial(t)
		_ = c.(*net.TCPConn).SetNoDelay(true)
		start := time.Now()
		for i := range len(benign) {
			_, _ = io.WriteString(c, benign[i:i+1])
			time.Sleep(2 * time.Millisecond)
		}
		resp, err := response(c)
		if got := rec.of(c.LocalAddr()); string(got) != benign || !strings.HasPrefix(resp, "HTTP/1.1 200") {
			t.Fatalf("server read %q, client got %q (%v)", got, resp, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("answered after %v", d)
		} else {
			t.Logf("answered after %v", d.Round(time.Millisecond))
		}
	})
}
