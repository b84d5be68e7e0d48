package dpi

import (
	"slices"

	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/internal/hs"
	"github.com/deepwall/deepwall/dpi/internal/plan"
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/dns"
	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/dpi/proto/ssh"
	"github.com/deepwall/deepwall/dpi/proto/tls"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/rules/transform"
)

// Bounds on per-flow inspection state.
const (
	// txnRing is how many HTTP transactions a flow keeps (pipelining
	// deeper than this loses the request's details in response events).
	txnRing = 8
	// maxHits bounds the rule hits kept per scope (flow or transaction);
	// more hits still decide, they are just not remembered.
	maxHits = 256
	// maxUnresolved bounds the payload hits kept while the flow's
	// application protocol (which their app_proto conditions need) is
	// still being identified.
	maxUnresolved = 16
	// maxDetectBody bounds the request body kept for libinjection rules
	// on http.body and for the body arguments (form, JSON, multipart)
	// of http.arg, http.arg_name, http.file and http.part_header.
	maxDetectBody = 64 << 10
	// maxCondRules bounds the rules of several conditions tracked per
	// scope; conditions of further rules are not remembered.
	maxCondRules = 256
	// maxContrib bounds the scored rules named per scope (the score
	// itself has no bound but MaxScore per rule).
	maxContrib = 64
)

// Parsers a flow can use.
const (
	parserNone uint8 = iota
	parserHTTP
	parserTLS
	parserDNS
	parserSSH
	parserHTTP2
	parserDB // dbCur (db.go)
)

// Mask bits: which event fields carry text a DLP rule matched.
const (
	maskQuery   uint8 = 1 << iota // the URL's query (http.args)
	maskURL                       // the whole URL (http.uri, http.path)
	maskHost                      // http hostname
	maskUA                        // http user agent
	maskSNI                       // tls sni
	maskRRName                    // dns rrname
	maskMatched                   // alert.matched of every alert of the scope
)

// maskOf returns the event fields a secret found in field may appear in.
func maskOf(f rules.Field) uint8 {
	switch f.Kind {
	case rules.FieldHTTPArgs:
		return maskQuery
	case rules.FieldHTTPURI, rules.FieldHTTPPath:
		return maskURL
	case rules.FieldHTTPHeaders:
		return maskHost | maskUA
	case rules.FieldHTTPHeader:
		switch f.Name {
		case "host":
			return maskHost
		case "user-agent":
			return maskUA
		}
	case rules.FieldTLSSNI:
		return maskSNI
	case rules.FieldDNSQuery:
		return maskRRName
	}
	return 0
}

// scope is where rule hits accumulate and are decided together: the flow,
// an HTTP transaction (request and its response), or one DNS message or
// UDP datagram. An allow rule that hits exempts the rules below it within
// its scope (a flow-scope allow, the whole flow).
type scope struct {
	hits    []*rules.Rule
	emitted []*rules.Rule
	mask    uint8
	txn     *txn
	dns     *dnsInfo
	// conds tracks rules of several conditions (or negated ones) whose
	// conditions held so far in the scope: a rule hits once all did.
	conds []condHeld
	// score is the anomaly score per direction (0 inbound, 1 outbound);
	// contrib the scored rules that added to it, in hit order.
	score   [2]int
	contrib []*rules.Rule
	// over: the threshold rule of that direction already hit.
	over [2]bool
}

// condHeld is the conditions of one rule that held in a scope (bit i =
// condition i).
type condHeld struct {
	r    *rules.Rule
	mask uint32
}

func (s *scope) reset(t *txn, d *dnsInfo) {
	s.hits, s.emitted = s.hits[:0], s.emitted[:0]
	s.mask, s.txn, s.dns = 0, t, d
	s.conds, s.contrib = s.conds[:0], s.contrib[:0]
	s.score, s.over = [2]int{}, [2]bool{}
}

// txn is one HTTP transaction: its hits and the request's details for
// events (bounded copies).
type txn struct {
	scope
	seq                   int64
	stream                uint32 // HTTP/2 stream id (0: HTTP/1)
	live                  bool
	host, url, method, ua []byte
	status                int
}

func (t *txn) start(seq int64, r *http.Request) {
	t.scope.reset(t, nil)
	t.seq, t.live, t.status = seq, true, 0
	t.host = appendBounded(t.host[:0], r.Host, maxHostname)
	t.url = appendBounded(t.url[:0], r.URI, maxURL)
	t.method = appendBounded(t.method[:0], r.Method, maxMethod)
	t.ua = appendBounded(t.ua[:0], r.UserAgent, maxUserAgent)
}

func appendBounded(dst, src []byte, n int) []byte {
	if len(src) > n {
		src = src[:n]
	}
	return append(dst, src...)
}

// dnsInfo is one DNS message's details for events.
type dnsInfo struct {
	query  bool
	rrname []byte
	rrtype uint16
}

// unresolvedHit is a payload hit of a rule with app_proto conditions that
// came before identification ended.
type unresolvedHit struct {
	r     *rules.Rule
	field rules.Field
	dir   flow.Dir
	sens  bool
	text  [matchWindow]byte
	n     int
}

