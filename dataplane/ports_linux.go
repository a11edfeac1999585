package dataplane

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vnetd/vnetd/conf"
)

// The host side of network ports: taps, their attachment to a bridge, and
// macvtap devices. Like Start, every call must run on a thread inside the
// namespace the Dataplane's handle is bound to: the tap is created through
// /dev/net/tun, which creates it in the calling thread's namespace.

// step names of AttachPort, for the fail hook of tests.
const (
	stepPortMTU    = "port-mtu"
	stepPortMaster = "port-master"
	stepPortFlags  = "port-flags"
	stepPortFDB    = "port-fdb"
	stepPortUp     = "port-up"
)

// Link types (netlink.Link.Type) DeleteLink and DetachPort will delete: the
// devices vnetd creates for ports. Anything else under a port's name (a host
// NIC, a bridge, a veth) is left alone.
const (
	linkTypeTap     = "tuntap"
	linkTypeMacvtap = "macvtap"
)

const tunDevice = "/dev/net/tun"

// tapFlags are the TUNSETIFF flags of a tap: no packet-information header
// (QEMU never wants one) and IFF_TUN_EXCL, so that an existing device of that
// name makes the call fail with EBUSY instead of being opened and, later,
// deleted as ours.
func tapFlags(o TapOptions) uint16 {
	f := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_TUN_EXCL)
	if o.VnetHdr {
		f |= unix.IFF_VNET_HDR
	}
	if o.MultiQueue {
		f |= unix.IFF_MULTI_QUEUE
	}
	return f
}

// fdbEntry is the static FDB entry of macTableManager='libvirt': the guest's
// MAC on the port, in the bridge's table (NTF_MASTER), static (NUD_NOARP:
// never ages out, and unlike NUD_PERMANENT not a local address of the host).
// It is `bridge fdb replace MAC dev PORT master static`. libvirt adds it with
// NUD_REACHABLE, an entry the bridge can age out; with learning off on the
// port nothing would re-add it, so vnetd makes it static.
func fdbEntry(port int, mac net.HardwareAddr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    port,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_NOARP,
		Flags:        netlink.NTF_MASTER,
		HardwareAddr: mac,
	}
}

// CreateTap creates a persistent tap named name, down and attached to
// nothing, for a hypervisor to open later (libvirt's virNetDevTapCreate with
// VIR_NETDEV_TAP_CREATE_PERSIST). It fails if any device of that name
// exists. On failure nothing is left behind.
//
// The tap is made with the /dev/net/tun ioctls directly, as libvirt does
// (the same ioctls netlink.LinkAdd issues for a netlink.Tuntap), rather than
// through LinkAdd: that one always issues TUNSETOWNER and TUNSETGROUP, so a
// tap without an owner would get owner root and group root, letting any
// process with group 0 among its groups open it; and it reports ioctl errors
// as text, so EBUSY for an existing name could not be told apart.
func (d *Dataplane) CreateTap(name string, o TapOptions) error {
	if err := CheckLinkName("tap", name); err != nil {
		return err
	}
	wrap := func(what string, err error) error {
		return fmt.Errorf("tap %s: %s: %w", name, what, err)
	}
	if err := o.check(); err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return wrap("open "+tunDevice, err)
	}
	// Until TUNSETPERSIST succeeds the tap lives only as long as fd: closing
	// it on any failure removes the device.
	defer unix.Close(fd)

	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return wrap("create", err)
	}
	ifr.SetUint16(tapFlags(o))
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return wrap("create", fmt.Errorf("a device of that name already exists: %w", err))
		}
		return wrap("create (TUNSETIFF)", err)
	}
	if o.Owner >= 0 {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOWNER, o.Owner); err != nil {
			return wrap(fmt.Sprintf("set owner %d", o.Owner), err)
		}
	}
	if o.MAC != nil {
		link, err := d.nl.LinkByName(name)
		if err != nil {
			return wrap("look up after create", err)
		}
		if err := d.nl.LinkSetHardwareAddr(link, o.MAC); err != nil {
			return wrap("set MAC "+o.MAC.String(), err)
		}
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		return wrap("make persistent", err)
	}
	return nil
}

