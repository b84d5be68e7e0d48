package dpi

import (
	"bytes"
	"net/netip"
	"strconv"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/dns"
	"github.com/deepwall/deepwall/dpi/proto/tls"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/xdp"

	"github.com/deepwall/deepwall/ctl/eve"
)

// dropReason classes share a rate limit for their events.
type dropReason uint8

const (
	dropDecode dropReason = iota
	dropFragment
	dropTableFull
	dropACL
	dropConflict
	dropOutOfWindow
	dropLimit
	dropProtocol
	dropChecksum
	dropReset
	dropUnverified
	dropHold
	numDropReasons
)

// dropBucket limits events of one reason to DropEventsPerSecond per
// second of frame time.
type dropBucket struct {
	sec int64
	n   int
}

func (w *worker) dropAllowed(r dropReason) bool {
	lim := w.e.cfg.DropEventsPerSecond
	if lim < 0 {
		return false
	}
	b := &w.dropTok[r]
	if sec := w.now / 1e9; sec != b.sec {
		b.sec, b.n = sec, 0
	}
	if b.n >= lim {
		return false
	}
	b.n++
	return true
}

func (w *worker) countDrop(reason string) {
	if reason == "" {
		reason = "other"
	}
	w.st.drops[reason]++
}

// dropStray drops a frame that has no flow (malformed, fragment, full
// table), with a rate-limited drop event.
func (w *worker) dropStray(r dropReason, reason string, fr *dataplane.Frame) dataplane.Verdict {
	w.st.dropped++
	w.countDrop(reason)
	if w.dropAllowed(r) {
		p := &w.pkt
		ev := &eve.Event{Timestamp: eve.EveTime(w.e.wall(w.now)), EventType: eve.EventDrop, Drop: &eve.Drop{Reason: reason, Len: len(fr.Data)}}
		if p.IPVersion != 0 {
			ev.SrcIP = netip.AddrFrom16(p.Src).Unmap().String()
			ev.DestIP = netip.AddrFrom16(p.Dst).Unmap().String()
			ev.SrcPort, ev.DestPort = p.SrcPort, p.DstPort
			ev.Proto = xdp.ProtoName(p.Proto)
		}
		w.emit(ev)
	}
	return dataplane.Verdict{Action: dataplane.Drop}
}

// dropOnce reports a drop reason once per flow (rate-limited); the frame
// verdict is the caller's.
func (w *worker) dropOnce(r dropReason, reason string, fr *dataplane.Frame) {
	st := w.cst
	if st.dropEv&(1<<r) != 0 || st.flags&fIdentOnly != 0 { // identification alone drops nothing (conclude)
		return
	}
	st.dropEv |= 1 << r
	if !w.dropAllowed(r) {
		return
	}
	ev := w.newEvent(eve.EventDrop, w.cdir)
	ev.Drop = &eve.Drop{Reason: reason, Len: len(fr.Data)}
	w.emit(ev)
}

// aclBlocked reports a flow refused by the ACL: an alert for the rule
// that refused it, or a drop event when the ACL's default did.
func (w *worker) aclBlocked(f *flow.Flow[flowState], d flow.Dir, id uint32, fr *dataplane.Frame) {
	w.st.blocks++
	w.countDrop("acl")
	if !w.dropAllowed(dropACL) {
		return
	}
	var rule *rules.Rule
	for _, r := range w.rs.Compiled.ACL {
		if r.ID == id {
			rule = r
			break
		}
	}
	if rule == nil {
		ev := w.newEvent(eve.EventDrop, d)
		ev.Drop = &eve.Drop{Reason: "acl_default", Len: len(fr.Data)}
		w.emit(ev)
		return
	}
	w.emitAlertRule(rule, d, nil, "blocked")
}

