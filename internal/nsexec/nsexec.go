// Package nsexec owns the one way deepwall runs code inside another network
// namespace.
//
// A namespace is a property of an OS thread, not of a goroutine, so code
// that enters one must keep its goroutine on a locked thread and must never
// hand that thread back to the Go scheduler: the next goroutine scheduled on
// it would run in the wrong namespace. Do enters the namespace on a
// locked thread and brings the thread back (or lets it die) before the
// scheduler can reuse it.
package nsexec

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on an OS thread that has entered ns and waits for it. The
// thread goes back to the namespace it came from afterwards and only then
// returns to the scheduler; if it cannot go back it is thrown away (its
// goroutine exits locked). Going back matters for the process's main
// thread, which the runtime never destroys: left in ns it would stay there
// for the life of the process, and /proc/self (the main thread's view)
// would describe ns. File descriptors fn creates (sockets, netlink
// handles, files under /proc/sys/net) keep their namespace and may be used
// from any goroutine; child processes started in fn inherit ns.
func Do(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer home.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		err = fn()
		if netns.Set(home) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
