package agent

import (
	"testing"

	"github.com/deepwall/deepwall/ctl/api"
)

// Test helpers the black-box tests (package agent_test) share with the
// package's own.
var (
	WriteFile    = writeFile
	ReadAudit    = readAudit
	ReadAuditAll = readAuditAll
	TestRules    = testRules
)

// MustJSON decodes data as a T or fails the test.
func MustJSON[T any](tb testing.TB, data []byte) T {
	tb.Helper()
	return mustJSON[T](tb, data)
}

// FakeAPI is the agent's API server on a unix socket over a rule manager
// (real store and audit log, fake engine and kernel) with a fixed status
// and flows; every caller is root.
type FakeAPI struct {
	Socket string
	Dir    string // the rule manager's files
	h      *apiHarness
}

// StartFakeAPI serves initial as the running rules and st and fl as the
// agent's status and flows until the test ends.
func StartFakeAPI(tb testing.TB, initial string, st api.Status, fl api.FlowList) *FakeAPI {
	tb.Helper()
	h := newAPIHarness(tb, initial, authorizer{})
	h.view.status, h.view.flows = st, fl
	return &FakeAPI{Socket: h.sock, Dir: h.dir, h: h}
}

// Filter is the flow filter of the last GET /v1/flows.
func (f *FakeAPI) Filter() api.FlowFilter { return f.h.view.filter }
