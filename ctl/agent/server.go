package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/audit"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/rules/store"
)

// API limits and timeouts.
const (
	// maxBodyBytes bounds a request body: the files of a RulesRequest may
	// double in size when escaped as JSON.
	maxBodyBytes    = 2*api.MaxRequestBytes + 1<<20
	apiReadHeader   = 10 * time.Second
	apiReadTimeout  = 2 * time.Minute
	apiWriteTimeout = 10 * time.Minute // a large rule set compiles for a while
	apiIdleTimeout  = time.Minute
	socketMode      = 0o660
)

// errForbidden: the caller may not make this call.
var errForbidden = errors.New("forbidden")

// access is what a caller may do.
type access uint8

const (
	accessNone  access = iota
	accessView         // read-only calls
	accessAdmin        // everything
)

// authorizer decides access from a caller's credentials. Its role: uid
// 0 and the agent's own uid are admins, then members (primary or
// supplementary) of the admin groups, then of the viewer groups; everyone
// else has none. A policy (DefaultPolicy when nil) then decides per
// command, from the role, uid and groups.
type authorizer struct {
	AdminGIDs, ViewerGIDs []int
}

// decide returns whether policy p lets c call cmd and the policy line that
// decided (file:line; "no line matched" when none did).
func (a authorizer) decide(p *policy, cmd string, c caller) (bool, string) {
	if p == nil {
		p = defaultPolicyParsed
	}
	ok, where := p.decide(cmd, c, a.access(c))
	if where == "" {
		where = "no line of " + p.source + " matched"
	}
	return ok, where
}

// defaultPolicyParsed is DefaultPolicy, parsed once.
var defaultPolicyParsed = func() *policy {
	p, err := parsePolicy("default", []byte(DefaultPolicy))
	if err != nil {
		panic(err) // a constant: TestPolicyDefault
	}
	return p
}()

func (a authorizer) access(c caller) access {
	if c.UID == 0 || c.UID == os.Getuid() {
		return accessAdmin
	}
	in := func(gids []int) bool {
		for _, g := range gids {
			if c.GID == g || slices.Contains(c.Groups, g) {
				return true
			}
		}
		return false
	}
	switch {
	case in(a.AdminGIDs):
		return accessAdmin
	case in(a.ViewerGIDs):
		return accessView
	}
	return accessNone
}

// agentView is what the API reads from the running agent.
type agentView interface {
	Status() api.Status
	Flows(api.FlowFilter) (api.FlowList, error)
}

// apiServer serves the agent's HTTP+JSON API on a unix socket.
type apiServer struct {
	rules *ruleManager
	view  agentView
	auth  authorizer
	// policy is the policy in force (nil: DefaultPolicy), replaced by
	// reloadPolicy while calls are decided.
	policy atomic.Pointer[policy]
	log    *slog.Logger
	srv    *http.Server
	// peer reads a connection's credentials; tests replace it.
	peer func(net.Conn) (caller, error)
}

type ctxKey struct{}

// credResult is what ConnContext stored for a connection.
type credResult struct {
	c   caller
	err error
}

func newAPIServer(rm *ruleManager, view agentView, auth authorizer, pol *policy, log *slog.Logger) *apiServer {
	s := &apiServer{rules: rm, view: view, auth: auth, log: log, peer: peerCred}
	s.policy.Store(pol)
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: apiReadHeader,
		ReadTimeout:       apiReadTimeout,
		WriteTimeout:      apiWriteTimeout,
		IdleTimeout:       apiIdleTimeout,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			cred, err := s.peer(c)
			return context.WithValue(ctx, ctxKey{}, credResult{cred, err})
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// peerCred reads SO_PEERCRED of a unix connection and the peer's
// supplementary groups from /proc (SO_PEERCRED carries only the primary
// gid).
func peerCred(c net.Conn) (caller, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return caller{}, fmt.Errorf("peer credentials: %T is not a unix connection", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return caller{}, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return caller{}, fmt.Errorf("peer credentials: %w", err)
	}
	if serr != nil {
		return caller{}, fmt.Errorf("peer credentials: %w", serr)
	}
	who := caller{UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid)}
	who.Groups, _ = procGroups(who.PID) // unknown groups only narrow access
	return who, nil
}

// procGroups reads the supplementary groups of a process.
func procGroups(pid int) ([]int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		var gs []int
		for _, f := range strings.Fields(rest) {
			if g, err := strconv.Atoi(f); err == nil {
				gs = append(gs, g)
			}
		}
		return gs, nil
	}
	return nil, sc.Err()
}

// listenUnix creates the API socket at path, mode 0660 and group gid (-1
// keeps the agent's). An existing socket that answers belongs to a live
// agent and is an error; a dead one is replaced.
func listenUnix(path string, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("api socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("api socket %s: another agent is listening on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("api socket: remove stale %s: %w", path, err)
		}
	}
	// Create it with no access, then open it up: no moment at which the
	// socket exists with the umask's permissions.
	old := unix.Umask(0o777)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chown(path, -1, gid); err != nil && gid >= 0 {
		ln.Close()
		return nil, fmt.Errorf("api socket %s: set group %d: %w", path, gid, err)
	}
	if err := os.Chmod(path, socketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	return ln, nil
}

