package eve

import (
	"encoding/json"
	"testing"
	"time"
)

func TestEventJSON(t *testing.T) {
	ts := time.Date(2026, 11, 23, 19, 51, 0, 123456000, time.UTC)
	ev := Event{
		Timestamp: EveTime(ts), FlowID: 42, EventType: EventAlert,
		SrcIP: "198.18.0.1", SrcPort: 40000, DestIP: "198.18.0.2", DestPort: 80,
		Proto: "TCP", AppProto: "http", Direction: "to_server",
		Alert: &Alert{Action: "blocked", GID: 1, SignatureID: 942100, Rev: 1, Signature: "SQL injection", Category: "sqli", Severity: 2},
		HTTP:  &HTTPInfo{Hostname: "web", URL: "/?q=1", Method: "GET", UserAgent: "curl/8"},
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"timestamp":"2026-11-23T19:51:00.123456+0000","flow_id":42,"event_type":"alert","src_ip":"198.18.0.1","src_port":40000,"dest_ip":"198.18.0.2","dest_port":80,"proto":"TCP","app_proto":"http","direction":"to_server","alert":{"action":"blocked","gid":1,"signature_id":942100,"rev":1,"signature":"SQL injection","category":"sqli","severity":2},"http":{"hostname":"web","url":"/?q=1","http_method":"GET","http_user_agent":"curl/8"}}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Timestamp.Time().Equal(ts) || back.Alert.SignatureID != 942100 {
		t.Errorf("round trip: %+v", back)
	}
}

// TestEventJSONOldLayout reads events written before deepwall's own
// fields moved into "deepwall" objects, and the new layout.
func TestEventJSONOldLayout(t *testing.T) {
	for _, line := range []string{
		`{"event_type":"alert","alert":{"action":"allowed","signature_id":7,"field":"http.args","matched":"x","score":5,"rules":[1,2],"would_block":true},"flow":{"alerted":true,"bypassed":true}}`,
		`{"event_type":"alert","alert":{"action":"allowed","signature_id":7,"deepwall":{"field":"http.args","matched":"x","score":5,"rules":[1,2],"would_block":true}},"flow":{"alerted":true,"deepwall":{"bypassed":true}}}`,
	} {
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		a := ev.Alert
		if a.SignatureID != 7 || a.Field != "http.args" || a.Matched != "x" || a.Score != 5 || len(a.Rules) != 2 || !a.WouldBlock || !ev.Flow.Bypassed || !ev.Flow.Alerted {
			t.Errorf("%s read as %+v %+v", line, a, ev.Flow)
		}
	}
	// Suricata's flow.bypassed object does not stop the reader.
	var ev Event
	if err := json.Unmarshal([]byte(`{"flow":{"bypassed":{"pkts_toserver":1}}}`), &ev); err != nil || ev.Flow.Bypassed {
		t.Errorf("suricata bypassed: %v %+v", err, ev.Flow)
	}
}

// FuzzEventJSON: an event read from any line (either layout) writes
// back as JSON that reads to the same event.
func FuzzEventJSON(f *testing.F) {
	f.Add(`{"event_type":"alert","alert":{"action":"allowed","field":"x","rules":[1]},"flow":{"bypassed":true}}`)
	f.Add(`{"alert":{"deepwall":{"matched":"y","would_block":true}},"flow":{"bypassed":{"pkts_toserver":1}}}`)
	f.Add(`{"timestamp":"2026-12-07T20:00:00.000000+0000","dns":{"version":2}}`)
	f.Fuzz(func(t *testing.T, line string) {
		var ev Event
		if json.Unmarshal([]byte(line), &ev) != nil {
			return
		}
		b, err := json.Marshal(&ev)
		if err != nil {
			t.Fatalf("%q read, does not write: %v", line, err)
		}
		var back Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s does not read back: %v", b, err)
		}
		b2, _ := json.Marshal(&back)
		if string(b) != string(b2) {
			t.Fatalf("round trip:\n%s\n%s", b, b2)
		}
	})
}
