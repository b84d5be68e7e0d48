// Package ctl is the deepwall command line: one cobra command per file
// (cmd_*.go), the whole tree assembled in root.go. The commands talk to a
// running agent through package api; `deepwall run` starts the agent of
// package agent, and the offline commands (rules validate, inspect, logs,
// audit verify, doctor) work on files and the host directly.
package ctl
