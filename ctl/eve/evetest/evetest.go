// Package evetest checks verdict events against Suricata's published EVE
// JSON schema (an excerpt in testdata, see testdata/SOURCE), for the tests
// of the packages that make events. It owns the rule deepwall's events
// follow: a field deepwall shares with Suricata has Suricata's name and
// type; a field of deepwall's own lives in an object of its own — at the
// top level (container, ...) or, inside a Suricata section, in that
// section's "deepwall" object.
package evetest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/deepwall/deepwall/ctl/eve"
)

//go:embed testdata/suricata-eve.schema.json
var suricataSchema []byte

// ownSections are the Suricata sections that may hold a "deepwall"
// object with deepwall's own fields of that section.
var ownSections = []string{"alert", "drop", "flow", "http"}

var compiled = sync.OnceValues(compile)

// schemaURL names the schema for the compiler (never fetched).
const schemaURL = "https://deepwall.invalid/suricata-eve.schema.json"

// compile loads Suricata's schema with deepwall's extension: top-level
// properties Suricata does not name must be objects (instead of not
// existing), and the sections above may hold a "deepwall" object.
func compile() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(suricataSchema))
	if err != nil {
		return nil, fmt.Errorf("suricata schema: %w", err)
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("suricata schema: not an object")
	}
	root["additionalProperties"] = map[string]any{"type": "object"}
	props := root["properties"].(map[string]any)
	for _, s := range ownSections {
		sec, ok := props[s].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("suricata schema: no %s section", s)
		}
		sec["properties"].(map[string]any)["deepwall"] = map[string]any{"type": "object", "minProperties": 1}
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaURL, root); err != nil {
		return nil, err
	}
	return c.Compile(schemaURL)
}

// Validate reports an error naming what does not validate in line, one
// EVE JSON event.
func Validate(line []byte) error {
	sch, err := compiled()
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return sch.Validate(v)
}

// Check fails tb for each event in evs that does not validate, after
// giving it its Community ID as the writer does.
func Check(tb testing.TB, evs []*eve.Event) {
	tb.Helper()
	for i, ev := range evs {
		ev.SetCommunityID(0)
		b, err := json.Marshal(ev)
		if err != nil {
			tb.Fatalf("event %d: %v", i, err)
		}
		if err := Validate(b); err != nil {
			tb.Errorf("event %d does not validate against Suricata's EVE schema:\n%s\n%#v", i, b, err)
		}
	}
}

// CheckFiles validates every line of the verdict log at path and of its
// rotated files (path.1 ...), and fails tb for a TCP or UDP event
// without a Community ID. A last line without its newline (an agent
// killed while writing) is not read. It returns how many events it
// checked.
func CheckFiles(tb testing.TB, path string) int {
	tb.Helper()
	files, _ := filepath.Glob(path + ".*")
	files = append(files, path)
	n, bad := 0, 0
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
			data = data[:i]
		} else {
			continue
		}
		for i, line := range bytes.Split(data, []byte("\n")) {
			n++
			err := Validate(line)
			if err == nil {
				var ev eve.Event
				if json.Unmarshal(line, &ev) == nil && (ev.Proto == "TCP" || ev.Proto == "UDP") && ev.CommunityID == "" {
					err = fmt.Errorf("no community_id")
				}
			}
			if err != nil {
				if bad++; bad <= maxReported {
					tb.Errorf("%s:%d: %s\n%#v", name, i+1, line, err)
				}
			}
		}
	}
	if bad > maxReported {
		tb.Errorf("%d more events of %s do not validate", bad-maxReported, path)
	}
	return n
}

// maxReported bounds the events CheckFiles prints.
const maxReported = 5
