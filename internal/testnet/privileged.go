package testnet

import (
	"os"
	"os/exec"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireEnv is the environment variable that turns a skipped privileged
// test into a failure. .ci/run sets it so CI can never pass by skipping.
const RequireEnv = "DEEPWALL_REQUIRE_PRIVILEGED"

var (
	privOnce   sync.Once
	privReason string
)

// RequirePrivileged skips tb unless the process may create network
// namespaces and load eBPF programs (root, or CAP_SYS_ADMIN + CAP_NET_ADMIN +
// CAP_BPF). With DEEPWALL_REQUIRE_PRIVILEGED=1 a missing privilege fails the
// test instead of skipping it.
func RequirePrivileged(tb testing.TB) {
	tb.Helper()
	privOnce.Do(func() { privReason = probePrivileges() })
	if privReason == "" {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		tb.Fatalf("privileged test cannot run (%s) and %s=1", privReason, RequireEnv)
	}
	tb.Skipf("privileged test skipped: %s (run as root; set %s=1 to make this a failure)", privReason, RequireEnv)
}

// probePrivileges returns why privileged tests cannot run, or "".
func probePrivileges() string {
	if testing.Short() {
		return "-short"
	}
	var hdr unix.CapUserHeader
	var data [2]unix.CapUserData
	hdr.Version = unix.LINUX_CAPABILITY_VERSION_3
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return "capget: " + err.Error()
	}
	have := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	for _, c := range []struct {
		bit  uint
		name string
	}{
		{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"},
		{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"},
		{unix.CAP_NET_RAW, "CAP_NET_RAW"},
	} {
		if !have(c.bit) {
			return "missing " + c.name
		}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return "no network namespaces: " + err.Error()
	}
	return ""
}

// RequireTools skips tb unless every program in names is on PATH, saying
// which is missing and how to get it (hint, e.g. the Debian packages).
// Under DEEPWALL_REQUIRE_PRIVILEGED=1 a missing program fails the test:
// scripts/dev.sh installs every one the tests use, so CI never passes by
// skipping a real peer.
func RequireTools(tb testing.TB, hint string, names ...string) {
	tb.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv(RequireEnv) == "1" {
				tb.Fatalf("%s not installed (%s) and %s=1", n, hint, RequireEnv)
			}
			tb.Skipf("%s not installed (%s)", n, hint)
		}
	}
}
