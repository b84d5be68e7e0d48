package ctl

import (
	"bytes"
	"encoding/json"
	"github.com/deepwall/deepwall/dataplane/probe"
	"strings"
	"testing"
)

func TestDoctorDecideAndPrint(t *testing.T) {
	flags := cpuFlags(strings.NewReader("processor\t: 0\nflags\t\t: fpu sse2 ssse3 avx2\n\nprocessor\t: 1\nflags\t: fpu\n"))
	if !flags["ssse3"] || !flags["avx2"] || flags["avx512f"] {
		t.Errorf("flags %v", flags)
	}
	ok := doctorCheck{OK: true}
	base := doctorReport{Kernel: "6.1", AFXDP: ok, BPFMaps: ok, Interfaces: []doctorIface{{Name: "a", Native: true}, {Name: "b", Native: true}}}
	tests := []struct {
		name string
		mod  func(*doctorReport)
		want string
	}{
		{"all there", func(*doctorReport) {}, probe.BackendXDP},
		{"no af_xdp", func(d *doctorReport) { d.AFXDP.OK = false }, probe.BackendNFQueue},
		{"no maps", func(d *doctorReport) { d.BPFMaps.OK = false }, probe.BackendNFQueue},
		{"no native anywhere", func(d *doctorReport) { d.Interfaces[0].Native, d.Interfaces[1].Native = false, false }, probe.BackendNFQueue},
		{"some native", func(d *doctorReport) { d.Interfaces[1].Native = false }, probe.BackendXDP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := base
			d.Interfaces = append([]doctorIface(nil), base.Interfaces...)
			tc.mod(&d)
			d.Uses = decide(&d)
			if d.Uses.Backend != tc.want || d.Uses.Reason == "" {
				t.Errorf("uses %+v, want %s", d.Uses, tc.want)
			}
			var b bytes.Buffer
			if err := d.print(&b); err != nil || !strings.Contains(b.String(), "deepwall uses") {
				t.Errorf("print: %v %s", err, b.String())
			}
			js, _ := json.Marshal(d)
			if !bytes.Contains(js, []byte(`"deepwall_uses":{"mode":"`+tc.want)) {
				t.Errorf("json %s", js)
			}
		})
	}
}
