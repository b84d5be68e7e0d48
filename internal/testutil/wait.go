package testutil

import "time"

// pollInterval is how often WaitFor tries its condition: short beside the
// timeouts tests give, long enough not to busy a shared machine.
const pollInterval = 20 * time.Millisecond

// WaitFor reports whether cond holds within timeout, trying it every
// 20ms and once more at the end. It takes no testing.TB: the caller says
// what failed, with the values it sees after the wait.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(pollInterval) {
		if cond() {
			return true
		}
	}
	return cond()
}
