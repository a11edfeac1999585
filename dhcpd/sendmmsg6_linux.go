package dhcpd

import (
	"errors"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpBatch6 sends a batch of DHCPv6 answers with one sendmmsg on the
// server's UDP socket, to the clients' port on the bridge.
type udpBatch6 struct {
	port  int    // the clients'
	scope uint32 // the bridge's index, for link-local clients
	b     *mmsgBatch[unix.RawSockaddrInet6]
	// link sends the answers the kernel has no route for (nil: none go).
	link *link6
}

// newSender6 is udpBatch6.send on conn to the clients' port on the bridge
// of index ifindex, falling back to link; nil if conn has no descriptor.
func newSender6(conn *net.UDPConn, ifindex int, link *link6) func([]out6) []error {
	if b := newUDPBatch6(conn, clientPort6, ifindex); b != nil {
		b.link = link
		return b.send
	}
	return nil
}

func newUDPBatch6(conn *net.UDPConn, port, scope int) *udpBatch6 {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil
	}
	return &udpBatch6{port: port, scope: uint32(scope), b: newMmsgBatch[unix.RawSockaddrInet6](rc)}
}

// send sends each answer to its client and returns each one's error (nil:
// sent), valid until the next call.
func (u *udpBatch6) send(outs []out6) []error {
	u.b.start(len(outs))
	for i, o := range outs {
		u.b.put(i, o.b, sockaddr6(o.to, u.port, u.scope))
	}
	errs := u.b.flush()
	if u.link != nil {
		for i, err := range errs {
			if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
				errs[i] = u.link.send(outs[i].b, outs[i].to, u.port)
			}
		}
	}
	return errs
}

// sockaddr6 is struct sockaddr_in6 of a ip:port; the scope (interface
// index) matters for link-local addresses only.
func sockaddr6(ip netip.Addr, port int, scope uint32) unix.RawSockaddrInet6 {
	sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16(), Scope_id: scope}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port)) // network byte order
	p[0], p[1] = byte(port>>8), byte(port)
	return sa
}