// lookup finds a link by name; a missing one is ErrNoSuchLink (wrapped).
func (d *Dataplane) lookup(what, name string) (netlink.Link, error) {
	link, err := d.nl.LinkByName(name)
	if isNotFound(err) {
		return nil, fmt.Errorf("%s %s: %w", what, name, ErrNoSuchLink)
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s %s: %w", what, name, err)
	}
	return link, nil
}

// LinkIndex returns the ifindex of the device name; a missing device is
// ErrNoSuchLink (wrapped).
func (d *Dataplane) LinkIndex(name string) (int, error) {
	link, err := d.lookup("device", name)
	if err != nil {
		return 0, err
	}
	return link.Attrs().Index, nil
}

// AttachPort plugs the existing device pl.Name into the bridge pl.Bridge and
// returns its ifindex. In libvirt's order (virNetDevTapAttachBridge and
// qemuInterfaceStartDevice): MTU, enslave, the port's isolated flag, for
// macTableManager='libvirt' learning and unicast flooding off plus the static
// FDB entry of the guest's MAC, then link up.
//
// The bridge-port flags are set declaratively (isolated to pl.Isolated,
// learning and flooding to !pl.MACTableLibvirt), so AttachPort also re-applies
// them to a port that is already in pl.Bridge, as after a daemon restart. A
// device enslaved to any other master is refused.
//
// On failure what AttachPort did is undone: MTU restored, the device taken
// out of the bridge (its port flags and FDB entries go with it), the FDB entry
// removed. A port that was already in the bridge stays there, with the flags
// as far as they were set.
func (d *Dataplane) AttachPort(pl PortLink) (ifindex int, err error) {
	if err := pl.check(); err != nil {
		return 0, err
	}
	wrap := func(what string, err error) error {
		return fmt.Errorf("%s: %s: %w", pl, what, err)
	}
	link, err := d.lookup("port device", pl.Name)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", pl, err)
	}
	br, err := d.lookup("bridge", pl.Bridge)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", pl, err)
	}
	if t := br.Type(); t != "bridge" {
		return 0, wrap("enslave", fmt.Errorf("%s is a %s, not a bridge", pl.Bridge, t))
	}
	attrs := *link.Attrs()
	brIndex := br.Attrs().Index
	inBridge := attrs.MasterIndex == brIndex
	if attrs.MasterIndex != 0 && !inBridge {
		return 0, wrap("enslave", fmt.Errorf("device already has another master (%s)", d.linkName(attrs.MasterIndex)))
	}

	var undo []func() error
	defer func() {
		if err == nil {
			return
		}
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil && !isNotFound(uerr) {
				err = errors.Join(err, wrap("roll back", uerr))
			}
		}
	}()

	if err := d.step(stepPortMTU); err != nil {
		return 0, wrap(stepPortMTU, err)
	}
	if pl.MTU > 0 && attrs.MTU != pl.MTU {
		if err := d.nl.LinkSetMTU(link, pl.MTU); err != nil {
			return 0, wrap(fmt.Sprintf("set mtu %d", pl.MTU), err)
		}
		old := attrs.MTU
		undo = append(undo, func() error { return d.nl.LinkSetMTU(link, old) })
	}

	if err := d.step(stepPortMaster); err != nil {
		return 0, wrap(stepPortMaster, err)
	}
	if !inBridge {
		if err := d.nl.LinkSetMasterByIndex(link, brIndex); err != nil {
			return 0, wrap("enslave", err)
		}
		undo = append(undo, func() error { return d.nl.LinkSetNoMaster(link) })
	}

	if err := d.step(stepPortFlags); err != nil {
		return 0, wrap(stepPortFlags, err)
	}
	if err := d.nl.LinkSetIsolated(link, pl.Isolated); err != nil {
		return 0, wrap(fmt.Sprintf("set isolated %s", onOff(pl.Isolated)), err)
	}
	if err := d.nl.LinkSetLearning(link, !pl.MACTableLibvirt); err != nil {
		return 0, wrap(fmt.Sprintf("set learning %s", onOff(!pl.MACTableLibvirt)), err)
	}
	if err := d.nl.LinkSetFlood(link, !pl.MACTableLibvirt); err != nil {
		return 0, wrap(fmt.Sprintf("set unicast flooding %s", onOff(!pl.MACTableLibvirt)), err)
	}

	if err := d.step(stepPortFDB); err != nil {
		return 0, wrap(stepPortFDB, err)
	}
	if pl.MACTableLibvirt {
		fdb := fdbEntry(attrs.Index, pl.MAC)
		if err := d.nl.NeighSet(fdb); err != nil {
			return 0, wrap("add static FDB entry "+pl.MAC.String(), err)
		}
		undo = append(undo, func() error { return ignoreENOENT(d.nl.NeighDel(fdb)) })
	}

	if err := d.step(stepPortUp); err != nil {
		return 0, wrap(stepPortUp, err)
	}
	if attrs.Flags&net.FlagUp == 0 {
		if err := d.nl.LinkSetUp(link); err != nil {
			return 0, wrap("set up", err)
		}
	}
	return attrs.Index, nil
}

