//go:build !linux

package dhcpd

import (
	"net/netip"
	"syscall"
)

// newDatagramBatch is nil: each datagram is read on its own.
func newDatagramBatch(syscall.Conn, int, int) *datagramBatch { return nil }

type datagramBatch struct{}

func (*datagramBatch) read() (int, error)                { return 0, nil }
func (*datagramBatch) datagram(int) ([]byte, netip.Addr) { return nil, netip.Addr{} }
