package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the tick counts in /proc/stat and /proc/PID/stat
// (USER_HZ, 100 on every Linux architecture Go supports).
const userHZ = 100

// cpuSample is a reading of the machine's and one process's CPU time, for
// turning a measurement into work per core.
type cpuSample struct {
	At time.Time
	// Busy is the CPU time of all cores not idle (user, nice, system,
	// irq, softirq, steal), in seconds.
	Busy float64
	// Proc is the CPU time (user + system, all threads) of the process
	// asked for, in seconds; 0 without one.
	Proc float64
}

// readCPU reads the machine's busy time and, when pid > 0, that process's
// CPU time.
func readCPU(pid int) (cpuSample, error) {
	s := cpuSample{At: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, fmt.Errorf("read cpu time: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return s, fmt.Errorf("read cpu time: unexpected /proc/stat line %q", line)
	}
	// user nice system idle iowait irq softirq steal
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseFloat(f[i], 64)
		s.Busy += v / userHZ
	}
	if pid > 0 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return s, fmt.Errorf("read cpu time of %d: %w", pid, err)
		}
		// The command name may hold spaces: fields count after its ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			return s, fmt.Errorf("read cpu time of %d: malformed stat", pid)
		}
		pf := strings.Fields(string(b[i+1:]))
		if len(pf) < 13 {
			return s, fmt.Errorf("read cpu time of %d: malformed stat", pid)
		}
		// utime and stime are fields 14 and 15 of the line, 12 and 13
		// after the name.
		u, _ := strconv.ParseFloat(pf[11], 64)
		st, _ := strconv.ParseFloat(pf[12], 64)
		s.Proc = (u + st) / userHZ
	}
	return s, nil
}

// cores returns how many cores were busy between a and b on average (the
// whole machine) and how many the process used.
func cores(a, b cpuSample) (machine, proc float64) {
	d := b.At.Sub(a.At).Seconds()
	if d <= 0 {
		return 0, 0
	}
	return (b.Busy - a.Busy) / d, (b.Proc - a.Proc) / d
}