// Serve serves on ln until Shutdown.
func (s *apiServer) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting, waits for running calls (bounded by ctx) and
// removes the socket.
func (s *apiServer) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

// Handler returns the API's routes.
func (s *apiServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.guard(cmdStatus, s.getStatus))
	mux.HandleFunc("GET /v1/flows", s.guard(cmdFlowsRead, s.getFlows))
	mux.HandleFunc("GET /v1/rules", s.guard(cmdRulesRead, s.listRules))
	mux.HandleFunc("GET /v1/rules/export", s.guard(cmdRulesRead, s.exportRules))
	mux.HandleFunc("GET /v1/rules/history", s.guard(cmdRulesRead, s.history))
	mux.HandleFunc("GET /v1/rules/{id}", s.guard(cmdRulesRead, s.showRule))
	mux.HandleFunc("POST /v1/rules", s.guard(cmdRulesChange, s.addRules))
	mux.HandleFunc("PUT /v1/rules", s.guard(cmdRulesChange, s.applyRules))
	mux.HandleFunc("DELETE /v1/rules/{id}", s.guard(cmdRulesChange, s.deleteRule))
	s.portRoutes(mux) // server_ports.go
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no endpoint %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// guard lets the policy decide whether the caller may call cmd before
// running h, and audits the decision: an allowed call or a refused read
// as op access, a refused change under the op it would have had. A
// decision that cannot be audited is logged and stands: a change is
// audited again by its own entry, and undone if that cannot be written;
// a read goes on, so that status still answers on a full disk.
func (s *apiServer) guard(cmd string, h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cr, ok := r.Context().Value(ctxKey{}).(credResult)
		if !ok || cr.err != nil {
			s.log.Warn("api: no peer credentials", "error", cr.err)
			writeError(w, http.StatusForbidden, fmt.Errorf("%w: no peer credentials", errForbidden))
			return
		}
		allow, where := s.auth.decide(s.policy.Load(), cmd, cr.c)
		cur := s.rules.current()
		e := audit.Entry{UID: cr.c.UID, GID: cr.c.GID, PID: cr.c.PID, Op: audit.OpAccess, OK: allow,
			Command: cmd, Policy: where, Detail: r.Method + " " + r.URL.Path,
			FromVersion: cur.version.Number, ToVersion: cur.version.Number}
		if allow {
			if err := s.rules.appendAudit(e); err != nil {
				s.log.Error("audit an allowed call", "command", cmd, "error", err)
			}
			h(w, r, cr.c)
			return
		}
		err := fmt.Errorf("%w: uid %d gid %d may not call %s (%s %s): %s", errForbidden, cr.c.UID, cr.c.GID,
			cmd, r.Method, r.URL.Path, s.refusal(cmd, where))
		e.Error = err.Error()
		if changes(cmd) {
			e.Op, e.Detail = s.mutationOp(r), ""
			err2 := s.rules.appendAuditLocked(e) // after a running change, as before
			if err2 != nil {
				s.log.Error("audit a refused call", "error", err2)
			}
		} else if aerr := s.rules.appendAudit(e); aerr != nil {
			s.log.Error("audit a refused call", "error", aerr)
		}
		writeError(w, http.StatusForbidden, err)
	}
}

// refusal says why a call was refused: under the default policy what
// the group flags grant, else the policy line (or that none matched).
func (s *apiServer) refusal(cmd, where string) string {
	if s.policy.Load() != nil {
		if strings.HasPrefix(where, "no line") {
			return where
		}
		return "refused by " + where
	}
	if changes(cmd) {
		return "changes need root or the admin group"
	}
	return "read-only calls need the viewer or admin group"
}

// reloadPolicy reads the policy file at path again (SIGHUP) and puts it
// in force; a file that does not parse leaves the policy in force and
// says why.
func (s *apiServer) reloadPolicy(path string) error {
	p, err := loadPolicy(path)
	if err != nil {
		return err
	}
	s.policy.Store(p)
	return nil
}

// opName names a mutation for the audit log.
func opName(r *http.Request) string {
	switch r.Method {
	case http.MethodPost:
		return "add"
	case http.MethodPut:
		return "apply"
	case http.MethodDelete:
		return "delete"
	}
	return strings.ToLower(r.Method)
}

func (s *apiServer) getStatus(w http.ResponseWriter, _ *http.Request, _ caller) {
	writeJSON(w, http.StatusOK, s.view.Status())
}

func (s *apiServer) getFlows(w http.ResponseWriter, r *http.Request, _ caller) {
	f, err := api.ParseFlowFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	fl, err := s.view.Flows(f)
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	writeJSON(w, http.StatusOK, fl)
}

