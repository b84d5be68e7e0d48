package resolve

import (
	"context"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/deepwall/deepwall/internal/testctr"
)

var update = flag.Bool("update", false, "record containerd's answers again into testdata/containerd")

// Recorded answers of containerd 1.6 (TestPrivilegedContainerdAPI -update).
const (
	recordedStart     = "testdata/containerd/task-start.bin"    // a /tasks/start envelope
	recordedContainer = "testdata/containerd/get-container.bin" // Containers/Get of the id in recordedID
	recordedID        = "testdata/containerd/get-container.id"
	recordedNS        = "deepwall-test"
)

// TestPrivilegedContainerdAPI runs a container in a containerd of the
// test's: its task start arrives on the event stream as NAMESPACE/ID
// (through WatchStarts), and Containers/Get and a resolution give its
// labels. With -update the answers are recorded for the unit tests.
func TestPrivilegedContainerdAPI(t *testing.T) {
	cd := testctr.NewContainerd(t)
	r := Resolver{ProcDir: "/proc", ContainerdState: cd.State, ContainerdSocket: cd.Socket}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.WatchStarts(ctx, func(runtime, name string) { got <- runtime + ":" + name })
	}()
	rawc := make(chan []byte, 1)
	if *update { // the first envelope, as the wire carries it
		go func() {
			s, err := grpcCall(ctx, cd.Socket, grpcSubscribe, "",
				protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), taskStartFilter))
			if err != nil {
				rawc <- nil
				return
			}
			defer s.Close()
			b, _ := grpcRead(s, maxEnvelope)
			rawc <- b
		}()
	}
	time.Sleep(200 * time.Millisecond) // subscribed
	web := cd.Run(t, "web", netip.MustParseAddr("198.18.0.2"))
	want := "containerd:" + cd.Namespace + "/" + web.ID
	select {
	case s := <-got:
		if s != want {
			t.Fatalf("start %s, want %s", s, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no start event for %s", want)
	}
	if *update {
		record(t, recordedStart, <-rawc)
	}
	cancel()
	<-done

	m, err := containerdGet(context.Background(), cd.Socket, cd.Namespace, web.ID)
	if err != nil || m.Labels[testctr.RoleLabel] != "web" {
		t.Fatalf("get: %+v, %v", m, err)
	}
	tg, err := r.Resolve(context.Background(), web.ID)
	if err != nil || tg.Labels[testctr.RoleLabel] != "web" || tg.PID != web.PID {
		t.Fatalf("resolve: %+v, %v", tg, err)
	}
	if _, err := containerdGet(context.Background(), cd.Socket, cd.Namespace, "absent"); !errors.Is(err, ErrNoTarget) {
		t.Errorf("get absent: %v, want %v", err, ErrNoTarget)
	}
	if *update {
		s, err := grpcCall(context.Background(), cd.Socket, grpcGetContainer, cd.Namespace,
			protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), web.ID))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		b, err := grpcRead(s, maxGRPCMessage)
		if err != nil {
			t.Fatal(err)
		}
		record(t, recordedContainer, b)
		record(t, recordedID, []byte(web.ID))
	}
}

// record writes an answer of containerd's into testdata.
func record(tb testing.TB, path string, b []byte) {
	tb.Helper()
	if len(b) == 0 {
		tb.Fatalf("%s: nothing recorded", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// envelope builds an event envelope (namespace, topic, Any of typeURL
// with a TaskStart of id).
func envelope(ns, topic, typeURL, id string) []byte {
	start := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), id)
	start = protowire.AppendVarint(protowire.AppendTag(start, 2, protowire.VarintType), 4242)
	anyb := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), typeURL)
	anyb = protowire.AppendBytes(protowire.AppendTag(anyb, 2, protowire.BytesType), start)
	b := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{8, 1}) // timestamp
	b = protowire.AppendString(protowire.AppendTag(b, 2, protowire.BytesType), ns)
	b = protowire.AppendString(protowire.AppendTag(b, 3, protowire.BytesType), topic)
	return protowire.AppendBytes(protowire.AppendTag(b, 4, protowire.BytesType), anyb)
}

