// Package ports allocates, reclaims and releases the ports of a running
// network the way libvirt's network driver does (networkAllocatePort,
// networkNotifyPort and networkReleasePort in bridge_driver.c;
// libvirt-behavior.md §6).
//
// Everything here is pure: the pool state is the connection counters of the
// live network definition (conf.Network.Connections and the Connections of
// its forward interfaces and PCI addresses). Every function works on copies
// and returns the new definition; its inputs are never modified, so a caller
// that fails later (plugging the device, saving state) just keeps the old
// definition.
package ports

import (
	"errors"
	"fmt"

	"github.com/vnetd/vnetd/conf"
)

// errf is an error about port p of network n: it names both.
func errf(n *conf.Network, p *conf.Port, format string, args ...any) error {
	return fmt.Errorf("network %q: port %s: %s", n.Name, p.UUID, fmt.Sprintf(format, args...))
}

// checkArgs rejects nil inputs and a port without a usable MAC address.
func checkArgs(n *conf.Network, p *conf.Port) error {
	if n == nil {
		return errors.New("ports: no network definition")
	}
	if p == nil {
		return fmt.Errorf("network %q: no port definition", n.Name)
	}
	if len(p.MAC) != 6 {
		return errf(n, p, "<mac>: missing or malformed MAC address %q", p.MAC.String())
	}
	if !n.Forward.Mode.Valid() {
		return errf(n, p, "<forward>: invalid forward mode %s", n.Forward.Mode)
	}
	return nil
}

// isDirect reports whether n hands out macvtap devices: forward mode bridge
// without a bridge name, private, vepa and passthrough.
func isDirect(n *conf.Network) bool {
	switch n.Forward.Mode {
	case conf.ForwardBridge:
		return n.Bridge.Name == ""
	case conf.ForwardPrivate, conf.ForwardVEPA, conf.ForwardPassthrough:
		return true
	}
	return false
}

// macvtapMode is the macvtap mode of a direct network's ports.
func macvtapMode(m conf.ForwardMode) conf.MacvtapMode {
	switch m {
	case conf.ForwardPrivate:
		return conf.MacvtapPrivate
	case conf.ForwardVEPA:
		return conf.MacvtapVEPA
	case conf.ForwardPassthrough:
		return conf.MacvtapPassthrough
	}
	return conf.MacvtapBridge
}

// exclusive reports whether a direct port needs a pool interface of its own:
// passthrough, and private with an 802.1Qbh virtualport.
func exclusive(n *conf.Network, vp *conf.VirtualPort) bool {
	switch n.Forward.Mode {
	case conf.ForwardPassthrough:
		return true
	case conf.ForwardPrivate:
		return vp != nil && vp.Type == conf.VirtualPort8021Qbh
	}
	return false
}

