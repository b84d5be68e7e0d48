package testutil

import (
	"bytes"
	"sync"
)

// maxBuffer is how much of a process's output a Buffer keeps.
const maxBuffer = 1 << 20

// Buffer collects a process's output while a test reads it (failure
// messages, lines it waits for): safe for one writer and concurrent
// readers; it keeps the first MiB.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > maxBuffer {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