// DetachPort takes pl.Name out of pl.Bridge: the static FDB entry of
// macTableManager='libvirt' is removed, then the device leaves the bridge;
// with deleteLink the device (a tap vnetd created) is deleted. A missing device
// is not an error. A device whose master is not pl.Bridge is not taken from
// its master (a warning is logged); an empty pl.Bridge means whatever master
// it has. With deleteLink, a device that is not a tap is refused before
// anything is changed.
func (d *Dataplane) DetachPort(pl PortLink, deleteLink bool) error {
	if err := CheckLinkName("port device", pl.Name); err != nil {
		return fmt.Errorf("%s: %w", pl, err)
	}
	wrap := func(what string, err error) error {
		return fmt.Errorf("%s: %s: %w", pl, what, err)
	}
	link, err := d.nl.LinkByName(pl.Name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return wrap("look up", err)
	}
	if deleteLink && link.Type() != linkTypeTap {
		return wrap("delete", fmt.Errorf("device is a %s, not a tap: not deleting it", link.Type()))
	}
	if master := link.Attrs().MasterIndex; master != 0 {
		if err := d.leaveBridge(pl, link, master); err != nil {
			return err
		}
	}
	if deleteLink {
		if err := d.nl.LinkDel(link); err != nil && !isNotFound(err) {
			return wrap("delete", err)
		}
	}
	return nil
}

// leaveBridge is DetachPort's part for a device with a master.
func (d *Dataplane) leaveBridge(pl PortLink, link netlink.Link, master int) error {
	wrap := func(what string, err error) error {
		return fmt.Errorf("%s: %s: %w", pl, what, err)
	}
	if pl.Bridge != "" {
		br, err := d.nl.LinkByName(pl.Bridge)
		if err != nil && !isNotFound(err) {
			return wrap("look up bridge", err)
		}
		if err != nil || br.Attrs().Index != master {
			d.log.Warn("port device is not in the bridge: leaving it with its master",
				"device", pl.Name, "bridge", pl.Bridge, "master", d.linkName(master))
			return nil
		}
	}
	if pl.MACTableLibvirt && checkMAC(pl.MAC) == nil {
		if err := ignoreENOENT(d.nl.NeighDel(fdbEntry(link.Attrs().Index, pl.MAC))); err != nil && !isNotFound(err) {
			return wrap("remove static FDB entry "+pl.MAC.String(), err)
		}
	}
	if err := d.nl.LinkSetNoMaster(link); err != nil && !isNotFound(err) {
		return wrap("leave bridge", err)
	}
	return nil
}

