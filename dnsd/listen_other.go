//go:build !linux

package dnsd

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
)

var errUnsupported = errors.New("the DNS server needs Linux (IP_FREEBIND, SO_REUSEPORT), not " + runtime.GOOS)

func probeUDP(context.Context, netip.AddrPort) error { return errUnsupported }

func listenUDP(context.Context, netip.AddrPort, bool) (*net.UDPConn, error) {
	return nil, errUnsupported
}

func listenTCP(context.Context, netip.AddrPort, string) (net.Listener, error) {
	return nil, errUnsupported
}
