package conf

import (
	"fmt"
	"net"
	"strings"

	"github.com/google/uuid"
)

// Port is one <networkport>: a guest interface plugged into a network
// (libvirt's virNetworkPortDef, schema networkport.rng).
type Port struct {
	UUID      uuid.UUID
	OwnerName string // the domain owning the port
	OwnerUUID uuid.UUID
	Group     string // portgroup name, empty: none
	MAC       net.HardwareAddr

	VirtualPort *VirtualPort
	// Bandwidth of the port; ClassID and an inbound floor are allowed here.
	Bandwidth *Bandwidth
	VLAN      *VLAN
	// Isolated is <port isolated>.
	Isolated Tristate
	// TrustGuestRxFilters is <rxfilters trustGuest>.
	TrustGuestRxFilters Tristate
	Plug                Plug
}

// PlugType is <plug type>. The zero value is invalid: a port without a
// <plug> element is PlugNone.
type PlugType uint8

const (
	plugInvalid    PlugType = iota
	PlugNone                // no <plug> element
	PlugNetwork             // a bridge vnetd manages
	PlugBridge              // a host bridge
	PlugDirect              // macvtap on a host interface
	PlugHostdevPCI          // a PCI device (SR-IOV VF) passed to the guest
)

var plugTypeNames = [...]string{"", "none", "network", "bridge", "direct", "hostdev-pci"}

func (t PlugType) String() string {
	if t > plugInvalid && int(t) < len(plugTypeNames) {
		return plugTypeNames[t]
	}
	return fmt.Sprintf("PlugType(%d)", t)
}

// Valid reports whether t is one of the defined plug types.
func (t PlugType) Valid() bool { return t > plugInvalid && int(t) < len(plugTypeNames) }

// parsePlugType parses <plug type>; "none" is spelled by leaving <plug> out.
func parsePlugType(s string) (PlugType, error) {
	for i, n := range plugTypeNames {
		if i > int(PlugNone) && n == s {
			return PlugType(i), nil
		}
	}
	if s == "none" {
		return plugInvalid, fmt.Errorf("plug type %q is not accepted: leave <plug> out for a port that is not plugged", s)
	}
	return plugInvalid, fmt.Errorf("unknown plug type %q (network, bridge, direct or hostdev-pci)", s)
}

// MacvtapMode is the macvtap mode of a direct plug (<plug mode>). The zero
// value is invalid.
type MacvtapMode uint8

const (
	macvtapInvalid MacvtapMode = iota
	MacvtapVEPA
	MacvtapPrivate
	MacvtapBridge
	MacvtapPassthrough
)

var macvtapModeNames = [...]string{"", "vepa", "private", "bridge", "passthrough"}

func (m MacvtapMode) String() string {
	if m > macvtapInvalid && int(m) < len(macvtapModeNames) {
		return macvtapModeNames[m]
	}
	return fmt.Sprintf("MacvtapMode(%d)", m)
}

// Valid reports whether m is one of the defined modes.
func (m MacvtapMode) Valid() bool { return m > macvtapInvalid && int(m) < len(macvtapModeNames) }

func parseMacvtapMode(s string) (MacvtapMode, error) {
	for i, n := range macvtapModeNames {
		if i > 0 && n == s {
			return MacvtapMode(i), nil
		}
	}
	return macvtapInvalid, fmt.Errorf("%q is not bridge, private, vepa or passthrough", s)
}

// Plug is <plug>: how the port is connected. Which fields are used depends
// on Type.
type Plug struct {
	Type PlugType

	// PlugNetwork and PlugBridge.
	Bridge          string
	MACTableManager MACTableManager

	// PlugDirect.
	Dev         string
	MacvtapMode MacvtapMode

	// PlugHostdevPCI.
	Managed Tristate
	Driver  *HostdevDriver
	PCI     PCIAddress
}

