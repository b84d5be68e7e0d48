package eve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// Limits of reading the log.
const (
	MaxLine        = 1 << 20 // longer lines are skipped by Last and Follow
	followInterval = 200 * time.Millisecond
	tailChunk      = 64 << 10
)

// A Record is one line of the log and the event it holds.
type Record struct {
	Line  []byte // without the newline
	Event *Event
}

// decode reads line and reports whether keep (nil: all) accepts it;
// lines that are not events are skipped.
func decode(line []byte, keep func(*Event) bool) (*Event, bool) {
	var ev Event
	if err := json.Unmarshal(line, &ev); err != nil {
		return nil, false
	}
	if keep != nil && !keep(&ev) {
		return nil, false
	}
	return &ev, true
}

// Last returns the last n records of f that keep accepts (all for n ==
// 0), oldest first, and the offset after the last complete line (the
// writer may be in the middle of the next one). keep nil accepts all.
func Last(f *os.File, n int, keep func(*Event) bool) ([]Record, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	br := &backLines{f: f, off: st.Size()}
	end, err := br.start()
	if err != nil {
		return nil, 0, err
	}
	var recs []Record
	for n == 0 || len(recs) < n {
		line, ok, err := br.prev()
		if err != nil {
			return nil, 0, err
		}
		if !ok {
			break
		}
		if ev, ok := decode(line, keep); ok {
			recs = append(recs, Record{Line: line, Event: ev})
		}
	}
	slices.Reverse(recs)
	return recs, end, nil
}

// backLines reads a file's complete lines from the end backwards.
type backLines struct {
	f     *os.File
	off   int64  // file offset of buf[0]
	buf   []byte // unread bytes, ending at a line end
	chunk int    // bytes read at a time; tailChunk when 0
}

// start drops the incomplete last line and returns where complete lines end.
func (b *backLines) start() (int64, error) {
	size := b.off
	for b.off > 0 {
		if err := b.fill(); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(b.buf, '\n'); i >= 0 {
			b.buf = b.buf[:i+1]
			return b.off + int64(i) + 1, nil
		}
		if len(b.buf) > MaxLine {
			b.buf = b.buf[:0]
		}
	}
	_ = size
	b.buf = nil
	return 0, nil
}

// fill prepends the chunk before buf.
func (b *backLines) fill() error {
	chunk := b.chunk
	if chunk <= 0 {
		chunk = tailChunk
	}
	step := min(int64(chunk), b.off)
	data := make([]byte, step, int(step)+len(b.buf))
	if _, err := b.f.ReadAt(data, b.off-step); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	b.off -= step
	b.buf = append(data, b.buf...)
	return nil
}

// prev returns the line before the ones returned so far, without its
// newline; lines longer than MaxLine are skipped.
func (b *backLines) prev() ([]byte, bool, error) {
	for {
		body := bytes.TrimSuffix(b.buf, []byte("\n"))
		if i := bytes.LastIndexByte(body, '\n'); i >= 0 {
			line := body[i+1:]
			b.buf = body[:i+1]
			if len(line) > MaxLine {
				continue
			}
			return line, true, nil
		}
		if b.off == 0 {
			b.buf = nil
			if len(body) == 0 || len(body) > MaxLine {
				return nil, false, nil
			}
			return body, true, nil
		}
		if len(body) > MaxLine {
			// Too long to keep: forget it and skip to its start.
			for b.off > 0 {
				b.buf = nil
				if err := b.fill(); err != nil {
					return nil, false, err
				}
				if i := bytes.LastIndexByte(b.buf, '\n'); i >= 0 {
					b.buf = b.buf[:i+1]
					break
				}
			}
			continue
		}
		if err := b.fill(); err != nil {
			return nil, false, err
		}
	}
}

// Follow calls fn with every record keep accepts that is appended to f
// after pos, until ctx ends; a record's Line is valid during the call. When the path
// names a new file (rotation) the old one is read to its end first, then
// the new one from its start; a file that shrank (copytruncate) is read
// again from its start.
func Follow(ctx context.Context, path string, f *os.File, pos int64, keep func(*Event) bool, fn func(Record)) error {
	if _, err := f.Seek(pos, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(f, 64<<10)
	var partial []byte
	drain := func() error {
		for {
			line, err := r.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				partial = append(partial, line...)
				if len(partial) > MaxLine {
					partial = partial[:0]
					// Skip the rest of this line.
					for errors.Is(err, bufio.ErrBufferFull) {
						_, err = r.ReadSlice('\n')
					}
				}
				continue
			}
			if len(line) > 0 && line[len(line)-1] == '\n' {
				full := line
				if len(partial) > 0 {
					full = append(partial, line...)
					partial = partial[:0]
				}
				line := bytes.TrimSuffix(full, []byte("\n"))
				if ev, ok := decode(line, keep); ok {
					fn(Record{Line: line, Event: ev})
				}
				continue
			}
			partial = append(partial, line...) // incomplete: the writer is mid-line
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	for {
		if err := drain(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur, err := f.Stat()
		if err != nil {
			return err
		}
		next, err := os.Stat(path)
		switch {
		case err != nil:
			continue // between rename and create: keep the old file
		case !os.SameFile(cur, next):
			if err := drain(); err != nil {
				return err
			}
			// Several rotations may have happened since the last look: the
			// old file is now path.K; path.K-1 … path.1 came after it.
			files := filesAfter(path, cur)
			if len(files) == 0 {
				continue
			}
			for i, nf := range files {
				f.Close()
				f = nf
				r.Reset(f)
				partial = partial[:0]
				if i < len(files)-1 {
					if err := drain(); err != nil {
						for _, g := range files[i+1:] {
							g.Close()
						}
						return err
					}
				}
			}
		default:
			off, _ := f.Seek(0, io.SeekCurrent)
			if cur.Size() < off-int64(r.Buffered()) {
				_, _ = f.Seek(0, io.SeekStart)
				r.Reset(f)
				partial = partial[:0]
			}
		}
	}
}

// maxRotated bounds the rotated files looked at when following.
const maxRotated = 1000

// filesAfter opens the files written after old, oldest first, the live
// file last. With old now at path.K that is path.K-1 … path.1, path. A
// rotation while it looks shows up as a file seen twice or a missing
// name; it then looks again. When old is gone (deleted, or renamed some
// other way) only the live file is returned.
func filesAfter(path string, old os.FileInfo) []*os.File {
	for range 50 {
		if files, ok := snapshotAfter(path, old); ok {
			return files
		}
		time.Sleep(10 * time.Millisecond)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	return []*os.File{f}
}

func snapshotAfter(path string, old os.FileInfo) ([]*os.File, bool) {
	var opened []*os.File
	var infos []os.FileInfo
	fail := func() ([]*os.File, bool) {
		for _, f := range opened {
			f.Close()
		}
		return nil, false
	}
	for k := 0; k <= maxRotated; k++ {
		name := path
		if k > 0 {
			name = fmt.Sprintf("%s.%d", path, k)
		}
		f, err := os.Open(name)
		if err != nil {
			return fail()
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fail()
		}
		if os.SameFile(fi, old) {
			f.Close()
			slices.Reverse(opened)
			return opened, true
		}
		for _, seen := range infos {
			if os.SameFile(fi, seen) {
				f.Close()
				return fail()
			}
		}
		opened, infos = append(opened, f), append(infos, fi)
	}
	return fail()
}
