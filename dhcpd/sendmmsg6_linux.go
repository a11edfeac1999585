package dhcpd

import (
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr6 is struct mmsghdr of sendmmsg(2).
type mmsghdr6 struct {
	hdr unix.Msghdr
	len uint32
}

// udpBatch6 sends a batch of answers with one sendmmsg on the server's UDP
// socket, to the clients' port on the bridge. One goroutine uses it.
type udpBatch6 struct {
	rc    syscall.RawConn
	port  int    // the clients'
	scope uint32 // the bridge's index, for link-local clients
	hdrs  []mmsghdr6
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	errs  []error
	sent  int
	// sendFn is made once: a closure made per call would allocate.
	sendFn func(fd uintptr) bool
}

// newSender6 is udpBatch6.send on conn to the clients' port on the bridge
// of index ifindex, nil if conn has no descriptor.
func newSender6(conn *net.UDPConn, ifindex int) func([]out6) []error {
	if b := newUDPBatch6(conn, clientPort6, ifindex); b != nil {
		return b.send
	}
	return nil
}

func newUDPBatch6(conn *net.UDPConn, port, scope int) *udpBatch6 {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil
	}
	b := &udpBatch6{rc: rc, port: port, scope: uint32(scope)}
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
				// This answer cannot go: report it, send the others.
				b.errs[b.sent] = e
				b.sent++
			}
		}
		return true
	}
	return b
}

// send sends each answer to its client and returns each one's error (nil:
// sent), valid until the next call.
func (b *udpBatch6) send(outs []out6) []error {
	n := len(outs)
	b.hdrs, b.iovs, b.names = grow6(b.hdrs, n), grow6(b.iovs, n), grow6(b.names, n)
	b.errs = grow6(b.errs, n)
	for i, o := range outs {
		b.errs[i] = nil
		b.names[i] = sockaddr6(o.to, b.port, b.scope)
		b.iovs[i].Base = unsafe.SliceData(o.b)
		b.iovs[i].SetLen(len(o.b))
		b.hdrs[i] = mmsghdr6{}
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
	// The answers are the caller's; do not keep them reachable.
	clear(b.iovs)
	return b.errs
}

// sockaddr6 is struct sockaddr_in6 of a ip:port; the scope (interface
// index) matters for link-local addresses only.
func sockaddr6(ip netip.Addr, port int, scope uint32) unix.RawSockaddrInet6 {
	sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16(), Scope_id: scope}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port)) // network byte order
	p[0], p[1] = byte(port>>8), byte(port)
	return sa
}

func grow6[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
