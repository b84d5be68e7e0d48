package dataplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Why deepwall changes a port's peer (measured on veth; docs/architecture.md
// lists the facts):
const (
	reasonGRO = "an XDP redirect into a veth is delivered only if the receiving peer has NAPI; " +
		"GRO on gives it NAPI, otherwise every redirected frame is dropped"
	reasonTxCsum = "with TX checksum offload the peer hands over CHECKSUM_PARTIAL packets whose " +
		"checksums are never filled in after an XDP redirect or an AF_XDP round trip, so the receiver drops them"
)

// peer is the far end of a port's veth, possibly in another namespace.
type peer struct {
	port    string
	ifindex int
	name    string
	ns      netns.NsHandle // open handle on the peer's namespace
	nsDesc  string         // where it was found, for logs
	nsInode uint64
}

func (p *peer) close() {
	if p.ns.IsOpen() {
		p.ns.Close()
	}
}

// findPeer locates the veth peer of port: IFLA_LINK gives its ifindex and
// IFLA_LINK_NETNSID the namespace id as seen from self, which is matched
// against every namespace that has a name (/run/netns) or a process
// (/proc/*/ns/net) with GetNetNsIdByFd.
func findPeer(h *netlink.Handle, self netns.NsHandle, port string) (*peer, error) {
	l, err := h.LinkByName(port)
	if err != nil {
		return nil, fmt.Errorf("find peer of %s: %w", port, err)
	}
	if l.Type() != "veth" {
		return nil, fmt.Errorf("find peer of %s (%s): %w", port, l.Type(), ErrNotVeth)
	}
	a := l.Attrs()
	p := &peer{port: port, ifindex: a.ParentIndex}
	if p.ifindex <= 0 {
		return nil, fmt.Errorf("find peer of %s: no IFLA_LINK: %w", port, ErrPeerNamespace)
	}
	if a.NetNsID < 0 {
		// Same namespace as the port.
		fd, err := unix.Dup(int(self))
		if err != nil {
			return nil, fmt.Errorf("find peer of %s: %w", port, err)
		}
		p.ns, p.nsDesc = netns.NsHandle(fd), "(the port's own)"
	} else if p.ns, p.nsDesc, err = nsByID(h, a.NetNsID); err != nil {
		return nil, fmt.Errorf("find peer of %s (nsid %d): %w", port, a.NetNsID, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(p.ns), &st); err == nil {
		p.nsInode = st.Ino
	}
	ph, err := netlink.NewHandleAt(p.ns)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("find peer of %s: netlink in %s: %w", port, p.nsDesc, err)
	}
	defer ph.Close()
	pl, err := ph.LinkByIndex(p.ifindex)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("find peer of %s: ifindex %d in %s: %w", port, p.ifindex, p.nsDesc, err)
	}
	p.name = pl.Attrs().Name
	return p, nil
}

// maxNSCandidates bounds the namespace scan.
const maxNSCandidates = 65536

// nsByID finds the namespace whose id, as seen through h, is nsid.
func nsByID(h *netlink.Handle, nsid int) (netns.NsHandle, string, error) {
	var paths []string
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range entries {
			paths = append(paths, filepath.Join("/run/netns", e.Name()))
		}
	}
	if entries, err := os.ReadDir("/proc"); err == nil {
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err == nil {
				paths = append(paths, filepath.Join("/proc", e.Name(), "ns", "net"))
			}
		}
	}
	seen := map[[2]uint64]bool{}
	for i, path := range paths {
		if i >= maxNSCandidates {
			break
		}
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			continue // process gone, or not a namespace file
		}
		id := [2]uint64{st.Dev, st.Ino}
		if seen[id] {
			continue
		}
		seen[id] = true
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		got, err := h.GetNetNsIdByFd(fd)
		if err == nil && got == nsid {
			return netns.NsHandle(fd), path, nil
		}
		unix.Close(fd)
	}
	return netns.None(), "", ErrPeerNamespace
}

// peerSettings are the peer offloads deepwall manages.
type peerSettings struct {
	GRO    *bool `json:"gro,omitempty"`
	TxCsum *bool `json:"tx_checksum,omitempty"`
}

// peerRecord is one prepared peer and the settings it had before deepwall
// changed them (only the changed ones are recorded).
type peerRecord struct {
	Port        string       `json:"port"`
	Peer        string       `json:"peer"`
	PeerIfindex int          `json:"peer_ifindex"`
	NetnsInode  uint64       `json:"netns_inode"`
	Original    peerSettings `json:"original"`
}