// newEvent starts an event about the current flow, with the addresses
// of a frame in direction d.
func (w *worker) newEvent(typ eve.EventType, d flow.Dir) *eve.Event {
	f, st := w.cur, w.cst
	src, dst := f.Client(), f.Server()
	if d == flow.ToClient {
		src, dst = dst, src
	}
	ev := &eve.Event{
		Timestamp: eve.EveTime(w.e.wall(w.now)), FlowID: st.fid, EventType: typ,
		SrcIP: src.Addr().String(), SrcPort: src.Port(), DestIP: dst.Addr().String(), DestPort: dst.Port(),
		Proto: xdp.ProtoName(f.Key.Proto), Direction: d.String(),
	}
	if st.ident == identDone {
		ev.AppProto = appName(st.app, st.flags)
	}
	return ev
}

func eveSeverity(s rules.Severity) int {
	switch s {
	case rules.SeverityCritical:
		return 1
	case rules.SeverityHigh:
		return 2
	case rules.SeverityLow:
		return 4
	}
	return 3
}

func signature(r *rules.Rule) string {
	if r.Name != "" {
		return r.Name
	}
	return "rule " + strconv.FormatUint(uint64(r.ID), 10)
}

// emitAlertRule emits an alert for rule r on the current flow; ph, when
// not nil, is the hit (field, matched text, scope).
func (w *worker) emitAlertRule(r *rules.Rule, d flow.Dir, ph *pendHit, action string) {
	ev := w.newEvent(eve.EventAlert, d)
	a := &eve.Alert{Action: action, GID: 1, SignatureID: r.ID, Signature: signature(r), Category: r.Category, Severity: eveSeverity(r.Severity)}
	ev.Alert = a
	var sc *scope
	if ph != nil {
		sc = ph.sc
		if ph.field.Kind != 0 {
			a.Field = ph.field.String()
		}
		if ph.n > 0 {
			matched := w.arena[ph.a][:ph.n]
			flowMask := w.cctx != nil && w.cctx.flow.mask&maskMatched != 0
			if ph.sens || sc.mask&maskMatched != 0 || flowMask {
				a.Matched = Mask(matched)
			} else {
				a.Matched = scrub(tail(matched, MaxMatched))
			}
		}
	}
	if r.Anomaly != nil && sc != nil {
		i := 0
		if r.Anomaly.Direction == rules.Outbound {
			i = 1
		}
		a.Score = sc.score[i]
		for _, c := range sc.contrib {
			if c.Outbound() == (i == 1) {
				a.Rules = append(a.Rules, c.ID)
			}
		}
	}
	w.addSections(ev, sc)
	w.cst.flags |= fAlerted
	w.st.alerts++
	w.st.sigs[r.ID]++
	w.emit(ev)
}

// addSections adds the protocol sections of the hit's scope: the HTTP
// transaction, the TLS hello, the DNS message, the SSH banners. Fields a
// DLP rule matched in are masked.
func (w *worker) addSections(ev *eve.Event, sc *scope) {
	ctx := w.cctx
	var mask uint8
	if sc != nil {
		mask = sc.mask
	}
	if ctx != nil {
		mask |= ctx.flow.mask
	}
	if sc != nil && sc.txn != nil && sc.txn.live {
		t := sc.txn
		h := &eve.HTTPInfo{Hostname: string(t.host), URL: string(t.url), Method: string(t.method), UserAgent: string(t.ua), Status: t.status}
		if t.stream != 0 {
			h.Protocol, h.StreamID = "HTTP/2", t.stream
		}
		if mask&maskHost != 0 && h.Hostname != "" {
			h.Hostname = Mask(t.host)
		}
		if mask&maskUA != 0 && h.UserAgent != "" {
			h.UserAgent = Mask(t.ua)
		}
		switch {
		case mask&maskURL != 0:
			h.URL = Mask(t.url)
		case mask&maskQuery != 0:
			if i := bytes.IndexByte(t.url, '?'); i >= 0 {
				h.URL = string(t.url[:i+1]) + Mask(t.url[i+1:])
			} else {
				h.URL = Mask(t.url)
			}
		}
		ev.HTTP = h
	}
	if ctx == nil {
		return
	}
	switch w.cst.app {
	case proto.TLS:
		if ctx.helloSeen {
			ti := &eve.TLSInfo{SNI: string(ctx.sni)}
			if ctx.tlsVersion != 0 {
				ti.Version = tls.VersionName(ctx.tlsVersion)
			}
			if mask&maskSNI != 0 && ti.SNI != "" {
				ti.SNI = Mask(ctx.sni)
			}
			ev.TLS = ti
		}
	case proto.SSH:
		si := &eve.SSHInfo{}
		for d, h := range []**eve.SSHHost{&si.Client, &si.Server} {
			if len(ctx.sshSW[d]) > 0 || len(ctx.sshProto[d]) > 0 {
				*h = &eve.SSHHost{ProtoVersion: string(ctx.sshProto[d]), SoftwareVersion: string(ctx.sshSW[d])}
			}
		}
		if si.Client != nil || si.Server != nil {
			ev.SSH = si
		}
	default:
		if isDB(w.cst.app) {
			dbProtos[w.cst.app].section(ev, &ctx.db)
		}
	}
	if sc != nil && sc.dns != nil && len(sc.dns.rrname) > 0 {
		di := &eve.DNSInfo{Version: 2, Type: "answer", RRName: string(sc.dns.rrname), RRType: dns.TypeName(sc.dns.rrtype)}
		if sc.dns.query {
			di.Type = "query"
		}
		if mask&maskRRName != 0 {
			di.RRName = Mask(sc.dns.rrname)
		}
		ev.DNS = di
	}
}