// Allocate completes port p for network n, as libvirt's networkAllocatePort:
// it applies the portgroup (p.Group, or the network's default portgroup when
// p.Group is empty; p.Group itself is kept as given), merges the virtualport
// profiles of port, network and portgroup, fills the plug for the network's
// forward mode, picking a device from the pool for direct and hostdev
// networks, admits the inbound floor, and counts the connection.
//
// n is the live definition. Allocate returns a modified clone of it, with the
// network's and the chosen device's connection counters incremented, and the
// completed port; n and p are not modified. floorSum is the sum of the inbound
// floors of the network's other ports. p must come without a <plug>
// (conf.PlugNone): allocating is the daemon's job. Bandwidth.ClassID is left
// as given.
func Allocate(n *conf.Network, p *conf.Port, floorSum uint64) (*conf.Network, *conf.Port, error) {
	if err := checkArgs(n, p); err != nil {
		return nil, nil, err
	}
	if p.Plug.Type != conf.PlugNone {
		return nil, nil, errf(n, p, "<plug type='%s'>: a new port must come without a <plug>, the network allocates it (reclaim a plugged port instead)", p.Plug.Type)
	}
	pg, err := findPortGroup(n, p)
	if err != nil {
		return nil, nil, err
	}
	q := p.Clone()
	inherit(n, pg, q)
	var pgVP *conf.VirtualPort
	if pg != nil {
		pgVP = pg.VirtualPort
	}
	vp, err := mergeVirtualPorts(p.VirtualPort, n.VirtualPort, pgVP)
	if err != nil {
		return nil, nil, errf(n, p, "<virtualport>: %v", err)
	}
	q.VirtualPort = vp

	c := n.Clone()
	var iface *conf.ForwardInterface
	var addr *conf.ForwardAddress
	mode := n.Forward.Mode
	switch {
	case mode.Managed():
		if vp != nil {
			return nil, nil, errf(n, p, "<virtualport type='%s'> not supported for network '%s' which uses a bridge managed by vnetd", vpTypeName(vp), n.Name)
		}
		if n.Bridge.Name == "" {
			return nil, nil, errf(n, p, "the network has no bridge name (is it running?)")
		}
		q.Plug = conf.Plug{Type: conf.PlugNetwork, Bridge: n.Bridge.Name, MACTableManager: n.Bridge.MACTableManager}

	case mode == conf.ForwardBridge && n.Bridge.Name != "":
		// libvirt allows only Open vSwitch on a host bridge.
		if vp != nil && vp.Type != conf.VirtualPortOpenvswitch {
			return nil, nil, errf(n, p, "<virtualport type='%s'> not supported for network '%s' which uses a bridge device (only openvswitch is)", vpTypeName(vp), n.Name)
		}
		q.Plug = conf.Plug{Type: conf.PlugBridge, Bridge: n.Bridge.Name, MACTableManager: n.Bridge.MACTableManager}

	case isDirect(n):
		if vp != nil && vp.Type != conf.VirtualPort8021Qbg && vp.Type != conf.VirtualPort8021Qbh {
			return nil, nil, errf(n, p, "<virtualport type='%s'> not supported for network '%s' which uses a macvtap device (only 802.1Qbg and 802.1Qbh are)", vpTypeName(vp), n.Name)
		}
		pool := c.Forward.Interfaces
		if len(pool) == 0 {
			return nil, nil, errf(n, p, "the network uses a direct mode, but has no forward dev and no interface pool")
		}
		if exclusive(n, vp) {
			for i := range pool {
				if pool[i].Connections == 0 {
					iface = &pool[i]
					break
				}
			}
			if iface == nil {
				return nil, nil, errf(n, p, "the network requires exclusive access to interfaces, but none are available (all %d are in use)", len(pool))
			}
		} else {
			iface = &pool[0]
			for i := 1; i < len(pool); i++ {
				if pool[i].Connections < iface.Connections {
					iface = &pool[i]
				}
			}
		}
		q.Plug = conf.Plug{Type: conf.PlugDirect, Dev: iface.Dev, MacvtapMode: macvtapMode(mode)}

	case mode == conf.ForwardHostdev:
		if vp != nil && vp.Type != conf.VirtualPort8021Qbg && vp.Type != conf.VirtualPort8021Qbh {
			return nil, nil, errf(n, p, "<virtualport type='%s'> not supported for network '%s' which uses an SR-IOV Virtual Function via PCI passthrough (only 802.1Qbg and 802.1Qbh are)", vpTypeName(vp), n.Name)
		}
		pool := c.Forward.Addresses
		for i := range pool {
			if pool[i].Connections == 0 {
				addr = &pool[i]
				break
			}
		}
		if addr == nil {
			why := fmt.Sprintf("all %d PCI devices are in use", len(pool))
			if len(pool) == 0 {
				why = "the PCI device pool is empty"
			}
			return nil, nil, errf(n, p, "the network requires exclusive access to interfaces, but none are available (%s)", why)
		}
		managed := conf.TristateNo
		if n.Forward.Managed {
			managed = conf.TristateYes
		}
		q.Plug = conf.Plug{Type: conf.PlugHostdevPCI, PCI: addr.PCI, Managed: managed}
		if drv := n.Forward.Driver; drv != nil {
			d := *drv
			q.Plug.Driver = &d
		}

	default:
		return nil, nil, errf(n, p, "<forward>: unsupported forward mode %s", mode)
	}

	if err := CheckFloor(n, q, floorSum); err != nil {
		return nil, nil, err
	}
	if err := complete(q.VirtualPort); err != nil {
		return nil, nil, errf(n, p, "<virtualport>: %v", err)
	}

	c.Connections++
	if iface != nil {
		iface.Connections++
	}
	if addr != nil {
		addr.Connections++
	}
	return c, q, nil
}