// portState is what deepwall changed on the pair's peers, kept in a file so
// that a restarted agent still knows the original settings when it detaches.
type portState struct {
	Peers []peerRecord `json:"peers"`
}

func (s *portState) find(port string, ifindex int, inode uint64) *peerRecord {
	for i := range s.Peers {
		r := &s.Peers[i]
		if r.Port == port && r.PeerIfindex == ifindex && r.NetnsInode == inode {
			return r
		}
	}
	return nil
}

// stateFile names the file for a pair: one per pin dir, so two pairs never
// share one.
func stateFile(dir, pinDir string) string {
	name := strings.ReplaceAll(strings.Trim(filepath.Clean(pinDir), "/"), "/", "_")
	return filepath.Join(dir, name+".ports.json")
}

func loadState(path string) (*portState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &portState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read port state: %w", err)
	}
	var s portState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse port state %s: %w", path, err)
	}
	return &s, nil
}

func saveState(path string, s *portState) error {
	if len(s.Peers) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove port state: %w", err)
		}
		return nil
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode port state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save port state: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save port state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save port state: %w", err)
	}
	return nil
}

// feature is one offload deepwall manages on a peer.
type feature struct {
	name     string
	get, set uint32
	want     bool
	reason   string
	orig     func(*peerSettings) **bool
}

var peerFeatures = []feature{
	{"gro", unix.ETHTOOL_GGRO, unix.ETHTOOL_SGRO, true, reasonGRO, func(s *peerSettings) **bool { return &s.GRO }},
	{"tx-checksumming", unix.ETHTOOL_GTXCSUM, unix.ETHTOOL_STXCSUM, false, reasonTxCsum, func(s *peerSettings) **bool { return &s.TxCsum }},
}

// preparePeer makes the peer of a port fit for the XDP and AF_XDP paths
// and records in st what it changed.
func preparePeer(log *slog.Logger, p *peer, st *portState) error {
	fd, err := socketIn(p.ns)
	if err != nil {
		return fmt.Errorf("prepare peer %s of %s: %w", p.name, p.port, err)
	}
	defer unix.Close(fd)
	rec := st.find(p.port, p.ifindex, p.nsInode)
	if rec == nil {
		st.Peers = append(st.Peers, peerRecord{Port: p.port, Peer: p.name, PeerIfindex: p.ifindex, NetnsInode: p.nsInode})
		rec = &st.Peers[len(st.Peers)-1]
	}
	for _, f := range peerFeatures {
		v, err := ethtoolGet(fd, p.name, f.get)
		if err != nil {
			return fmt.Errorf("prepare peer %s of %s: %w", p.name, p.port, err)
		}
		cur := v != 0
		if cur == f.want {
			log.Debug("port peer already set", "port", p.port, "peer", p.name, "netns", p.nsDesc, "feature", f.name, "on", cur)
			continue
		}
		if err := ethtoolSet(fd, p.name, f.set, b2u(f.want)); err != nil {
			return fmt.Errorf("prepare peer %s of %s: %w", p.name, p.port, err)
		}
		if v, err := ethtoolGet(fd, p.name, f.get); err != nil || (v != 0) != f.want {
			return fmt.Errorf("prepare peer %s of %s: %s still %v after setting it", p.name, p.port, f.name, v != 0)
		}
		if o := f.orig(&rec.Original); *o == nil { // an earlier agent's original wins
			*o = &cur
		}
		log.Info("changed port peer offload", "port", p.port, "peer", p.name, "netns", p.nsDesc,
			"feature", f.name, "from", cur, "to", f.want, "reason", f.reason)
	}
	return nil
}

// restorePeer puts back what preparePeer changed on a peer.
func restorePeer(log *slog.Logger, p *peer, rec *peerRecord) error {
	fd, err := socketIn(p.ns)
	if err != nil {
		return fmt.Errorf("restore peer %s of %s: %w", p.name, p.port, err)
	}
	defer unix.Close(fd)
	var errs []error
	for _, f := range peerFeatures {
		o := *f.orig(&rec.Original)
		if o == nil {
			continue
		}
		if err := ethtoolSet(fd, p.name, f.set, b2u(*o)); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("restored port peer offload", "port", p.port, "peer", p.name, "netns", p.nsDesc, "feature", f.name, "to", *o)
	}
	return errors.Join(errs...)
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