// emitFlow emits a flow's end.
func (w *worker) emitFlow(key *xdp.FlowKey, pk *parked, state, reason string, end int64) {
	client, server := key.Lo(), key.Hi()
	if pk.client == xdp.FromHi {
		client, server = server, client
	}
	ev := &eve.Event{
		Timestamp: eve.EveTime(w.e.wall(end)), FlowID: pk.fid, EventType: eve.EventFlow,
		SrcIP: client.Addr().String(), SrcPort: client.Port(), DestIP: server.Addr().String(), DestPort: server.Port(),
		Proto: xdp.ProtoName(key.Proto),
		Flow: &eve.FlowStats{
			PktsToServer: pk.pkts[0], PktsToClient: pk.pkts[1], BytesToServer: pk.bytes[0], BytesToClient: pk.bytes[1],
			Start: eve.EveTime(w.e.wall(pk.start)), End: eve.EveTime(w.e.wall(end)), Age: max(0, (end-pk.start)/1e9),
			State: state, Reason: reason, Alerted: pk.flags&fAlerted != 0, Action: verdictName(pk.final),
			FlowExtra: eve.FlowExtra{Bypassed: pk.final == finalAllow},
		},
	}
	switch {
	case pk.ident == identDone:
		ev.AppProto = appName(pk.app, pk.flags)
	case !w.e.cfg.NoIdentify && (key.Proto == 6 || key.Proto == 17):
		// Ended before identification decided (no payload, or too little):
		// unknown, and counted so.
		ev.AppProto = proto.Unknown.String()
		w.st.apps[proto.Unknown]++
	}
	w.emit(ev)
}

func (w *worker) emit(ev *eve.Event) {
	w.st.events++
	if w.e.cfg.Emit != nil {
		w.e.cfg.Emit(ev)
	}
}

// scrub returns b with every run of 12 or more digits (single spaces or
// dashes allowed between them: card numbers) masked. The text reported
// for a non-DLP hit is a window before the match's end and may hold a
// number a DLP rule has not seen yet.
func scrub(b []byte) string {
	var out []byte
	last := 0 // b[:last] is in out
	for i := 0; i < len(b); {
		if b[i] < '0' || b[i] > '9' {
			i++
			continue
		}
		j, digits, end := i, 0, i
		for j < len(b) {
			c := b[j]
			if c >= '0' && c <= '9' {
				digits++
				j++
				end = j
				continue
			}
			if (c == ' ' || c == '-') && j+1 < len(b) && b[j+1] >= '0' && b[j+1] <= '9' {
				j++
				continue
			}
			break
		}
		if digits >= 12 {
			out = append(append(out, b[last:i]...), Mask(b[i:end])...)
			last = end
		}
		i = end
	}
	if out == nil {
		return string(b)
	}
	return string(append(out, b[last:]...))
}
