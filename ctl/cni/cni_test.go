package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/deepwall/deepwall/ctl/api"
)

func TestName(t *testing.T) {
	for _, tc := range []struct{ args, ifname, want string }{
		{"IgnoreUnknown=1;K8S_POD_NAME=web", "eth0", "web"},
		{"IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0", "eth0", "web-0"},
		{"K8S_POD_NAME=web", "net1", "web-net1"},
		{"", "eth0", "cni-0123456789ab"},
		{"K8S_POD_NAME=a/b", "", "cni-0123456789ab"},
		{"K8S_POD_NAME=" + strings.Repeat("x", 129), "eth0", "cni-0123456789ab"},
		{"K8S_POD_NAME=" + strings.Repeat("x", 126), "net1", "cni-0123456789ab-net1"},
		{"K8S_POD_NAME=-x", "eth0", "cni-0123456789ab"},
	} {
		a := &skel.CmdArgs{ContainerID: "0123456789abcdef", IfName: tc.ifname, Args: tc.args}
		if got := attachmentName(a); got != tc.want {
			t.Errorf("attachmentName(%q, %q) = %q, want %q", tc.args, tc.ifname, got, tc.want)
		}
	}
}

// fakeAgent answers the port endpoints of the agent's API on a unix
// socket, keeping what it was asked to protect.
type fakeAgent struct {
	socket string
	mu     sync.Mutex
	ports  map[string]api.ProtectRequest
	refuse bool
}

func newFakeAgent(tb testing.TB) *fakeAgent {
	tb.Helper()
	f := &fakeAgent{socket: filepath.Join(tb.TempDir(), "api.sock"), ports: map[string]api.ProtectRequest{}}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/ports", func(w http.ResponseWriter, r *http.Request) {
		var req api.ProtectRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || f.refuse {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: "find eth0: Link not found"})
			return
		}
		f.mu.Lock()
		f.ports[req.Name] = req
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(api.PortStatus{Name: req.Name, State: "running", Changed: "protected"})
	})
	mux.HandleFunc("DELETE /v1/ports/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.refuse {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: "web is protected by selector:label:tier=web: unprotect that"})
			return
		}
		if _, ok := f.ports[r.PathValue("name")]; !ok {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: "not protected"})
			return
		}
		delete(f.ports, r.PathValue("name"))
	})
	mux.HandleFunc("GET /v1/ports", func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var pl api.PortList
		for name, req := range f.ports {
			pl.Ports = append(pl.Ports, api.PortStatus{Name: name, Iface: req.Iface, State: "running", FailClosed: req.FailClosed})
		}
		_ = json.NewEncoder(w).Encode(pl)
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return f
}

// cmdArgs is an attachment of container "ctr1" (podman's name "web")
// chained after a bridge plugin, with the plugin's extra keys.
func cmdArgs(tb testing.TB, extra string) *skel.CmdArgs {
	tb.Helper()
	prev := `{"cniVersion":"1.0.0","interfaces":[{"name":"veth1","mac":"aa:bb:cc:dd:ee:01"},{"name":"eth0","sandbox":"/run/netns/n1"}],"ips":[{"address":"198.19.1.2/24","interface":1}]}`
	conf := `{"cniVersion":"1.0.0","name":"net1","type":"deepwall-cni"` + extra + `,"prevResult":` + prev + `}`
	return &skel.CmdArgs{ContainerID: "ctr1", Netns: "/run/netns/n1", IfName: "eth0",
		Args: "IgnoreUnknown=1;K8S_POD_NAME=web", StdinData: []byte(conf)}
}

