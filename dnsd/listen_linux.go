package dnsd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// sockOpts is the setup of a server socket beyond IP_FREEBIND, which all
// get (the address may not be up yet, or an IPv6 one still in DAD).
type sockOpts struct {
	// reusePort: one of the group of UDP sockets sharing the address.
	reusePort bool
	// bigBuffer: a larger receive buffer, for a UDP reader.
	bigBuffer bool
	// pktinfo: each datagram says which interface it arrived on.
	pktinfo bool
	// device: SO_BINDTODEVICE, so that the kernel hands the socket
	// nothing that arrived on another interface.
	device string
}

// control returns the socket setup of a server socket on addr.
func (o sockOpts) control(addr netip.AddrPort) func(string, string, syscall.RawConn) error {
	reusePort, bigBuffer := o.reusePort, o.bigBuffer
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			s := int(fd)
			if addr.Addr().Is6() {
				if err := unix.SetsockoptInt(s, unix.SOL_IPV6, unix.IPV6_FREEBIND, 1); err != nil {
					// Kernels before 4.15 only know the IPv4 option,
					// which IPv6 sockets honour too.
					if err := unix.SetsockoptInt(s, unix.SOL_IP, unix.IP_FREEBIND, 1); err != nil {
						serr = fmt.Errorf("IPV6_FREEBIND: %w", err)
						return
					}
				}
			} else if err := unix.SetsockoptInt(s, unix.SOL_IP, unix.IP_FREEBIND, 1); err != nil {
				serr = fmt.Errorf("IP_FREEBIND: %w", err)
				return
			}
			if reusePort {
				if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
					serr = fmt.Errorf("SO_REUSEPORT: %w", err)
					return
				}
			}
			if o.device != "" {
				if err := unix.SetsockoptString(s, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, o.device); err != nil {
					serr = fmt.Errorf("SO_BINDTODEVICE %s: %w", o.device, err)
					return
				}
			}
			if o.pktinfo {
				var err error
				if addr.Addr().Is6() {
					err = unix.SetsockoptInt(s, unix.SOL_IPV6, unix.IPV6_RECVPKTINFO, 1)
				} else {
					err = unix.SetsockoptInt(s, unix.SOL_IP, unix.IP_PKTINFO, 1)
				}
				if err != nil {
					serr = fmt.Errorf("packet info: %w", err)
					return
				}
			}
			if bigBuffer {
				// FORCE passes net.core.rmem_max when we have
				// CAP_NET_ADMIN; otherwise the kernel caps the plain
				// option, which is still better than the default.
				if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf) != nil {
					unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}

func udpNet(a netip.AddrPort) string {
	if a.Addr().Is4() {
		return "udp4"
	}
	return "udp6"
}

// probeUDP binds addr without SO_REUSEPORT and lets it go: it fails if any
// other socket holds the port, even one that would have shared it with
// our SO_REUSEPORT group (another vnetd, say).
func probeUDP(ctx context.Context, addr netip.AddrPort) error {
	lc := net.ListenConfig{Control: sockOpts{}.control(addr)}
	pc, err := lc.ListenPacket(ctx, udpNet(addr), addr.String())
	if err != nil {
		return err
	}
	return pc.Close()
}

// listenUDP opens a reader's socket; its datagrams carry the interface
// they arrived on, which the reader checks.
func listenUDP(ctx context.Context, addr netip.AddrPort, reusePort bool) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: sockOpts{reusePort: reusePort, bigBuffer: true, pktinfo: true}.control(addr)}
	pc, err := lc.ListenPacket(ctx, udpNet(addr), addr.String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// listenTCP opens a listener that accepts connections arriving on device
// only: the kernel answers the others with a reset. (Unlike the UDP
// readers', its drops are not counted, but then a connection costs a
// handshake the client cannot spoof.)
func listenTCP(ctx context.Context, addr netip.AddrPort, device string) (net.Listener, error) {
	network := "tcp4"
	if addr.Addr().Is6() {
		network = "tcp6"
	}
	lc := net.ListenConfig{Control: sockOpts{device: device}.control(addr)}
	return lc.Listen(ctx, network, addr.String())
}
