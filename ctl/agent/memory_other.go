//go:build !linux || !cgo

package agent

// trimCHeap: without glibc there is no malloc_trim; the C heap keeps
// what its allocator keeps.
func trimCHeap() {}
