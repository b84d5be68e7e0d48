package agent

// KeptCapMask is the capability mask the sandboxed agent keeps, as
// /proc/PID/status prints CapEff.
func KeptCapMask() uint64 {
	var m uint64
	for _, c := range keptCaps {
		m |= 1 << uint(c)
	}
	return m
}

// SandboxSyscallCount is the length of the seccomp allow-list.
func SandboxSyscallCount() int { return len(sandboxSyscalls) }
