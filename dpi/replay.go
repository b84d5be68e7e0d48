package dpi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/decode"
	"github.com/deepwall/deepwall/dpi/pcapio"
)

// FrameReader is a source of captured frames; *pcapio.Reader is one.
// Next returns io.EOF after the last frame.
type FrameReader interface {
	Next() (pcapio.Frame, error)
}

// Summary describes an offline inspection.
type Summary struct {
	Frames, Bytes      uint64
	Forwarded, Dropped uint64
	Flows              uint64
	// Apps counts flows by identified application protocol.
	Apps map[string]uint64
	// Alerts counts alert events by rule, most frequent first.
	Alerts []SignatureCount
	// Drops counts dropped frames by reason.
	Drops map[string]uint64
	// First and Last are the capture times of the first and last frame.
	First, Last time.Time
	// Elapsed is the time the inspection took.
	Elapsed time.Duration
}

// SignatureCount is the number of alert events of one rule.
type SignatureCount struct {
	ID        uint32
	Signature string
	Count     uint64
}

// replayBatch is the number of frames handed to a worker at once when
// several workers replay a capture.
const replayBatch = 256

// Replay feeds every frame of r to an offline engine (Config.Offline),
// then ends every flow so that their events are emitted, and returns what
// happened. Frames go to worker Key.Hash() % Workers, as the dataplane
// dispatches them; with several workers the order of events between flows
// depends on scheduling. A read error stops the replay after the frames
// before it were inspected and flows were flushed; it is returned as is
// (a *pcapio.Error names the file and the record).
func Replay(e *Engine, r FrameReader) (Summary, error) {
	return ReplayContext(context.Background(), e, r)
}

// ReplayContext is Replay stopping when ctx is done: the frames read until
// then are inspected and their flows ended, as at the end of a capture, and
// the error names ctx's cause and how far the replay got. A caller whose
// reader may block (a pipe) closes it when ctx is done; the read error that
// follows is reported as the interruption.
func ReplayContext(ctx context.Context, e *Engine, r FrameReader) (Summary, error) {
	start := time.Now()
	before := e.Stats()
	src := &replaySource{r: r, done: ctx.Done()}
	if e.Workers() == 1 {
		var fr dataplane.Frame
		for f, ok := src.next(); ok; f, ok = src.next() {
			fr = dataplane.Frame{Data: f.Data, Timestamp: f.Timestamp.UnixNano()}
			e.Inspect(0, &fr)
		}
	} else {
		replayParallel(e, src)
	}
	e.Flush()
	after := e.Stats()
	s := Summary{
		Frames: src.frames, Bytes: after.Bytes - before.Bytes,
		Forwarded: after.Forwarded - before.Forwarded, Dropped: after.Dropped - before.Dropped,
		Flows: after.FlowsCreated - before.FlowsCreated,
		Apps:  map[string]uint64{}, Drops: map[string]uint64{},
		First: src.first, Last: src.last, Elapsed: time.Since(start),
	}
	for k, v := range after.Apps {
		if d := v - before.Apps[k]; d > 0 {
			s.Apps[k] = d
		}
	}
	for k, v := range after.Drops {
		if d := v - before.Drops[k]; d > 0 {
			s.Drops[k] = d
		}
	}
	set := e.Rules().Set
	for id, v := range after.Signatures {
		if d := v - before.Signatures[id]; d > 0 {
			sc := SignatureCount{ID: id, Count: d, Signature: "rule " + strconv.FormatUint(uint64(id), 10)}
			if r := set.Rule(id); r != nil {
				sc.Signature = signature(r)
			}
			s.Alerts = append(s.Alerts, sc)
		}
	}
	slices.SortFunc(s.Alerts, func(a, b SignatureCount) int {
		if a.Count != b.Count {
			return int(b.Count) - int(a.Count)
		}
		return int(a.ID) - int(b.ID)
	})
	if ctx.Err() != nil && (src.stopped || src.err != nil) {
		// A read error after ctx was done is the reader being closed
		// to stop waiting for data.
		src.err = fmt.Errorf("interrupted after %d frames: %w", src.frames, context.Cause(ctx))
	}
	return s, src.err
}

// replaySource reads a capture, noting what the Summary reports of it.
type replaySource struct {
	r           FrameReader
	first, last time.Time
	frames      uint64
	err         error // the read error that ended the capture (not io.EOF)
	done        <-chan struct{}
	stopped     bool // done was closed before the end of the capture
}

// next returns the next frame, or false at the end of the capture or once
// done is closed.
func (s *replaySource) next() (pcapio.Frame, bool) {
	select {
	case <-s.done:
		s.stopped = true
		return pcapio.Frame{}, false
	default:
	}
	f, err := s.r.Next()
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.err = err
		}
		return f, false
	}
	if s.frames == 0 {
		s.first = f.Timestamp
	}
	s.last = f.Timestamp
	s.frames++
	return f, true
}

// replayParallel dispatches frames to one goroutine per worker.
func replayParallel(e *Engine, src *replaySource) {
	n := e.Workers()
	type batch []dataplane.Frame
	chans := make([]chan batch, n)
	var wg sync.WaitGroup
	for i := range chans {
		chans[i] = make(chan batch, 4)
		wg.Add(1)
		go func(w int, in chan batch) {
			defer wg.Done()
			for b := range in {
				for j := range b {
					e.Inspect(w, &b[j])
				}
			}
		}(i, chans[i])
	}
	open := make([]batch, n)
	dec := decode.NewDecoder()
	var p decode.Packet
	for f, ok := src.next(); ok; f, ok = src.next() {
		w := 0
		if dec.Decode(f.Data, &p) == nil {
			w = p.Key.Worker(n)
		}
		open[w] = append(open[w], dataplane.Frame{Data: f.Data, Timestamp: f.Timestamp.UnixNano()})
		if len(open[w]) == replayBatch {
			chans[w] <- open[w]
			open[w] = make(batch, 0, replayBatch)
		}
	}
	for w, b := range open {
		if len(b) > 0 {
			chans[w] <- b
		}
		close(chans[w])
	}
	wg.Wait()
}
