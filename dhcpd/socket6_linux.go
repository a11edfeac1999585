package dhcpd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// allDHCPAgents6 is All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
var allDHCPAgents6 = netip.MustParseAddr("ff02::1:2")

// listen6 opens the server socket: UDP [::]:547 bound to the bridge
// (SO_BINDTODEVICE, SO_REUSEADDR), member of ff02::1:2 on it.
func listen6(ctx context.Context, bridge string, ifindex int) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
				serr = fmt.Errorf("SO_REUSEADDR: %w", err)
				return
			}
			if err := unix.BindToDevice(int(fd), bridge); err != nil {
				serr = fmt.Errorf("SO_BINDTODEVICE %s: %w", bridge, err)
				return
			}
			growReceiveBuffer(int(fd))
		})
		if err != nil {
			return err
		}
		return serr
	}}
	addr := fmt.Sprintf("[::]:%d", serverPort6)
	pc, err := lc.ListenPacket(ctx, "udp6", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot bind UDP %s on bridge %s: %w", addr, bridge, err)
	}
	conn := pc.(*net.UDPConn)
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("UDP %s on bridge %s: %w", addr, bridge, err)
	}
	var jerr error
	err = raw.Control(func(fd uintptr) {
		mreq := &unix.IPv6Mreq{Interface: uint32(ifindex), Multiaddr: allDHCPAgents6.As16()}
		jerr = unix.SetsockoptIPv6Mreq(int(fd), unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq)
	})
	if err == nil {
		err = jerr
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("cannot join %s on bridge %s: %w", allDHCPAgents6, bridge, err)
	}
	return conn, nil
}
