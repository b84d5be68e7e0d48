package agent

import (
	"net/netip"
	"testing"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/xdp"
)

// TestRuleInspector: a final drop gets the rule of the blocked alert the
// engine emitted for its flow (either direction), once; other verdicts
// and unrelated alerts are left alone.
func TestRuleInspector(t *testing.T) {
	var br blockRules
	client, server := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	key, _ := xdp.MakeFlowKey(client, server, 40000, 80, 6)
	var next dataplane.Verdict
	var emit *eve.Event
	insp := ruleInspector{Inspector: dataplane.InspectorFunc(func(int, *dataplane.Frame) dataplane.Verdict {
		if emit != nil {
			br.noteEvent(emit)
		}
		return next
	}), rules: &br}
	blocked := func(src, dst string, sp, dp uint16, proto string, id uint32) *eve.Event {
		return &eve.Event{SrcIP: src, DestIP: dst, SrcPort: sp, DestPort: dp, Proto: proto,
			Alert: &eve.Alert{Action: "blocked", SignatureID: id}}
	}
	tests := []struct {
		name string
		ev   *eve.Event
		v    dataplane.Verdict
		want uint32
	}{
		{"block to server", blocked("198.18.0.1", "198.18.0.2", 40000, 80, "TCP", 942100), dataplane.Verdict{Action: dataplane.Drop, Final: true}, 942100},
		{"block to client", blocked("198.18.0.2", "198.18.0.1", 80, 40000, "TCP", 5001), dataplane.Verdict{Action: dataplane.Drop, Final: true}, 5001},
		{"engine named it", blocked("198.18.0.1", "198.18.0.2", 40000, 80, "TCP", 1), dataplane.Verdict{Action: dataplane.Drop, Final: true, RuleID: 7}, 7},
		{"allowed alert", &eve.Event{SrcIP: "198.18.0.1", DestIP: "198.18.0.2", SrcPort: 40000, DestPort: 80, Proto: "TCP",
			Alert: &eve.Alert{Action: "allowed", SignatureID: 3}}, dataplane.Verdict{Action: dataplane.Drop, Final: true}, 0},
		{"other flow", blocked("198.18.0.1", "198.18.0.2", 40001, 80, "TCP", 9), dataplane.Verdict{Action: dataplane.Drop, Final: true}, 0},
		{"not final", blocked("198.18.0.1", "198.18.0.2", 40000, 80, "TCP", 9), dataplane.Verdict{Action: dataplane.Drop}, 0},
		{"garbage address", blocked("x", "198.18.0.2", 40000, 80, "TCP", 9), dataplane.Verdict{Action: dataplane.Drop, Final: true}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br = blockRules{}
			emit, next = tc.ev, tc.v
			got := insp.Inspect(0, &dataplane.Frame{Key: key})
			if got.RuleID != tc.want {
				t.Errorf("rule id %d, want %d", got.RuleID, tc.want)
			}
			emit = nil
			next = dataplane.Verdict{Action: dataplane.Drop, Final: true}
			// A note not taken yet waits for the flow's final drop; one
			// taken is gone.
			want := uint32(0)
			if !tc.v.Final && tc.ev.Alert.Action == "blocked" {
				want = tc.ev.Alert.SignatureID
			}
			if again := insp.Inspect(0, &dataplane.Frame{Key: key}); again.RuleID != want {
				t.Errorf("next final drop: rule id %d, want %d", again.RuleID, want)
			}
		})
	}
	if p, ok := eve.ProtoNumber("proto-132"); !ok || p != 132 {
		t.Errorf("proto-132: %d %v", p, ok)
	}
}
