package ctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// fakeResolver reads testdata/targets: named namespaces, a /proc with
// three "processes", Docker state files and containerd shim state.
func fakeResolver(tb testing.TB) targetResolver {
	tb.Helper()
	root, err := filepath.Abs("testdata/targets")
	if err != nil {
		tb.Fatal(err)
	}
	return targetResolver{NetnsDir: filepath.Join(root, "netns"), ProcDir: filepath.Join(root, "proc"),
		DockerRoot: filepath.Join(root, "docker"), ContainerdState: filepath.Join(root, "containerd")}
}

func TestResolveTarget(t *testing.T) {
	r := fakeResolver(t)
	proc := r.ProcDir
	for _, tc := range []struct {
		spec             string
		kind, name, path string
		pid              int
		err              error
	}{
		{spec: "web", kind: "netns", name: "web", path: filepath.Join(r.NetnsDir, "web")},
		{spec: filepath.Join(r.NetnsDir, "web"), kind: "path", name: "web", path: filepath.Join(r.NetnsDir, "web")},
		{spec: "4242", kind: "pid", name: "pid-4242", path: proc + "/4242/ns/net", pid: 4242},
		{spec: proc + "/4343/ns/net", kind: "path", name: "pid-4343", path: proc + "/4343/ns/net", pid: 4343},
		{spec: "shop-db", kind: "docker", name: "shop-db", path: proc + "/4242/ns/net", pid: 4242},
		{spec: "docker:3f4e5a6b", kind: "docker", name: "shop-db", path: proc + "/4242/ns/net", pid: 4242},
		{spec: "3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081", kind: "docker", name: "shop-db", pid: 4242, path: proc + "/4242/ns/net"},
		{spec: "docker:3f4e", err: ErrAmbiguous},
		{spec: "docker:stopped", err: ErrNoTarget},
		{spec: "api-7", kind: "containerd", name: "api-7", path: proc + "/4343/ns/net", pid: 4343},
		{spec: "containerd:k8s.io/redis-1", kind: "containerd", name: "redis-1", path: proc + "/4444/ns/net", pid: 4444},
		{spec: "redis-1", err: ErrAmbiguous},
		{spec: "containerd:../k8s.io", err: ErrNoTarget},
		{spec: "9999", err: ErrNoTarget},
		{spec: "nothing-here", err: ErrNoTarget},
		{spec: "docker:../../etc", err: ErrNoTarget},
		{spec: "", err: nil},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := r.resolve(context.Background(), tc.spec)
			if tc.spec == "" {
				if err == nil {
					t.Fatal("empty target resolved")
				}
				return
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("resolve: %v (%+v), want %v", err, got, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind != tc.kind || got.Name != tc.name || got.Path != tc.path || got.PID != tc.pid || got.Spec != tc.spec {
				t.Fatalf("got %+v, want kind %s name %s path %s pid %d", got, tc.kind, tc.name, tc.path, tc.pid)
			}
		})
	}
}

// TestResolveDockerAPI answers from a fake Engine API on a unix socket,
// which wins over the state files.
func TestResolveDockerAPI(t *testing.T) {
	r := fakeResolver(t)
	r.DockerSocket = filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", r.DockerSocket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/containers/frontend/json":
			fmt.Fprint(w, `{"Id":"77aa","Name":"/frontend","State":{"Running":true,"Pid":4343}}`)
		case "/containers/broken/json":
			http.Error(w, `{"message":"boom"}`, http.StatusInternalServerError)
		default:
			http.Error(w, `{"message":"No such container"}`, http.StatusNotFound)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	got, err := r.resolve(context.Background(), "frontend")
	if err != nil || got.Kind != "docker" || got.Name != "frontend" || got.PID != 4343 {
		t.Fatalf("frontend: %+v, %v", got, err)
	}
	// Not known to the API: containerd is still asked.
	if got, err := r.resolve(context.Background(), "api-7"); err != nil || got.Kind != "containerd" {
		t.Fatalf("api-7: %+v, %v", got, err)
	}
	if _, err := r.resolve(context.Background(), "docker:broken"); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("broken: %v", err)
	}
}

// TestResolveNoRuntimes: nothing installed is not an error, only "not found".
func TestResolveNoRuntimes(t *testing.T) {
	dir := t.TempDir()
	r := targetResolver{NetnsDir: dir + "/netns", ProcDir: dir + "/proc", DockerSocket: dir + "/docker.sock",
		DockerRoot: dir + "/docker", ContainerdState: dir + "/containerd"}
	if _, err := r.resolve(context.Background(), "web"); !errors.Is(err, ErrNoTarget) {
		t.Fatalf("resolve: %v, want ErrNoTarget", err)
	}
}
