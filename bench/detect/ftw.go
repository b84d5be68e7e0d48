// Package detect measures deepwall's detection quality: it replays the
// OWASP Core Rule Set regression suite (go-ftw YAML) and a generated
// benign corpus through deepwall's engine — offline as reassembled TCP
// flows, and live through the inline path in a namespace topology (a
// privileged test) — and through Coraza v3 with the same CRS, and reports
// per CRS family what was caught, what stayed silent, the misses, the
// false-positive rates per paranoia level and the inspection cost.
package detect

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Bounds on the suite.
const (
	maxTestFile = 4 << 20 // bytes of one go-ftw file
	maxBody     = 1 << 20 // bytes of one request or reflected response body
)

// test is one go-ftw test: a request and what CRS must log for it.
type test struct {
	File   string // file name relative to the suite directory
	Family string // CRS family ("942", "920/921", "95x", ...)
	RuleID uint32 // the rule the file tests
	ID     string // "942100-3"
	Desc   string
	Stage  stage // the first stage with log expectations (the suite has one per test)
}

// stage is one request of a test and its expectations.
type stage struct {
	Method, URI, Version string
	Headers              [][2]string
	Body                 []byte
	Raw                  []byte // encoded_request, sent as is
	NoAutocomplete       bool
	Expect, NoExpect     []uint32
}

// ftwFile is the go-ftw YAML shape (the fields the harness reads).
type ftwFile struct {
	RuleID uint32 `yaml:"rule_id"`
	Tests  []struct {
		TestID any    `yaml:"test_id"`
		Desc   string `yaml:"desc"`
		Stages []struct {
			Input  *ftwInput  `yaml:"input"`
			Output *ftwOutput `yaml:"output"`
			Stage  *struct {
				Input  *ftwInput  `yaml:"input"`
				Output *ftwOutput `yaml:"output"`
			} `yaml:"stage"`
		} `yaml:"stages"`
	} `yaml:"tests"`
}

type ftwInput struct {
	Method         string            `yaml:"method"`
	URI            string            `yaml:"uri"`
	Version        string            `yaml:"version"`
	Headers        map[string]string `yaml:"headers"`
	Data           string            `yaml:"data"`
	EncodedRequest string            `yaml:"encoded_request"`
	Autocomplete   *bool             `yaml:"autocomplete_headers"`
}

type ftwOutput struct {
	Log *struct {
		Expect   []uint32 `yaml:"expect_ids"`
		NoExpect []uint32 `yaml:"no_expect_ids"`
	} `yaml:"log"`
}

// family names a CRS rule id's family as the report groups them.
func family(id uint32) string {
	p := id / 1000
	switch {
	case p == 920 || p == 921 || p == 922:
		return "920/921"
	case p >= 950 && p <= 959:
		return "95x"
	}
	return strconv.Itoa(int(p))
}

// families are the families reported, in order.
var families = []string{"913", "920/921", "930", "931", "932", "933", "934", "941", "942", "943", "944", "95x"}

// loadSuite reads every go-ftw file under dir (the CRS tests/
// directory). Tests without log expectations (status checks only) are
// left out and counted.
func loadSuite(dir string) (tests []test, skipped int, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() > maxTestFile {
			return fmt.Errorf("%s: %d bytes (limit %d)", path, info.Size(), maxTestFile)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var f ftwFile
		if err := yaml.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rel, _ := filepath.Rel(dir, path)
		for _, t := range f.Tests {
			test := test{File: rel, Family: family(f.RuleID), RuleID: f.RuleID, ID: fmt.Sprintf("%d-%v", f.RuleID, t.TestID), Desc: t.Desc}
			found := false
			for _, s := range t.Stages {
				in, out := s.Input, s.Output
				if s.Stage != nil {
					in, out = s.Stage.Input, s.Stage.Output
				}
				if in == nil || out == nil || out.Log == nil || len(out.Log.Expect)+len(out.Log.NoExpect) == 0 {
					continue
				}
				st, err := buildStage(in)
				if err != nil {
					return fmt.Errorf("%s: test %v: %w", path, t.TestID, err)
				}
				st.Expect, st.NoExpect = out.Log.Expect, out.Log.NoExpect
				test.Stage = st
				found = true
				break
			}
			if !found {
				skipped++
				continue
			}
			tests = append(tests, test)
		}
		return nil
	})
	sort.SliceStable(tests, func(i, j int) bool {
		if tests[i].RuleID != tests[j].RuleID {
			return tests[i].RuleID < tests[j].RuleID
		}
		return tests[i].File < tests[j].File
	})
	return tests, skipped, err
}

