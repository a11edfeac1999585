package dhcpd

import (
	"net"

	"github.com/vishvananda/netlink"
)

// bridgeInterface looks the bridge up with one netlink request for that
// link. net.InterfaceByName dumps every link of the namespace instead: with
// hundreds of networks and a thousand ports, each server start then cost
// megabytes of garbage and milliseconds, quadratic in the number of links.
func bridgeInterface(name string) (*net.Interface, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, err
	}
	a := l.Attrs()
	return &net.Interface{Index: a.Index, MTU: a.MTU, Name: a.Name, HardwareAddr: a.HardwareAddr, Flags: a.Flags}, nil
}
