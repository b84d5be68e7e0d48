package eve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetCommunityID checks the event side of the Community ID: the
// tuple and protocol name an event carries give the specification's
// value (README table of community-id-spec) from either direction, and
// events it cannot name correctly get none.
func TestSetCommunityID(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   Event
		want string
	}{
		{"tcp", Event{SrcIP: "1.2.3.4", SrcPort: 1122, DestIP: "5.6.7.8", DestPort: 3344, Proto: "TCP"}, "1:wCb3OG7yAFWelaUydu0D+125CLM="},
		{"tcp back", Event{SrcIP: "5.6.7.8", SrcPort: 3344, DestIP: "1.2.3.4", DestPort: 1122, Proto: "TCP", Direction: "to_client"}, "1:wCb3OG7yAFWelaUydu0D+125CLM="},
		{"udp", Event{SrcIP: "1.2.3.4", SrcPort: 1122, DestIP: "5.6.7.8", DestPort: 3344, Proto: "UDP"}, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="},
		{"other proto", Event{SrcIP: "1.2.3.4", DestIP: "5.6.7.8", Proto: "proto-46"}, "1:ikv3kmf89luf73WPz1jOs49S768="},
		// Echo: the ports hold the identifier; request from the client,
		// reply from the server, one ID.
		{"icmp echo", Event{SrcIP: "1.2.3.4", SrcPort: 7, DestIP: "5.6.7.8", DestPort: 7, Proto: "ICMP"}, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="},
		{"icmp echo reply", Event{SrcIP: "5.6.7.8", SrcPort: 7, DestIP: "1.2.3.4", DestPort: 7, Proto: "ICMP", Direction: "to_client"}, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="},
		{"icmp6 echo", Event{SrcIP: "fe80:1:203:405:607:809:a0b:c0d", SrcPort: 9, DestIP: "fe80:1011:1213:1415:1617:1819:1a1b:1c1d", DestPort: 9, Proto: "IPv6-ICMP"}, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo="},
		{"icmp not echo", Event{SrcIP: "1.2.3.4", DestIP: "5.6.7.8", Proto: "ICMP"}, ""},
		{"no addresses", Event{EventType: EventDrop, Drop: &Drop{Reason: "decode.ethernet"}}, ""},
		{"kept", Event{SrcIP: "1.2.3.4", DestIP: "5.6.7.8", Proto: "TCP", CommunityID: "1:x"}, "1:x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := tc.ev
			ev.SetCommunityID(0)
			if ev.CommunityID != tc.want {
				t.Errorf("community_id = %q, want %q", ev.CommunityID, tc.want)
			}
		})
	}
}

func TestProtoNumber(t *testing.T) {
	for name, want := range map[string]uint8{"TCP": 6, "UDP": 17, "ICMP": 1, "IPv6-ICMP": 58, "SCTP": 132, "proto-46": 46, "proto-255": 255, "proto-256": 0, "proto-": 0, "x": 0, "": 0} {
		if got, _ := ProtoNumber(name); got != want {
			t.Errorf("ProtoNumber(%q) = %d, want %d", name, got, want)
		}
	}
}

// TestLogWritesCommunityID checks the writer stamps the ID with its
// configured seed.
func TestLogWritesCommunityID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eve.json")
	l, err := Open(Config{Path: path, CommunityIDSeed: 1})
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(&Event{EventType: EventFlow, SrcIP: "1.2.3.4", SrcPort: 1122, DestIP: "5.6.7.8", DestPort: 3344, Proto: "TCP"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// seed=1 in community-id-spec's README table.
	if want := `"community_id":"1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="`; !strings.Contains(string(b), want) {
		t.Errorf("log %s lacks %s", b, want)
	}
}
