package tftpd

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// bindToDevice returns the socket setup that makes a socket take only the
// packets that arrive on the interface dev (SO_BINDTODEVICE), as dnsmasq's
// interface= does: the bridge address is reachable from other interfaces
// too (a neighbour on the uplink routing through the host), and those
// clients must get nothing. dev "" leaves the socket unbound.
func bindToDevice(dev string) func(string, string, syscall.RawConn) error {
	if dev == "" {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if err := unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev); err != nil {
				serr = fmt.Errorf("binding to %s: %w", dev, err)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