func TestAddDelCheck(t *testing.T) {
	f := newFakeAgent(t)
	a := cmdArgs(t, `,"socket":"`+f.socket+`","mode":"monitor"`)
	if err := cmdCheck(a); !errors.Is(err, errNotInline) {
		t.Errorf("CHECK before ADD: %v, want %v", err, errNotInline)
	}
	var out, log bytes.Buffer
	if err := cmdAdd(a, &out, &log); err != nil {
		t.Fatal(err)
	}
	want := api.ProtectRequest{Target: "/run/netns/n1", Iface: "eth0", Mode: api.ModeMonitor, FailClosed: true, Name: "web", CNIContainerID: "ctr1"}
	if got := f.ports["web"]; got != want {
		t.Errorf("protect request %+v, want %+v", got, want)
	}
	var res current.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res.Interfaces) != 2 || res.Interfaces[0].Name != "veth1" || len(res.IPs) != 1 {
		t.Errorf("ADD result (%v): %s: want prevResult passed through", err, out.String())
	}
	if err := cmdCheck(a); err != nil {
		t.Errorf("CHECK after ADD: %v", err)
	}
	for range 2 { // DEL is idempotent
		if err := cmdDel(a, &log); err != nil {
			t.Errorf("DEL: %v", err)
		}
	}
	if len(f.ports) != 0 {
		t.Errorf("after DEL the agent protects %v", f.ports)
	}
	if log.Len() != 0 {
		t.Errorf("log: %s", log.String())
	}
}

// TestAgentDown: with no agent, ADD fails when failClosed (the default)
// and passes the result through, logging, when not; DEL succeeds;
// CHECK follows ADD. An agent refusing is a failure like its absence.
func TestAgentDown(t *testing.T) {
	none := `,"socket":"` + filepath.Join(t.TempDir(), "none.sock") + `"`
	for _, tc := range []struct {
		name, extra string
		ok          bool
	}{
		{"default", none, false},
		{"closed", none + `,"failClosed":true`, false},
		{"open", none + `,"failClosed":false`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := cmdArgs(t, tc.extra)
			var out, log bytes.Buffer
			err := cmdAdd(a, &out, &log)
			if tc.ok != (err == nil) {
				t.Fatalf("ADD: %v", err)
			}
			if err != nil && !strings.Contains(err.Error(), "no agent listening") {
				t.Errorf("ADD error %q does not say the agent is down", err)
			}
			if tc.ok && (!strings.Contains(log.String(), "UNPROTECTED") || !strings.Contains(out.String(), "veth1")) {
				t.Errorf("fail-open ADD: log %q, result %q", log.String(), out.String())
			}
			if err := cmdDel(a, &log); err != nil {
				t.Errorf("DEL: %v", err)
			}
			if err := cmdCheck(a); tc.ok != (err == nil) {
				t.Errorf("CHECK: %v", err)
			}
			var te *types.Error
			if err := cmdStatus(a); tc.ok != (err == nil) || err != nil && (!errors.As(err, &te) || te.Code != errPluginNotAvailable) {
				t.Errorf("STATUS: %v", err)
			}
		})
	}
	f := newFakeAgent(t)
	f.refuse = true // set before any request: no lock needed
	var out, log bytes.Buffer
	if err := cmdAdd(cmdArgs(t, `,"socket":"`+f.socket+`"`), &out, &log); err == nil || !strings.Contains(err.Error(), "Link not found") {
		t.Errorf("ADD refused by the agent: %v", err)
	}
	// A DEL the agent refuses succeeds (the runtime must be able to
	// remove the container), logged.
	log.Reset()
	if err := cmdDel(cmdArgs(t, `,"socket":"`+f.socket+`"`), &log); err != nil || !strings.Contains(log.String(), "release web") {
		t.Errorf("DEL refused by the agent: %v, log %q", err, log.String())
	}
}

func TestNoPrevResult(t *testing.T) {
	a := &skel.CmdArgs{ContainerID: "c", Netns: "/run/netns/n", IfName: "eth0", StdinData: []byte(`{"cniVersion":"1.0.0","name":"n","type":"deepwall-cni"}`)}
	if err := cmdAdd(a, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, errNoPrevResult) {
		t.Errorf("ADD without prevResult: %v", err)
	}
}
