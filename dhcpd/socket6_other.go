//go:build !linux

package dhcpd

import (
	"context"
	"errors"
	"net"
	"net/netip"
)

var allDHCPAgents6 = netip.MustParseAddr("ff02::1:2")

func listen6(context.Context, string, int) (*net.UDPConn, error) {
	return nil, errors.New("the DHCPv6 server needs Linux (SO_BINDTODEVICE)")
}
