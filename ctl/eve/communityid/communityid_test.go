package communityid

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// baseline is one record of the specification's baseline files
// (testdata/SOURCE): sport and dport are null for protocols without
// ports.
type baseline struct {
	Proto       uint8   `json:"proto"`
	Saddr       string  `json:"saddr"`
	Daddr       string  `json:"daddr"`
	Sport       *uint16 `json:"sport"`
	Dport       *uint16 `json:"dport"`
	CommunityID string  `json:"communityid"`
}

func loadBaseline(tb testing.TB, name string) []baseline {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	var recs []baseline
	if err := json.Unmarshal(b, &recs); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	if len(recs) == 0 {
		tb.Fatalf("%s: no records", name)
	}
	return recs
}

func (r baseline) flow() Flow {
	f := Flow{Proto: r.Proto, Src: netip.MustParseAddr(r.Saddr), Dst: netip.MustParseAddr(r.Daddr)}
	if r.Sport != nil {
		f.SrcPort = *r.Sport
	}
	if r.Dport != nil {
		f.DstPort = *r.Dport
	}
	return f
}

// TestBaseline checks every record of the specification's three
// baseline files: default settings, seed 1, and hexadecimal output.
func TestBaseline(t *testing.T) {
	for _, tc := range []struct {
		file string
		seed uint16
		id   func(uint16, Flow) string
	}{
		{"baseline_deflt.json", 0, ID},
		{"baseline_seed1.json", 1, ID},
		{"baseline_nob64.json", 0, HexID},
	} {
		t.Run(tc.file, func(t *testing.T) {
			for i, r := range loadBaseline(t, tc.file) {
				if got := tc.id(tc.seed, r.flow()); got != r.CommunityID {
					t.Errorf("record %d %+v: got %s, want %s", i, r.flow(), got, r.CommunityID)
				}
			}
		})
	}
}

// TestReadmeTable checks the specification README's table of default
// IDs, which adds cases the pcap lacks: an ICMP echo reply given with
// code 0 (its counterpart type comes from the table), a one-way ICMPv6
// message, port-less IPv6.
func TestReadmeTable(t *testing.T) {
	a4, b4 := netip.MustParseAddr("1.2.3.4"), netip.MustParseAddr("5.6.7.8")
	a6, b6 := netip.MustParseAddr("fe80:0001:0203:0405:0607:0809:0A0B:0C0D"), netip.MustParseAddr("fe80:1011:1213:1415:1617:1819:1A1B:1C1D")
	for _, tc := range []struct {
		f    Flow
		want string
	}{
		{Flow{ProtoTCP, a4, b4, 1122, 3344}, "1:wCb3OG7yAFWelaUydu0D+125CLM="},
		{Flow{ProtoTCP, b4, a4, 3344, 1122}, "1:wCb3OG7yAFWelaUydu0D+125CLM="},
		{Flow{ProtoUDP, a4, b4, 1122, 3344}, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="},
		{Flow{ProtoSCTP, b4, a4, 3344, 1122}, "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8="},
		{Flow{ProtoICMP, a4, b4, 8, 0}, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="},
		{Flow{ProtoICMP, b4, a4, 0, 0}, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="},
		{Flow{ProtoICMP, a4, b4, 11, 0}, "1:f/YiSyWqczrTgfUCZlBUnvHRcPk="},
		{Flow{ProtoICMPv6, a6, b6, 128, 0}, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo="},
		{Flow{ProtoICMPv6, b6, a6, 129, 0}, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo="},
		{Flow{ProtoICMPv6, a6, b6, 146, 0}, "1:fYC8+pz24E+EhANP1EZhpX0Dw10="},
		{Flow{46, a4, b4, 0, 0}, "1:ikv3kmf89luf73WPz1jOs49S768="},
		{Flow{46, b6, a6, 0, 0}, "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0="},
		// An IPv4-mapped IPv6 address hashes as IPv4.
		{Flow{ProtoTCP, netip.MustParseAddr("::ffff:1.2.3.4"), b4, 1122, 3344}, "1:wCb3OG7yAFWelaUydu0D+125CLM="},
		// Mixed families and invalid addresses have no ID.
		{Flow{ProtoTCP, a4, b6, 1, 2}, ""},
		{Flow{Proto: ProtoTCP}, ""},
	} {
		if got := ID(0, tc.f); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestIDAllocs(t *testing.T) {
	f := Flow{ProtoTCP, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 443, 50000}
	if n := testing.AllocsPerRun(100, func() { _ = ID(0, f) }); n > 1 {
		t.Errorf("ID allocates %.0f times, want 1 (the string)", n)
	}
}

func BenchmarkID(b *testing.B) {
	f := Flow{ProtoTCP, netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), 443, 50000}
	for b.Loop() {
		_ = ID(0, f)
	}
}
