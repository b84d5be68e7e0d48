//go:build linux && cgo

package agent

// #include <malloc.h>
import "C"

// trimCHeap hands the free memory of every glibc malloc arena back to
// the kernel (malloc_trim), where Hyperscan allocates its databases,
// scratch and compiler state.
func trimCHeap() { C.malloc_trim(0) }
