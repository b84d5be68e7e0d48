package agent

import (
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeSystemd listens where $NOTIFY_SOCKET points (a path, or an abstract
// name with abstract) and returns the datagrams it gets.
func fakeSystemd(tb testing.TB, abstract bool) <-chan string {
	tb.Helper()
	name := filepath.Join(tb.TempDir(), "notify")
	env := name
	if abstract {
		name = "\x00deepwall-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		env = "@" + name[1:]
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	tb.Setenv("NOTIFY_SOCKET", env)
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	return got
}

func recvNotify(tb testing.TB, got <-chan string) string {
	tb.Helper()
	select {
	case s := <-got:
		return s
	case <-time.After(5 * time.Second):
		tb.Fatal("no notification")
		return ""
	}
}

func TestSdNotify(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run("abstract="+strconv.FormatBool(abstract), func(t *testing.T) {
			got := fakeSystemd(t, abstract)
			t.Setenv("WATCHDOG_USEC", "2000000")
			t.Setenv("WATCHDOG_PID", "")
			a := &Agent{log: slog.New(slog.DiscardHandler)}
			w := newWatchdog()
			if w.every != time.Second {
				t.Fatalf("watchdog every %v, want 1s (half of WATCHDOG_USEC)", w.every)
			}
			a.notifyReady(w)
			if s := recvNotify(t, got); !strings.HasPrefix(s, "READY=1\n") {
				t.Fatalf("first message %q, want READY=1", s)
			}
			if s := recvNotify(t, got); s != "WATCHDOG=1" {
				t.Fatalf("second message %q, want WATCHDOG=1", s)
			}
			now := w.last
			for _, step := range []struct {
				after time.Duration
				ping  bool
			}{{500 * time.Millisecond, false}, {time.Second, true}, {1500 * time.Millisecond, false}, {2 * time.Second, true}} {
				if err := w.ping(now.Add(step.after)); err != nil {
					t.Fatal(err)
				}
				select {
				case s := <-got:
					if !step.ping || s != "WATCHDOG=1" {
						t.Fatalf("+%v: got %q", step.after, s)
					}
				case <-time.After(100 * time.Millisecond):
					if step.ping {
						t.Fatalf("+%v: no ping", step.after)
					}
				}
			}
			a.notifyStopping()
			if s := recvNotify(t, got); s != "STOPPING=1" {
				t.Fatalf("got %q, want STOPPING=1", s)
			}
		})
	}
}

// TestWatchdogOff: no watchdog without WATCHDOG_USEC, or when it is meant
// for another process; no socket, no error.
func TestWatchdogOff(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	for _, env := range []struct{ usec, pid string }{{"", ""}, {"0", ""}, {"x", ""}, {"1000000", "1"}} {
		t.Setenv("WATCHDOG_USEC", env.usec)
		t.Setenv("WATCHDOG_PID", env.pid)
		if w := newWatchdog(); w.every != 0 {
			t.Errorf("%+v: watchdog every %v, want off", env, w.every)
		}
	}
	if err := sdNotify("READY=1"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v", err)
	}
}