func buildStage(in *ftwInput) (stage, error) {
	s := stage{Method: in.Method, URI: in.URI, Version: in.Version, Body: []byte(in.Data)}
	if in.Autocomplete != nil && !*in.Autocomplete {
		s.NoAutocomplete = true
	}
	if in.EncodedRequest != "" {
		raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(in.EncodedRequest), ""))
		if err != nil {
			return s, fmt.Errorf("encoded_request: %w", err)
		}
		s.Raw = raw
	}
	if len(s.Body) > maxBody {
		return s, fmt.Errorf("data of %d bytes (limit %d)", len(s.Body), maxBody)
	}
	names := make([]string, 0, len(in.Headers))
	for k := range in.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		s.Headers = append(s.Headers, [2]string{k, in.Headers[k]})
	}
	return s, nil
}

// header returns the first value of name (case-insensitive).
func (s *stage) header(name string) (string, bool) {
	for _, h := range s.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1], true
		}
	}
	return "", false
}

// request returns the request's bytes as go-ftw sends them: the request
// line, the headers, and unless autocomplete_headers is off, a
// Content-Type (form) and Content-Length for a body and Connection:
// close; encoded_request is sent as is.
func (s *stage) request() []byte {
	if s.Raw != nil {
		return s.Raw
	}
	method, uri, version := s.Method, s.URI, s.Version
	if method == "" {
		method = "GET"
	}
	if uri == "" {
		uri = "/"
	}
	if version == "" {
		version = "HTTP/1.1"
	}
	var b strings.Builder
	b.WriteString(method + " " + uri + " " + version + "\r\n")
	for _, h := range s.Headers {
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	if !s.NoAutocomplete {
		if len(s.Body) > 0 {
			if _, ok := s.header("Content-Type"); !ok {
				b.WriteString("Content-Type: application/x-www-form-urlencoded\r\n")
			}
			if _, ok := s.header("Content-Length"); !ok {
				b.WriteString("Content-Length: " + strconv.Itoa(len(s.Body)) + "\r\n")
			}
		}
		if _, ok := s.header("Connection"); !ok {
			b.WriteString("Connection: close\r\n")
		}
	}
	b.WriteString("\r\n")
	b.Write(s.Body)
	return []byte(b.String())
}

// reflectSpec is the albedo backend's /reflect request body: the
// response to send.
type reflectSpec struct {
	Status      int               `json:"status"`
	Headers     map[string]string `json:"headers"`
	Body        string            `json:"body"`
	EncodedBody string            `json:"encodedBody"`
}

// response returns the backend's answer to the stage's request: what a
// /reflect request asks for (as the CRS test backend, albedo, does), else
// a small HTML page.
func response(method, uri string, body []byte) []byte {
	status, hdrs, rb := 200, map[string]string{"Content-Type": "text/html; charset=utf-8"}, []byte("<html><body>ok</body></html>")
	if strings.HasPrefix(uri, "/reflect") && len(body) > 0 {
		var spec reflectSpec
		if json.Unmarshal(body, &spec) == nil {
			if spec.Status >= 100 && spec.Status <= 999 {
				status = spec.Status
			}
			if spec.Headers != nil {
				hdrs = spec.Headers
			}
			rb = []byte(spec.Body)
			if spec.EncodedBody != "" {
				if d, err := base64.StdEncoding.DecodeString(spec.EncodedBody); err == nil {
					rb = d
				}
			}
		}
	}
	if len(rb) > maxBody {
		rb = rb[:maxBody]
	}
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " Reflected\r\n")
	names := make([]string, 0, len(hdrs))
	for k := range hdrs {
		if !strings.EqualFold(k, "content-length") && !strings.EqualFold(k, "transfer-encoding") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		b.WriteString(k + ": " + hdrs[k] + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(rb)) + "\r\nConnection: close\r\n\r\n")
	b.Write(rb)
	return []byte(b.String())
}