// streamSlot is one Hyperscan stream of a flow (or of a worker's
// datagrams): its transform state and the history confirmations need.
type streamSlot struct {
	st   hs.OpenStream
	tr   *transform.Stream
	hist []byte
	off  uint64 // stream offset of the next transformed byte
	cf   confirmState
	used bool // written since the last reset
}

// flowCtx is a flow's inspection state: identification, the protocol
// parser, rule hits, Hyperscan streams. Workers pool them; a flow holds one
// only while it is inspected.
type flowCtx struct {
	idx   int32
	inUse bool
	rflow rules.Flow

	ident proto.Identifier
	// holding and holdSince: since when the flow's bytes are held (hold).
	holding   bool
	holdSince int64
	parser    uint8
	http      *http.Parser
	tls       *tls.Parser
	dns       *dns.Parser
	ssh       *ssh.Parser
	dbParsers [proto.NumProtocols]dbParser // per database protocol, kept across flows
	dbCur     dbParser                     // the flow's, of dbParsers
	db        dbConn                       // database flows (db.go)
	tunnel    [2]bool                      // HTTP direction switched protocols: HTTP/2 after h2c, else no more parsing
	h2        h2Conn

	flow   scope
	txns   [txnRing]txn
	reqSeq int64 // transaction of the request body being parsed
	rspSeq int64 // transaction of the response body being parsed
	orphan txn   // responses without a request

	slots [plan.NumStreamKinds][]streamSlot

	body     []byte // request body for libinjection rules and body arguments (bounded)
	bodyFull bool
	// queryArgs is the query's argument count of the request being
	// parsed, reqCT its Content-Type (bounded), for requestEnd.
	queryArgs int
	reqCT     []byte

	unresolved []unresolvedHit

	sni        []byte
	tlsVersion uint16
	helloSeen  bool
	sshSW      [2][]byte // software version per direction
	sshProto   [2][]byte
	dnsMsg     dnsInfo // TCP DNS message being inspected
	msg        scope
}

// start prepares a pooled context for flow f.
func (c *flowCtx) start(w *worker, f *flow.Flow[flowState]) {
	c.inUse = true
	c.rflow = rules.Flow{Proto: f.Key.Proto, Client: f.Client(), Server: f.Server()}
	if f.State.ident == identDone {
		c.rflow.App = f.State.app.String()
	}
	c.ident.Reset()
	if f.Flags&flow.FlagMidstream != 0 {
		c.ident.SetMidstream()
	}
	c.holding = false
	c.parser = parserNone
	c.tunnel = [2]bool{}
	c.h2.reset()
	c.forget()
	c.reqSeq, c.rspSeq = -1, -1
	c.sni, c.tlsVersion, c.helloSeen = c.sni[:0], 0, false
	c.db.reset()
	for i := range c.sshSW {
		c.sshSW[i], c.sshProto[i] = c.sshSW[i][:0], c.sshProto[i][:0]
	}
	c.size(w.rs)
}

// forget drops every rule hit and pending body (a new rule set starts
// from a clean slate).
func (c *flowCtx) forget() {
	c.flow.reset(nil, nil)
	for i := range c.txns {
		c.txns[i].scope.reset(&c.txns[i], nil)
		c.txns[i].live = false
	}
	c.orphan.scope.reset(&c.orphan, nil)
	c.unresolved = c.unresolved[:0]
	c.body, c.bodyFull = c.body[:0], false
}

// size gives the context one stream slot per group of each stream field.
func (c *flowCtx) size(rs *ruleset) {
	for k := range c.slots {
		n := 0
		if fp := rs.Stream[k]; fp != nil {
			n = len(fp.Groups)
		}
		if cap(c.slots[k]) < n {
			c.slots[k] = make([]streamSlot, n)
		}
		c.slots[k] = c.slots[k][:n]
		for i := range c.slots[k] {
			c.slots[k][i].tr = nil // chains differ between sets
		}
	}
}

// stop returns the context to the pool (streams already closed).
func (c *flowCtx) stop() {
	c.inUse = false
	if c.http != nil {
		c.http.Release() // body decoders park a goroutine each
	}
	c.h2.release()
	c.forget()
	if cap(c.body) > maxDetectBody {
		c.body = nil
	}
}

// txnFor returns the transaction slot of request seq, starting it.
func (c *flowCtx) txnFor(seq int64) *txn {
	return &c.txns[uint64(seq)%txnRing]
}

// txnOf returns the live transaction seq, or the orphan scope.
func (c *flowCtx) txnOf(seq int64) *txn {
	if seq >= 0 {
		if t := &c.txns[uint64(seq)%txnRing]; t.live && t.seq == seq {
			return t
		}
	}
	c.orphan.live = true
	return &c.orphan
}

func (c *flowCtx) addUnresolved(r *rules.Rule, field rules.Field, text []byte, sens bool, d flow.Dir) {
	if len(c.unresolved) >= maxUnresolved {
		return
	}
	for i := range c.unresolved {
		if c.unresolved[i].r == r {
			return
		}
	}
	c.unresolved = append(c.unresolved, unresolvedHit{r: r, field: field, dir: d, sens: sens})
	u := &c.unresolved[len(c.unresolved)-1]
	u.n = copy(u.text[:], tail(text, matchWindow))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func hasRule(rs []*rules.Rule, r *rules.Rule) bool { return slices.Contains(rs, r) }
