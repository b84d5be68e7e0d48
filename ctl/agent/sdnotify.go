package agent

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// systemd's service notification protocol (sd_notify(3)): datagrams of
// "KEY=VALUE" lines to the unix socket named by $NOTIFY_SOCKET ("@name"
// is an abstract socket). Type=notify units wait for READY=1; with
// WatchdogSec systemd sets $WATCHDOG_USEC and restarts the service when
// no WATCHDOG=1 comes within it. Without $NOTIFY_SOCKET all of this does
// nothing.

// sdNotify sends state to $NOTIFY_SOCKET, if set.
func sdNotify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// watchdog pings systemd's watchdog from the agent's main loop, at half
// the interval systemd asked for, so that a main loop that stops turning
// (the engine's tick stuck, a deadlock) gets the agent restarted.
type watchdog struct {
	every time.Duration // 0: no watchdog asked for
	last  time.Time
}

// newWatchdog reads $WATCHDOG_USEC (and $WATCHDOG_PID, which must be
// ours when set).
func newWatchdog() *watchdog {
	w := &watchdog{}
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return w
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(os.Getpid()) {
		return w
	}
	w.every = time.Duration(usec) * time.Microsecond / 2
	return w
}

// ping sends WATCHDOG=1 when half the interval has passed since the last.
func (w *watchdog) ping(now time.Time) error {
	if w.every == 0 || now.Sub(w.last) < w.every {
		return nil
	}
	w.last = now
	return sdNotify("WATCHDOG=1")
}

// notifyReady tells systemd the agent serves (and starts the watchdog's
// clock); notifyStopping that it shuts down.
func (a *Agent) notifyReady(w *watchdog) {
	if err := sdNotify("READY=1\nSTATUS=inspecting\nMAINPID=" + strconv.Itoa(os.Getpid())); err != nil {
		a.log.Warn("notify systemd", "error", err)
	}
	_ = w.ping(time.Now())
}

func (a *Agent) notifyStopping() { _ = sdNotify("STOPPING=1") }
