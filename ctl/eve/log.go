package eve

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
)

// Defaults of the verdict log.
const (
	DefaultPath     = "/var/log/deepwall/eve.json"
	DefaultMaxBytes = 100 << 20 // rotate past 100 MiB
	DefaultKeep     = 5         // eve.json.1 … eve.json.5
	DefaultQueue    = 1 << 16   // events buffered between the packet path and the writer
	// DirMode is the mode of the directory the logs are created in (the
	// agent's audit log shares it).
	DirMode          = 0o750
	fileMode         = 0o640
	logFlushInterval = 200 * time.Millisecond
)

// Config configures a Log.
type Config struct {
	Path     string // the live file, e.g. /var/log/deepwall/eve.json
	MaxBytes int64  // rotate when the live file would grow past this; 0 = DefaultMaxBytes, <0 = never
	Keep     int    // rotated files kept; 0 = DefaultKeep
	Queue    int    // events in flight; 0 = DefaultQueue
	// CommunityIDSeed is the seed of the events' Community ID (0, the
	// standard's default, unless every sensor of a site uses another).
	CommunityIDSeed uint16
	// Outputs are where events go besides the file (syslog, a unix
	// stream socket), each with its own bounded queue.
	Outputs []Output
	// Tap, when set, is called by the writer with each event before it
	// is written (the Kubernetes controller's Events on pods). It runs on
	// the writer's goroutine: it must not block, and must not keep or
	// modify ev.
	Tap func(ev *Event)
}

// Stats are the counters `deepwall status` reports.
type Stats struct {
	Written   uint64 // events written to a file
	Dropped   uint64 // events refused because the writer fell behind
	Rotations uint64
	Errors    uint64 // write errors (the event is counted here, not in Written)
	Outputs   []OutputStats
}

// Log writes verdict events as JSON lines. Emit never blocks: when
// the queue is full the event is counted in Dropped, so a slow disk can
// never stall the packet path and no loss goes unreported.
type Log struct {
	cfg     Config
	queue   chan *Event
	reopen  chan chan error
	done    chan struct{}
	closing sync.Once
	outs    []*output

	written, dropped, rotations, errs atomic.Uint64

	// Owned by the writer goroutine.
	f    *os.File
	w    *bufio.Writer
	size int64
}

// Open creates the log's directory and file and starts the writer.
// It fails (naming the path) when the file cannot be written, before any
// packet is handled.
func Open(cfg Config) (*Log, error) {
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	l := &Log{
		cfg:    cfg,
		queue:  make(chan *Event, cfg.Queue),
		reopen: make(chan chan error),
		done:   make(chan struct{}),
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), DirMode); err != nil {
		return nil, fmt.Errorf("verdict log %s: cannot create its directory: %w", cfg.Path, err)
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	for _, o := range cfg.Outputs {
		l.outs = append(l.outs, newOutput(o))
	}
	go l.run()
	return l, nil
}

// Emit queues ev for writing and reports whether it was accepted. ev must
// not be modified afterwards.
func (l *Log) Emit(ev *Event) bool {
	select {
	case l.queue <- ev:
		return true
	default:
		l.dropped.Add(1)
		return false
	}
}

// Reopen closes and reopens the live file, for logrotate's SIGHUP.
func (l *Log) Reopen() error {
	ch := make(chan error, 1)
	select {
	case l.reopen <- ch:
		return <-ch
	case <-l.done:
		return errors.New("event log: closed")
	}
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	st := Stats{
		Written:   l.written.Load(),
		Dropped:   l.dropped.Load(),
		Rotations: l.rotations.Load(),
		Errors:    l.errs.Load(),
	}
	for _, o := range l.outs {
		st.Outputs = append(st.Outputs, o.stats())
	}
	return st
}

// Close writes what is queued and closes the file. Emit must not be called
// after Close.
func (l *Log) Close() error {
	l.closing.Do(func() {
		close(l.queue)
		<-l.done
		for _, o := range l.outs {
			o.close()
		}
	})
	<-l.done
	return nil
}

func (l *Log) run() {
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

func (l *Log) closeFile() {
	l.flush()
	if l.f != nil {
		_ = l.f.Close()
	}
	l.f, l.w = nil, nil
}

func (l *Log) write(ev *Event) {
	ev.SetCommunityID(l.cfg.CommunityIDSeed)
	b, err := json.Marshal(ev)
	if err != nil {
		l.errs.Add(1)
		return
	}
	b = append(b, '\n')
	if l.cfg.Tap != nil {
		l.cfg.Tap(ev)
	}
	for _, o := range l.outs {
		o.offer(ev, b)
	}
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

func (l *Log) flush() {
	if l.w != nil && l.w.Flush() != nil {
		l.errs.Add(1)
	}
}

// rotate shifts eve.json.N-1 → eve.json.N … eve.json → eve.json.1 and opens
// a new live file. Renames keep every written event in some file; the
// oldest file beyond Keep is the only one removed.
func (l *Log) rotate() {
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

func (l *Log) open() error {
	f, err := os.OpenFile(l.cfg.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, fileMode)
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
