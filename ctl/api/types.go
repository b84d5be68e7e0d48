// Package api is the wire contract of the agent's API on its unix socket
// (docs/api.md): the JSON documents both sides exchange and a client. The
// agent serves these types and the CLI decodes the same ones it prints
// with -o json, so the two never drift.
package api

import (
	"errors"
	"fmt"
	"io/fs"
	"testing/fstest"
	"time"

	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/rules/store"
)

// ErrorBody is the body of every failed API call.
type ErrorBody struct {
	Error   string        `json:"error"`
	Details []ErrorDetail `json:"details,omitempty"`
}

// ErrorDetail is one problem of a rule file: where it is and what it is.
type ErrorDetail struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Col     int    `json:"col,omitempty"`
	Rule    uint32 `json:"rule,omitempty"`
	Message string `json:"message"`
}

// String formats the detail as `deepwall rules validate` does.
func (d ErrorDetail) String() string {
	e := rules.Error{Pos: rules.Position{File: d.File, Line: d.Line, Column: d.Col}, RuleID: d.Rule, Msg: d.Message}
	return e.Error()
}

// Limits of a rules request.
const (
	MaxRequestFiles = 256
	MaxRequestBytes = 32 << 20 // all files together
)

// Details converts the rule problems err holds (a rules.ErrorList) into
// the details of an error body; nil when it holds none.
func Details(err error) []ErrorDetail {
	var list rules.ErrorList
	if !errors.As(err, &list) {
		return nil
	}
	out := make([]ErrorDetail, 0, len(list))
	for _, e := range list {
		out = append(out, ErrorDetail{File: e.Pos.File, Line: e.Pos.Line, Col: e.Pos.Column, Rule: e.RuleID, Message: e.Msg})
	}
	return out
}

// RulesRequest carries a rule file and the files it includes, for add and
// apply. Names are slash paths relative to one root; Main names the
// top-level file. The agent reads nothing else: includes resolve inside
// Files only.
type RulesRequest struct {
	Main    string            `json:"main"`
	Files   map[string]string `json:"files"`
	Comment string            `json:"comment,omitempty"`
}

// FS checks the request's files against the limits and returns them as
// a file system.
func (req *RulesRequest) FS() (fs.FS, error) {
	if req.Main == "" {
		return nil, fmt.Errorf("%w: no main file named", ErrInvalid)
	}
	if len(req.Files) == 0 || len(req.Files) > MaxRequestFiles {
		return nil, fmt.Errorf("%w: %d files, want 1 to %d", ErrInvalid, len(req.Files), MaxRequestFiles)
	}
	if len(req.Comment) > store.MaxComment {
		return nil, fmt.Errorf("%w: comment longer than %d bytes", ErrInvalid, store.MaxComment)
	}
	mfs := fstest.MapFS{}
	total := 0
	for name, data := range req.Files {
		if !fs.ValidPath(name) || name == "." {
			return nil, fmt.Errorf("%w: file name %q is not a relative slash path", ErrInvalid, name)
		}
		total += len(data)
		if total > MaxRequestBytes {
			return nil, fmt.Errorf("%w: files larger than %d bytes", ErrInvalid, MaxRequestBytes)
		}
		mfs[name] = &fstest.MapFile{Data: []byte(data), Mode: 0o644}
	}
	if _, ok := mfs[req.Main]; !ok {
		return nil, fmt.Errorf("%w: main file %q is not among the files", ErrInvalid, req.Main)
	}
	return mfs, nil
}

// RuleSetInfo identifies the running rule set.
type RuleSetInfo struct {
	Version    uint64    `json:"version"`
	Hash       string    `json:"hash"`
	Rules      int       `json:"rules"`
	Disabled   int       `json:"disabled"`
	ACL        int       `json:"acl"`
	Layer7     int       `json:"layer7"`
	ACLDefault string    `json:"acl_default"`
	Stored     time.Time `json:"stored"`
	Applied    time.Time `json:"applied"`
	Comment    string    `json:"comment,omitempty"`
}

// RuleSummary is one rule as `rules list` shows it.
type RuleSummary struct {
	ID       uint32 `json:"id"`
	Name     string `json:"name,omitempty"`
	Action   string `json:"action"`
	Severity string `json:"severity"`
	Category string `json:"category,omitempty"`
	Kind     string `json:"kind"` // acl | l7
	Field    string `json:"field,omitempty"`
	Enabled  bool   `json:"enabled"`
}

// RuleList is the body of GET /v1/rules.
type RuleList struct {
	RuleSet RuleSetInfo   `json:"ruleset"`
	Rules   []RuleSummary `json:"rules"`
}

