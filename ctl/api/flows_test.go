package api

import (
	"net/url"
	"testing"
)

func FuzzFlowFilter(f *testing.F) {
	f.Add("proto=tcp&ip=198.18.0.1&port=80&verdict=drop&app=http&limit=5")
	f.Add("ip=::ffff:1.2.3.4&limit=0")
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		ff, err := ParseFlowFilter(v)
		if err != nil {
			return
		}
		if ff.Limit < 1 || ff.Limit > MaxFlowLimit {
			t.Fatalf("limit %d accepted", ff.Limit)
		}
		// What the CLI sends parses back to the same filter.
		back, err := ParseFlowFilter(ff.Query())
		if err != nil || back != ff {
			t.Fatalf("round trip %+v -> %+v (%v)", ff, back, err)
		}
	})
}
