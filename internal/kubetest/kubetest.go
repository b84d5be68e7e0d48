// Package kubetest runs a real Kubernetes control plane for tests: etcd
// and kube-apiserver built from the Go module proxy by
// scripts/k8s-bins.sh (cached in the home directory), started in a
// network namespace of the test's, with token users, and clients for it.
// No kubelet, scheduler or controller manager runs: tests create Pod
// objects bound to nodes and write their status themselves.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deepwall/deepwall/internal/testnet"
)

// Versions scripts/k8s-bins.sh builds; BinsEnv overrides the directory.
const (
	KubeVersion = "1.37.2"
	EtcdVersion = "3.7.0"
	BinsEnv     = "DEEPWALL_K8S_BINS"
)

// Addresses inside the control plane's namespace (loopback: nothing of
// it is reachable from elsewhere).
const (
	etcdClient = "127.0.0.1:2379"
	etcdPeer   = "127.0.0.1:2380"
	apiAddr    = "127.0.0.1:6443"
	// startTimeout bounds the API server's start (about 10 s on 2 idle
	// cores; a loaded CI machine takes several times that).
	startTimeout = 3 * time.Minute
)

// Bins returns the directory holding kube-apiserver and etcd; without
// them the test is skipped, or fails under DEEPWALL_REQUIRE_PRIVILEGED
// (scripts/dev.sh test builds them).
func Bins(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv(BinsEnv)
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			tb.Fatal(err)
		}
		dir = filepath.Join(cache, "deepwall", "k8s", "v"+KubeVersion+"-etcd"+EtcdVersion)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			msg := fmt.Sprintf("%s not built (scripts/k8s-bins.sh builds it into %s)", b, dir)
			if os.Getenv("DEEPWALL_REQUIRE_PRIVILEGED") != "" {
				tb.Fatal(msg)
			}
			tb.Skip(msg)
		}
	}
	return dir
}

// User is a token user of the control plane.
type User struct {
	Name   string
	Groups []string
}

// Admin is the user Start adds for the test itself.
var Admin = User{Name: "test-admin", Groups: []string{"system:masters"}}

// ControlPlane is etcd and kube-apiserver in a namespace.
type ControlPlane struct {
	NS     *testnet.NS
	Dir    string
	tokens map[string]string // user name -> token
}

