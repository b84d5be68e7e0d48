package dataplane

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestPortStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := stateFile(dir, "/sys/fs/bpf/deepwall/inner")
	if filepath.Base(path) != "sys_fs_bpf_deepwall_inner.ports.json" {
		t.Fatalf("state file %s", path)
	}
	st, err := loadState(path)
	if err != nil || len(st.Peers) != 0 {
		t.Fatalf("missing file: %+v, %v", st, err)
	}
	off, on := false, true
	st.Peers = append(st.Peers, peerRecord{Port: "inner", Peer: "eth0", PeerIfindex: 2, NetnsInode: 99,
		Original: peerSettings{GRO: &off, TxCsum: &on}})
	if err := saveState(path, st); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	r := got.find("inner", 2, 99)
	if r == nil || r.Original.GRO == nil || *r.Original.GRO || r.Original.TxCsum == nil || !*r.Original.TxCsum {
		t.Fatalf("round trip lost the originals: %+v", got)
	}
	if got.find("inner", 3, 99) != nil {
		t.Fatal("found a record for another peer")
	}
	// An empty state removes the file.
	if err := saveState(path, &portState{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("empty state left a file: %v", err)
	}
	// A corrupt file is an error, not a silent reset of the originals.
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(path); err == nil {
		t.Fatal("corrupt state file accepted")
	}
}

func TestAgingDefaults(t *testing.T) {
	var a AgingConfig
	a.setDefaults()
	if a.TCP <= a.UDP || a.Closing >= a.ICMP || a.Interval <= 0 || a.Interval > a.Closing {
		t.Fatalf("defaults %+v", a)
	}
	if a.timeout(protoTCP) != a.TCP || a.timeout(protoICMPv6) != a.ICMP || a.timeout(47) != a.Other {
		t.Fatal("timeout by protocol")
	}
}

func TestMonoNowTracksClockMonotonic(t *testing.T) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	if d := monoNow() - ts.Nano(); d < -int64(time.Millisecond) || d > int64(50*time.Millisecond) {
		t.Fatalf("monoNow is %v off CLOCK_MONOTONIC", time.Duration(d))
	}
}

func TestThreadCPU(t *testing.T) {
	line := []byte("1234 (dp test) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100 0 0")
	if got := threadCPU(line); got != 3*time.Second {
		t.Fatalf("threadCPU = %v, want 3s", got)
	}
	if threadCPU([]byte("garbage")) != 0 {
		t.Fatal("garbage parsed")
	}
}