// Reclaim re-counts a port that already has its plug, after a daemon restart
// (libvirt's networkNotifyPort): the plug must fit the network (its bridge, an
// interface of its pool, a PCI address of its pool). Exclusive devices
// (passthrough, private with 802.1Qbh, hostdev) must have no connections yet.
// It returns a clone of n with the counters incremented; n and p are not
// modified.
func Reclaim(n *conf.Network, p *conf.Port) (*conf.Network, error) {
	if err := checkArgs(n, p); err != nil {
		return nil, err
	}
	c := n.Clone()
	mode := n.Forward.Mode
	pl := &p.Plug
	switch pl.Type {
	case conf.PlugNetwork, conf.PlugBridge:
		fits := mode.Managed()
		if pl.Type == conf.PlugBridge {
			fits = mode == conf.ForwardBridge && n.Bridge.Name != ""
		}
		if !fits {
			return nil, errf(n, p, "<plug type='%s'> does not fit a network with forward mode '%s'%s", pl.Type, mode, bridgeHint(n))
		}
		if pl.Bridge != n.Bridge.Name {
			return nil, errf(n, p, "<plug bridge='%s'> is not the network's bridge '%s'", pl.Bridge, n.Bridge.Name)
		}

	case conf.PlugDirect:
		if !isDirect(n) {
			return nil, errf(n, p, "<plug type='direct'> does not fit a network with forward mode '%s'%s", mode, bridgeHint(n))
		}
		iface := findInterface(c, pl.Dev)
		if iface == nil {
			return nil, errf(n, p, "<plug dev='%s'>: the network doesn't have dev '%s' in its interface pool", pl.Dev, pl.Dev)
		}
		if iface.Connections > 0 && exclusive(n, p.VirtualPort) {
			return nil, errf(n, p, "<plug dev='%s'>: the network claims dev %s is already in use by a different port", pl.Dev, pl.Dev)
		}
		iface.Connections++

	case conf.PlugHostdevPCI:
		if mode != conf.ForwardHostdev {
			return nil, errf(n, p, "<plug type='hostdev-pci'> does not fit a network with forward mode '%s'", mode)
		}
		addr := findAddress(c, pl.PCI)
		if addr == nil {
			return nil, errf(n, p, "<plug><address>: the network doesn't have PCI device %s in its pool", pl.PCI)
		}
		if addr.Connections > 0 {
			return nil, errf(n, p, "<plug><address>: the network claims PCI device %s is already in use by a different port", pl.PCI)
		}
		addr.Connections++

	case conf.PlugNone:
		return nil, errf(n, p, "<plug>: a reclaimed port must have its plug (this one has none)")
	default:
		return nil, errf(n, p, "<plug>: invalid plug type %s", pl.Type)
	}
	c.Connections++
	return c, nil
}

// bridgeHint says why a bridge-mode network does not take a plug type.
func bridgeHint(n *conf.Network) string {
	if n.Forward.Mode != conf.ForwardBridge {
		return ""
	}
	if n.Bridge.Name != "" {
		return fmt.Sprintf(" (a host bridge, %s)", n.Bridge.Name)
	}
	return " (macvtap, no bridge name)"
}

// Release undoes the counting of Allocate or Reclaim (libvirt's
// networkReleasePort): the network's connection counter and, for direct and
// hostdev ports, the counter of the port's pool device go down by one. It
// returns a clone of n; n and p are not modified. A counter that is already
// zero, or a device that is not in the pool, is an error.
func Release(n *conf.Network, p *conf.Port) (*conf.Network, error) {
	if err := checkArgs(n, p); err != nil {
		return nil, err
	}
	c := n.Clone()
	pl := &p.Plug
	switch pl.Type {
	case conf.PlugNetwork, conf.PlugBridge:
	case conf.PlugDirect:
		iface := findInterface(c, pl.Dev)
		if iface == nil {
			return nil, errf(n, p, "<plug dev='%s'>: the network doesn't have dev '%s' in its interface pool", pl.Dev, pl.Dev)
		}
		if iface.Connections == 0 {
			return nil, errf(n, p, "<plug dev='%s'>: dev %s has no connections to release", pl.Dev, pl.Dev)
		}
		iface.Connections--
	case conf.PlugHostdevPCI:
		addr := findAddress(c, pl.PCI)
		if addr == nil {
			return nil, errf(n, p, "<plug><address>: the network doesn't have PCI device %s in its pool", pl.PCI)
		}
		if addr.Connections == 0 {
			return nil, errf(n, p, "<plug><address>: PCI device %s has no connections to release", pl.PCI)
		}
		addr.Connections--
	case conf.PlugNone:
		return nil, errf(n, p, "<plug>: the port has no plug, nothing was allocated for it")
	default:
		return nil, errf(n, p, "<plug>: invalid plug type %s", pl.Type)
	}
	if c.Connections == 0 {
		return nil, errf(n, p, "the network's connection count is already 0")
	}
	c.Connections--
	return c, nil
}

func findInterface(n *conf.Network, dev string) *conf.ForwardInterface {
	for i := range n.Forward.Interfaces {
		if n.Forward.Interfaces[i].Dev == dev {
			return &n.Forward.Interfaces[i]
		}
	}
	return nil
}

func findAddress(n *conf.Network, pci conf.PCIAddress) *conf.ForwardAddress {
	for i := range n.Forward.Addresses {
		if n.Forward.Addresses[i].PCI == pci {
			return &n.Forward.Addresses[i]
		}
	}
	return nil
}
