package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/deepwall/deepwall/ctl/agent/protect"
	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/rules/store"
)

// portsAPI is what the API needs from the agent for protected containers.
type portsAPI interface {
	protectorOf() protectedSet
}

// protectedSet is what the API calls of the protected containers
// (*protect.Protector).
type protectedSet interface {
	Has(name string) bool
	Ports() api.PortList
	Protect(ctx context.Context, req api.ProtectRequest, who protect.Caller) (api.PortStatus, error)
	Unprotect(name string, who protect.Caller) (api.PortStatus, error)
	Learned() api.LearnedList
	Promote(req api.PromoteRequest, who protect.Caller) (api.ChangeResult, error)
}

func (a *Agent) protectorOf() protectedSet {
	if a.prot == nil {
		return nil
	}
	return a.prot
}

// maxPortBody bounds a protect or promote request.
const maxPortBody = 1 << 20

// portRoutes registers the protected-container endpoints.
func (s *apiServer) portRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/ports", s.guard(cmdPortsRead, s.listPorts))
	mux.HandleFunc("POST /v1/ports", s.guard(cmdPortsChange, s.protectPort))
	mux.HandleFunc("DELETE /v1/ports/{name}", s.guard(cmdPortsChange, s.unprotectPort))
	mux.HandleFunc("GET /v1/rules/learned", s.guard(cmdRulesRead, s.learnedRules))
	mux.HandleFunc("POST /v1/rules/promote", s.guard(cmdRulesChange, s.promoteRules))
}

// mutationOp names a refused mutation for the audit log: the protected
// container endpoints by the op they would have been audited under
// (protect, mode, unprotect, promote), the others by opName.
func (s *apiServer) mutationOp(r *http.Request) string {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/ports":
		// A refused caller's body is read only to tell a mode change
		// from a protect; bounded like the handler's.
		var req api.ProtectRequest
		body, err := io.ReadAll(io.LimitReader(r.Body, maxPortBody))
		if err == nil && json.Unmarshal(body, &req) == nil {
			if p, perr := s.protector(); perr == nil {
				if p.Has(req.Target) {
					return "mode"
				}
			}
		}
		return "protect"
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v1/ports/"):
		return "unprotect"
	case r.Method == http.MethodPost && r.URL.Path == "/v1/rules/promote":
		return "promote"
	}
	return opName(r)
}

func (s *apiServer) protector() (protectedSet, error) {
	pa, ok := s.view.(portsAPI)
	if !ok || pa.protectorOf() == nil {
		return nil, fmt.Errorf("%w: this agent does not protect containers", api.ErrInvalid)
	}
	return pa.protectorOf(), nil
}

func (s *apiServer) listPorts(w http.ResponseWriter, _ *http.Request, _ caller) {
	p, err := s.protector()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p.Ports())
}

// readJSONBody decodes one JSON document of at most maxPortBody bytes:
// unknown fields and trailing data are refused, an oversized body is
// 413 as for rule changes.
func readJSONBody(w http.ResponseWriter, r *http.Request, into any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPortBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return bodyError(err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON body", api.ErrInvalid)
	}
	return nil
}

func (s *apiServer) protectPort(w http.ResponseWriter, r *http.Request, who caller) {
	p, err := s.protector()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	var req api.ProtectRequest
	if err := readJSONBody(w, r, &req); err != nil {
		writeAPIError(w, err)
		return
	}
	st, err := p.Protect(r.Context(), req, who.protectCaller())
	if errors.Is(err, protect.ErrProtected) {
		writeError(w, http.StatusConflict, err)
		return
	}
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *apiServer) unprotectPort(w http.ResponseWriter, r *http.Request, who caller) {
	p, err := s.protector()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	st, err := p.Unprotect(r.PathValue("name"), who.protectCaller())
	if errors.Is(err, protect.ErrNotProtected) {
		writeError(w, http.StatusNotFound, err)
		return
	}
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *apiServer) learnedRules(w http.ResponseWriter, _ *http.Request, _ caller) {
	p, err := s.protector()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p.Learned())
}

func (s *apiServer) promoteRules(w http.ResponseWriter, r *http.Request, who caller) {
	p, err := s.protector()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	var req api.PromoteRequest
	if err := readJSONBody(w, r, &req); err != nil {
		writeAPIError(w, err)
		return
	}
	if len(req.Comment) > store.MaxComment {
		writeAPIError(w, fmt.Errorf("%w: comment longer than %d bytes", api.ErrInvalid, store.MaxComment))
		return
	}
	res, err := p.Promote(req, who.protectCaller())
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
