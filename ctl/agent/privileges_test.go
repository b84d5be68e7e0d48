package agent

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"

	"github.com/deepwall/deepwall/internal/testnet"
)

// seccomp_data as the filter sees it: nr, arch, instruction pointer,
// six arguments. x/net/bpf's VM loads words big-endian where the kernel
// loads them in the machine's order, so the test writes them big-endian.
func seccompData(nr, auditArch uint32) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], nr)
	binary.BigEndian.PutUint32(b[4:], auditArch)
	return b
}

// runFilter runs the agent's filter program on one system call.
func runFilter(tb testing.TB, vm *bpf.VM, nr, auditArch uint32) uint32 {
	tb.Helper()
	ret, err := vm.Run(seccompData(nr, auditArch))
	if err != nil {
		tb.Fatalf("run filter on %d: %v", nr, err)
	}
	return uint32(ret)
}

func filterVM(tb testing.TB, logOnly bool) (*bpf.VM, *arch.Info) {
	tb.Helper()
	f := sandboxFilter(logOnly)
	insts, err := f.Policy.Assemble()
	if err != nil {
		tb.Fatalf("assemble: %v", err)
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		tb.Fatalf("filter program: %v", err)
	}
	info, err := arch.GetInfo("")
	if err != nil {
		tb.Fatal(err)
	}
	return vm, info
}

// TestSandboxFilterProgram checks the filter offline: every listed call
// is allowed, every other one refused with EPERM, another architecture's
// calls (a 32-bit entry point) refused too.
func TestSandboxFilterProgram(t *testing.T) {
	vm, info := filterVM(t, false)
	const (
		allow = uint32(seccomp.ActionAllow)
		eperm = uint32(seccomp.ActionErrno) | uint32(unix.EPERM)
	)
	listed := map[int]bool{}
	for _, name := range sandboxSyscalls {
		nr, ok := info.SyscallNames[name]
		if !ok {
			t.Fatalf("%s: not a system call of %s", name, info.Name)
		}
		listed[nr] = true
		if got := runFilter(t, vm, uint32(nr), uint32(info.ID)); got != allow {
			t.Errorf("%s (%d): %#x, want allow", name, nr, got)
		}
	}
	for _, name := range []string{"getcpu", "ptrace", "mount", "init_module", "kexec_load", "setuid", "capset", "unshare", "process_vm_readv", "memfd_create", "personality"} {
		nr := info.SyscallNames[name]
		if listed[nr] {
			t.Errorf("%s is in the allow-list", name)
			continue
		}
		if got := runFilter(t, vm, uint32(nr), uint32(info.ID)); got != eperm {
			t.Errorf("%s (%d): %#x, want EPERM", name, nr, got)
		}
	}
	// i386 (AUDIT_ARCH_I386): its numbers mean other calls.
	if got := runFilter(t, vm, 1, 0x40000003); got != eperm {
		t.Errorf("foreign architecture: %#x, want EPERM", got)
	}
	if !slices.IsSorted(sandboxSyscalls) || len(slices.Compact(slices.Clone(sandboxSyscalls))) != len(sandboxSyscalls) {
		t.Error("sandboxSyscalls: keep it sorted, without duplicates")
	}

	logVM, _ := filterVM(t, true)
	if got := runFilter(t, logVM, uint32(info.SyscallNames["getcpu"]), uint32(info.ID)); got != uint32(seccomp.ActionLog) {
		t.Errorf("log-only filter: getcpu %#x, want log", got)
	}
}

// filterChildEnv makes the test binary a child that installs the agent's
// filter and reports what the kernel does with a listed and an unlisted
// call.
const filterChildEnv = "DEEPWALL_TEST_FILTER_CHILD"

// filterChild: 0 when the filter loads, getpid works and getcpu(2) and
// personality(2) fail with EPERM; else a code saying which step failed.
func filterChild() int {
	if err := seccomp.LoadFilter(sandboxFilter(false)); err != nil {
		os.Stderr.WriteString(err.Error())
		return 2
	}
	if unix.Getpid() <= 0 {
		return 3
	}
	if err := probeRefused(); err != nil {
		os.Stderr.WriteString(err.Error())
		return 4
	}
	if _, _, e := unix.Syscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0); e != unix.EPERM {
		return 5
	}
	return 0
}

// TestSandboxFilterLive installs the filter in a child process (no root
// needed: no_new_privs allows it) and checks the kernel refuses calls
// outside the list with EPERM and lets listed ones through.
func TestSandboxFilterLive(t *testing.T) {
	if os.Getenv(filterChildEnv) != "" {
		os.Exit(filterChild())
	}
	if !seccomp.Supported() {
		t.Skip("no seccomp in this kernel")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestSandboxFilterLive$")
	cmd.Env = append(os.Environ(), filterChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("child exit %d: %s", ee.ExitCode(), out)
	}
	if err != nil {
		t.Fatal(err)
	}
}

const unitFile = "../../deploy/systemd/deepwall.service"

// TestSystemdUnit checks deploy/systemd/deepwall.service against the
// code: its bounding set holds every capability the agent keeps (and
// CAP_SETPCAP to drop the others), and systemd-analyze verify accepts it
// when the tool is installed (systemd need not run).
func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	var bounding []string
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapabilityBoundingSet="); ok {
			bounding = strings.Fields(v)
		}
	}
	for _, c := range append(slices.Clone(keptCaps), cap.SETPCAP) {
		if name := strings.ToUpper(c.String()); !slices.Contains(bounding, name) {
			t.Errorf("CapabilityBoundingSet lacks %s", name)
		}
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem=strict", "MemoryDenyWriteExecute=yes"} {
		if !strings.Contains(string(data), "\n"+want) {
			t.Errorf("unit lacks %s", want)
		}
	}
	testnet.RequireTools(t, "apt-get install systemd", "systemd-analyze")
	tool, _ := exec.LookPath("systemd-analyze")
	// verify wants ExecStart's binary to exist: point it at this one.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "deepwall.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(data), "/usr/bin/deepwall", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "verify", unit).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
