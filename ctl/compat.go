package ctl

import "github.com/deepwall/deepwall/ctl/api"

// Status is the agent's status document.
//
// Deprecated: use api.Status. It stays only until bench/systems_test.go
// (countersOf) names api.Status; then this file goes.
type Status = api.Status
