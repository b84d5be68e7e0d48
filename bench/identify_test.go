package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/dpi/pcapio"
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/rules"
)

// corpusEnv names nDPI's test corpus: a directory holding pcap/ (the
// captures) and result/ (ndpiReader's expected output for each, NAME.out),
// as tests/cfgs/default in a checkout of github.com/ntop/nDPI. The corpus is
// 37 MB of captures under nDPI's licence and is not committed; fetch it
// with
//
//	git clone --depth 1 --filter=blob:limit=5m https://github.com/ntop/nDPI
//	DEEPWALL_NDPI_CORPUS=$PWD/nDPI/tests/cfgs/default go test ./bench -run TestIdentifyCorpus -v
//
// (the figures in docs/protocols.md are from nDPI commit 3b1286ab03b0).
const corpusEnv = "DEEPWALL_NDPI_CORPUS"

// TestIdentifyCorpus replays every capture of nDPI's corpus through the
// engine (corpusRules: every flow inspected) and
// compares each flow's app_proto with the protocol nDPI's expected results
// give the same flow, when nDPI found it by DPI (not by port or address).
// It prints, per protocol deepwall names, how many flows nDPI gives that
// protocol and how many of them deepwall names the same, something else or
// unknown, and how many flows deepwall names so that nDPI names otherwise;
// and the drops the engine made by reason, with the captures behind them.
// It fails when deepwall names a flow a protocol nDPI disagrees with, or
// a capture cannot be read (except those of link types deepwall does not
// take).
func TestIdentifyCorpus(t *testing.T) {
	dir := os.Getenv(corpusEnv)
	if dir == "" {
		t.Skipf("%s not set (see corpusEnv)", corpusEnv)
	}
	pcaps, _ := filepath.Glob(filepath.Join(dir, "pcap", "*"))
	var (
		mu    sync.Mutex
		c     corpusCount
		drops = map[string]map[string]uint64{}
	)
	c.byProto = map[string]*protoCount{}
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for _, p := range pcaps {
		want, err := readNDPIResult(filepath.Join(dir, "result", filepath.Base(p)+".out"))
		if err != nil {
			continue // no expected result: not a capture of the corpus
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			got, sum, err := replayFlows(p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				switch {
				case errors.Is(err, pcapio.ErrLinkType):
					c.skipped = append(c.skipped, filepath.Base(p))
					return
				case errors.Is(err, pcapio.ErrTruncated):
					t.Logf("%s: %v (the records before it counted)", filepath.Base(p), err)
				default:
					t.Errorf("%s: %v", filepath.Base(p), err)
				}
			}
			c.captures++
			c.add(t, filepath.Base(p), got, want)
			for r, n := range sum.Drops {
				if drops[r] == nil {
					drops[r] = map[string]uint64{}
				}
				drops[r][filepath.Base(p)] += n
			}
		}()
	}
	wg.Wait()
	var b strings.Builder
	c.table(&b)
	fmt.Fprintf(&b, "\ndrops by reason (captures)\n")
	reasons := make([]string, 0, len(drops))
	for r := range drops {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		var total uint64
		var files []string
		for f, n := range drops[r] {
			total += n
			files = append(files, fmt.Sprintf("%s:%d", f, n))
		}
		sort.Strings(files)
		if len(files) > 6 {
			files = append(files[:6], "...")
		}
		fmt.Fprintf(&b, "  %-24s %6d  %s\n", r, total, strings.Join(files, " "))
	}
	t.Log("\n" + b.String())
	if out := os.Getenv("DEEPWALL_CORPUS_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// flowKey names a flow whichever side sent first: protocol and both
// endpoints, ordered.
type flowKey struct {
	proto  string
	lo, hi netip.AddrPort
}

func makeFlowKey(proto string, a, b netip.AddrPort) flowKey {
	if b.Compare(a) < 0 {
		a, b = b, a
	}
	return flowKey{proto, a, b}
}

// ndpiFlow is one flow of ndpiReader's output.
type ndpiFlow struct {
	proto string // deepwall's name of nDPI's master protocol, or nDPI's own in lower case
	dpi   bool   // found by DPI (not by port, address or guess)
}

// ndpiLine matches a flow line of ndpiReader -v output:
// "	1	TCP 192.168.1.13:55523 <-> 178.62.197.130:443 [proto: 91.26/TLS.ntop]...[Confidence: DPI]".
var ndpiLine = regexp.MustCompile(`^\s+\d+\s+(TCP|UDP) (\S+) <?-> (\S+) \[proto: [\d.]+/([^\]]+)\].*?\[Confidence: ([^\]]+)\]`)

// corpusArtifacts are captures whose bytes are not what the endpoints
// exchanged, where a disagreement with nDPI is logged, not failed.
var corpusArtifacts = map[string]string{
	"heuristic_tcp_ack_payload.pcap": "IP total lengths count the Ethernet padding of short frames, so SYN-ACKs and ACKs carry two zero bytes of payload a receiver would take as data",
}

// ndpiNames maps nDPI's protocol names to deepwall's where they differ
// beyond case.
var ndpiNames = map[string]string{
	"ftp_control": "ftp",
	"mssql-tds":   "tds",
	"mail_smtp":   "smtp",
	"mail_pop":    "pop3",
	"mail_imap":   "imap",
}

func readNDPIResult(path string) (map[flowKey]ndpiFlow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[flowKey]ndpiFlow{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		m := ndpiLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		a, err1 := netip.ParseAddrPort(m[2])
		b, err2 := netip.ParseAddrPort(m[3])
		if err1 != nil || err2 != nil {
			continue
		}
		name := strings.ToLower(strings.SplitN(m[4], ".", 2)[0])
		if n, ok := ndpiNames[name]; ok {
			name = n
		}
		out[makeFlowKey(strings.ToLower(m[1]), a, b)] = ndpiFlow{proto: name, dpi: strings.HasPrefix(m[5], "DPI")}
	}
	return out, sc.Err()
}

// corpusRules apply to every flow (a payload rule that never matches), so
// that the engine inspects each as it does under a real rule set: flows
// no rule applies to are only identified and never dropped, and the drops
// by reason would say nothing.
const corpusRules = "rules:\n  - {id: 1, action: alert, match: {field: payload, regex: 'deepwall corpus: never matches'}}\n"

// replayFlows runs one capture through an engine with corpusRules and
// returns the app_proto of each flow.
func replayFlows(path string) (map[flowKey]string, dpi.Summary, error) {
	set, err := rules.Parse("corpus", []byte(corpusRules))
	if err != nil {
		return nil, dpi.Summary{}, err
	}
	c, err := rules.Compile(set)
	if err != nil {
		return nil, dpi.Summary{}, err
	}
	got := map[flowKey]string{}
	var mu sync.Mutex
	e, err := dpi.New(dpi.Config{Rules: c, Offline: true, Emit: func(ev *eve.Event) {
		if ev.EventType != eve.EventFlow || ev.Proto != "TCP" && ev.Proto != "UDP" {
			return
		}
		a, err1 := netip.ParseAddr(ev.SrcIP)
		b, err2 := netip.ParseAddr(ev.DestIP)
		if err1 != nil || err2 != nil {
			return
		}
		mu.Lock()
		got[makeFlowKey(strings.ToLower(ev.Proto), netip.AddrPortFrom(a, ev.SrcPort), netip.AddrPortFrom(b, ev.DestPort))] = ev.AppProto
		mu.Unlock()
	}})
	if err != nil {
		c.Close()
		return nil, dpi.Summary{}, err
	}
	defer e.Close()
	r, err := pcapio.Open(path)
	if err != nil {
		return nil, dpi.Summary{}, err
	}
	defer r.Close()
	sum, err := dpi.Replay(e, r)
	if err != nil && errors.Is(err, io.EOF) {
		err = nil
	}
	return got, sum, err
}

// protoCount is the comparison for one protocol deepwall can name.
type protoCount struct {
	oracle              int // flows nDPI names this protocol by DPI
	agree, other, unkn  int // of those: deepwall says the same, another protocol, unknown
	missed              int // of those: no flow event (not seen as a flow, e.g. a fragment-only flow)
	falsePos            int // flows deepwall names this protocol and nDPI names another by DPI
	falsePosUnknown     int // flows deepwall names this protocol and nDPI does not know
	disagreeing         []string
	capturesWithFlows   map[string]bool
	deepwallIdentifying int // flows deepwall names this protocol
}

type corpusCount struct {
	captures        int
	skipped         []string
	flows, named    int // flows deepwall saw (TCP/UDP) and named (not unknown)
	oracleFlows     int // flows nDPI names by DPI
	oracleKnown     int // of those, with a protocol deepwall can name
	matched         int // of oracleKnown: seen by deepwall
	agreeing        int // of oracleKnown: same protocol
	byProto         map[string]*protoCount
	disagreeSamples []string
}

func (c *corpusCount) pc(name string) *protoCount {
	p := c.byProto[name]
	if p == nil {
		p = &protoCount{capturesWithFlows: map[string]bool{}}
		c.byProto[name] = p
	}
	return p
}

func (c *corpusCount) add(t *testing.T, capture string, got map[flowKey]string, want map[flowKey]ndpiFlow) {
	known := map[string]bool{}
	for _, p := range proto.Protocols() {
		known[p.String()] = true
	}
	known["grpc"] = true
	for k, app := range got {
		c.flows++
		if app != "" && app != "unknown" {
			c.named++
			c.pc(app).deepwallIdentifying++
		}
		w, ok := want[k]
		if app == "" || app == "unknown" || !ok || !w.dpi || w.proto == app || app == "grpc" && w.proto == "http2" {
			continue
		}
		if w.proto == "unknown" {
			c.pc(app).falsePosUnknown++
			continue
		}
		// nDPI names protocols on top of others (a TLS flow of an app
		// nDPI knows is "TLS.App"; Tor, DoH... are named on their own):
		// a disagreement is only counted when nDPI's name is one
		// deepwall knows too.
		if known[w.proto] {
			p := c.pc(app)
			p.falsePos++
			if len(p.disagreeing) < 5 {
				p.disagreeing = append(p.disagreeing, fmt.Sprintf("%s %v-%v nDPI %s", capture, k.lo, k.hi, w.proto))
			}
			if why, ok := corpusArtifacts[capture]; ok {
				t.Logf("%s: flow %s %v-%v: deepwall %s, nDPI %s (%s)", capture, k.proto, k.lo, k.hi, app, w.proto, why)
			} else {
				t.Errorf("%s: flow %s %v-%v: deepwall %s, nDPI %s", capture, k.proto, k.lo, k.hi, app, w.proto)
			}
		}
	}
	for k, w := range want {
		if !w.dpi || w.proto == "unknown" {
			continue
		}
		c.oracleFlows++
		if !known[w.proto] {
			continue
		}
		c.oracleKnown++
		p := c.pc(w.proto)
		p.oracle++
		p.capturesWithFlows[capture] = true
		app, ok := got[k]
		switch {
		case !ok:
			p.missed++
		case app == w.proto || app == "grpc" && w.proto == "http2":
			c.matched++
			c.agreeing++
			p.agree++
		case app == "" || app == "unknown":
			c.matched++
			p.unkn++
		default:
			c.matched++
			p.other++
		}
	}
}

func (c *corpusCount) table(w io.Writer) {
	pct := func(a, b int) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f %%", 100*float64(a)/float64(b))
	}
	fmt.Fprintf(w, "captures %d (%d of a link type deepwall does not read: %s)\n", c.captures, len(c.skipped), strings.Join(c.skipped, " "))
	fmt.Fprintf(w, "TCP/UDP flows deepwall saw %d, named %d (%s)\n", c.flows, c.named, pct(c.named, c.flows))
	fmt.Fprintf(w, "flows nDPI names by DPI %d, of a protocol deepwall names %d: deepwall agrees on %d (%s)\n\n",
		c.oracleFlows, c.oracleKnown, c.agreeing, pct(c.agreeing, c.oracleKnown))
	fmt.Fprintf(w, "| protocol | nDPI flows (DPI) | deepwall agrees | deepwall unknown | deepwall other | no flow | deepwall flows | named so, nDPI other | named so, nDPI unknown |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	names := make([]string, 0, len(c.byProto))
	for n := range c.byProto {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if d := c.byProto[b].oracle - c.byProto[a].oracle; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	for _, n := range names {
		p := c.byProto[n]
		fmt.Fprintf(w, "| %s | %d | %d (%s) | %d | %d | %d | %d | %d | %d |\n", n, p.oracle, p.agree, pct(p.agree, p.oracle),
			p.unkn, p.other, p.missed, p.deepwallIdentifying, p.falsePos, p.falsePosUnknown)
	}
	for _, n := range names {
		for _, d := range c.byProto[n].disagreeing {
			fmt.Fprintf(w, "disagreement: deepwall %s: %s\n", n, d)
		}
	}
}
