package dhcpd

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenUDP4 binds UDP port 67 on bridge only: SO_BINDTODEVICE, so that it
// neither hears nor answers other interfaces, and SO_REUSEADDR so that the
// servers of several networks each bind 0.0.0.0:67 on their own bridge.
func listenUDP4(ctx context.Context, bridge string) (net.PacketConn, error) {
	lc := net.ListenConfig{
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
					return
				}
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, bridge)
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	return lc.ListenPacket(ctx, "udp4", "0.0.0.0:67")
}
