package dataplane

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/deepwall/deepwall/internal/nsexec"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ifreqPtr is struct ifreq with its union used as a pointer (40 bytes on
// 64-bit Linux). The pointer field keeps the ioctl's data alive and in
// place for the call.
type ifreqPtr struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

type ethtoolValue struct {
	cmd  uint32
	data uint32
}

type ethtoolChannels struct {
	cmd                                         uint32
	maxRx, maxTx, maxOther, maxCombined         uint32
	rxCount, txCount, otherCount, combinedCount uint32
}

func ethtoolIoctl(fd int, ifname string, data unsafe.Pointer) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", ifname)
	}
	var ifr ifreqPtr
	copy(ifr.name[:], ifname)
	ifr.data = data
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ifr)
	if e != 0 {
		return e
	}
	return nil
}

// ethtoolGet reads a legacy ethtool value (ETHTOOL_GGRO, ETHTOOL_GTXCSUM…).
func ethtoolGet(fd int, ifname string, cmd uint32) (uint32, error) {
	v := &ethtoolValue{cmd: cmd}
	if err := ethtoolIoctl(fd, ifname, unsafe.Pointer(v)); err != nil {
		return 0, fmt.Errorf("ethtool get %#x on %s: %w", cmd, ifname, err)
	}
	return v.data, nil
}

// ethtoolSet writes a legacy ethtool value (ETHTOOL_SGRO, ETHTOOL_STXCSUM…).
func ethtoolSet(fd int, ifname string, cmd, val uint32) error {
	v := &ethtoolValue{cmd: cmd, data: val}
	if err := ethtoolIoctl(fd, ifname, unsafe.Pointer(v)); err != nil {
		return fmt.Errorf("ethtool set %#x=%d on %s: %w", cmd, val, ifname, err)
	}
	return nil
}

// rxQueues returns how many rx queues ifname has, from ETHTOOL_GCHANNELS
// (combined channels count as rx queues); ok is false when the driver does
// not report channels.
func rxQueues(fd int, ifname string) (n int, ok bool) {
	c := &ethtoolChannels{cmd: unix.ETHTOOL_GCHANNELS}
	if err := ethtoolIoctl(fd, ifname, unsafe.Pointer(c)); err != nil {
		return 0, false
	}
	n = int(max(c.rxCount, c.combinedCount))
	return n, n > 0
}

// RxQueues is rxQueues for iface in the network namespace ns (package
// wire records the old veth's count for the new pair).
func RxQueues(ns netns.NsHandle, iface string) (n int, ok bool) {
	fd, err := socketIn(ns)
	if err != nil {
		return 0, false
	}
	defer unix.Close(fd)
	return rxQueues(fd, iface)
}

// socketIn opens a datagram socket in the network namespace ns, for ioctls
// on that namespace's devices.
func socketIn(ns netns.NsHandle) (int, error) {
	fd := -1
	err := nsexec.Do(ns, func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return fmt.Errorf("socket in netns: %w", err)
		}
		return nil
	})
	return fd, err
}
