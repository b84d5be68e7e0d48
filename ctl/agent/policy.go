package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
)

// API commands, the unit of authorisation: each endpoint belongs to one
// (docs/api.md, "Authorisation"). The verdict log is not an API command:
// `deepwall logs` reads the file, whose mode and group decide.
const (
	cmdStatus      = "status"       // GET /v1/status
	cmdFlowsRead   = "flows.read"   // GET /v1/flows
	cmdRulesRead   = "rules.read"   // GET /v1/rules, /v1/rules/{id}, export, history, learned
	cmdRulesChange = "rules.change" // POST, PUT /v1/rules, DELETE /v1/rules/{id}, POST /v1/rules/promote
	cmdPortsRead   = "ports.read"   // GET /v1/ports
	cmdPortsChange = "ports.change" // POST /v1/ports, DELETE /v1/ports/{name}
)

// apiCommands lists every command, in the order the docs give them.
var apiCommands = []string{cmdStatus, cmdFlowsRead, cmdRulesRead, cmdRulesChange, cmdPortsRead, cmdPortsChange}

// changes reports whether cmd changes the agent (rules or protected set):
// a refused change is audited under the op it would have had.
func changes(cmd string) bool { return cmd == cmdRulesChange || cmd == cmdPortsChange }

// Bounds of a policy file: it is read at start, by root, but a file that
// is not what the operator meant should fail loudly, not exhaust memory.
const (
	maxPolicyBytes = 1 << 20
	maxPolicyLines = 10000
)

// DefaultPolicy is the policy without --api-policy: the behaviour of the
// group flags alone (root, the agent's uid and --admin-group may do
// everything; --viewer-group may read).
const DefaultPolicy = `allow * role:admin
allow status,flows.read,rules.read,ports.read role:viewer
`

// principal is who a policy line is about.
type principal struct {
	kind string // "uid", "gid", "role", "*"
	id   int    // uid or gid
	role access // for "role": admins match role:admin, viewers and admins role:viewer
}

func (p principal) matches(c caller, role access) bool {
	switch p.kind {
	case "uid":
		return c.UID == p.id
	case "gid":
		return c.GID == p.id || slices.Contains(c.Groups, p.id)
	case "role":
		return role >= p.role
	}
	return true // "*"
}

// policyLine is one "allow|deny COMMANDS WHO..." line.
type policyLine struct {
	allow bool
	cmds  []string // nil: every command
	who   []principal
	where string // file:line, for errors and the audit log
}

// policy is an ordered list of lines: the first line naming the command
// and matching the caller decides; none: refused.
type policy struct {
	source string // the file, or "default"
	lines  []policyLine
}

// loadPolicy reads the policy file at path (without one, DefaultPolicy
// applies: defaultPolicyParsed).
func loadPolicy(path string) (*policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("api policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("api policy %s: %w", path, err)
	}
	if len(data) > maxPolicyBytes {
		return nil, fmt.Errorf("api policy %s: longer than %d bytes", path, maxPolicyBytes)
	}
	return parsePolicy(path, data)
}

// parsePolicy parses a policy; every error names name:line and the cause,
// and the whole file is refused (no half policy).
func parsePolicy(name string, data []byte) (*policy, error) {
	p := &policy{source: name}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), maxPolicyBytes)
	for n := 1; sc.Scan(); n++ {
		if n > maxPolicyLines {
			return nil, fmt.Errorf("api policy %s: more than %d lines", name, maxPolicyLines)
		}
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		where := fmt.Sprintf("%s:%d", name, n)
		l, err := parsePolicyLine(fields, where)
		if err != nil {
			errs = append(errs, fmt.Errorf("api policy %s: %w", where, err))
			continue
		}
		p.lines = append(p.lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("api policy %s: %w", name, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(p.lines) == 0 {
		return nil, fmt.Errorf("api policy %s: no allow or deny line (every call would be refused)", name)
	}
	return p, nil
}

func parsePolicyLine(fields []string, where string) (policyLine, error) {
	l := policyLine{where: where}
	switch fields[0] {
	case "allow":
		l.allow = true
	case "deny":
	default:
		return l, fmt.Errorf("%q: a line is \"allow|deny COMMANDS WHO...\"", fields[0])
	}
	if len(fields) < 3 {
		return l, errors.New("a line is \"allow|deny COMMANDS WHO...\": commands or who missing")
	}
	if fields[1] != "*" {
		for _, c := range strings.Split(fields[1], ",") {
			if !slices.Contains(apiCommands, c) {
				return l, fmt.Errorf("unknown command %q (commands: %s, or *)", c, strings.Join(apiCommands, ", "))
			}
			l.cmds = append(l.cmds, c)
		}
	}
	for _, w := range fields[2:] {
		p, err := parsePrincipal(w)
		if err != nil {
			return l, err
		}
		l.who = append(l.who, p)
	}
	return l, nil
}

// parsePrincipal parses uid:N, user:NAME, gid:N, group:NAME,
// role:admin, role:viewer or *. Names are resolved now, so a typo fails
// the start instead of matching nobody.
func parsePrincipal(w string) (principal, error) {
	if w == "*" {
		return principal{kind: "*"}, nil
	}
	kind, val, ok := strings.Cut(w, ":")
	if !ok || val == "" {
		return principal{}, fmt.Errorf("who %q: want uid:N, user:NAME, gid:N, group:NAME, role:admin, role:viewer or *", w)
	}
	num := func() (int, error) {
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("who %q: %s is not a number", w, val)
		}
		return n, nil
	}
	switch kind {
	case "uid", "gid":
		n, err := num()
		return principal{kind: kind, id: n}, err
	case "user":
		u, err := user.Lookup(val)
		if err != nil {
			return principal{}, fmt.Errorf("who %q: %w", w, err)
		}
		n, _ := strconv.Atoi(u.Uid)
		return principal{kind: "uid", id: n}, nil
	case "group":
		n, err := lookupGroup(val)
		if err != nil {
			return principal{}, fmt.Errorf("who %q: %w", w, err)
		}
		return principal{kind: "gid", id: n}, nil
	case "role":
		switch val {
		case "admin":
			return principal{kind: "role", role: accessAdmin}, nil
		case "viewer":
			return principal{kind: "role", role: accessView}, nil
		}
		return principal{}, fmt.Errorf("who %q: roles are admin and viewer", w)
	}
	return principal{}, fmt.Errorf("who %q: want uid:N, user:NAME, gid:N, group:NAME, role:admin, role:viewer or *", w)
}

// decide returns whether c (of role) may call cmd, and the line that
// decided ("" when none did: refused).
func (p *policy) decide(cmd string, c caller, role access) (bool, string) {
	for _, l := range p.lines {
		if l.cmds != nil && !slices.Contains(l.cmds, cmd) {
			continue
		}
		for _, w := range l.who {
			if w.matches(c, role) {
				return l.allow, l.where
			}
		}
	}
	return false, ""
}
