package bench

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// machine describes where a report was measured.
type machine struct {
	Host           string `json:"host"`
	CPU            string `json:"cpu"`
	Cores          int    `json:"cores"`
	MemoryBytes    uint64 `json:"memory_bytes"`
	Kernel         string `json:"kernel"`
	OS             string `json:"os"`
	Virtualization string `json:"virtualization,omitempty"`
	// LoadStart and LoadEnd are the 1-minute load averages when the run
	// started and ended: a busy machine makes every figure lower and
	// noisier.
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`
}

// describeMachine reads the machine's description from the system.
func describeMachine() machine {
	m := machine{Cores: runtime.NumCPU(), LoadStart: loadAverage()}
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		m.MemoryBytes = uint64(si.Totalram) * uint64(si.Unit)
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if out, err := exec.Command("systemd-detect-virt").Output(); err == nil {
		if v := strings.TrimSpace(string(out)); v != "none" {
			m.Virtualization = "virtual machine (" + v + ")"
		}
	} else if b, err := os.ReadFile("/proc/cpuinfo"); err == nil && bytes.Contains(b, []byte(" hypervisor")) {
		m.Virtualization = "virtual machine"
	}
	return m
}

// loadAverage returns the 1-minute load average (0 if unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// moduleVersions returns the versions of the Go modules linked into the
// running binary whose path is among paths (as the module path, without a
// version suffix check).
func moduleVersions(paths ...string) map[string]string {
	out := map[string]string{}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		for _, p := range paths {
			if d.Path == p {
				out[p] = d.Version
			}
		}
	}
	return out
}

// debianPackageVersion returns the installed version of a Debian package,
// or "" when it is not installed.
func debianPackageVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// firstLine runs a command and returns the first non-empty line of its
// output (stdout and stderr), or "".
func firstLine(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			return l
		}
	}
	return ""
}
