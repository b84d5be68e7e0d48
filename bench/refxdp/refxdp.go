// Package refxdp is the reference the benchmarks compare deepwall with: a
// plain in-kernel XDP forwarder that redirects every frame entering a port
// to another port through a devmap, with no parsing, no ACL, no flow state
// and no user space. Whatever deepwall costs on top of this is the price of
// its own work.
//
// Nothing is pinned: closing the Forwarder detaches it.
package refxdp

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Forwarder is the loaded reference program and the ports it is attached to.
type Forwarder struct {
	objs  refxdpObjects
	prog  *ebpf.Program // the variant Attach uses
	mu    sync.Mutex
	links map[int]link.Link
}

// Load loads the program and its devmap; it attaches nothing.
func Load() (*Forwarder, error) { return loadVariant(false) }

// LoadFrags is Load for the multi-buffer variant (SEC("xdp.frags")): the
// same forwarder, declared able to take frames that span several buffers.
// A veth accepts it when its peer's MTU exceeds what fits in a page
// (jumbo frames), where it refuses the plain one; like the plain one, it
// takes TSO away from the peer (BenchmarkVethGSO, TestPrivilegedFrags…).
func LoadFrags() (*Forwarder, error) { return loadVariant(true) }

func loadVariant(frags bool) (*Forwarder, error) {
	f := &Forwarder{links: map[int]link.Link{}}
	if err := loadRefxdpObjects(&f.objs, nil); err != nil {
		return nil, fmt.Errorf("load refxdp: %w", err)
	}
	f.prog = f.objs.RefxdpRedirect
	if frags {
		f.prog = f.objs.RefxdpRedirectFrags
	}
	return f, nil
}

// Program returns the XDP program Attach uses, for BPF_PROG_TEST_RUN; it
// stays owned by f.
func (f *Forwarder) Program() *ebpf.Program { return f.prog }

// Attach makes every frame received on in leave on out: it writes the
// devmap entry and attaches the program to in (native XDP). Forwarding both
// ways takes Attach(a, b) and Attach(b, a). Like every ifindex-based call it
// runs in the calling thread's network namespace.
func (f *Forwarder) Attach(in, out int) error {
	if in <= 0 || out <= 0 {
		return fmt.Errorf("refxdp attach %d → %d: invalid ifindex", in, out)
	}
	if err := f.objs.RefPeers.Update(uint32(in), uint32(out), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("refxdp attach %d → %d: devmap: %w", in, out, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.links[in]; ok {
		return nil
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: f.prog, Interface: in, Flags: link.XDPDriverMode})
	if err != nil {
		return fmt.Errorf("refxdp attach %d → %d: %w", in, out, err)
	}
	f.links[in] = l
	return nil
}

// Close detaches every port and releases the program.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for in, l := range f.links {
		errs = append(errs, l.Close())
		delete(f.links, in)
	}
	errs = append(errs, f.objs.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("refxdp close: %w", err)
	}
	return nil
}