// ParsePort decodes a <networkport> document strictly: unknown elements and
// attributes are errors, and every problem is reported with its element path
// and line.
func ParsePort(data []byte) (*Port, error) {
	root, err := readTree(data, "networkport")
	if err != nil {
		return nil, err
	}
	d := newDecoder()
	p := d.port(root)
	if len(d.list) > 0 {
		return nil, d.err()
	}
	if err := d.withLines(p.rules()); err != nil {
		return nil, err
	}
	return p, nil
}

func (d *decoder) port(n *node) *Port {
	d.visit(n, nil, []string{"uuid", "owner", "group", "mac", "virtualport", "bandwidth", "vlan", "port", "rxfilters", "plug"})
	// visit lets <dnsmasq:options> through on a root element: not here.
	for _, c := range n.children {
		if c.space == DnsmasqNamespace {
			d.errf(c, "unknown element <%s> in namespace %q", qname(c.name), c.space)
		}
	}
	p := &Port{Plug: Plug{Type: PlugNone}}
	if c := d.one(n, "uuid"); c != nil {
		p.UUID = d.uuidElem(c)
	} else {
		d.errf(n, "missing <uuid>")
	}
	if c := d.one(n, "owner"); c != nil {
		d.visit(c, nil, []string{"name", "uuid"})
		if cn := d.one(c, "name"); cn != nil {
			p.OwnerName = d.leaf(cn)
			if p.OwnerName == "" {
				d.errf(cn, "empty owner name")
			}
		} else {
			d.errf(c, "missing <name>")
		}
		if cu := d.one(c, "uuid"); cu != nil {
			p.OwnerUUID = d.uuidElem(cu)
		} else {
			d.errf(c, "missing <uuid>")
		}
	} else {
		d.errf(n, "missing <owner>")
	}
	if c := d.one(n, "group"); c != nil {
		p.Group = d.leaf(c)
	}
	if c := d.one(n, "mac"); c != nil {
		d.visit(c, []string{"address"}, nil)
		p.MAC = d.macAttr(c, "address")
		if _, ok := c.attr("address"); !ok {
			d.errf(c, "missing attribute address")
		}
	} else {
		d.errf(n, "missing <mac>")
	}
	if c := d.one(n, "virtualport"); c != nil {
		p.VirtualPort = d.virtualPort(c)
	}
	if c := d.one(n, "bandwidth"); c != nil {
		p.Bandwidth = d.bandwidth(c)
	}
	if c := d.one(n, "vlan"); c != nil {
		p.VLAN = d.vlan(c)
	}
	if c := d.one(n, "port"); c != nil {
		d.visit(c, []string{"isolated"}, nil)
		p.Isolated = d.yesNo(c, "isolated")
	}
	if c := d.one(n, "rxfilters"); c != nil {
		d.visit(c, []string{"trustGuest"}, nil)
		p.TrustGuestRxFilters = d.yesNo(c, "trustGuest")
		if _, ok := c.attr("trustGuest"); !ok {
			d.errf(c, "missing attribute trustGuest")
		}
	}
	if c := d.one(n, "plug"); c != nil {
		p.Plug = d.plug(c)
	}
	return p
}

// uuidElem reads a <uuid> element.
func (d *decoder) uuidElem(n *node) uuid.UUID {
	s := d.leaf(n)
	u, err := parseUUID(s)
	if err != nil {
		d.errf(n, "malformed uuid %q", s)
	}
	return u
}

