//go:build !linux

package dhcpd

import (
	"errors"
	"net"
)

// newSender6 is nil: each answer goes with its own write.
func newSender6(*net.UDPConn, int, *link6) func([]out6) []error { return nil }

// link6 sends nothing: answers go only where the kernel routes them.
type link6 struct{}

func openLink6(string, int) (*link6, error) { return nil, errors.New("needs Linux (AF_PACKET)") }

func (*link6) close() {}