// CreateMacvtap creates the macvtap device name on parent in the given mode,
// brings it up and returns its ifindex (libvirt's virNetDevMacVLanCreate for
// a direct plug). mac is its address (the guest's), nil for a random one; mtu
// 0 takes the parent's MTU, which is also the most the kernel allows.
//
// In passthrough mode the kernel gives the macvtap the parent's own MAC and
// ignores mac. libvirt additionally sets the parent's MAC (and VLAN) to the
// guest's and restores them when the port goes; that is not done here.
//
// The kernel makes the character device /dev/tapIFINDEX for it; a hypervisor
// opens that. On failure the macvtap is deleted again.
func (d *Dataplane) CreateMacvtap(name, parent string, mode conf.MacvtapMode, mac net.HardwareAddr, mtu int) (ifindex int, err error) {
	if err := CheckLinkName("macvtap", name); err != nil {
		return 0, err
	}
	wrap := func(what string, err error) error {
		return fmt.Errorf("macvtap %s on %s: %s: %w", name, parent, what, err)
	}
	if err := CheckLinkName("parent device", parent); err != nil {
		return 0, fmt.Errorf("macvtap %s: %w", name, err)
	}
	m, err := macvlanMode(mode)
	if err != nil {
		return 0, fmt.Errorf("macvtap %s on %s: %w", name, parent, err)
	}
	if mac != nil {
		if err := checkMAC(mac); err != nil {
			return 0, fmt.Errorf("macvtap %s on %s: %w", name, parent, err)
		}
	}
	if mtu < 0 {
		return 0, fmt.Errorf("macvtap %s on %s: MTU %d out of range", name, parent, mtu)
	}
	p, err := d.lookup("parent device", parent)
	if err != nil {
		return 0, fmt.Errorf("macvtap %s: %w", name, err)
	}

	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	attrs.ParentIndex = p.Attrs().Index
	attrs.MTU = mtu
	if m != netlink.MACVLAN_MODE_PASSTHRU {
		attrs.HardwareAddr = mac
	}
	if err := d.nl.LinkAdd(&netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: attrs, Mode: m}}); err != nil {
		// Nothing of ours exists: an EEXIST device is somebody else's.
		return 0, wrap("create in mode "+mode.String(), err)
	}
	link, err := d.nl.LinkByName(name)
	if err != nil {
		if derr := d.nl.LinkDel(&netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: attrs}}); derr != nil && !isNotFound(derr) {
			err = errors.Join(err, fmt.Errorf("roll back: %w", derr))
		}
		return 0, wrap("look up after create", err)
	}
	if err := d.nl.LinkSetUp(link); err != nil {
		if derr := d.nl.LinkDel(link); derr != nil && !isNotFound(derr) {
			err = errors.Join(err, fmt.Errorf("roll back: delete: %w", derr))
		}
		return 0, wrap("set up", err)
	}
	return link.Attrs().Index, nil
}

// DeleteLink deletes the tap or macvtap device name. A missing device is not
// an error; a device of another type (a host NIC, a bridge) is refused.
func (d *Dataplane) DeleteLink(name string) error {
	if err := CheckLinkName("device", name); err != nil {
		return err
	}
	link, err := d.nl.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up device %s: %w", name, err)
	}
	if t := link.Type(); t != linkTypeTap && t != linkTypeMacvtap {
		return fmt.Errorf("delete device %s: it is a %s, not a tap or macvtap: not deleting it", name, t)
	}
	if err := d.nl.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete device %s: %w", name, err)
	}
	return nil
}

// linkName names ifindex for messages: its name, or "ifindex N".
func (d *Dataplane) linkName(ifindex int) string {
	if l, err := d.nl.LinkByIndex(ifindex); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("ifindex %d", ifindex)
}

// ignoreENOENT drops the kernel's "no such entry", for FDB deletions.
func ignoreENOENT(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// SetVF gives VF vf of pf the guest's MAC and VLAN (0: none) through the
// PF (ConfigureVF with this Dataplane's netlink handle).
func (d *Dataplane) SetVF(pf string, vf int, mac net.HardwareAddr, vlan int) error {
	return ConfigureVF(d.nl, pf, vf, mac, vlan)
}
