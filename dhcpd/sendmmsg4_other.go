//go:build !linux

package dhcpd

import (
	"net"
	"syscall"
)

func batchSender(interface {
	SyscallConn() (syscall.RawConn, error)
}, int) func([][]byte, []net.HardwareAddr) []error {
	return nil
}
