package detect

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"time"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/rules/crs"
)

// outcome is what an engine did with one request.
type outcome struct {
	IDs     map[uint32]bool // rules that matched (threshold rules included)
	Blocked bool            // the request (or its response) was blocked
}

// runner inspects one request and its response.
type runner interface {
	Name() string
	Run(req []byte) outcome
	Close() error
}

// crsRules translates the embedded Core Rule Set at paranoia level pl,
// in detection-only form: the threshold rules (949110, 959100) alert
// instead of blocking, as Coraza beside it runs with SecRuleEngine
// DetectionOnly, so that a request over the inbound threshold still has
// its response inspected (the suite's response-side tests expect CRS's
// outbound rules to run on such exchanges). outcome.Blocked is set when a
// threshold rule logs (DetectionOnly), as for Coraza.
func crsRules(pl int) (*rules.Set, *crs.Result, error) {
	sub, err := fs.Sub(coreruleset.FS, "@owasp_crs")
	if err != nil {
		return nil, nil, err
	}
	res, err := crs.Import(sub, crs.Options{ParanoiaLevel: pl, NoCompile: true})
	if err != nil {
		return nil, nil, err
	}
	set, err := rules.Parse("crs.yaml", res.YAML)
	if err != nil {
		return nil, nil, fmt.Errorf("parse imported crs: %w", err)
	}
	detectionOnly(set)
	return set, res, nil
}

// detectionOnly makes CRS's blocking evaluation rules in set (949110,
// 959100) alert instead of block (SecRuleEngine DetectionOnly); runners
// count their hits as blocked requests (detectionBlocks).
func detectionOnly(set *rules.Set) {
	for _, r := range set.Rules {
		if r.Anomaly != nil && blockingEvaluation(r.ID) {
			r.Action = rules.ActionAlert
		}
	}
}

func blockingEvaluation(id uint32) bool {
	return id == crs.InboundThresholdID || id == crs.OutboundThresholdID
}

// detectionBlocks returns the ids of the blocking evaluation rules of set
// that only alert: their hits stand for blocked requests.
func detectionBlocks(set *rules.Set) map[uint32]bool {
	m := map[uint32]bool{}
	for _, r := range set.Rules {
		if r.Anomaly != nil && r.Action == rules.ActionAlert && blockingEvaluation(r.ID) {
			m[r.ID] = true
		}
	}
	return m
}

// offline runs requests through deepwall's engine (one worker, offline
// clock) as reassembled TCP flows: handshake, the request in MSS-sized
// segments, the backend's response, FIN both ways.
type offline struct {
	name   string
	e      *dpi.Engine
	events []*eve.Event
	port   uint16
	now    int64
	n      int
	blocks map[uint32]bool // threshold rules that only alert (detectionOnly)
}

// newOffline starts an engine over set (compiled here).
func newOffline(name string, set *rules.Set) (*offline, error) {
	c, err := rules.Compile(set)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", name, err)
	}
	o := &offline{name: name, port: 20000, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), blocks: detectionBlocks(set)}
	o.e, err = dpi.New(dpi.Config{Rules: c, Offline: true, ScoreEvents: true, Emit: func(ev *eve.Event) { o.events = append(o.events, ev) }})
	if err != nil {
		c.Close()
		return nil, err
	}
	return o, nil
}

// Name implements runner.
func (o *offline) Name() string { return o.name }

// Close implements runner.
func (o *offline) Close() error { return o.e.Close() }

const mss = 1448

// Run implements runner.
func (o *offline) Run(req []byte) outcome { return o.run(req, nil) }

// run sends c2s on a new connection and then, unless it was blocked, the
// server's s2c (nil: the test backend's HTTP/1 answer to c2s).
func (o *offline) run(c2s, s2c []byte) outcome {
	o.port++
	if o.port < 20000 {
		o.port = 20000
	}
	cli, srv := netip.AddrPortFrom(testnet.ClientIP, o.port), netip.AddrPortFrom(testnet.ServerIP, 80)
	o.events = o.events[:0]
	seq := [2]uint32{1000, 900000}
	blocked := false
	send := func(toClient bool, flags uint8, payload []byte) {
		s := testnet.FrameSpec{Src: cli, Dst: srv, Proto: testnet.ProtoTCP, Flags: flags, Payload: payload}
		d, side := 0, dataplane.Inner
		if toClient {
			s.Src, s.Dst, d, side = srv, cli, 1, dataplane.Outer
		}
		s.Seq = seq[d]
		if flags&testnet.SYN == 0 || toClient {
			s.Flags |= testnet.ACK
			s.Ack = seq[d^1]
		}
		frame, err := testnet.BuildFrame(s)
		if err != nil {
			return
		}
		o.now += int64(100 * time.Microsecond)
		v := o.e.Inspect(0, &dataplane.Frame{Data: frame, Ingress: side, Timestamp: o.now})
		if v.Action == dataplane.Drop && v.Final {
			blocked = true
		}
		seq[d] += uint32(len(payload))
		if flags&(testnet.SYN|testnet.FIN) != 0 {
			seq[d]++
		}
	}
	send(false, testnet.SYN, nil)
	send(true, testnet.SYN, nil)
	send(false, 0, nil)
	// sendData sends b in MSS-sized segments until the flow is blocked.
	sendData := func(toClient bool, b []byte) {
		for len(b) > 0 && !blocked {
			n := min(len(b), mss)
			send(toClient, testnet.PSH, b[:n])
			b = b[n:]
		}
	}
	sendData(false, c2s)
	if !blocked {
		if s2c == nil {
			s2c = backendResponse(c2s)
		}
		sendData(true, s2c)
		send(true, testnet.FIN, nil)
		send(false, testnet.FIN, nil)
		send(true, 0, nil)
	}
	out := outcomeOf(o.events, blocked, o.blocks)
	if o.n++; o.n%512 == 0 {
		o.e.Flush()
	}
	return out
}

// outcomeOf is the outcome of one request from the engine's events for
// its flow: the rules their alerts name, and blocked when the flow was
// dropped or an alert says so.
func outcomeOf(evs []*eve.Event, blocked bool, blocks map[uint32]bool) outcome {
	out := outcome{IDs: map[uint32]bool{}, Blocked: blocked}
	for _, ev := range evs {
		if ev.Alert == nil {
			continue
		}
		out.IDs[ev.Alert.SignatureID] = true
		for _, id := range ev.Alert.Rules {
			out.IDs[id] = true
		}
		if ev.Alert.Action == "blocked" || blocks[ev.Alert.SignatureID] {
			out.Blocked = true
		}
	}
	return out
}

// backendResponse is the test backend's answer to a raw request.
func backendResponse(req []byte) []byte {
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(req)))
	if err != nil {
		return response("GET", "/", nil)
	}
	var body bytes.Buffer
	if r.Body != nil {
		_, _ = body.ReadFrom(http.MaxBytesReader(nil, r.Body, maxBody))
	}
	return response(r.Method, r.URL.RequestURI(), body.Bytes())
}
