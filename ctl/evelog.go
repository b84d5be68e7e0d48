package ctl

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deepwall/deepwall/dpi"
)

// Defaults of the verdict log.
const (
	DefaultLogMaxBytes = 100 << 20 // rotate past 100 MiB
	DefaultLogKeep     = 5         // eve.json.1 … eve.json.5
	DefaultLogQueue    = 1 << 16   // events buffered between the packet path and the writer
	logFlushInterval   = 200 * time.Millisecond
	logFileMode        = 0o640
	logDirMode         = 0o750
)

// EventLogConfig configures an EventLog.
type EventLogConfig struct {
	Path     string // the live file, e.g. /var/log/deepwall/eve.json
	MaxBytes int64  // rotate when the live file would grow past this; 0 = DefaultLogMaxBytes, <0 = never
	Keep     int    // rotated files kept; 0 = DefaultLogKeep
	Queue    int    // events in flight; 0 = DefaultLogQueue
}

// EventLogStats are the counters `deepwall status` reports.
type EventLogStats struct {
	Written   uint64 // events written to a file
	Dropped   uint64 // events refused because the writer fell behind
	Rotations uint64
	Errors    uint64 // write errors (the event is counted here, not in Written)
}

// EventLog writes verdict events as JSON lines. Emit never blocks: when
// the queue is full the event is counted in Dropped, so a slow disk can
// never stall the packet path and no loss goes unreported.
type EventLog struct {
	cfg     EventLogConfig
	queue   chan *dpi.Event
	reopen  chan chan error
	done    chan struct{}
	closing sync.Once

	written, dropped, rotations, errs atomic.Uint64

	// Owned by the writer goroutine.
	f    *os.File
	w    *bufio.Writer
	size int64
}

// OpenEventLog creates the log's directory and file and starts the writer.
// It fails (naming the path) when the file cannot be written, before any
// packet is handled.
func OpenEventLog(cfg EventLogConfig) (*EventLog, error) {
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultLogMaxBytes
	}
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultLogKeep
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultLogQueue
	}
	l := &EventLog{
		cfg:    cfg,
		queue:  make(chan *dpi.Event, cfg.Queue),
		reopen: make(chan chan error),
		done:   make(chan struct{}),
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), logDirMode); err != nil {
		return nil, fmt.Errorf("verdict log %s: cannot create its directory: %w", cfg.Path, err)
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	go l.run()
	return l, nil
}

// Emit queues ev for writing and reports whether it was accepted. ev must
// not be modified afterwards.
func (l *EventLog) Emit(ev *dpi.Event) bool {
	select {
	case l.queue <- ev:
		return true
	default:
		l.dropped.Add(1)
		return false
	}
}

// Reopen closes and reopens the live file, for logrotate's SIGHUP.
func (l *EventLog) Reopen() error {
	ch := make(chan error, 1)
	select {
	case l.reopen <- ch:
		return <-ch
	case <-l.done:
		return errors.New("event log: closed")
	}
}

// Stats returns the log's counters.
func (l *EventLog) Stats() EventLogStats {
	return EventLogStats{
		Written:   l.written.Load(),
		Dropped:   l.dropped.Load(),
		Rotations: l.rotations.Load(),
		Errors:    l.errs.Load(),
	}
}

// Close writes what is queued and closes the file. Emit must not be called
// after Close.
func (l *EventLog) Close() error {
	l.closing.Do(func() { close(l.queue) })
	<-l.done
	return nil
}

func (l *EventLog) run() {
	defer close(l.done)
	tick := time.NewTicker(logFlushInterval)
	defer tick.Stop()
	for {
		select {
		case ev, ok := <-l.queue:
			if !ok {
				l.closeFile()
				return
			}
			l.write(ev)
		case <-tick.C:
			l.flush()
		case ch := <-l.reopen:
			l.closeFile()
			ch <- l.open()
		}
	}
}

func (l *EventLog) closeFile() {
	l.flush()
	if l.f != nil {
		_ = l.f.Close()
	}
	l.f, l.w = nil, nil
}

func (l *EventLog) write(ev *dpi.Event) {
	b, err := json.Marshal(ev)
	if err != nil {
		l.errs.Add(1)
		return
	}
	b = append(b, '\n')
	if l.cfg.MaxBytes > 0 && l.size > 0 && l.size+int64(len(b)) > l.cfg.MaxBytes {
		l.rotate()
	}
	if l.w == nil {
		l.errs.Add(1)
		return
	}
	if _, err := l.w.Write(b); err != nil {
		l.errs.Add(1)
		return
	}
	l.size += int64(len(b))
	l.written.Add(1)
}

func (l *EventLog) flush() {
	if l.w != nil && l.w.Flush() != nil {
		l.errs.Add(1)
	}
}

// rotate shifts eve.json.N-1 → eve.json.N … eve.json → eve.json.1 and opens
// a new live file. Renames keep every written event in some file; the
// oldest file beyond Keep is the only one removed.
func (l *EventLog) rotate() {
	l.closeFile()
	_ = os.Remove(fmt.Sprintf("%s.%d", l.cfg.Path, l.cfg.Keep))
	for i := l.cfg.Keep - 1; i >= 1; i-- {
		_ = os.Rename(fmt.Sprintf("%s.%d", l.cfg.Path, i), fmt.Sprintf("%s.%d", l.cfg.Path, i+1))
	}
	if err := os.Rename(l.cfg.Path, l.cfg.Path+".1"); err != nil {
		l.errs.Add(1)
	}
	if err := l.open(); err != nil {
		l.errs.Add(1)
		return
	}
	l.rotations.Add(1)
}

func (l *EventLog) open() error {
	f, err := os.OpenFile(l.cfg.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, logFileMode)
	if err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("event log: %w", err)
	}
	l.f, l.w, l.size = f, bufio.NewWriterSize(f, 64<<10), st.Size()
	return nil
}