// Start runs etcd and kube-apiserver in ns with Admin and users (RBAC
// authorization: users other than Admin get what the test binds to
// them), and waits until the API server is ready. Both stop at cleanup.
func Start(tb testing.TB, ns *testnet.NS, users ...User) *ControlPlane {
	tb.Helper()
	bins := Bins(tb)
	cp := &ControlPlane{NS: ns, Dir: tb.TempDir(), tokens: map[string]string{}}
	var csv strings.Builder
	for i, u := range append([]User{Admin}, users...) {
		tok := fmt.Sprintf("token-%d-%s", i, randHex(tb))
		cp.tokens[u.Name] = tok
		fmt.Fprintf(&csv, "%s,%s,uid-%d,%q\n", tok, u.Name, i, strings.Join(u.Groups, ","))
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(cp.Dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	tokens := write("tokens.csv", []byte(csv.String()))
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	saKey := write("sa.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	saPub := write("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))

	etcd := exec.Command(filepath.Join(bins, "etcd"), "--data-dir", filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls", "http://"+etcdClient, "--advertise-client-urls", "http://"+etcdClient,
		"--listen-peer-urls", "http://"+etcdPeer, "--initial-advertise-peer-urls", "http://"+etcdPeer,
		"--initial-cluster", "default=http://"+etcdPeer, "--unsafe-no-fsync", "--log-level", "warn")
	etcdOut := logFile(tb, cp.Dir, "etcd.log", etcd)
	ns.Start(tb, etcd)
	// The API server on loopback: its own endpoint reconciler would want
	// a routable address (--endpoint-reconciler-type=none).
	api := exec.Command(filepath.Join(bins, "kube-apiserver"),
		"--etcd-servers", "http://"+etcdClient,
		"--bind-address", "127.0.0.1", "--secure-port", "6443", "--advertise-address", "127.0.0.1",
		"--endpoint-reconciler-type", "none",
		"--cert-dir", filepath.Join(cp.Dir, "certs"),
		"--token-auth-file", tokens, "--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saPub, "--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.0.0.0/24",
		// No controller manager makes the default service accounts.
		"--disable-admission-plugins", "ServiceAccount",
		"--allow-privileged=true")
	apiOut := logFile(tb, cp.Dir, "kube-apiserver.log", api)
	ns.Start(tb, api)

	hc := cp.httpClient()
	deadline := time.Now().Add(startTimeout)
	for {
		req, _ := http.NewRequest(http.MethodGet, "https://"+apiAddr+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+cp.tokens[Admin.Name])
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cp
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("kube-apiserver not ready after %v: %v\netcd:\n%s\nkube-apiserver:\n%s", startTimeout, err, tail(etcdOut), tail(apiOut))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// logFile sends cmd's output to a file of dir and returns its path.
func logFile(tb testing.TB, dir, name string, cmd *exec.Cmd) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	cmd.Stdout, cmd.Stderr = f, f
	return p
}

// tail is the end of a log file, for failure messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

func randHex(tb testing.TB) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

func (cp *ControlPlane) httpClient() *http.Client {
	cfg := cp.RESTConfig(Admin)
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		panic(err) // a static configuration
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// RESTConfig is a client configuration for user that dials inside the
// control plane's namespace (the test process lives outside it).
func (cp *ControlPlane) RESTConfig(u User) *rest.Config {
	return &rest.Config{Host: "https://" + apiAddr, BearerToken: cp.tokens[u.Name],
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, Dial: cp.NS.DialContext, QPS: 200, Burst: 400}
}

// Kubeconfig writes a kubeconfig file for user, for processes started
// in the control plane's namespace, and returns its path.
func (cp *ControlPlane) Kubeconfig(tb testing.TB, u User) string {
	tb.Helper()
	p := filepath.Join(cp.Dir, "kubeconfig-"+strings.NewReplacer(":", "-", "/", "-").Replace(u.Name))
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://%s", insecure-skip-tls-verify: true}
users:
- name: %q
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: %q}
current-context: test
`, apiAddr, u.Name, cp.tokens[u.Name], u.Name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// Clients returns the admin's typed and dynamic clients.
func (cp *ControlPlane) Clients(tb testing.TB) (kubernetes.Interface, dynamic.Interface) {
	tb.Helper()
	cfg := cp.RESTConfig(Admin)
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return kc, dc
}

// Apply creates or updates, by server-side apply as the admin, every
// object of the YAML files (multi-document), as kubectl apply
// --server-side does. Kinds are mapped to resources by lower-casing and
// adding "s" (or "ies" for a final y), enough for the kinds deploy/
// uses; a CustomResourceDefinition is waited for until established.
func (cp *ControlPlane) Apply(tb testing.TB, files ...string) {
	tb.Helper()
	_, dc := cp.Clients(tb)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				tb.Fatalf("%s: %v", f, err)
			}
			if obj == nil {
				continue
			}
			u := &unstructured.Unstructured{Object: obj}
			if err := cp.ApplyObject(dc, u); err != nil {
				tb.Fatalf("%s: %s %s: %v", f, u.GetKind(), u.GetName(), err)
			}
			if u.GetKind() == "CustomResourceDefinition" {
				cp.waitEstablished(tb, dc, u.GetName())
			}
		}
	}
}

// ApplyObject applies one object as the admin.
func (cp *ControlPlane) ApplyObject(dc dynamic.Interface, u *unstructured.Unstructured) error {
	gv, err := schema.ParseGroupVersion(u.GetAPIVersion())
	if err != nil {
		return err
	}
	kind := strings.ToLower(u.GetKind())
	res := kind + "s"
	if strings.HasSuffix(kind, "y") {
		res = strings.TrimSuffix(kind, "y") + "ies"
	}
	r := dc.Resource(gv.WithResource(res))
	opts := metav1.ApplyOptions{FieldManager: "test", Force: true}
	if ns := u.GetNamespace(); ns != "" {
		_, err = r.Namespace(ns).Apply(context.Background(), u.GetName(), u, opts)
	} else {
		_, err = r.Apply(context.Background(), u.GetName(), u, opts)
	}
	return err
}

func (cp *ControlPlane) waitEstablished(tb testing.TB, dc dynamic.Interface, name string) {
	tb.Helper()
	crds := dc.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		u, err := crds.Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("CRD %s not established within a minute", name)
}