// RuleDetail is the body of GET /v1/rules/{id}.
type RuleDetail struct {
	RuleSummary
	Version uint64 `json:"version"`
	YAML    string `json:"yaml"`
}

// ChangeResult is the body of a successful rule change.
type ChangeResult struct {
	Op          string `json:"op"`
	Changed     bool   `json:"changed"`
	FromVersion uint64 `json:"from_version"`
	ToVersion   uint64 `json:"to_version"`
	Hash        string `json:"hash"`
	Rules       int    `json:"rules"`
	// IDs are the rules added or deleted.
	IDs []uint32 `json:"ids,omitempty"`
	// Revoked counts fast-path verdicts sent back to inspection.
	Revoked     int     `json:"revoked"`
	CompileSecs float64 `json:"compile_seconds"`
	Cached      bool    `json:"cached"`
}

// VersionInfo is one stored rule-set version.
type VersionInfo struct {
	Version uint64    `json:"version"`
	Hash    string    `json:"hash"`
	Time    time.Time `json:"time"`
	Rules   int       `json:"rules"`
	Comment string    `json:"comment,omitempty"`
	Current bool      `json:"current"`
}

// PortInfo describes one port of the pair.
type PortInfo struct {
	Side    string `json:"side"`
	Name    string `json:"name"`
	Ifindex int    `json:"ifindex"`
	Queues  int    `json:"queues"`
}

// Status is the body of GET /v1/status.
type Status struct {
	Version    string     `json:"version"`
	PID        int        `json:"pid"`
	Started    time.Time  `json:"started"`
	UptimeSecs float64    `json:"uptime_seconds"`
	Ports      []PortInfo `json:"ports"`
	// Protected is how many containers the agent protects (deepwall
	// ports lists them); Counters include their pairs.
	Protected int    `json:"protected"`
	NetNS     string `json:"netns,omitempty"`
	// Backend describes the dataplane backend the agent runs (XDP or
	// NFQUEUE; flag --mode), BackendReason why (--mode auto's probe).
	Backend       string      `json:"mode"`
	BackendReason string      `json:"mode_reason,omitempty"`
	FailClosed    bool        `json:"fail_closed"`
	Workers       int         `json:"workers"`
	RuleSet       RuleSetInfo `json:"ruleset"`
	Counters      Counters    `json:"counters"`
	Events        EventCounts `json:"events"`
	Flows         int         `json:"flows"`
}

// Counters are the packet counters of status.
type Counters struct {
	// Kernel fast path: flows whose verdict is final.
	FastPathAllowed uint64 `json:"fast_path_allowed"`
	FastPathDropped uint64 `json:"fast_path_dropped"`
	// Frames the kernel sent to user space, and what became of them.
	ToUserSpace    uint64 `json:"to_user_space"`
	Inspected      uint64 `json:"inspected"`
	InspectedBytes uint64 `json:"inspected_bytes"`
	Forwarded      uint64 `json:"forwarded"`
	NonIP          uint64 `json:"non_ip"`
	Resets         uint64 `json:"resets"`
	Alerts         uint64 `json:"alerts"`
	Blocks         uint64 `json:"blocks"`
	// Drops counts dropped packets by reason.
	Drops map[string]uint64 `json:"drops"`
}

// EventCounts are the verdict log's counters.
type EventCounts struct {
	Path      string `json:"path"`
	Written   uint64 `json:"written"`
	Dropped   uint64 `json:"dropped"`
	Rotations uint64 `json:"rotations"`
	Errors    uint64 `json:"errors"`
}

// FlowRow is one live flow.
type FlowRow struct {
	Proto   string `json:"proto"`
	Client  string `json:"client"`
	Server  string `json:"server"`
	App     string `json:"app_proto,omitempty"`
	Verdict string `json:"verdict"` // inspect | pass | drop
	// Bypassed: the kernel fast path carries the flow.
	Bypassed      bool    `json:"bypassed"`
	RuleID        uint32  `json:"rule_id,omitempty"`
	PktsToServer  uint64  `json:"pkts_toserver"`
	PktsToClient  uint64  `json:"pkts_toclient"`
	BytesToServer uint64  `json:"bytes_toserver"`
	BytesToClient uint64  `json:"bytes_toclient"`
	AgeSecs       float64 `json:"age_seconds"`
	IdleSecs      float64 `json:"idle_seconds"`
}

// FlowList is the body of GET /v1/flows.
type FlowList struct {
	Total     int       `json:"total"` // flows matching the filter
	Truncated bool      `json:"truncated"`
	Flows     []FlowRow `json:"flows"`
}
