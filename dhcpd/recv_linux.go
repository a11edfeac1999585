package dhcpd

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// datagramBatch reads what waits on a server's UDP socket: it waits for the
// first datagram and takes those behind it without waiting, up to its
// size, so that they are served in one go and their answers leave
// together. Reading, deciding and answering in one goroutine cost less
// than handing each datagram to a worker, which woke a second thread, on
// another CPU, every few packets.
type datagramBatch struct {
	rc    syscall.RawConn
	bufs  [][]byte
	lens  []int
	peers []netip.Addr
	n     int
	err   error
	// readFn is made once: a closure made per call would allocate.
	readFn func(fd uintptr) bool
}

// newDatagramBatch reads from c (nil if c has no descriptor) into size
// buffers of bufLen bytes.
func newDatagramBatch(c syscall.Conn, size, bufLen int) *datagramBatch {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	b := &datagramBatch{rc: rc, bufs: make([][]byte, size), lens: make([]int, size), peers: make([]netip.Addr, size)}
	var from unix.RawSockaddrInet6 // large enough for either family
	b.readFn = func(fd uintptr) bool {
		for b.n < len(b.bufs) {
			// Made when first needed: the servers of hundreds of idle
			// networks hold one buffer each, not a batch.
			if b.bufs[b.n] == nil {
				b.bufs[b.n] = make([]byte, bufLen)
			}
			buf := b.bufs[b.n]
			fromLen := uint32(unsafe.Sizeof(from))
			// recvfrom(2) straight: the syscall package allocates the
			// sender's address for every datagram.
			r, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)), 0,
				uintptr(unsafe.Pointer(&from)), uintptr(unsafe.Pointer(&fromLen)))
			switch e {
			case 0:
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return b.n > 0 // nothing yet: wait until readable
			default:
				if b.n == 0 {
					b.err = e
				}
				return true // an error after datagrams comes back next time
			}
			b.lens[b.n], b.peers[b.n] = int(r), sockaddrIP(&from)
			b.n++
		}
		return true
	}
	return b
}

func sockaddrIP(sa *unix.RawSockaddrInet6) netip.Addr {
	switch sa.Family {
	case unix.AF_INET6:
		return netip.AddrFrom16(sa.Addr)
	case unix.AF_INET:
		return netip.AddrFrom4((*unix.RawSockaddrInet4)(unsafe.Pointer(sa)).Addr)
	}
	return netip.Addr{}
}

// read waits for datagrams and returns how many it holds.
func (b *datagramBatch) read() (int, error) {
	b.n, b.err = 0, nil
	if err := b.rc.Read(b.readFn); err != nil {
		return 0, err
	}
	return b.n, b.err
}

// datagram is the i-th datagram of the last read and its sender, valid
// until the next read.
func (b *datagramBatch) datagram(i int) ([]byte, netip.Addr) {
	return b.bufs[i][:b.lens[i]], b.peers[i]
}
