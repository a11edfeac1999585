package dhcpd

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// mmsgBatch sends datagrams with one sendmmsg per batch on a socket whose
// addresses are A (a struct sockaddr_*): at thousands of replies a second,
// one sendto each was a fifth of the server's CPU. One goroutine uses it:
// start, put each datagram, flush.
type mmsgBatch[A any] struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []A
	errs  []error
	sent  int
	// sendFn is made once: a closure made per call would allocate.
	sendFn func(fd uintptr) bool
}

func newMmsgBatch[A any](rc syscall.RawConn) *mmsgBatch[A] {
	b := &mmsgBatch[A]{rc: rc}
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
				// This datagram cannot go: report it, send the others.
				b.errs[b.sent] = e
				b.sent++
			}
		}
		return true
	}
	return b
}

// start readies the batch for n datagrams.
func (b *mmsgBatch[A]) start(n int) {
	b.hdrs, b.iovs, b.names = resize(b.hdrs, n), resize(b.iovs, n), resize(b.names, n)
	b.errs = resize(b.errs, n)
}

// put makes datagram i payload, to the address to.
func (b *mmsgBatch[A]) put(i int, payload []byte, to A) {
	b.errs[i] = nil
	b.names[i] = to
	b.iovs[i].Base = unsafe.SliceData(payload)
	b.iovs[i].SetLen(len(payload))
	b.hdrs[i] = mmsghdr{}
	b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	b.hdrs[i].hdr.Namelen = uint32(unsafe.Sizeof(b.names[i]))
	b.hdrs[i].hdr.Iov = &b.iovs[i]
	b.hdrs[i].hdr.SetIovlen(1)
}

// flush sends the datagrams and returns each one's error (nil: sent),
// valid until the next start.
func (b *mmsgBatch[A]) flush() []error {
	b.sent = 0
	if err := b.rc.Write(b.sendFn); err != nil {
		for i := b.sent; i < len(b.hdrs); i++ {
			b.errs[i] = err
		}
	}
	// The payloads are the caller's; do not keep them reachable.
	clear(b.iovs)
	return b.errs
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
