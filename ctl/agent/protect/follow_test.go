package protect

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/resolve"
)

// storedPending is a followed protection waiting for its container, as
// protect stores it.
func storedPending() pendingPort {
	return pendingPort{Target: resolve.Target{Spec: "podman:web", Kind: "podman", Name: "web", Path: "/proc/4242/ns/net",
		PID: 4242, Runtime: "podman", ID: "fd51c73b2eb4", Container: "web"}, Iface: "eth0", Mode: api.ModeProtect,
		Since: time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC), State: statePending, Reason: "container gone"}
}

// TestDecodePending: a stored pending protection is taken back only when
// protect could have written it.
func TestDecodePending(t *testing.T) {
	for _, tc := range []struct {
		name  string
		key   string
		spoil func(*pendingPort)
		raw   string
		ok    bool
	}{
		{name: "valid", key: "web", ok: true},
		{name: "failed", key: "web", spoil: func(p *pendingPort) { p.State = stateFailed }, ok: true},
		{name: "long reason cut", key: "web", spoil: func(p *pendingPort) { p.Reason = strings.Repeat("x", 2*maxReason) }, ok: true},
		{name: "not json", key: "web", raw: `{"target":`},
		{name: "too large", key: "web", raw: `"` + strings.Repeat("x", maxPendingRecord) + `"`},
		{name: "key differs", key: "db"},
		{name: "name", key: "../web", spoil: func(p *pendingPort) { p.Target.Name = "../web" }},
		{name: "no runtime", key: "web", spoil: func(p *pendingPort) { p.Target.Runtime = "" }},
		{name: "unknown runtime", key: "web", spoil: func(p *pendingPort) { p.Target.Runtime = "foo" }},
		{name: "no container", key: "web", spoil: func(p *pendingPort) { p.Target.Container = "" }},
		{name: "mode", key: "web", spoil: func(p *pendingPort) { p.Mode = "off" }},
		{name: "iface", key: "web", spoil: func(p *pendingPort) { p.Iface = "eth0/../x" }},
		{name: "state", key: "web", spoil: func(p *pendingPort) { p.State = "running" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodePending([]byte(tc.key), spoiled(t, storedPending(), tc.spoil, tc.raw))
			if (err == nil) != tc.ok {
				t.Fatalf("decode: %+v, %v; want ok=%v", got, err, tc.ok)
			}
			if tc.ok && len(got.Reason) > maxReason {
				t.Fatalf("reason of %d bytes kept", len(got.Reason))
			}
		})
	}
}

// spoiled is base changed by spoil, as stored (JSON), or raw instead.
func spoiled[T any](tb testing.TB, base T, spoil func(*T), raw string) []byte {
	tb.Helper()
	if raw != "" {
		return []byte(raw)
	}
	if spoil != nil {
		spoil(&base)
	}
	b, err := json.Marshal(base)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzDecodePending: any stored value decodes into a valid pending
// protection or is refused, without panicking.
func FuzzDecodePending(f *testing.F) {
	b, err := json.Marshal(storedPending())
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("web"), b)
	f.Add([]byte("web"), []byte(`{"target":{"name":"web","runtime":"docker","container":"web"},"iface":"eth0","mode":"protect","state":"failed"}`))
	f.Fuzz(func(t *testing.T, key, v []byte) {
		p, err := decodePending(key, v)
		if err != nil {
			return
		}
		if string(key) != p.Target.Name || !follows(p.Target) || len(p.Reason) > maxReason {
			t.Fatalf("accepted %+v under %q", p, key)
		}
	})
}

// TestDecodePolicy: a stored selector policy is taken back only when
// protect could have written it.
func TestDecodePolicy(t *testing.T) {
	valid := policy{Selector: "label:tier=web", Iface: "eth0", Mode: api.ModeMonitor, Since: time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC)}
	for _, tc := range []struct {
		name  string
		key   string
		spoil func(*policy)
		raw   string
		ok    bool
	}{
		{name: "valid", key: "label:tier=web", ok: true},
		{name: "key differs", key: "label:tier=db"},
		{name: "selector", key: "tier=web", spoil: func(p *policy) { p.Selector = "tier=web" }},
		{name: "mode", key: "label:tier=web", spoil: func(p *policy) { p.Mode = "off" }},
		{name: "iface", key: "label:tier=web", spoil: func(p *policy) { p.Iface = "../x" }},
		{name: "too large", key: "label:tier=web", raw: `"` + strings.Repeat("x", maxPolicyRecord) + `"`},
		{name: "not json", key: "label:tier=web", raw: `{`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodePolicy([]byte(tc.key), spoiled(t, valid, tc.spoil, tc.raw))
			if (err == nil) != tc.ok {
				t.Fatalf("decode: %+v, %v; want ok=%v", got, err, tc.ok)
			}
		})
	}
}

// FuzzDecodePolicy: any stored value decodes into a valid policy or is
// refused, without panicking.
func FuzzDecodePolicy(f *testing.F) {
	f.Add([]byte("label:tier=web"), []byte(`{"selector":"label:tier=web","iface":"eth0","mode":"protect"}`))
	f.Add([]byte("name:[*"), []byte(`{"selector":"name:[*","iface":"eth0","mode":"protect"}`))
	f.Fuzz(func(t *testing.T, key, v []byte) {
		p, err := decodePolicy(key, v)
		if err != nil {
			return
		}
		if string(key) != p.Selector || p.sel.String() != p.Selector {
			t.Fatalf("accepted %+v under %q", p, key)
		}
	})
}
