//go:build !linux

package dhcpd

import (
	"context"
	"errors"
	"net"
)

func listenUDP4(context.Context, string) (net.PacketConn, error) {
	return nil, errors.New("the DHCPv4 server needs Linux (SO_BINDTODEVICE)")
}