func (s *apiServer) listRules(w http.ResponseWriter, _ *http.Request, _ caller) {
	st := s.rules.current()
	out := api.RuleList{RuleSet: st.info(), Rules: make([]api.RuleSummary, 0, len(st.set.Rules))}
	for _, r := range st.set.Rules {
		out.Rules = append(out.Rules, ruleSummary(r))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *apiServer) exportRules(w http.ResponseWriter, _ *http.Request, _ caller) {
	st := s.rules.current()
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("X-Deepwall-Version", strconv.FormatUint(st.version.Number, 10))
	w.Header().Set("X-Deepwall-Hash", hexHash(st.version.Hash))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(st.set.Canonical())
}

func (s *apiServer) history(w http.ResponseWriter, _ *http.Request, _ caller) {
	vs, err := s.rules.History()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, vs)
}

func ruleID(r *http.Request) (uint32, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 32)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%w: rule id %q is not a number from 1 to 4294967295", api.ErrInvalid, r.PathValue("id"))
	}
	return uint32(id), nil
}

func (s *apiServer) showRule(w http.ResponseWriter, r *http.Request, _ caller) {
	id, err := ruleID(r)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	st := s.rules.current()
	rule := st.set.Rule(id)
	if rule == nil {
		writeAPIError(w, fmt.Errorf("rule %d: %w", id, errNoRule))
		return
	}
	y := (&rules.Set{Rules: []*rules.Rule{rule}, ACLDefault: st.set.ACLDefault}).Canonical()
	// Show the rule's own entry, not the set around it.
	if i := bytes.Index(y, []byte("rules:\n")); i >= 0 {
		y = y[i+len("rules:\n"):]
	}
	writeJSON(w, http.StatusOK, api.RuleDetail{RuleSummary: ruleSummary(rule), Version: st.version.Number, YAML: string(y)})
}

// readRulesRequest decodes an add/apply body: a JSON RulesRequest, or a
// single YAML file (Content-Type application/yaml, comment in ?comment=).
func readRulesRequest(w http.ResponseWriter, r *http.Request) (*api.RulesRequest, error) {
	body := http.MaxBytesReader(w, r.Body, maxBodyBytes)
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/yaml") || strings.HasPrefix(ct, "application/x-yaml") || strings.HasPrefix(ct, "text/yaml") {
		data, err := io.ReadAll(body)
		if err != nil {
			return nil, bodyError(err)
		}
		return &api.RulesRequest{Main: "rules.yaml", Files: map[string]string{"rules.yaml": string(data)},
			Comment: r.URL.Query().Get("comment")}, nil
	}
	var req api.RulesRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, bodyError(err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON body", api.ErrInvalid)
	}
	return &req, nil
}

// errTooLarge: a body over maxBodyBytes.
var errTooLarge = errors.New("request body too large")

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Errorf("%w: more than %d bytes", errTooLarge, mbe.Limit)
	}
	return fmt.Errorf("%w: body: %v", api.ErrInvalid, err)
}

func (s *apiServer) addRules(w http.ResponseWriter, r *http.Request, who caller) {
	req, err := readRulesRequest(w, r)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	res, err := s.rules.Add(req, who)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *apiServer) applyRules(w http.ResponseWriter, r *http.Request, who caller) {
	req, err := readRulesRequest(w, r)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	res, err := s.rules.Apply(req, who)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *apiServer) deleteRule(w http.ResponseWriter, r *http.Request, who caller) {
	id, err := ruleID(r)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	comment := r.URL.Query().Get("comment")
	if len(comment) > store.MaxComment {
		writeAPIError(w, fmt.Errorf("%w: comment longer than %d bytes", api.ErrInvalid, store.MaxComment))
		return
	}
	res, err := s.rules.Delete(id, comment, who)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// writeAPIError maps an error to its status code and body.
func writeAPIError(w http.ResponseWriter, err error) {
	var verr *validationError
	switch {
	case errors.As(err, &verr):
		writeError(w, http.StatusUnprocessableEntity, err)
	case errors.Is(err, errForbidden):
		writeError(w, http.StatusForbidden, err)
	case errors.Is(err, api.ErrInvalid):
		writeError(w, http.StatusBadRequest, err)
	case errors.Is(err, errTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err)
	case errors.Is(err, errNoRule):
		writeError(w, http.StatusNotFound, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
}

func writeError(w http.ResponseWriter, code int, err error) {
	body := api.ErrorBody{Error: err.Error(), Details: api.Details(err)}
	if len(body.Details) > 0 {
		body.Error = fmt.Sprintf("rule set invalid: %d %s", len(body.Details), plural(len(body.Details), "problem"))
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(api.ErrorBody{Error: "encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func hexHash(h [32]byte) string { return hex.EncodeToString(h[:]) }

// ruleSummary describes r for rules list.
func ruleSummary(r *rules.Rule) api.RuleSummary {
	s := api.RuleSummary{ID: r.ID, Name: r.Name, Action: r.Action.String(), Severity: r.Severity.String(),
		Category: r.Category, Kind: "l7", Enabled: !r.Disabled}
	if r.Severity == 0 {
		s.Severity = rules.SeverityMedium.String()
	}
	if r.IsACL() {
		s.Kind = "acl"
	}
	if r.Match != nil {
		s.Field = r.Match.Field.String()
	}
	return s
}
