package wire_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dataplane/wire"
)

// validRecord is a cut record as Find, Plug and Cut write it.
func validRecord() *wire.Record {
	return &wire.Record{Version: wire.RecordVersion, Stage: wire.StageCut, ContainerIface: "eth0", ContainerIfindex: 2,
		ContainerMAC: "02:00:00:00:00:02", ContainerNSInode: 4026532000,
		Inner: wire.Link{Name: "veth1", Ifindex: 7}, InnerMAC: "02:00:00:00:00:07", MTU: 1500, Queues: 2,
		Outer: wire.Link{Name: "dwo7", Ifindex: 9}, Place: wire.Link{Name: "dwp7", Ifindex: 8},
		Master: &wire.Master{Link: wire.Link{Name: "docker0", Ifindex: 3}, Kind: "bridge", Protinfo: wire.PortFlags{Learning: true, Flood: true},
			VLANsSet: true, VLANs: []wire.VLAN{{VID: 1, PVID: true, Untagged: true}}},
		Addrs:   []wire.Addr{{Prefix: "169.254.1.1/32"}, {Prefix: "2001:2::1/64"}},
		Routes:  []wire.Route{{Family: 2, Dst: "198.18.1.1/32", Table: 254, Scope: 253, Protocol: 4, Type: 1}, {Family: 10, Gw: "2001:2::2", Table: 254, Type: 1}},
		Neigh:   []wire.Neigh{{Family: 2, IP: "198.18.1.1", MAC: "02:00:00:00:00:01", State: 0x80}},
		Sysctls: map[string]string{"ipv4/conf/%s/proxy_arp": "1", "ipv4/conf/%s/rp_filter": "0"}}
}

