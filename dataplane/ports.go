package dataplane

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/vnetd/vnetd/conf"
)

// This file is the pure half of the host side of network ports: what a port
// device must look like before the kernel is asked. The kernel calls are in
// ports_linux.go.

// ErrNoSuchLink is returned (wrapped) by LinkIndex for a device that does not
// exist, and by AttachPort when the port device or the bridge is missing.
var ErrNoSuchLink = errors.New("no such network device")

// PortLink is the host end of a port plugged into a bridge: a tap device the
// daemon created, or an existing device (a veth end, a tap created by the
// hypervisor) that is attached as it is.
type PortLink struct {
	// Bridge is the bridge to enslave the device to (plug type network or
	// bridge).
	Bridge string
	// Name is the port's device: existing for an attach, created by CreateTap
	// for a tap.
	Name string
	// MAC is the guest's MAC, for the static FDB entry of macTableManager
	// 'libvirt'; unused otherwise.
	MAC net.HardwareAddr
	// MTU is the network's <mtu>; 0 leaves the device's MTU as it is.
	MTU int
	// Isolated is <port isolated='yes'>: the bridge port's isolated flag
	// (IFLA_BRPORT_ISOLATED), so the port talks only to non-isolated ports.
	Isolated bool
	// MACTableLibvirt is macTableManager='libvirt': learning and unicast
	// flooding off on the port, and a static FDB entry (master, static) for
	// MAC on the bridge instead.
	MACTableLibvirt bool
}

// TapOptions are the properties of a tap made by CreateTap.
type TapOptions struct {
	// Owner is the uid allowed to attach to the tap without CAP_NET_ADMIN
	// (TUNSETOWNER); -1: none, only privileged processes may.
	Owner int
	// MultiQueue makes a multi-queue tap (IFF_MULTI_QUEUE), for
	// <driver queues='N'>; the hypervisor must open it the same way.
	MultiQueue bool
	// VnetHdr is IFF_VNET_HDR: frames carry a virtio-net header, which vhost
	// and QEMU's virtio-net offloads need.
	VnetHdr bool
	// MAC is the tap's own address; nil lets the kernel pick a random one.
	// libvirt uses the guest's MAC with its first byte set to 0xFE
	// (HostTapMAC), so that the tap never has the lowest MAC on a bridge and
	// a host bridge without a fixed MAC does not take its address from it.
	MAC net.HardwareAddr
}

// HostTapMAC is libvirt's MAC for the host end of a guest's tap: the guest's
// MAC with the first byte replaced by 0xFE (virNetDevTapCreateInBridgePort).
// The result is a new slice; nil for anything but a 6-byte MAC.
func HostTapMAC(guest net.HardwareAddr) net.HardwareAddr {
	if len(guest) != 6 {
		return nil
	}
	mac := make(net.HardwareAddr, 6)
	copy(mac, guest)
	mac[0] = 0xfe
	return mac
}

// maxIfName is the longest interface name the kernel takes (IFNAMSIZ - 1).
const maxIfName = 15

// CheckLinkName refuses names the kernel would refuse or interpret (dev_valid_name),
// and name templates ("vnet%d"): every device here is named by the caller.
func CheckLinkName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("no %s name", what)
	case len(name) > maxIfName:
		return fmt.Errorf("%s name %q is longer than %d characters", what, name, maxIfName)
	case name == "." || name == "..":
		return fmt.Errorf("%s name %q is not a valid device name", what, name)
	case strings.ContainsAny(name, "/:% \t\n\r\v\f"):
		return fmt.Errorf("%s name %q contains '/', ':', '%%' or white space", what, name)
	}
	return nil
}

// checkMAC requires a 6-byte unicast MAC.
func checkMAC(mac net.HardwareAddr) error {
	switch {
	case len(mac) != 6:
		return fmt.Errorf("MAC %q is not a 6-byte Ethernet address", mac.String())
	case mac[0]&1 != 0:
		return fmt.Errorf("MAC %s is a multicast address", mac)
	}
	return nil
}

// String names the port in errors: "port DEV on bridge BR".
func (pl PortLink) String() string {
	if pl.Bridge == "" {
		return "port " + pl.Name
	}
	return "port " + pl.Name + " on bridge " + pl.Bridge
}

// check validates pl before AttachPort touches anything.
func (pl PortLink) check() error {
	if err := CheckLinkName("port device", pl.Name); err != nil {
		return fmt.Errorf("%s: %w", pl, err)
	}
	if err := CheckLinkName("bridge", pl.Bridge); err != nil {
		return fmt.Errorf("%s: %w", pl, err)
	}
	if pl.Name == pl.Bridge {
		return fmt.Errorf("%s: a bridge cannot be its own port", pl)
	}
	if pl.MTU < 0 || pl.MTU > math.MaxInt32 {
		return fmt.Errorf("%s: MTU %d out of range", pl, pl.MTU)
	}
	if pl.MACTableLibvirt {
		if err := checkMAC(pl.MAC); err != nil {
			return fmt.Errorf("%s: macTableManager='libvirt' needs the guest's MAC: %w", pl, err)
		}
	}
	return nil
}

// check validates the tap options.
func (o TapOptions) check() error {
	if o.Owner < -1 || int64(o.Owner) >= math.MaxUint32 {
		// (uid_t)-1 is the kernel's "no owner" and cannot be set.
		return fmt.Errorf("owner uid %d out of range (-1 for none)", o.Owner)
	}
	if o.MAC != nil {
		if err := checkMAC(o.MAC); err != nil {
			return err
		}
	}
	return nil
}

// macvlanMode is the kernel's mode for a <forward>/<plug> macvtap mode.
// libvirt's "passthrough" is the kernel's "passthru": the macvtap takes the
// parent device whole (the parent goes promiscuous and only one macvtap may
// sit on it).
func macvlanMode(m conf.MacvtapMode) (netlink.MacvlanMode, error) {
	switch m {
	case conf.MacvtapVEPA:
		return netlink.MACVLAN_MODE_VEPA, nil
	case conf.MacvtapPrivate:
		return netlink.MACVLAN_MODE_PRIVATE, nil
	case conf.MacvtapBridge:
		return netlink.MACVLAN_MODE_BRIDGE, nil
	case conf.MacvtapPassthrough:
		return netlink.MACVLAN_MODE_PASSTHRU, nil
	}
	return 0, fmt.Errorf("macvtap mode %s is not vepa, private, bridge or passthrough", m)
}
