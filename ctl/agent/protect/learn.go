package protect

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/rules"
)

// Discovery (protection mode discover) and promotion of what it learned.
const (
	// maxLearned bounds the learned flows kept (all containers).
	maxLearned = 4096
	// learnedIDBase is where the ids of promoted rules start: rule
	// learned #n becomes rules learnedIDBase+2n (the flow) and +2n+1 (its
	// replies: the ACL judges each direction).
	learnedIDBase = 3_000_000_000
	// learnedDenyBase starts the ids of the per-container default-deny
	// rules promote adds after a container's first allow rules.
	learnedDenyBase = 3_900_000_000
	// learnedCategory tags promoted rules.
	learnedCategory = "learned"
	// maxLearnedSeq is the last learned rule number: its reply rule's id
	// stays below learnedDenyBase.
	maxLearnedSeq = (learnedDenyBase-learnedIDBase)/2 - 1
	// maxLearnedBytes bounds the stored learned flows (maxLearned rules
	// of ~300 bytes of JSON each, with room).
	maxLearnedBytes = 8 << 20
)

// learnKey identifies a learned flow: who talks to whom on which port.
type learnKey struct {
	Container string
	Dir       string // in | out
	Peer      netip.Addr
	Proto     uint8
	Port      uint16
}

// learner accumulates the flows of containers in discover mode.
type learner struct {
	p     *Protector
	mu    sync.Mutex
	m     map[learnKey]*api.LearnedRule
	seq   uint32
	dirty bool
	full  bool // a flow was not learned: the table or the ids ran out (logged once)
}

func newLearner(p *Protector) *learner { return &learner{p: p, m: map[learnKey]*api.LearnedRule{}} }

// observe records a flow from client to server if either end is a
// container in discover mode.
func (l *learner) observe(client, server netip.AddrPort, proto uint8, app string) {
	if !learnable(proto) {
		return
	}
	for _, pp := range l.p.portsOf() {
		if pp.protectionMode() != api.ModeDiscover {
			continue
		}
		as := pp.addrs.Load()
		if as == nil {
			continue
		}
		switch {
		case slices.Contains(*as, server.Addr()):
			l.add(learnKey{Container: pp.name(), Dir: "in", Peer: client.Addr(), Proto: proto, Port: server.Port()}, app)
		case slices.Contains(*as, client.Addr()):
			l.add(learnKey{Container: pp.name(), Dir: "out", Peer: server.Addr(), Proto: proto, Port: server.Port()}, app)
		}
	}
}

// learnedProtos are the protocols discover learns: TCP, UDP, SCTP, ICMP
// and ICMPv6.
var learnedProtos = []uint8{6, 17, 132, 1, 58}

// learnable reports whether discover learns flows of proto.
func learnable(proto uint8) bool { return slices.Contains(learnedProtos, proto) }

func (l *learner) add(k learnKey, app string) {
	if app == "unknown" || app == "failed" {
		app = ""
	}
	now := time.Now().UTC().Truncate(time.Second)
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.m[k]; ok {
		if !r.Last.Equal(now) {
			r.Flows++
			r.Last = now
			l.dirty = true
		}
		if r.App == "" && app != "" {
			r.App, l.dirty = app, true
		}
		return
	}
	if len(l.m) >= maxLearned || l.seq >= maxLearnedSeq {
		if !l.full {
			l.full = true
			l.p.log.Warn("discover: learned flows table full, new flows are not learned",
				"max", maxLearned, "container", k.Container)
		}
		return
	}
	l.seq++
	l.m[k] = &api.LearnedRule{ID: learnedIDBase + 2*l.seq, Container: k.Container, Direction: k.Dir, Peer: k.Peer.String(),
		Proto: rules.ProtoString(k.Proto), Port: k.Port, App: app, Flows: 1, First: now, Last: now}
	l.dirty = true
}

// poll learns the engine's live flows (flow events cover ended ones).
func (l *learner) poll() {
	eng := l.p.d.Engine
	if eng == nil {
		return
	}
	discover := false
	for _, pp := range l.p.portsOf() {
		discover = discover || pp.protectionMode() == api.ModeDiscover
	}
	if discover {
		type fl struct {
			c, s  netip.AddrPort
			proto uint8
			app   string
		}
		var flows []fl
		eng.Flows(func(fi dpi.FlowInfo) bool {
			flows = append(flows, fl{fi.Client, fi.Server, fi.Proto, fi.App})
			return len(flows) < 65536
		})
		for _, f := range flows {
			l.observe(f.c, f.s, f.proto, f.app)
		}
	}
	l.flush()
}

