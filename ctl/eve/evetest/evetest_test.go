package evetest

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/eve"
)

// fill sets every field reachable from v to a non-zero value, so that
// a field added to eve.Event is checked against the schema without a
// change here.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type() == reflect.TypeFor[*eve.EveTime]() {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[eve.EveTime]() {
			v.Set(reflect.ValueOf(eve.EveTime(time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC))))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(2)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(2)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0))
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	}
}

// TestEveryField validates an event with every field of eve.Event set:
// each shared field has Suricata's name and type, each own field is in
// an object of deepwall's.
func TestEveryField(t *testing.T) {
	var ev eve.Event
	fill(reflect.ValueOf(&ev).Elem())
	ev.EventType, ev.Proto, ev.SrcIP, ev.DestIP = eve.EventAlert, "TCP", "198.18.0.1", "198.18.0.2"
	b, err := json.Marshal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(b); err != nil {
		t.Fatalf("%s\n%#v", b, err)
	}
}

// TestRejects checks the schema is in force: Suricata's names with the
// wrong type, own fields outside an own object, and fields of a section
// deepwall does not put in its "deepwall" object all fail.
func TestRejects(t *testing.T) {
	const base = `"timestamp":"2026-12-07T20:00:00.000000+0000","event_type":"alert"`
	for _, tc := range []struct{ name, json, want string }{
		{"flow_id string", `{` + base + `,"flow_id":"1"}`, "flow_id"},
		{"timestamp layout", `{"timestamp":"2026-12-07 20:00:00","event_type":"alert"}`, "timestamp"},
		{"own scalar at top", `{` + base + `,"rule_field":"x"}`, "rule_field"},
		{"own field in alert", `{` + base + `,"alert":{"action":"allowed","matched":"x"}}`, "matched"},
		{"bypassed boolean", `{` + base + `,"flow":{"bypassed":true}}`, "bypassed"},
		{"dns without version", `{` + base + `,"dns":{"type":"query"}}`, "version"},
		{"empty deepwall object", `{` + base + `,"alert":{"deepwall":{}}}`, "deepwall"},
		{"no event_type", `{"timestamp":"2026-12-07T20:00:00.000000+0000"}`, "event_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate([]byte(tc.json))
			if err == nil {
				t.Fatalf("%s validates", tc.json)
			}
			if msg := fmtErr(err); !strings.Contains(msg, tc.want) {
				t.Errorf("error does not name %q:\n%s", tc.want, msg)
			}
		})
	}
	if err := Validate([]byte(`{` + base + `,"container":{"name":"web"},"alert":{"action":"allowed","deepwall":{"matched":"x"}}}`)); err != nil {
		t.Errorf("own objects refused: %#v", err)
	}
}

func fmtErr(err error) string { return strings.ReplaceAll(fmtDetail(err), "\n", " ") }

func fmtDetail(err error) string {
	type detailed interface{ GoString() string }
	if d, ok := err.(detailed); ok {
		return d.GoString()
	}
	return err.Error()
}
