package dhcpd

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// link6 sends answers as frames on the bridge, for clients the kernel has
// no route to: a guest whose Solicit comes from a global address outside
// the network's prefix (a stale one, or one it configured itself). The
// server's socket is bound to the bridge, so Linux looks for a route on
// the bridge only and fails with ENETUNREACH; neither IPV6_PKTINFO nor a
// scope id changes that for a global destination, so the packet is built
// here and sent to the client's solicited-node group, as neighbour
// discovery reaches it.
type link6 struct {
	ifindex int
	// pkt is an AF_PACKET socket that receives nothing (protocol 0);
	// probe a UDP socket on the bridge that finds the source address the
	// kernel would use. Both are made by openLink6, in the namespace of
	// the bridge, which later callers' threads need not be in.
	pkt, probe int

	mu  sync.Mutex // guards buf; the serving loop and the replier share it
	buf []byte
}

// openLink6 opens the sockets of a link6 on the bridge (name, ifindex).
func openLink6(bridge string, ifindex int) (*link6, error) {
	pkt, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	probe, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		unix.Close(pkt)
		return nil, fmt.Errorf("UDP socket: %w", err)
	}
	if err := unix.BindToDevice(probe, bridge); err != nil {
		unix.Close(pkt)
		unix.Close(probe)
		return nil, fmt.Errorf("SO_BINDTODEVICE %s: %w", bridge, err)
	}
	return &link6{ifindex: ifindex, pkt: pkt, probe: probe}, nil
}

// send sends payload from the server's port to dst:port on the bridge.
func (l *link6) send(payload []byte, dst netip.Addr, port int) error {
	if !dst.Is6() || !dst.IsGlobalUnicast() {
		// Not a client's address (link-local ones are routed): the
		// kernel's refusal stands.
		return unix.ENETUNREACH
	}
	src, err := l.source()
	if err != nil {
		return err
	}
	to := unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Ifindex: int32(l.ifindex), Halen: 6}
	p := (*[2]byte)(unsafe.Pointer(&to.Protocol)) // network byte order
	p[0], p[1] = unix.ETH_P_IPV6>>8, unix.ETH_P_IPV6&0xff
	mac := solicitedNodeMAC6(dst)
	copy(to.Addr[:], mac[:])
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = appendPacket6(l.buf[:0], src, dst, serverPort6, uint16(port), payload)
	for {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(l.pkt), uintptr(unsafe.Pointer(unsafe.SliceData(l.buf))), uintptr(len(l.buf)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&to)), unsafe.Sizeof(to))
		if e != unix.EINTR {
			if e != 0 {
				return e
			}
			return nil
		}
	}
}

var errNoLinkLocal6 = errors.New("the bridge has no usable link-local address")

// source is the address the kernel would answer from on the bridge: the
// one it picks for ff02::1 there, the bridge's link-local address. It is
// asked every time (a connect and a getsockname) rather than kept, since
// the bridge's address may change and this path is rare.
func (l *link6) source() (netip.Addr, error) {
	to := unix.SockaddrInet6{Port: clientPort6, ZoneId: uint32(l.ifindex), Addr: netip.IPv6LinkLocalAllNodes().As16()}
	if err := unix.Connect(l.probe, &to); err != nil {
		return netip.Addr{}, fmt.Errorf("choosing a source address: %w", err)
	}
	sa, err := unix.Getsockname(l.probe)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("choosing a source address: %w", err)
	}
	in6, ok := sa.(*unix.SockaddrInet6)
	if !ok {
		return netip.Addr{}, errNoLinkLocal6
	}
	a := netip.AddrFrom16(in6.Addr)
	if !a.IsLinkLocalUnicast() {
		return netip.Addr{}, errNoLinkLocal6
	}
	return a, nil
}

func (l *link6) close() {
	if l == nil {
		return
	}
	unix.Close(l.pkt)
	unix.Close(l.probe)
}
