package protect

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/resolve"
	"github.com/deepwall/deepwall/dataplane/wire"
	"github.com/deepwall/deepwall/rules"
)

// storedPort is a protected container as protect stores it.
func storedPort() portRecord {
	return portRecord{Target: resolve.Target{Spec: "web", Kind: "netns", Name: "web", Path: "/run/netns/web"}, Iface: "eth0",
		Mode: api.ModeProtect, Since: time.Date(2026, 11, 23, 23, 0, 0, 0, time.UTC),
		Wire: &wire.Record{Version: wire.RecordVersion, Stage: wire.StageCut, ContainerIface: "eth0", ContainerIfindex: 2,
			ContainerMAC: "02:00:00:00:00:02", Inner: wire.Link{Name: "veth1", Ifindex: 7}, InnerMAC: "02:00:00:00:00:07",
			MTU: 1500, Queues: 1, Outer: wire.Link{Name: "dwo7", Ifindex: 9}, Place: wire.Link{Name: "dwp7", Ifindex: 8},
			Master: &wire.Master{Link: wire.Link{Name: "br0", Ifindex: 3}, Kind: "bridge"}}}
}

// TestDecodePortRecord: a stored record is acted on only when every
// part of it is one protect could have written.
func TestDecodePortRecord(t *testing.T) {
	for _, tc := range []struct {
		name  string
		key   string
		spoil func(r *portRecord)
		raw   string // instead of the record
		ok    bool
	}{
		{name: "valid", key: "web", ok: true},
		{name: "not json", key: "web", raw: `{"target":`},
		{name: "json of another shape", key: "web", raw: `[1,2,3]`},
		{name: "too large", key: "web", raw: `"` + strings.Repeat("x", maxPortRecord) + `"`},
		{name: "no wiring", key: "web", spoil: func(r *portRecord) { r.Wire = nil }},
		{name: "key differs", key: "db"},
		{name: "name", key: "../web", spoil: func(r *portRecord) { r.Target.Name = "../web" }},
		{name: "relative path", key: "web", spoil: func(r *portRecord) { r.Target.Path = "netns/web" }},
		{name: "unclean path", key: "web", spoil: func(r *portRecord) { r.Target.Path = "/run/netns/../../etc/shadow" }},
		{name: "mode", key: "web", spoil: func(r *portRecord) { r.Mode = "off" }},
		{name: "iface", key: "web", spoil: func(r *portRecord) { r.Iface = "eth0/../x" }},
		{name: "iface differs from the wiring's", key: "web", spoil: func(r *portRecord) { r.Iface = "eth1" }},
		{name: "wiring escapes the pin dir", key: "web", spoil: func(r *portRecord) { r.Wire.Inner.Name = "../../.." }},
		{name: "wiring deletes eth0", key: "web", spoil: func(r *portRecord) { r.Wire.Outer.Name = "eth0" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := storedPort()
			if tc.spoil != nil {
				tc.spoil(&r)
			}
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if tc.raw != "" {
				b = []byte(tc.raw)
			}
			got, err := decodePortRecord([]byte(tc.key), b)
			if (err == nil) != tc.ok {
				t.Fatalf("decode: %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && got.Target.Name != "web" {
				t.Fatalf("decoded %+v", got)
			}
		})
	}
}

// TestRestoreInvalidRecord: an invalid record in ports.db is left alone
// (nothing it names is touched), logged with the file, and the agent
// goes on.
func TestRestoreInvalidRecord(t *testing.T) {
	p, _, _ := testProtector(t, modeRules)
	delete(p.ports, "web")
	var logs strings.Builder
	p.log = slog.New(slog.NewTextHandler(&logs, nil))
	bad := storedPort()
	bad.Wire.Inner.Name = "../../.."
	b, _ := json.Marshal(bad)
	if err := p.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketPorts).Put([]byte("web"), b); err != nil {
			return err
		}
		return tx.Bucket(bucketPorts).Put([]byte("junk"), []byte("\x00\xff not json"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Restore(); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if len(p.ports) != 0 {
		t.Errorf("invalid records restored: %v", p.ports)
	}
	file := filepath.Join(p.d.StateDir, portsDB)
	if n := strings.Count(logs.String(), "invalid record ignored"); n != 2 || !strings.Contains(logs.String(), file) {
		t.Errorf("log does not report both records with the file:\n%s", logs.String())
	}
}

// FuzzPortRecord: whatever ports.db holds, decoding it never panics, and
// what it accepts names only valid links and paths.
func FuzzPortRecord(f *testing.F) {
	b, _ := json.Marshal(storedPort())
	f.Add([]byte("web"), b)
	f.Add([]byte("web"), []byte(`{"target":{"name":"web","path":"/x"},"wire":{"version":1}}`))
	f.Add([]byte("x"), []byte(`{"target":{"name":"x","path":"/proc/1/ns/net"},"iface":"eth0","mode":"monitor","wire":null}`))
	f.Fuzz(func(t *testing.T, key, v []byte) {
		r, err := decodePortRecord(key, v)
		if err != nil {
			return
		}
		if r.Wire == nil || !rules.ValidContainerName(r.Target.Name) || strings.Contains(r.Wire.Inner.Name, "/") ||
			!filepath.IsAbs(r.Target.Path) {
			t.Fatalf("accepted %+v", r)
		}
		if err := r.Wire.Validate(); err != nil {
			t.Fatalf("accepted an invalid wiring: %v", err)
		}
	})
}
