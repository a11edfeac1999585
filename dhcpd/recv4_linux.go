package dhcpd

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// datagramBatch4 reads what waits on the server's UDP socket: it waits for
// the first datagram and takes those behind it without waiting, up to its
// size, so that their replies go out together.
type datagramBatch4 struct {
	rc   syscall.RawConn
	bufs [][]byte
	lens []int
	n    int
	err  error
	// readFn is made once: a closure made per call would allocate.
	readFn func(fd uintptr) bool
}

func newDatagramBatch4(c net.PacketConn, size int) *datagramBatch4 {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	b := &datagramBatch4{rc: rc, bufs: make([][]byte, size), lens: make([]int, size)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, maxPacket4)
	}
	b.readFn = func(fd uintptr) bool {
		for b.n < len(b.bufs) {
			// The sender's address is not needed: replies go by the
			// request's fields.
			m, err := unix.Read(int(fd), b.bufs[b.n])
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return b.n > 0 // nothing yet: wait until readable
			case err != nil:
				if b.n == 0 {
					b.err = err
				}
				return true // the error comes back on the next read
			}
			b.lens[b.n] = m
			b.n++
		}
		return true
	}
	return b
}

// read waits for datagrams and returns how many it holds.
func (b *datagramBatch4) read() (int, error) {
	b.n, b.err = 0, nil
	if err := b.rc.Read(b.readFn); err != nil {
		return 0, err
	}
	return b.n, b.err
}

// datagram is the i-th datagram of the last read, valid until the next.
func (b *datagramBatch4) datagram(i int) []byte { return b.bufs[i][:b.lens[i]] }
