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
				growReceiveBuffer(int(fd))
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	return lc.ListenPacket(ctx, "udp4", "0.0.0.0:67")
}

// receiveBuffer is the socket receive buffer a DHCP server asks for. The
// default (about 200 kB, a few hundred requests) overflows during a GC
// pause or a burst of clients at boot; the requests lost are retried by
// the clients only seconds later.
const receiveBuffer = 4 << 20

// growReceiveBuffer raises fd's receive buffer beyond net.core.rmem_max
// when allowed (CAP_NET_ADMIN), else up to it. Best effort: a small buffer
// only costs retransmissions.
func growReceiveBuffer(fd int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, receiveBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, receiveBuffer)
	}
}