// TestRecordValidate: a record read back is acted on only if Find, Plug
// and Cut could have written it.
func TestRecordValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(r *wire.Record)
	}{
		{"valid", nil},
		{"found stage, no pair yet", func(r *wire.Record) { r.Stage, r.Outer, r.Place = wire.StageFound, wire.Link{}, wire.Link{} }},
		{"joined", func(r *wire.Record) { r.Joined, r.Joint = true, &wire.Link{Name: "dwb7", Ifindex: 10} }},
		{"routed", func(r *wire.Record) { r.Master = nil }},
		{"version", func(r *wire.Record) { r.Version = 2 }},
		{"stage", func(r *wire.Record) { r.Stage = "sideways" }},
		{"inner name escapes the pin dir", func(r *wire.Record) { r.Inner.Name = "../../.." }},
		{"inner name dot-dot", func(r *wire.Record) { r.Inner.Name = ".." }},
		{"inner name with a slash", func(r *wire.Record) { r.Inner.Name = "a/b" }},
		{"inner name too long", func(r *wire.Record) { r.Inner.Name = "veth0123456789ab" }},
		{"inner name empty", func(r *wire.Record) { r.Inner.Name = "" }},
		{"inner is deepwall's", func(r *wire.Record) { r.Inner.Name = "dwp3" }},
		{"inner ifindex", func(r *wire.Record) { r.Inner.Ifindex = 0 }},
		{"container iface", func(r *wire.Record) { r.ContainerIface = "eth 0" }},
		{"outer is the host's eth0", func(r *wire.Record) { r.Outer.Name = "eth0" }},
		{"place of another veth", func(r *wire.Record) { r.Place.Name = "dwp8" }},
		{"place ifindex", func(r *wire.Record) { r.Place.Ifindex = -1 }},
		{"joint not joined", func(r *wire.Record) { r.Joint = &wire.Link{Name: "dwb7", Ifindex: 10} }},
		{"joint name", func(r *wire.Record) { r.Joined, r.Joint = true, &wire.Link{Name: "docker0", Ifindex: 3} }},
		{"master name", func(r *wire.Record) { r.Master.Name = "br:0" }},
		{"master kind", func(r *wire.Record) { r.Master.Kind = "bond" }},
		{"vlan 0", func(r *wire.Record) { r.Master.VLANs = []wire.VLAN{{VID: 0}} }},
		{"vlan 4095", func(r *wire.Record) { r.Master.VLANs = []wire.VLAN{{VID: 4095}} }},
		{"too many vlans", func(r *wire.Record) { r.Master.VLANs = make([]wire.VLAN, wire.MaxVLANs+1) }},
		{"mac", func(r *wire.Record) { r.InnerMAC = "zz" }},
		{"mtu", func(r *wire.Record) { r.MTU = 1 << 20 }},
		{"queues", func(r *wire.Record) { r.Queues = wire.MaxQueues + 1 }},
		{"address", func(r *wire.Record) { r.Addrs[0].Prefix = "169.254.1.1" }},
		{"peer address", func(r *wire.Record) { r.Addrs[0].Peer = "x" }},
		{"too many addresses", func(r *wire.Record) {
			r.Addrs = make([]wire.Addr, wire.MaxAddrs+1)
			for i := range r.Addrs {
				r.Addrs[i].Prefix = "198.18.0.1/32"
			}
		}},
		{"route family", func(r *wire.Record) { r.Routes[0].Family = 7 }},
		{"route dst", func(r *wire.Record) { r.Routes[0].Dst = "198.18.1.1/33" }},
		{"route gateway", func(r *wire.Record) { r.Routes[1].Gw = "gw" }},
		{"too many routes", func(r *wire.Record) { r.Routes = make([]wire.Route, wire.MaxRoutes+1) }},
		{"neighbour ip", func(r *wire.Record) { r.Neigh[0].IP = "" }},
		{"neighbour mac", func(r *wire.Record) { r.Neigh[0].MAC = "02:00" }},
		{"sysctl key off the list", func(r *wire.Record) { r.Sysctls["../../../../etc/%s"] = "1" }},
		{"sysctl value", func(r *wire.Record) { r.Sysctls["ipv4/conf/%s/proxy_arp"] = "1\nx" }},
		{"sysctl value long", func(r *wire.Record) { r.Sysctls["ipv4/conf/%s/proxy_arp"] = strings.Repeat("1", 40) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := validRecord()
			valid := tc.spoil == nil || strings.HasPrefix(tc.name, "found") || tc.name == "joined" || tc.name == "routed"
			if tc.spoil != nil {
				tc.spoil(r)
			}
			err := r.Validate()
			if valid && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !valid && !errors.Is(err, wire.ErrInvalid) {
				t.Fatalf("Validate: %v, want ErrInvalid", err)
			}
		})
	}
}

// FuzzRecord: any JSON read back as a record either fails validation or
// is one whose every part converts for netlink, and which survives a
// round trip still valid. Seeds: testdata/records/*.json and the valid
// record.
func FuzzRecord(f *testing.F) {
	b, err := json.Marshal(validRecord())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	seeds, _ := filepath.Glob("testdata/records/*.json")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r wire.Record
		if json.Unmarshal(data, &r) != nil {
			return
		}
		if err := r.Validate(); err != nil {
			if !errors.Is(err, wire.ErrInvalid) {
				t.Fatalf("Validate error is not ErrInvalid: %v", err)
			}
			return
		}
		out, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		var back wire.Record
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("valid record invalid after a round trip: %v\n%s", err, out)
		}
		again, _ := json.Marshal(&back)
		if !bytes.Equal(out, again) {
			t.Fatalf("round trip differs:\n%s\n%s", out, again)
		}
	})
}

// TestRecordFiles: the fuzz seeds are what they say: real records valid,
// hostile ones refused.
func TestRecordFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/records/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no records in testdata/records: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var r wire.Record
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			err = r.Validate()
			if hostile := strings.HasPrefix(filepath.Base(file), "hostile"); hostile != (err != nil) {
				t.Fatalf("Validate: %v (hostile %v)", err, hostile)
			}
		})
	}
}
