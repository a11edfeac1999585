package dnsd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// sockopts returns the socket setup of a server socket on addr: IP_FREEBIND
// (the address may not be up yet, or an IPv6 one still in DAD), and
// SO_REUSEPORT for the group of UDP sockets that share the address.
func sockopts(addr netip.AddrPort, reusePort, bigBuffer bool) func(string, string, syscall.RawConn) error {
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
	lc := net.ListenConfig{Control: sockopts(addr, false, false)}
	pc, err := lc.ListenPacket(ctx, udpNet(addr), addr.String())
	if err != nil {
		return err
	}
	return pc.Close()
}

func listenUDP(ctx context.Context, addr netip.AddrPort, reusePort bool) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: sockopts(addr, reusePort, true)}
	pc, err := lc.ListenPacket(ctx, udpNet(addr), addr.String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

func listenTCP(ctx context.Context, addr netip.AddrPort) (net.Listener, error) {
	network := "tcp4"
	if addr.Addr().Is6() {
		network = "tcp6"
	}
	lc := net.ListenConfig{Control: sockopts(addr, false, false)}
	return lc.Listen(ctx, network, addr.String())
}
