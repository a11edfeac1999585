package dnsd

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A reader takes up to batchSize datagrams per recvmmsg and sends the fast
// path's answers with one sendmmsg: at a few hundred thousand queries per
// second the system calls, not the answers, are the cost.
const (
	batchSize = 32
	// slotSize bounds a query read through the batch; a longer datagram
	// is truncated by the kernel and dropped as malformed (no real query
	// comes near it: EDNS0 clients keep theirs well under 1232 bytes).
	slotSize = 4096
	// ctrlSize holds the one control message asked for, IP_PKTINFO or
	// IPV6_PKTINFO (40 bytes on 64-bit), with room to spare.
	ctrlSize = 64
	// loopbackIndex is lo's index in every network namespace: what
	// arrives on it comes from the host itself.
	loopbackIndex = 1
)

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// batch is the memory the kernel reads into and sends from. It lives on
// the heap with the worker, so the pointers handed to the kernel stay
// valid.
type batch struct {
	rc     syscall.RawConn
	in     []byte // slots slots of slotSize
	slots  int    // read per recvmmsg: grows to batchSize under load
	full   bool   // the last read filled every slot
	names  [batchSize]unix.RawSockaddrInet6
	ctrl   [batchSize][ctrlSize]byte
	iovs   [batchSize]unix.Iovec
	hdrs   [batchSize]mmsghdr
	out    []byte // the answers, one after the other
	spans  [batchSize][2]int
	ohdrs  [batchSize]mmsghdr
	oiovs  [batchSize]unix.Iovec
	n      int // datagrams read; answers to send
	sent   int
	err    error
	recvFn func(fd uintptr) bool
	sendFn func(fd uintptr) bool
}

func newBatch(rc syscall.RawConn) *batch {
	b := &batch{rc: rc}
	b.grow(1)
	// Made once: a closure made per call would allocate.
	b.recvFn = func(fd uintptr) bool {
		for i := range b.hdrs {
			b.hdrs[i].hdr.Namelen = uint32(unsafe.Sizeof(b.names[i]))
			b.hdrs[i].hdr.SetControllen(ctrlSize)
			b.hdrs[i].hdr.Flags = 0
		}
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(b.slots), 0, 0, 0)
		switch e {
		case 0:
			b.n, b.err = int(r), nil
			b.full = b.n == b.slots
		case unix.EAGAIN:
			return false // wait until the socket is readable
		case unix.EINTR:
			b.n, b.err = 0, nil
		default:
			b.n, b.err = 0, e
		}
		return true
	}
	b.sendFn = func(fd uintptr) bool {
		for b.sent < b.n {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.ohdrs[b.sent])), uintptr(b.n-b.sent), 0, 0, 0)
			switch e {
			case 0:
				b.sent += int(r)
			case unix.EAGAIN:
				return false
			case unix.EINTR:
			default:
				// This answer cannot go (its client's route went away,
				// a firewall): skip it, send the others.
				b.err = e
				b.sent++
			}
		}
		return true
	}
	return b
}

// grow makes room for n datagrams per read. A reader starts with one slot
// and doubles when a read fills them all: an idle network's readers then
// hold 4 KiB each instead of 128 KiB, and a busy one reaches full batches
// after a few reads.
func (b *batch) grow(n int) {
	b.slots, b.full = min(n, batchSize), false
	b.in = make([]byte, b.slots*slotSize)
	for i := range b.slots {
		b.iovs[i].Base = &b.in[i*slotSize]
		b.iovs[i].SetLen(slotSize)
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.hdrs[i].hdr.Control = &b.ctrl[i][0]
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
	}
}

