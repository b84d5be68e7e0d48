package wire_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dataplane/wire"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
)

var pinSeq atomic.Uint32

// echoServer echoes every connection on ip:port inside ns.
func echoServer(tb testing.TB, ns *testnet.NS, ip netip.Addr, port uint16) {
	ln := testnet.Listen(tb, ns, "tcp", netip.AddrPortFrom(ip, port))
	go testnet.Serve(ln, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// traffic runs a ping-pong on one connection (a keep-alive client) and a
// bulk echo on another until stop, and reports what broke.
type traffic struct {
	pings  atomic.Int64
	bulk   atomic.Int64
	mu     sync.Mutex
	errs   []error
	wg     sync.WaitGroup
	stop   chan struct{}
	stopMu sync.Once
}

func startTraffic(tb testing.TB, client *testnet.NS, dst netip.Addr, port uint16) *traffic {
	tb.Helper()
	t := &traffic{stop: make(chan struct{})}
	ping := testnet.Dial(tb, client, "tcp", netip.AddrPortFrom(dst, port))
	bulk := testnet.Dial(tb, client, "tcp", netip.AddrPortFrom(dst, port))
	fail := func(err error) {
		t.mu.Lock()
		t.errs = append(t.errs, err)
		t.mu.Unlock()
	}
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		msg, got := make([]byte, 64), make([]byte, 64)
		for i := 0; ; i++ {
			select {
			case <-t.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			copy(msg, fmt.Sprintf("ping %d", i))
			_ = ping.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := ping.Write(msg); err != nil {
				fail(fmt.Errorf("ping write: %w", err))
				return
			}
			if _, err := io.ReadFull(ping, got); err != nil || !bytes.Equal(msg, got) {
				fail(fmt.Errorf("ping %d read: %v", i, err))
				return
			}
			t.pings.Add(1)
		}
	}()
	go func() {
		defer t.wg.Done()
		chunk := make([]byte, 32<<10)
		_, _ = rand.Read(chunk)
		sent := sha256.New()
		recv := sha256.New()
		var n int64
		done := make(chan error, 1)
		go func() {
			buf := make([]byte, 64<<10)
			var got int64
			for {
				_ = bulk.SetReadDeadline(time.Now().Add(5 * time.Second))
				k, err := bulk.Read(buf)
				recv.Write(buf[:k])
				got += int64(k)
				t.bulk.Store(got)
				if err != nil {
					if got == n && errors.Is(err, io.EOF) {
						err = nil
					}
					done <- err
					return
				}
			}
		}()
		for {
			select {
			case <-t.stop:
				_ = bulk.(*net.TCPConn).CloseWrite()
				if err := <-done; err != nil {
					fail(fmt.Errorf("bulk read after %d bytes sent: %w", n, err))
					return
				}
				if !bytes.Equal(sent.Sum(nil), recv.Sum(nil)) {
					fail(fmt.Errorf("bulk: %d bytes echoed differ from the %d sent", t.bulk.Load(), n))
				}
				return
			default:
			}
			_ = bulk.SetWriteDeadline(time.Now().Add(5 * time.Second))
			k, err := bulk.Write(chunk)
			sent.Write(chunk[:k])
			n += int64(k)
			if err != nil {
				fail(fmt.Errorf("bulk write after %d bytes: %w", n, err))
				<-done
				return
			}
		}
	}()
	return t
}

// finish stops the traffic and fails tb if anything broke.
func (t *traffic) finish(tb testing.TB) {
	tb.Helper()
	t.stopMu.Do(func() { close(t.stop) })
	t.wg.Wait()
	for _, err := range t.errs {
		tb.Error(err)
	}
	tb.Logf("%d pings, %d bulk bytes echoed", t.pings.Load(), t.bulk.Load())
}

// progress waits until both connections moved on.
func (t *traffic) progress(tb testing.TB) {
	tb.Helper()
	p, b := t.pings.Load(), t.bulk.Load()
	if testutil.WaitFor(5*time.Second, func() bool { return t.pings.Load() > p+5 && t.bulk.Load() > b+1<<20 }) {
		return
	}
	tb.Fatalf("traffic stalled: pings %d -> %d, bulk %d -> %d", p, t.pings.Load(), b, t.bulk.Load())
}

// inline is a protected container: its wiring record and the pair that
// forwards between the old veth and the new outer end.
type inline struct {
	rec  *wire.Record
	pair *dataplane.Pair
	stop context.CancelFunc
	done chan error
	seen atomic.Int64
}

func protect(tb testing.TB, host *testnet.Host, c *testnet.Container) *inline {
	tb.Helper()
	rec, err := wire.Find(host.NS.Handle(), c.NS.Handle(), testnet.EndpointIf)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := json.Marshal(rec)
	tb.Logf("record: %s", b)
	if err := wire.Plug(host.NS.Handle(), rec); err != nil {
		tb.Fatal(err)
	}
	in := &inline{rec: rec, done: make(chan error, 1)}
	pinDir := filepath.Join(dataplane.DefaultBPFFS, "deepwall-test", fmt.Sprintf("wire-%d-%d", os.Getpid(), pinSeq.Add(1)))
	cfg := dataplane.PairConfig{Inner: rec.Inner.Name, Outer: rec.Outer.Name, PinDir: pinDir, StateDir: tb.TempDir(),
		Workers: 1, Inspector: dataplane.InspectorFunc(func(int, *dataplane.Frame) dataplane.Verdict {
			in.seen.Add(1)
			return dataplane.Verdict{Action: dataplane.Forward}
		})}
	host.NS.MustDo(tb, func() error {
		var err error
		in.pair, err = dataplane.OpenPair(cfg)
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	in.stop = cancel
	go func() { in.done <- in.pair.Run(ctx) }()
	if err := wire.Cut(host.NS.Handle(), rec); err != nil {
		tb.Fatal(err)
	}
	return in
}

func unprotect(tb testing.TB, host *testnet.Host, in *inline) {
	tb.Helper()
	if err := wire.Uncut(host.NS.Handle(), in.rec); err != nil {
		tb.Fatal(err)
	}
	in.stop()
	if err := <-in.done; err != nil {
		tb.Errorf("pair run: %v", err)
	}
	host.NS.MustDo(tb, in.pair.Detach)
	if err := wire.Unplug(host.NS.Handle(), in.rec); err != nil {
		tb.Fatal(err)
	}
}

// TestPrivilegedSwap puts a bridged and a routed container inline while a
// ping-pong connection and a bulk transfer run to each, checks that
// traffic goes through deepwall's ports, takes them out again, and
// compares the host's wiring with what it was.
func TestPrivilegedSwap(t *testing.T) {
	testnet.RequirePrivileged(t)
	host := testnet.NewHost(t)
	client := host.AddBridged(t, "client", netip.MustParseAddr("198.18.0.1"))
	web := host.AddBridged(t, "web", netip.MustParseAddr("198.18.0.2"))
	routed := host.AddRouted(t, "routed", netip.MustParseAddr("198.18.1.1"))
	// Client routes to the routed container through the host (its
	// gateway is the bridge address).
	echoServer(t, web.NS, web.IP, 7)
	echoServer(t, routed.NS, routed.IP, 7)

	hostBefore, webBefore, routedBefore := settledDump(t, host.NS), settledDump(t, web.NS), settledDump(t, routed.NS)
	toWeb := startTraffic(t, client.NS, web.IP, 7)
	toRouted := startTraffic(t, client.NS, routed.IP, 7)
	defer toWeb.finish(t)
	defer toRouted.finish(t)
	toWeb.progress(t)
	toRouted.progress(t)

	for _, c := range []*testnet.Container{web, routed} {
		in := protect(t, host, c)
		t.Logf("%s: inner %s outer %s place %s (master %v, %d routes, %d neigh)", c.NS.Name, in.rec.Inner.Name,
			in.rec.Outer.Name, in.rec.Place.Name, in.rec.Master != nil, len(in.rec.Routes), len(in.rec.Neigh))
		if c == routed && (len(in.rec.Routes) != 1 || len(in.rec.Neigh) != 1 || in.rec.Sysctls["ipv4/conf/%s/proxy_arp"] != "1") {
			t.Errorf("routed record misses its route, neighbour or proxy_arp: %+v", in.rec)
		}
		if c == web && in.rec.Master == nil {
			t.Errorf("bridged record has no master: %+v", in.rec)
		}
		toWeb.progress(t)
		toRouted.progress(t)
		seen := in.seen.Load()
		toWeb.progress(t)
		toRouted.progress(t)
		if in.seen.Load() <= seen {
			t.Errorf("%s: no frame went through deepwall's ports after the swap", c.NS.Name)
		}
		// A new connection works through the swapped wiring too.
		conn := testnet.Dial(t, client.NS, "tcp", netip.AddrPortFrom(c.IP, 7))
		conn.Close()
		unprotect(t, host, in)
		toWeb.progress(t)
		toRouted.progress(t)
	}
	toWeb.finish(t)
	toRouted.finish(t)
	for _, d := range []struct {
		name          string
		before, after string
	}{{"host", hostBefore, testnet.WiringDump(t, host.NS)}, {"web", webBefore, testnet.WiringDump(t, web.NS)}, {"routed", routedBefore, testnet.WiringDump(t, routed.NS)}} {
		if d.before != d.after {
			t.Errorf("%s wiring differs after unprotect:\n--- before\n%s\n--- after\n%s", d.name, d.before, d.after)
		}
	}
}

// TestPrivilegedContainerGone deletes a protected container's namespace:
// Gone notices and Unplug removes the new pair.
func TestPrivilegedContainerGone(t *testing.T) {
	testnet.RequirePrivileged(t)
	host := testnet.NewHost(t)
	web := host.AddBridged(t, "web", netip.MustParseAddr("198.18.0.2"))
	rec, err := wire.Find(host.NS.Handle(), web.NS.Handle(), testnet.EndpointIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.Plug(host.NS.Handle(), rec); err != nil {
		t.Fatal(err)
	}
	if err := wire.Cut(host.NS.Handle(), rec); err != nil {
		t.Fatal(err)
	}
	if wire.Gone(host.NS.Handle(), rec) {
		t.Fatal("Gone with the container alive")
	}
	if err := wire.Unplug(host.NS.Handle(), rec); !errors.Is(err, wire.ErrStage) {
		t.Fatalf("Unplug while cut in: %v, want ErrStage", err)
	}
	h := host.NS.Netlink(t)
	// Destroying the namespace takes eth0 and with it the old veth;
	// deleting eth0 does the same without waiting for the namespace.
	wh := web.NS.Netlink(t)
	el, err := wh.LinkByName(testnet.EndpointIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.LinkDel(el); err != nil {
		t.Fatal(err)
	}
	if !testutil.WaitFor(3*time.Second, func() bool { return wire.Gone(host.NS.Handle(), rec) }) {
		t.Fatal("old veth still there after the container's eth0 was deleted")
	}
	if err := wire.Unplug(host.NS.Handle(), rec); err != nil {
		t.Fatal(err)
	}
	links, _ := h.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, wire.OuterPrefix) || strings.HasPrefix(l.Attrs().Name, wire.PlacePrefix) {
			t.Errorf("%s left behind", l.Attrs().Name)
		}
	}
}

// TestRecordJSON: a record survives a JSON round trip unchanged.
func TestRecordJSON(t *testing.T) {
	rec := wire.Record{Version: wire.RecordVersion, Stage: wire.StageCut, ContainerIface: "eth0", Inner: wire.Link{Name: "veth1", Ifindex: 7},
		Outer: wire.Link{Name: "dwo7", Ifindex: 9}, Place: wire.Link{Name: "dwp7", Ifindex: 8},
		Master: &wire.Master{Link: wire.Link{Name: "docker0", Ifindex: 3}, Kind: "bridge", Protinfo: wire.PortFlags{Learning: true, Flood: true},
			VLANsSet: true, VLANs: []wire.VLAN{{VID: 1, PVID: true, Untagged: true}}},
		Addrs:   []wire.Addr{{Prefix: "169.254.1.1/32"}},
		Routes:  []wire.Route{{Family: 2, Dst: "198.18.1.1/32", Table: 254, Scope: 253, Protocol: 4, Type: 1}},
		Neigh:   []wire.Neigh{{Family: 2, IP: "198.18.1.1", MAC: "02:00:00:00:00:01", State: 0x80}},
		Sysctls: map[string]string{"ipv4/conf/%s/proxy_arp": "1"}}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var back wire.Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(back)
	if !bytes.Equal(b, b2) {
		t.Fatalf("round trip differs:\n%s\n%s", b, b2)
	}
}

// settledDump is Dump once it holds still: links just brought up get
// their IPv6 link-local routes a moment later.
func settledDump(tb testing.TB, ns *testnet.NS) string {
	tb.Helper()
	d := testnet.WiringDump(tb, ns)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		next := testnet.WiringDump(tb, ns)
		if next == d {
			return d
		}
		d = next
	}
	tb.Fatal("host wiring does not settle")
	return ""
}

// TestPrivilegedCutUndo: a Cut or an Uncut that fails halfway (on a
// route the kernel refuses, after the address, neighbour and first route
// moved) leaves the host wired as before the call, and can be retried.
func TestPrivilegedCutUndo(t *testing.T) {
	testnet.RequirePrivileged(t)
	host := testnet.NewHost(t)
	routed := host.AddRouted(t, "routed", netip.MustParseAddr("198.18.1.1"))
	web := host.AddBridged(t, "web", netip.MustParseAddr("198.18.0.2"))
	hn := host.NS.Handle()
	before := settledDump(t, host.NS)
	// Refused by the kernel: no link reaches its gateway.
	bogus := wire.Route{Family: unix.AF_INET, Dst: "198.19.200.0/24", Gw: "198.19.254.254", Table: unix.RT_TABLE_MAIN,
		Protocol: unix.RTPROT_STATIC, Type: unix.RTN_UNICAST}
	for _, c := range []*testnet.Container{routed, web} {
		t.Run(c.NS.Name, func(t *testing.T) {
			rec, err := wire.Find(hn, c.NS.Handle(), testnet.EndpointIf)
			if err != nil {
				t.Fatal(err)
			}
			if err := wire.Plug(hn, rec); err != nil {
				t.Fatal(err)
			}
			good := rec.Routes
			spoiled := append(slices.Clone(good), bogus)

			plugged := settledDump(t, host.NS)
			rec.Routes = spoiled
			if err := wire.Cut(hn, rec); err == nil || rec.Stage != wire.StagePlugged {
				t.Fatalf("Cut with a refused route: %v, stage %s", err, rec.Stage)
			} else {
				t.Logf("cut: %v", err)
			}
			if d := testnet.WiringDump(t, host.NS); d != plugged {
				t.Errorf("a failed Cut changed the host:\n--- before\n%s\n--- after\n%s", plugged, d)
			}
			rec.Routes = good
			if err := wire.Cut(hn, rec); err != nil {
				t.Fatalf("Cut after a failed one: %v", err)
			}

			cut := settledDump(t, host.NS)
			rec.Routes = spoiled
			if err := wire.Uncut(hn, rec); err == nil || rec.Stage != wire.StageCut {
				t.Fatalf("Uncut with a refused route: %v, stage %s", err, rec.Stage)
			} else {
				t.Logf("uncut: %v", err)
			}
			if d := testnet.WiringDump(t, host.NS); d != cut {
				t.Errorf("a failed Uncut changed the host:\n--- before\n%s\n--- after\n%s", cut, d)
			}
			rec.Routes = good
			if err := wire.Uncut(hn, rec); err != nil {
				t.Fatalf("Uncut after a failed one: %v", err)
			}
			if err := wire.Unplug(hn, rec); err != nil {
				t.Fatal(err)
			}
		})
	}
	if after := testnet.WiringDump(t, host.NS); after != before {
		t.Errorf("host wiring differs:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// TestPrivilegedStaleRecord: a record whose links are not what it says
// any more (an ifindex now naming another link, a bridge re-created) is
// refused before anything changes.
func TestPrivilegedStaleRecord(t *testing.T) {
	testnet.RequirePrivileged(t)
	host := testnet.NewHost(t)
	web := host.AddBridged(t, "web", netip.MustParseAddr("198.18.0.2"))
	other := host.AddBridged(t, "other", netip.MustParseAddr("198.18.0.3"))
	hn := host.NS.Handle()
	rec, err := wire.Find(hn, web.NS.Handle(), testnet.EndpointIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.Plug(hn, rec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wire.Unplug(hn, rec) })
	before := settledDump(t, host.NS)
	for _, tc := range []struct {
		name  string
		spoil func(r *wire.Record)
		step  func(netns.NsHandle, *wire.Record) error
	}{
		{"place ifindex names the other container's veth", func(r *wire.Record) { r.Place.Ifindex = other.HostIndex }, wire.Cut},
		{"place ifindex names the bridge", func(r *wire.Record) { r.Place.Ifindex = r.Master.Ifindex }, wire.Cut},
		{"joint ifindex names the bridge", func(r *wire.Record) {
			r.Joined, r.Joint = true, &wire.Link{Name: "dwb" + fmt.Sprint(r.Inner.Ifindex), Ifindex: r.Master.Ifindex}
		}, wire.Cut},
		{"bridge ifindex names a veth", func(r *wire.Record) { r.Stage, r.Master.Ifindex = wire.StageCut, other.HostIndex }, wire.Uncut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := *rec
			m := *rec.Master
			r.Master = &m
			tc.spoil(&r)
			if err := tc.step(hn, &r); !errors.Is(err, wire.ErrInvalid) {
				t.Fatalf("%v, want ErrInvalid", err)
			}
			if d := testnet.WiringDump(t, host.NS); d != before {
				t.Errorf("the host changed:\n--- before\n%s\n--- after\n%s", before, d)
			}
		})
	}
}
