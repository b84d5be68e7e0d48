package agent

import (
	"errors"
	"fmt"
	"os"
	"strings"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// keptCaps are the capabilities the agent keeps after start-up, in every
// set (effective, permitted, bounding; inheritable and ambient are
// emptied). What fails without each one (docs/operations.md,
// "Privileges"; measured by running the e2e tests with it left out):
//   - CAP_NET_ADMIN: netlink and ethtool changes (wiring a protected
//     container: veth pairs, XDP; restoring ports at shutdown), iptables
//     in NFQUEUE mode.
//   - CAP_NET_RAW: AF_XDP sockets for containers protected after start.
//   - CAP_SYS_ADMIN: setns(2) into another network namespace (a protected
//     container's, the ports' for rule changes in NFQUEUE mode) has no
//     narrower capability. It also satisfies the kernel's bpf_capable()
//     and perfmon_capable(), which is why CAP_BPF and CAP_PERFMON, which
//     would add nothing, are not kept.
//   - CAP_IPC_LOCK: the AF_XDP memory (UMEM, 16 MiB per queue) of a
//     container protected later is locked memory; without the capability
//     the kernel charges it to RLIMIT_MEMLOCK (8 MiB by default) and
//     registering it fails with ENOBUFS. Lifting the limit instead needs
//     CAP_SYS_RESOURCE at start, which not every host grants.
//   - CAP_SYS_PTRACE: opening a container's /proc/PID/ns/net passes the
//     kernel's ptrace_may_access check, which requires it whenever the
//     container's process holds a capability the agent no longer has (a
//     root container of podman or containerd keeps CAP_CHOWN, CAP_SETUID,
//     ...): "statfs /proc/PID/ns/net: permission denied" without it.
var keptCaps = []cap.Value{cap.NET_ADMIN, cap.NET_RAW, cap.SYS_ADMIN, cap.IPC_LOCK, cap.SYS_PTRACE}

// Sandbox limits what the running agent may do, once Open has done
// everything that needs full root (maps created, programs attached,
// sockets bound, API listening): it drops every capability but keptCaps
// from all threads, sets no_new_privs and installs the seccomp allow-list
// of sandboxSyscalls on all threads. Programs the agent runs later
// (iptables) inherit all of it. Call it once, before Run; it cannot be
// undone.
func (a *Agent) Sandbox() error {
	if err := dropCaps(keptCaps); err != nil {
		return fmt.Errorf("sandbox: drop capabilities: %w", err)
	}
	logOnly := os.Getenv(SeccompLogEnv) != ""
	if err := seccomp.LoadFilter(sandboxFilter(logOnly)); err != nil {
		return fmt.Errorf("sandbox: seccomp: %w", err)
	}
	if !logOnly {
		if err := probeRefused(); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	a.log.Info("sandbox on", "capabilities", capNames(keptCaps), "syscalls", len(sandboxSyscalls),
		"seccomp", map[bool]string{true: "log only (" + SeccompLogEnv + ")", false: "allow-list, others EPERM"}[logOnly])
	return nil
}

// SeccompLogEnv, when set in the agent's environment, installs the filter
// with "log" as its default action instead of EPERM: calls outside the
// list succeed and the kernel logs them (dmesg, "type=1326 ... syscall=N").
// It is how sandboxSyscalls is maintained (docs/operations.md).
const SeccompLogEnv = "DEEPWALL_SECCOMP_LOG"

// dropCaps leaves keep in the effective, permitted and bounding sets of
// every thread of the process (psx runs the calls on all threads, cgo's
// included) and empties the inheritable and ambient sets.
func dropCaps(keep []cap.Value) error {
	kept := make(map[cap.Value]bool, len(keep))
	for _, v := range keep {
		kept[v] = true
	}
	var drop []cap.Value
	for v := cap.Value(0); v < cap.MaxBits(); v++ {
		// Only what is still there: under a unit's CapabilityBoundingSet
		// most are gone already.
		if in, err := cap.GetBound(v); !kept[v] && err == nil && in {
			drop = append(drop, v)
		}
	}
	// Bounding first: dropping from it needs CAP_SETPCAP, which goes next.
	if err := cap.DropBound(drop...); err != nil {
		return fmt.Errorf("bounding set: %w", err)
	}
	if err := cap.ResetAmbient(); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("ambient set: %w", err)
	}
	set := cap.NewSet()
	if err := set.SetFlag(cap.Permitted, true, keep...); err != nil {
		return err
	}
	if err := set.SetFlag(cap.Effective, true, keep...); err != nil {
		return err
	}
	return set.SetProc()
}

// sandboxFilter is the seccomp filter: sandboxSyscalls allowed, anything
// else refused with EPERM (or, with logOnly, allowed and logged), on all
// threads (TSYNC), with every refusal logged by the kernel (FLAG_LOG).
// EPERM rather than killing: a call missing from the list in a rare path
// fails like any refused operation and the agent reports it, where a kill
// would take the firewall down (ports fail open or closed) over it; the
// kernel's log still shows every refusal.
func sandboxFilter(logOnly bool) seccomp.Filter {
	def := seccomp.ActionErrno
	if logOnly {
		def = seccomp.ActionLog
	}
	return seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync | seccomp.FilterFlagLog,
		Policy: seccomp.Policy{
			DefaultAction: def,
			Syscalls:      []seccomp.SyscallGroup{{Names: sandboxSyscalls, Action: seccomp.ActionAllow}},
		},
	}
}

// probeSyscall is a call outside the list that is harmless if it ran:
// the agent makes it once after installing the filter and refuses to run
// if the kernel did not refuse it.
const probeSyscall = unix.SYS_GETCPU

func probeRefused() error {
	if _, _, e := unix.Syscall(probeSyscall, 0, 0, 0); e != unix.EPERM {
		return fmt.Errorf("seccomp filter not in force: getcpu(2) returned %v, want EPERM", e)
	}
	return nil
}

func capNames(vs []cap.Value) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = strings.ToUpper(v.String())
	}
	return strings.Join(names, ",")
}
