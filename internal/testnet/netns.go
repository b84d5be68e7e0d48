package testnet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/deepwall/deepwall/internal/nsexec"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named namespaces are bind-mounted, as `ip netns` does,
// so that tools and deepwall's own peer discovery can find them.
const netnsDir = "/run/netns"

// namePrefix marks namespaces created by tests; the pid that follows lets a
// later run remove what a killed run left behind.
const namePrefix = "dwt-"

var nsSeq atomic.Uint32

// NS is a named network namespace owned by a test.
type NS struct {
	// Name is the namespace name as `ip netns` lists it.
	Name string
	// Path is the bind mount that keeps the namespace alive.
	Path   string
	handle netns.NsHandle
}

// NewNS creates a named network namespace with loopback up and registers its
// deletion with tb.Cleanup. role ("client", "fw", …) only makes names
// readable in `ip netns` while a test runs.
func NewNS(tb testing.TB, role string) *NS {
	tb.Helper()
	RequirePrivileged(tb)
	sweepStale()
	name := fmt.Sprintf("%s%d-%s-%d", namePrefix, os.Getpid(), role, nsSeq.Add(1))
	// NewNamed unshares the calling thread into the new namespace;
	// nsexec.Do brings the thread home afterwards.
	var h netns.NsHandle
	home, err := netns.Get()
	if err == nil {
		err = nsexec.Do(home, func() error {
			var err error
			h, err = netns.NewNamed(name)
			return err
		})
		home.Close()
	}
	if err != nil {
		tb.Fatalf("create netns %s: %v", name, err)
	}
	ns := &NS{Name: name, Path: filepath.Join(netnsDir, name), handle: h}
	tb.Cleanup(func() { ns.delete(tb) })
	ns.MustDo(tb, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	return ns
}

// Handle returns the namespace's file descriptor; it stays owned by ns.
func (ns *NS) Handle() netns.NsHandle { return ns.handle }

// Do runs fn on a fresh OS thread that has entered ns. The thread is thrown
// away afterwards, so no goroutine ever runs in a namespace it did not ask
// for. Everything that binds to an interface by index (netlink, XDP attach,
// AF_XDP bind, listening sockets) must be done inside Do; file descriptors
// created there remain usable from any goroutine.
func (ns *NS) Do(fn func() error) error {
	if err := nsexec.Do(ns.handle, fn); err != nil {
		return fmt.Errorf("in netns %s: %w", ns.Name, err)
	}
	return nil
}

// MustDo is Do that fails tb on error.
func (ns *NS) MustDo(tb testing.TB, fn func() error) {
	tb.Helper()
	if err := ns.Do(fn); err != nil {
		tb.Fatalf("in netns %s: %v", ns.Name, err)
	}
}

// Netlink returns a netlink handle bound to ns, closed at cleanup.
func (ns *NS) Netlink(tb testing.TB) *netlink.Handle {
	tb.Helper()
	h, err := netlink.NewHandleAt(ns.handle)
	if err != nil {
		tb.Fatalf("netlink handle in %s: %v", ns.Name, err)
	}
	tb.Cleanup(h.Close)
	return h
}

// Start starts cmd inside ns: a child inherits the namespace of the thread
// that forks it. The process is killed and reaped at cleanup if it is still
// running; callers that Wait themselves may do so first.
func (ns *NS) Start(tb testing.TB, cmd *exec.Cmd) {
	tb.Helper()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Die with the test binary even if cleanup never runs. Pdeathsig fires
	// when the forking *thread* exits, so that thread (locked, inside ns)
	// stays parked until cleanup instead of exiting as ns.Do's would.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	release := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		home, err := netns.Get()
		if err != nil {
			started <- fmt.Errorf("current netns: %w", err)
			return // exits locked: the thread dies
		}
		defer home.Close()
		if err := netns.Set(ns.handle); err != nil {
			started <- fmt.Errorf("enter netns %s: %w", ns.Name, err)
			return
		}
		err = cmd.Start()
		started <- err
		if err == nil {
			<-release
		}
		// Home before the scheduler may reuse the thread (see nsexec).
		if netns.Set(home) == nil {
			runtime.UnlockOSThread()
		}
	}()
	if err := <-started; err != nil {
		tb.Fatalf("start %s in %s: %v", cmd.Path, ns.Name, err)
	}
	tb.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		close(release)
	})
}

// Run runs cmd inside ns to completion and returns its combined output.
func (ns *NS) Run(cmd *exec.Cmd) ([]byte, error) {
	var out []byte
	err := ns.Do(func() error {
		var err error
		out, err = cmd.CombinedOutput()
		return err
	})
	return out, err
}

func (ns *NS) delete(tb testing.TB) {
	tb.Helper()
	ns.handle.Close()
	if err := netns.DeleteNamed(ns.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Errorf("delete netns %s: %v", ns.Name, err)
	}
}

// sweepStale removes test namespaces whose creating process is gone (a test
// binary killed by a timeout cannot run its cleanups).
func sweepStale() {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), namePrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(name, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			_ = netns.DeleteNamed(e.Name())
		}
	}
}