func (d *decoder) plug(n *node) Plug {
	s, ok := n.attr("type")
	if !ok {
		d.visit(n, []string{"type", "bridge", "macTableManager", "dev", "mode", "managed"}, []string{"driver", "address"})
		d.errf(n, "missing attribute type")
		return Plug{Type: plugInvalid}
	}
	t, err := parsePlugType(s)
	if err != nil {
		d.lines[n.path] = n.line
		d.errf(n, "attribute type: %v", err)
		return Plug{Type: plugInvalid}
	}
	pl := Plug{Type: t}
	switch t {
	case PlugNetwork, PlugBridge:
		d.visit(n, []string{"type", "bridge", "macTableManager"}, nil)
		var ok bool
		if pl.Bridge, ok = n.attr("bridge"); !ok {
			d.errf(n, "missing attribute bridge (plug type='%s')", t)
		}
		if s, ok := n.attr("macTableManager"); ok {
			m, err := parseMACTableManager(s)
			if err != nil {
				d.errf(n, "attribute macTableManager: %v", err)
			}
			pl.MACTableManager = m
		}
	case PlugDirect:
		d.visit(n, []string{"type", "dev", "mode"}, nil)
		var ok bool
		if pl.Dev, ok = n.attr("dev"); !ok {
			d.errf(n, "missing attribute dev (plug type='direct')")
		}
		if s, ok := n.attr("mode"); ok {
			m, err := parseMacvtapMode(s)
			if err != nil {
				d.errf(n, "attribute mode: %v", err)
			}
			pl.MacvtapMode = m
		} else {
			d.errf(n, "missing attribute mode (plug type='direct')")
		}
	case PlugHostdevPCI:
		d.visit(n, []string{"type", "managed"}, []string{"driver", "address"})
		pl.Managed = d.yesNo(n, "managed")
		if c := d.one(n, "driver"); c != nil {
			pl.Driver = d.hostdevDriver(c)
		}
		if c := d.one(n, "address"); c != nil {
			// networkport.rng's address has no type attribute: it is PCI.
			d.visit(c, []string{"domain", "bus", "slot", "function", "multifunction"}, nil)
			pl.PCI = d.pciAddress(c)
		} else {
			d.errf(n, "missing <address> (plug type='hostdev-pci')")
		}
	}
	return pl
}

const genericNameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-"

// rules are the checks of a port beyond its XML syntax: libvirt's parser
// rules plus the value patterns of networkport.rng.
func (p *Port) rules() error {
	var pr problems
	const path = "networkport"
	if p.OwnerName == "" {
		pr.add(path+"/owner/name", "missing owner name")
	} else if strings.ContainsAny(p.OwnerName, "\r\n") {
		pr.add(path+"/owner/name", "owner name must not contain newlines")
	}
	if p.Group != "" && !only(p.Group, deviceNameChars) {
		pr.add(path+"/group", "portgroup name %q has characters outside letters, digits and _.-\\:/", p.Group)
	}
	switch {
	case p.MAC == nil:
		pr.add(path+"/mac", "missing MAC address")
	case len(p.MAC) != 6:
		pr.add(path+"/mac", "address %s is not a 6-byte MAC address", p.MAC)
	case p.MAC[0]&1 != 0:
		pr.add(path+"/mac", "address %s is multicast, a port needs a unicast MAC", p.MAC)
	}
	if p.VirtualPort != nil {
		p.VirtualPort.rules(&pr, path+"/virtualport")
	}
	if p.Bandwidth != nil {
		p.Bandwidth.rules(&pr, path+"/bandwidth", true)
	}
	if p.VLAN != nil {
		p.VLAN.rules(&pr, path+"/vlan")
	}
	p.Plug.rules(&pr, path+"/plug")
	return pr.err()
}