// flush stores the learned flows if they changed.
func (l *learner) flush() {
	l.mu.Lock()
	if !l.dirty {
		l.mu.Unlock()
		return
	}
	list := l.listLocked()
	seq := l.seq
	l.dirty = false
	l.mu.Unlock()
	b, err := json.Marshal(struct {
		Seq   uint32            `json:"seq"`
		Rules []api.LearnedRule `json:"rules"`
	}{seq, list})
	if err == nil {
		err = l.p.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketLearned).Put([]byte("all"), b) })
	}
	if err != nil {
		l.p.log.Warn("store learned flows", "error", err)
	}
}

// load reads the learned flows back from the store.
func (l *learner) load() error {
	file := filepath.Join(l.p.d.StateDir, portsDB)
	var data []byte
	if err := l.p.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLearned).Get([]byte("all"))
		if len(v) > maxLearnedBytes {
			return fmt.Errorf("%d bytes, at most %d", len(v), maxLearnedBytes)
		}
		data = slices.Clone(v)
		return nil
	}); err != nil {
		return fmt.Errorf("learned flows in %s: %w", file, err)
	}
	if data == nil {
		return nil
	}
	m, seq, skipped, err := decodeLearned(data)
	if err != nil {
		return fmt.Errorf("learned flows in %s: %w", file, err)
	}
	if skipped > 0 {
		l.p.log.Warn("learned flows: invalid entries ignored", "file", file, "ignored", skipped, "kept", len(m))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m, l.seq = m, seq
	return nil
}