func TestParseTaskStart(t *testing.T) {
	rec, err := os.ReadFile(recordedStart)
	if err != nil {
		t.Fatal(err)
	}
	recName := parseTaskStart(rec)
	if ns, id, _ := strings.Cut(recName, "/"); ns != recordedNS || !strings.Contains(id, "-web-") {
		t.Errorf("recorded envelope: %q", recName)
	}
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"start", envelope("k8s.io", "/tasks/start", "containerd.events.TaskStart", "web"), "k8s.io/web"},
		{"type url with host", envelope("default", "/tasks/start", "types.containerd.io/containerd.events.TaskStart", "a"), "default/a"},
		{"exit", envelope("default", "/tasks/exit", "containerd.events.TaskExit", "web"), ""},
		{"start of another type", envelope("default", "/tasks/start", "containerd.events.TaskExit", "web"), ""},
		{"dot-dot namespace", envelope("..", "/tasks/start", "containerd.events.TaskStart", "web"), ""},
		{"slash in id", envelope("default", "/tasks/start", "containerd.events.TaskStart", "../../etc"), ""},
		{"empty id", envelope("default", "/tasks/start", "containerd.events.TaskStart", ""), ""},
		{"long id", envelope("default", "/tasks/start", "containerd.events.TaskStart", strings.Repeat("a", maxContainerID+1)), ""},
		{"cut", envelope("default", "/tasks/start", "containerd.events.TaskStart", "web")[:20], ""},
		{"empty", nil, ""},
	} {
		if got := parseTaskStart(c.b); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func FuzzParseTaskStart(f *testing.F) {
	rec, err := os.ReadFile(recordedStart)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rec)
	f.Add(envelope("k8s.io", "/tasks/start", "containerd.events.TaskStart", "web"))
	f.Fuzz(func(t *testing.T, b []byte) {
		name := parseTaskStart(b)
		if ns, id, ok := strings.Cut(name, "/"); name != "" && (!ok || !validContainerdRef(ns) || !validContainerdRef(id)) {
			t.Fatalf("name %q", name)
		}
	})
}

func TestParseContainerdContainer(t *testing.T) {
	rec, err := os.ReadFile(recordedContainer)
	if err != nil {
		t.Fatal(err)
	}
	id, err := os.ReadFile(recordedID)
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseContainerdContainer(rec, string(id))
	if err != nil || m.Labels[testctr.RoleLabel] != "web" {
		t.Fatalf("recorded: %+v, %v", m, err)
	}
	if _, err := parseContainerdContainer(rec, "other"); err == nil {
		t.Error("an answer about another container was believed")
	}
	label := func(k, v string) []byte {
		e := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), k)
		return protowire.AppendString(protowire.AppendTag(e, 2, protowire.BytesType), v)
	}
	container := func(id, image string, labels ...[]byte) []byte {
		c := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), id)
		for _, l := range labels {
			c = protowire.AppendBytes(protowire.AppendTag(c, 2, protowire.BytesType), l)
		}
		c = protowire.AppendString(protowire.AppendTag(c, 3, protowire.BytesType), image)
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), c)
	}
	many := make([][]byte, maxLabels+1)
	for i := range many {
		many[i] = label(strings.Repeat("k", i+1), "v")
	}
	for _, c := range []struct {
		name    string
		b       []byte
		image   string
		labels  int
		wantErr bool
	}{
		{"image and labels", container("x", "docker.io/library/nginx:1", label("tier", "web"), label("app", "shop")), "docker.io/library/nginx:1", 2, false},
		{"no labels", container("x", ""), "", 0, false},
		{"too many labels", container("x", "", many...), "", 0, true},
		{"long label", container("x", "", label("k", strings.Repeat("v", maxLabelLen+1))), "", 0, true},
		{"long image", container("x", strings.Repeat("i", maxContainerID+1)), "", 0, true},
		{"other id", container("y", ""), "", 0, true},
		{"cut", container("x", "img", label("a", "b"))[:9], "", 0, true},
	} {
		m, err := parseContainerdContainer(c.b, "x")
		if (err != nil) != c.wantErr || err == nil && (m.Image != c.image || len(m.Labels) != c.labels) {
			t.Errorf("%s: %+v, %v", c.name, m, err)
		}
	}
}

func FuzzParseContainerdContainer(f *testing.F) {
	rec, err := os.ReadFile(recordedContainer)
	if err != nil {
		f.Fatal(err)
	}
	id, err := os.ReadFile(recordedID)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rec)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseContainerdContainer(b, string(id))
		if err == nil && (checkLabels(m.Labels) != nil || len(m.Image) > maxContainerID) {
			t.Fatalf("unbounded answer believed: %d labels", len(m.Labels))
		}
	})
}