func (pl *Plug) rules(pr *problems, path string) {
	t := pl.Type
	if !t.Valid() {
		pr.add(path, "plug type is not set (PlugNone for a port without <plug>)")
		return
	}
	bridge := t == PlugNetwork || t == PlugBridge
	if !bridge && (pl.Bridge != "" || pl.MACTableManager != MACTableDefault) {
		pr.add(path, "bridge and macTableManager are only for plug type network or bridge, not %s", t)
	}
	if t != PlugDirect && (pl.Dev != "" || pl.MacvtapMode != macvtapInvalid) {
		pr.add(path, "dev and mode are only for plug type direct, not %s", t)
	}
	if t != PlugHostdevPCI && (pl.Managed != TristateAbsent || pl.Driver != nil || pl.PCI != (PCIAddress{})) {
		pr.add(path, "managed, <driver> and <address> are only for plug type hostdev-pci, not %s", t)
	}
	switch t {
	case PlugNetwork, PlugBridge:
		if pl.Bridge == "" {
			pr.add(path, "missing bridge name")
		} else if !only(pl.Bridge, deviceNameChars) {
			pr.add(path, "bridge name %q has characters outside letters, digits and _.-\\:/", pl.Bridge)
		}
		if pl.MACTableManager > MACTableLibvirt {
			pr.add(path, "macTableManager is not kernel or libvirt")
		}
	case PlugDirect:
		if pl.Dev == "" {
			pr.add(path, "missing link device (dev)")
		} else if !only(pl.Dev, deviceNameChars) {
			pr.add(path, "dev %q has characters outside letters, digits and _.-\\:/", pl.Dev)
		}
		if !pl.MacvtapMode.Valid() {
			pr.add(path, "missing or invalid mode (bridge, private, vepa or passthrough)")
		}
	case PlugHostdevPCI:
		if drv := pl.Driver; drv != nil {
			if drv.Name > HostdevDriverXen {
				pr.add(path+"/driver", "name is not kvm, vfio or xen")
			}
			if drv.Model != "" && !only(drv.Model, genericNameChars) {
				pr.add(path+"/driver", "model %q has characters outside letters, digits and _+-", drv.Model)
			}
		}
		if pl.PCI.Slot > 0x1f || pl.PCI.Function > 7 {
			pr.add(path+"/address[1]", "PCI address %s: slot is at most 0x1f and function at most 7", pl.PCI)
		}
	}
}

// Format writes p as libvirt does (virNetworkPortDefFormatBuf).
func (p *Port) Format() []byte {
	w := &writer{}
	w.line("<networkport>")
	w.indent++
	w.line("<uuid>%s</uuid>", p.UUID)
	w.line("<owner>")
	w.indent++
	w.line("<name>%s</name>", escape(p.OwnerName))
	w.line("<uuid>%s</uuid>", p.OwnerUUID)
	w.indent--
	w.line("</owner>")
	if p.Group != "" {
		w.line("<group>%s</group>", escape(p.Group))
	}
	w.line("<mac address='%s'/>", p.MAC)
	p.VirtualPort.format(w)
	p.Bandwidth.format(w)
	p.VLAN.format(w)
	formatPortOptions(w, p.Isolated)
	if p.TrustGuestRxFilters != TristateAbsent {
		w.line("<rxfilters trustGuest='%s'/>", p.TrustGuestRxFilters.YesNo())
	}
	p.Plug.format(w)
	w.indent--
	w.line("</networkport>")
	return []byte(w.b.String())
}

func (pl *Plug) format(w *writer) {
	var a attrs
	a.add("type", pl.Type.String())
	switch pl.Type {
	case PlugNetwork, PlugBridge:
		a.add("bridge", pl.Bridge)
		a.opt("macTableManager", pl.MACTableManager.String())
		w.line("<plug%s/>", a)
	case PlugDirect:
		a.add("dev", pl.Dev)
		a.add("mode", pl.MacvtapMode.String())
		w.line("<plug%s/>", a)
	case PlugHostdevPCI:
		a.opt("managed", pl.Managed.YesNo())
		w.line("<plug%s>", a)
		w.indent++
		if drv := pl.Driver; drv != nil {
			var a attrs
			a.opt("name", drv.Name.String())
			a.opt("model", drv.Model)
			if len(a) > 0 {
				w.line("<driver%s/>", a)
			}
		}
		w.line("<address %s/>", pl.PCI.attrs())
		w.indent--
		w.line("</plug>")
	}
}

// Clone is a deep copy of the port.
func (p *Port) Clone() *Port {
	c := *p
	c.MAC = cloneMAC(p.MAC)
	c.VirtualPort = p.VirtualPort.Clone()
	c.Bandwidth = p.Bandwidth.Clone()
	c.VLAN = p.VLAN.Clone()
	c.Plug.Driver = clonePtr(p.Plug.Driver)
	return &c
}
