package wire

import (
	"runtime"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// rxQueues returns the rx queues iface has in use (ETHTOOL_GCHANNELS),
// which is what the dataplane compares between a pair's ports: a veth's
// netlink attributes give the maximum, not the count in use.
func rxQueues(ns netns.NsHandle, iface string) (n int, ok bool) {
	if len(iface) >= unix.IFNAMSIZ {
		return 0, false
	}
	ch := struct {
		cmd                                         uint32
		maxRx, maxTx, maxOther, maxCombined         uint32
		rxCount, txCount, otherCount, combinedCount uint32
	}{cmd: unix.ETHTOOL_GCHANNELS}
	ifr := struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte
	}{data: unsafe.Pointer(&ch)}
	copy(ifr.name[:], iface)
	err := inNS(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
		runtime.KeepAlive(&ifr)
		if e != 0 {
			return e
		}
		return nil
	})
	n = int(max(ch.rxCount, ch.combinedCount))
	return n, err == nil && n > 0
}
