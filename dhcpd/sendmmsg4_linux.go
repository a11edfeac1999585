package dhcpd

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// frameBatch sends a chunk of replies with one sendmmsg on the packet
// socket: at thousands of replies a second, one sendto each was a fifth
// of the server's CPU. It is used by the replier goroutine only.
type frameBatch struct {
	rc      syscall.RawConn
	ifindex int32
	hdrs    []mmsghdr
	iovs    []unix.Iovec
	names   []unix.RawSockaddrLinklayer
	errs    []error
	sent    int
	sendFn  func(fd uintptr) bool
}

func newFrameBatch(rc syscall.RawConn, ifindex int) *frameBatch {
	b := &frameBatch{rc: rc, ifindex: int32(ifindex)}
	// Made once: a closure made per call would allocate.
	b.sendFn = func(fd uintptr) bool {
		for b.sent < len(b.hdrs) {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[b.sent])), uintptr(len(b.hdrs)-b.sent), 0, 0, 0)
			switch e {
			case 0:
				b.sent += int(r)
			case unix.EAGAIN:
				return false // wait until the socket is writable
			case unix.EINTR:
			default:
				// This frame cannot go: report it, send the others.
				b.errs[b.sent] = e
				b.sent++
			}
		}
		return true
	}
	return b
}

// send sends frames[i] to macs[i] and returns each one's error (nil: sent).
func (b *frameBatch) send(frames [][]byte, macs []net.HardwareAddr) []error {
	n := len(frames)
	b.hdrs, b.iovs, b.names = resize(b.hdrs, n), resize(b.iovs, n), resize(b.names, n)
	b.errs = resize(b.errs, n)
	for i, f := range frames {
		b.errs[i] = nil
		b.names[i] = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Ifindex: b.ifindex, Halen: 6}
		copy(b.names[i].Addr[:], macs[i])
		b.iovs[i].Base = &f[0]
		b.iovs[i].SetLen(len(f))
		b.hdrs[i] = mmsghdr{}
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.hdrs[i].hdr.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
	}
	b.sent = 0
	if err := b.rc.Write(b.sendFn); err != nil {
		for i := b.sent; i < n; i++ {
			b.errs[i] = err
		}
	}
	// The frames are the callers'; do not keep them reachable.
	clear(b.iovs)
	return b.errs
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// batchSender is frameBatch.send on raw, nil if raw has no descriptor.
func batchSender(raw interface {
	SyscallConn() (syscall.RawConn, error)
}, ifindex int) func([][]byte, []net.HardwareAddr) []error {
	rc, err := raw.SyscallConn()
	if err != nil {
		return nil
	}
	return newFrameBatch(rc, ifindex).send
}