// decodeLearned reads the stored learned flows: at most maxLearned
// entries, each checked as add would have made it (container name,
// direction, address, protocol, an id of its own), the protocol in the
// form promote renders; others are counted in skipped. seq is at least
// the highest number in use, so that new flows get fresh ids.
func decodeLearned(data []byte) (m map[learnKey]*api.LearnedRule, seq uint32, skipped int, err error) {
	var st struct {
		Seq   uint32            `json:"seq"`
		Rules []api.LearnedRule `json:"rules"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, 0, 0, err
	}
	m = map[learnKey]*api.LearnedRule{}
	ids := map[uint32]bool{}
	seq = min(st.Seq, maxLearnedSeq)
	for i := range st.Rules {
		r := st.Rules[i]
		peer, err := netip.ParseAddr(r.Peer)
		proto, perr := api.ParseProto(r.Proto)
		n := (int64(r.ID) - learnedIDBase) / 2
		k := learnKey{Container: r.Container, Dir: r.Direction, Peer: peer.Unmap(), Proto: proto, Port: r.Port}
		if err != nil || perr != nil || !learnable(proto) || !rules.ValidContainerName(r.Container) || r.Direction != "in" && r.Direction != "out" ||
			r.ID%2 != 0 || n < 1 || n > maxLearnedSeq || ids[r.ID] || m[k] != nil || len(m) >= maxLearned || len(r.App) > 64 {
			skipped++
			continue
		}
		r.Peer, r.Proto = k.Peer.String(), rules.ProtoString(proto)
		ids[r.ID], m[k] = true, &r
		seq = max(seq, uint32(n))
	}
	return m, seq, skipped, nil
}

func (l *learner) listLocked() []api.LearnedRule {
	out := make([]api.LearnedRule, 0, len(l.m))
	for _, r := range l.m {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b api.LearnedRule) int { return int(int64(a.ID) - int64(b.ID)) })
	return out
}

// list lists the learned flows, oldest first.
func (l *learner) list() api.LearnedList {
	l.poll()
	l.mu.Lock()
	defer l.mu.Unlock()
	return api.LearnedList{Rules: l.listLocked()}
}

// promotedRules renders learned flows as allow rules: the flow and its
// replies.
func promotedRules(list []api.LearnedRule) string {
	var b strings.Builder
	b.WriteString("rules:\n")
	for _, r := range list {
		app := ""
		if r.App != "" {
			app = " (" + r.App + ")"
		}
		ports := r.Proto == "tcp" || r.Proto == "udp" || r.Proto == "sctp"
		c := rules.ContainerPrefix + r.Container
		client, server := r.Peer, c
		if r.Direction == "out" {
			client, server = c, r.Peer
		}
		fmt.Fprintf(&b, "  - id: %d\n    name: %q\n    action: allow\n    category: %s\n    proto: %s\n    src: %q\n    dst: %q\n",
			r.ID, fmt.Sprintf("learned: %s -> %s:%d/%s%s", client, server, r.Port, r.Proto, app), learnedCategory, r.Proto, client, server)
		if ports {
			fmt.Fprintf(&b, "    dst_port: %d\n", r.Port)
		}
		fmt.Fprintf(&b, "  - id: %d\n    name: %q\n    action: allow\n    category: %s\n    proto: %s\n    src: %q\n    dst: %q\n",
			r.ID+1, fmt.Sprintf("learned (replies): %s:%d/%s -> %s", server, r.Port, r.Proto, client), learnedCategory, r.Proto, server, client)
		if ports {
			fmt.Fprintf(&b, "    src_port: %d\n", r.Port)
		}
	}
	return b.String()
}

// denyRules renders the default deny of a container with a learned
// policy: everything to and from it that no learned rule allows.
func denyRules(name string, id uint32) string {
	c := rules.ContainerPrefix + name
	return fmt.Sprintf("  - id: %d\n    name: %q\n    action: block\n    category: %s\n    dst: %q\n"+
		"  - id: %d\n    name: %q\n    action: block\n    category: %s\n    src: %q\n",
		id, "learned policy: default deny to "+name, learnedCategory, c,
		id+1, "learned policy: default deny from "+name, learnedCategory, c)
}

// promote turns learned flows into allow rules in the running set, each
// container's allow rules followed by its default deny, so that once the
// container is in protect mode exactly the learned traffic passes.
func (l *learner) promote(req api.PromoteRequest, who Caller) (api.ChangeResult, error) {
	if len(req.IDs) > maxLearned { // more cannot name distinct learned flows
		return api.ChangeResult{}, fmt.Errorf("%w: %d ids, at most %d", api.ErrInvalid, len(req.IDs), maxLearned)
	}
	l.poll()
	l.mu.Lock()
	var pick []api.LearnedRule
	for _, r := range l.listLocked() {
		if !r.Promoted && (req.All || slices.Contains(req.IDs, r.ID)) {
			pick = append(pick, r)
		}
	}
	l.mu.Unlock()
	for _, id := range req.IDs {
		if !slices.ContainsFunc(pick, func(r api.LearnedRule) bool { return r.ID == id }) {
			return api.ChangeResult{}, fmt.Errorf("%w: learned rule %d: unknown or promoted already", api.ErrInvalid, id)
		}
	}
	if len(pick) == 0 {
		return api.ChangeResult{}, fmt.Errorf("%w: nothing to promote (deepwall rules learned lists what discover mode learned)", api.ErrInvalid)
	}
	res, err := l.p.d.Rules.Change("promote", who, req.Comment, func(running *rules.Set) (*rules.Set, []uint32, error) {
		return buildPromoted(running, pick)
	})
	if err != nil {
		return res, err
	}
	l.mu.Lock()
	for _, r := range l.m {
		if slices.ContainsFunc(pick, func(p api.LearnedRule) bool { return p.ID == r.ID }) {
			r.Promoted = true
		}
	}
	l.dirty = true
	l.mu.Unlock()
	l.flush()
	return res, nil
}

// buildPromoted inserts the allow rules of pick into set: before the
// container's default deny if it has one, else at the end followed by a
// new default deny. An error means the new set is invalid.
func buildPromoted(set *rules.Set, pick []api.LearnedRule) (*rules.Set, []uint32, error) {
	byC := map[string][]api.LearnedRule{}
	var names []string
	for _, r := range pick {
		if _, ok := byC[r.Container]; !ok {
			names = append(names, r.Container)
		}
		byC[r.Container] = append(byC[r.Container], r)
	}
	out := slices.Clone(set.Rules)
	var ids []uint32
	for _, name := range names {
		var text strings.Builder
		text.WriteString(promotedRules(byC[name]))
		denyName := "learned policy: default deny to " + name
		at := slices.IndexFunc(out, func(r *rules.Rule) bool { return r.Category == learnedCategory && r.Name == denyName })
		if at < 0 {
			id := uint32(learnedDenyBase)
			for set.Rule(id) != nil || set.Rule(id+1) != nil || slices.ContainsFunc(out, func(r *rules.Rule) bool { return r.ID == id || r.ID == id+1 }) {
				id += 2
			}
			text.WriteString(denyRules(name, id))
		}
		add, err := rules.Parse("promote", []byte(text.String()))
		if err != nil {
			return nil, nil, err
		}
		for _, r := range add.Rules {
			ids = append(ids, r.ID)
		}
		if at < 0 {
			out = append(out, add.Rules...)
		} else {
			out = slices.Insert(out, at, add.Rules...)
		}
	}
	next := &rules.Set{Rules: out, ACLDefault: set.ACLDefault}
	if err := next.Validate(); err != nil {
		return nil, nil, err
	}
	return next, ids, nil
}
