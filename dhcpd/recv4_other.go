//go:build !linux

package dhcpd

import "net"

// newDatagramBatch4 is nil: each datagram is read on its own.
func newDatagramBatch4(net.PacketConn, int) *datagramBatch4 { return nil }

type datagramBatch4 struct{}

func (*datagramBatch4) read() (int, error)  { return 0, nil }
func (*datagramBatch4) datagram(int) []byte { return nil }
