// Package prototest owns the test fixtures the protocol parsers share: real
// TLS hellos captured from crypto/tls, DNS messages built with dnsmessage,
// and helpers that feed a message in every chunking.
package prototest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// recordConn is a net.Conn that records what is written to it. Reads
// block until Close, so a TLS client writes its ClientHello and then fails.
type recordConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	closed chan struct{}
	once   sync.Once
}

// Write records b.
func (c *recordConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, append([]byte(nil), b...))
	c.mu.Unlock()
	return len(b), nil
}

// Read blocks until Close.
func (c *recordConn) Read([]byte) (int, error) {
	<-c.closed
	return 0, io.EOF
}

// Close unblocks Read.
func (c *recordConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// Deadlines are ignored.
func (c *recordConn) SetDeadline(time.Time) error      { return nil }
func (c *recordConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }

// ClientHello returns the bytes a crypto/tls client with cfg writes first:
// its ClientHello record(s).
func ClientHello(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	c := &recordConn{closed: make(chan struct{})}
	tc := tls.Client(c, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tc.Handshake()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		n := len(c.writes)
		c.mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	_ = c.Close()
	<-done
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.writes) == 0 {
		tb.Fatalf("tls client wrote nothing")
	}
	var out []byte
	for _, w := range c.writes {
		out = append(out, w...)
	}
	return out
}

// teeConn records what passes through Write on a real connection.
type teeConn struct {
	net.Conn
	mu  sync.Mutex
	out []byte
}

// Write records b and passes it on.
func (c *teeConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.out = append(c.out, b...)
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// Handshake runs a crypto/tls handshake between a client with clientCfg
// and a server with a fresh self-signed certificate for "example.test"
// (serverCfg may set versions, ALPN...; its Certificates are filled in),
// and returns the bytes each side wrote.
func Handshake(tb testing.TB, clientCfg, serverCfg *tls.Config) (toServer, toClient []byte) {
	tb.Helper()
	if serverCfg == nil {
		serverCfg = &tls.Config{}
	}
	serverCfg = serverCfg.Clone()
	serverCfg.Certificates = []tls.Certificate{SelfSigned(tb, "example.test")}
	a, b := bufferedPipe()
	tb.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	ca, sb := &teeConn{Conn: a}, &teeConn{Conn: b}
	errc := make(chan error, 2)
	go func() {
		errc <- tls.Server(sb, serverCfg).Handshake()
	}()
	c := tls.Client(ca, clientCfg)
	err := c.Handshake()
	_ = a.Close()
	_ = b.Close()
	serr := <-errc
	if err != nil && serr != nil && !errors.Is(err, io.EOF) {
		tb.Fatalf("tls handshake: client %v, server %v", err, serr)
	}
	ca.mu.Lock()
	sb.mu.Lock()
	defer ca.mu.Unlock()
	defer sb.mu.Unlock()
	return append([]byte(nil), ca.out...), append([]byte(nil), sb.out...)
}

// bufferedPipe returns two connected in-memory conns whose writes never
// block (net.Pipe's do, which deadlocks a HelloRetryRequest exchange).
func bufferedPipe() (net.Conn, net.Conn) {
	ab, ba := newBuf(), newBuf()
	return &pipeEnd{r: ba, w: ab}, &pipeEnd{r: ab, w: ba}
}

type buf struct {
	mu     sync.Mutex
	cond   *sync.Cond
	data   []byte
	closed bool
}

func newBuf() *buf {
	b := &buf{}
	b.cond = sync.NewCond(&b.mu)
	return b
}

type pipeEnd struct {
	net.Conn
	r, w *buf
}

// Read waits for data or Close.
func (p *pipeEnd) Read(out []byte) (int, error) {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	for len(p.r.data) == 0 && !p.r.closed {
		p.r.cond.Wait()
	}
	if len(p.r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(out, p.r.data)
	p.r.data = p.r.data[n:]
	return n, nil
}

// Write buffers in without blocking.
func (p *pipeEnd) Write(in []byte) (int, error) {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	if p.w.closed {
		return 0, io.ErrClosedPipe
	}
	p.w.data = append(p.w.data, in...)
	p.w.cond.Broadcast()
	return len(in), nil
}

// Close closes both directions.
func (p *pipeEnd) Close() error {
	for _, b := range []*buf{p.r, p.w} {
		b.mu.Lock()
		b.closed = true
		b.cond.Broadcast()
		b.mu.Unlock()
	}
	return nil
}

// Deadlines are ignored.
func (p *pipeEnd) SetDeadline(time.Time) error      { return nil }
func (p *pipeEnd) SetReadDeadline(time.Time) error  { return nil }
func (p *pipeEnd) SetWriteDeadline(time.Time) error { return nil }

// SelfSigned returns a fresh ECDSA certificate for name.
func SelfSigned(tb testing.TB, name string) tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("create certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// DNSQuery builds a query for name (with a trailing dot or not) and type.
func DNSQuery(tb testing.TB, id uint16, name string, typ dnsmessage.Type) []byte {
	tb.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		tb.Fatalf("dns query: %v", err)
	}
	if err := b.Question(dnsmessage.Question{Name: mustName(tb, name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		tb.Fatalf("dns query: %v", err)
	}
	out, err := b.Finish()
	if err != nil {
		tb.Fatalf("dns query: %v", err)
	}
	return out
}

// DNSResponse builds a compressed response for name with one A record per
// address in answers, and rcode.
func DNSResponse(tb testing.TB, id uint16, name string, rcode dnsmessage.RCode, answers ...[4]byte) []byte {
	tb.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, RecursionDesired: true, RecursionAvailable: true, RCode: rcode})
	b.EnableCompression()
	n := mustName(tb, name)
	if err := b.StartQuestions(); err != nil {
		tb.Fatalf("dns response: %v", err)
	}
	if err := b.Question(dnsmessage.Question{Name: n, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
		tb.Fatalf("dns response: %v", err)
	}
	if err := b.StartAnswers(); err != nil {
		tb.Fatalf("dns response: %v", err)
	}
	for _, a := range answers {
		h := dnsmessage.ResourceHeader{Name: n, Class: dnsmessage.ClassINET, TTL: 300}
		if err := b.AResource(h, dnsmessage.AResource{A: a}); err != nil {
			tb.Fatalf("dns response: %v", err)
		}
	}
	out, err := b.Finish()
	if err != nil {
		tb.Fatalf("dns response: %v", err)
	}
	return out
}

func mustName(tb testing.TB, s string) dnsmessage.Name {
	tb.Helper()
	if len(s) == 0 || s[len(s)-1] != '.' {
		s += "."
	}
	n, err := dnsmessage.NewName(s)
	if err != nil {
		tb.Fatalf("dns name %q: %v", s, err)
	}
	return n
}

// TCPFrame prefixes a DNS message with its two-byte length, as DNS over TCP
// sends it.
func TCPFrame(msgs ...[]byte) []byte {
	var out []byte
	for _, m := range msgs {
		out = append(out, byte(len(m)>>8), byte(len(m)))
		out = append(out, m...)
	}
	return out
}

// Chunkings calls fn with data cut into chunks in many ways: whole, one
// byte at a time, split once at every offset, and, when data is at most
// pairLimit bytes long, split twice at every pair of offsets. Each call's
// chunks concatenate to data.
func Chunkings(data []byte, pairLimit int, fn func(chunks [][]byte)) {
	fn([][]byte{data})
	ones := make([][]byte, len(data))
	for i := range data {
		ones[i] = data[i : i+1]
	}
	fn(ones)
	for i := 1; i < len(data); i++ {
		fn([][]byte{data[:i], data[i:]})
	}
	if len(data) > pairLimit {
		return
	}
	for i := 1; i < len(data); i++ {
		for j := i + 1; j < len(data); j++ {
			fn([][]byte{data[:i], data[i:j], data[j:]})
		}
	}
}

// RandomChunks cuts data into chunks whose lengths come from seed bytes
// (cycled), each 1..len(seed byte)+1, the way fuzz targets derive random
// chunking from their input.
func RandomChunks(data, seed []byte) [][]byte {
	if len(seed) == 0 {
		return [][]byte{data}
	}
	var out [][]byte
	for i, k := 0, 0; i < len(data); k++ {
		n := int(seed[k%len(seed)]) + 1
		if n > len(data)-i {
			n = len(data) - i
		}
		out = append(out, data[i:i+n])
		i += n
	}
	return out
}