// from decodes the source address of datagram i.
func (b *batch) from(i int) netip.AddrPort {
	raw := (*[unsafe.Sizeof(unix.RawSockaddrInet6{})]byte)(unsafe.Pointer(&b.names[i]))
	port := binary.BigEndian.Uint16(raw[2:])
	switch b.names[i].Family {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[4:8])), port)
	case unix.AF_INET6:
		a := netip.AddrFrom16(b.names[i].Addr)
		if id := b.names[i].Scope_id; id != 0 && a.IsLinkLocalUnicast() {
			a = a.WithZone(strconv.FormatUint(uint64(id), 10))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// run reads and answers in batches until the socket closes.
func (w *worker) run() {
	defer w.wg.Done()
	rc, err := w.conn.SyscallConn()
	if err != nil {
		w.h.log.Error("DNS reader cannot start", "err", err)
		return
	}
	b := newBatch(rc)
	for {
		if b.full && b.slots < batchSize {
			b.grow(2 * b.slots)
		}
		if err := b.rc.Read(b.recvFn); err != nil {
			if errors.Is(err, net.ErrClosed) || w.ctx.Err() != nil {
				return
			}
			b.err = err
		}
		if b.err != nil {
			w.h.lim.Log(w.h.log, slog.LevelWarn, "DNS read failed", "err", b.err)
			b.err = nil
			continue
		}
		b.out = b.out[:0]
		k := 0
		for i := range b.n {
			h := &b.hdrs[i]
			if h.hdr.Flags&unix.MSG_TRUNC != 0 {
				w.st.malformed.Add(1)
				continue
			}
			if w.iface != 0 {
				// The socket is bound to an address, and Linux takes a
				// packet for a local address on any interface: a
				// neighbour on the uplink would be served as a guest.
				// Only the bridge (and the host itself) may ask, as
				// with dnsmasq's interface= in libvirt's configuration.
				idx, ok := arrivalIndex(b.ctrl[i][:min(int(h.hdr.Controllen), ctrlSize)])
				if !ok || (idx != w.iface && idx != loopbackIndex) {
					w.st.wrongIface.Add(1)
					w.h.lim.Log(w.h.log, slog.LevelDebug, "DNS query from another interface than the bridge dropped",
						"client", b.from(i), "ifindex", idx)
					continue
				}
			}
			start := len(b.out)
			out := w.answer(b.in[i*slotSize:i*slotSize+int(h.len)], b.from(i), b.out)
			if out == nil {
				continue
			}
			b.out = out
			b.spans[k] = [2]int{start, len(out)}
			b.ohdrs[k].hdr.Name = h.hdr.Name
			b.ohdrs[k].hdr.Namelen = h.hdr.Namelen
			k++
		}
		if k == 0 {
			continue
		}
		// b.out is final now (appending may have moved it): point the
		// answers into it.
		for j := range k {
			sp := b.spans[j]
			b.oiovs[j].Base = &b.out[sp[0]]
			b.oiovs[j].SetLen(sp[1] - sp[0])
			b.ohdrs[j].hdr.Iov = &b.oiovs[j]
			b.ohdrs[j].hdr.SetIovlen(1)
		}
		b.n, b.sent, b.err = k, 0, nil
		if err := b.rc.Write(b.sendFn); err != nil && (errors.Is(err, net.ErrClosed) || w.ctx.Err() != nil) {
			return
		}
		if b.err != nil && w.ctx.Err() == nil {
			w.h.lim.Log(w.h.log, slog.LevelWarn, "cannot send DNS answer", "err", b.err)
			b.err = nil
		}
	}
}

// arrivalIndex returns the index of the interface a datagram arrived on,
// from its IP_PKTINFO or IPV6_PKTINFO control message. It reads the
// buffer in place: it runs for every query.
func arrivalIndex(ctrl []byte) (int, bool) {
	hdrLen := cmsgAlign(unix.SizeofCmsghdr)
	for len(ctrl) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		n := int(h.Len)
		if n < hdrLen || n > len(ctrl) {
			return 0, false
		}
		data := ctrl[hdrLen:n]
		switch {
		case h.Level == unix.SOL_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			return int(int32(binary.NativeEndian.Uint32(data))), true
		case h.Level == unix.SOL_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			return int(binary.NativeEndian.Uint32(data[16:])), true
		}
		ctrl = ctrl[min(cmsgAlign(n), len(ctrl)):]
	}
	return 0, false
}

func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (n + a - 1) &^ (a - 1)
}
