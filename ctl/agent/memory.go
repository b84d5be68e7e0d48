package agent

import (
	"runtime/debug"
	"time"
)

// reclaimDelay is how long after a rule change the memory it freed is
// given back to the kernel: the engine frees the replaced set once its
// workers have switched (at their next frame, or the next tick every
// tickInterval), so a few ticks later everything is free.
const reclaimDelay = 3 * tickInterval

// reclaimLater gives memory back to the kernel reclaimDelay after the
// last rule change (a burst of changes reclaims once). A change of a
// large set frees hundreds of MB: the replaced Hyperscan databases and
// scratch (C heap), the compiler's temporary C memory, and the Go
// garbage of parsing, serialising and caching the set. Neither heap
// returns that promptly by itself (glibc keeps freed memory of its arenas
// below the top; Go's scavenger returns it slowly and the heap goal lets
// garbage reach the live heap's size), so without this the agent's
// resident size after a few large reloads stays at their peak rather
// than at what the running set needs. mu held.
func (m *ruleManager) reclaimLater() {
	if m.reclaim == nil {
		m.reclaim = time.AfterFunc(reclaimDelay, releaseMemory)
		return
	}
	m.reclaim.Reset(reclaimDelay)
}

// releaseMemory returns the free memory of the Go heap (after a
// collection) and of the C heap to the kernel. It costs a forced
// collection and a pass over the C heap: for after rare, large changes.
func releaseMemory() {
	debug.FreeOSMemory()
	trimCHeap()
}
