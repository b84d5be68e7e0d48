package nsexec_test

import (
	"runtime"
	"testing"

	"github.com/deepwall/deepwall/internal/nsexec"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/vishvananda/netns"
)

// TestPrivilegedDo: fn runs in the namespace asked for, and no thread of
// the scheduler is left in it afterwards.
func TestPrivilegedDo(t *testing.T) {
	ns := testnet.NewNS(t, "nsexec")
	want := ns.Handle().UniqueId()
	var got string
	if err := nsexec.Do(ns.Handle(), func() error {
		h, err := netns.Get()
		if err != nil {
			return err
		}
		defer h.Close()
		got = h.UniqueId()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("fn ran in %s, want %s", got, want)
	}
	// Every scheduler thread is in the process's own namespace, the main
	// thread's (/proc/self): Do left none behind in ns, and neither did
	// testnet, which goes through Do.
	self, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	for range 2 * runtime.GOMAXPROCS(0) {
		done := make(chan string, 1)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			h, err := netns.Get()
			if err != nil {
				done <- err.Error()
				return
			}
			defer h.Close()
			done <- h.UniqueId()
		}()
		if id := <-done; id != self.UniqueId() {
			t.Fatalf("a scheduler thread is in %s after Do, want %s", id, self.UniqueId())
		}
	}
}

// A handle that names no namespace fails before fn runs, for root too.
func TestDoBadHandle(t *testing.T) {
	if err := nsexec.Do(netns.None(), func() error { t.Error("fn ran"); return nil }); err == nil {
		t.Fatal("Do with no namespace succeeded")
	}
}
