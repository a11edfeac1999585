package conf

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// decoder turns a node tree into model values, recording every problem
// (unknown elements and attributes, bad numbers and addresses) instead of
// stopping at the first, and remembering where each element was for the
// errors found later by the rules.
type decoder struct {
	problems
	lines map[string]int
}

func newDecoder() *decoder { return &decoder{lines: map[string]int{}} }

func (d *decoder) errf(n *node, format string, args ...any) {
	d.addLine(n.path, n.line, format, args...)
}

// visit records n's line and reports attributes and child elements that the
// schema does not have at this place, and text where none belongs.
func (d *decoder) visit(n *node, attrs []string, children []string) {
	d.lines[n.path] = n.line
	for _, a := range n.attrs {
		if isNSDecl(a) {
			continue
		}
		if a.Name.Prefix != "" || !contains(attrs, a.Name.Local) {
			d.errf(n, "unknown attribute %q", qname(a.Name))
		}
	}
	for _, c := range n.children {
		if c.space != "" && !(n.parent == nil && c.space == DnsmasqNamespace) {
			d.errf(c, "unknown element <%s> in namespace %q", qname(c.name), c.space)
			continue
		}
		if c.space == "" && !contains(children, c.name.Local) {
			d.errf(c, "unknown element <%s>", qname(c.name))
		}
	}
	if strings.TrimSpace(n.textContent()) != "" {
		d.errf(n, "unexpected text %q", truncate(strings.TrimSpace(n.textContent()), 40))
	}
}

// leaf reads an element whose content is text only.
func (d *decoder) leaf(n *node) string {
	d.lines[n.path] = n.line
	for _, a := range n.attrs {
		if !isNSDecl(a) {
			d.errf(n, "unknown attribute %q", qname(a.Name))
		}
	}
	for _, c := range n.children {
		d.errf(c, "unexpected element <%s> inside <%s>", qname(c.name), n.name.Local)
	}
	return n.textContent()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// all returns the children named name (no namespace).
func all(n *node, name string) []*node {
	var out []*node
	for _, c := range n.children {
		if c.space == "" && c.name.Local == name {
			out = append(out, c)
		}
	}
	return out
}

// one returns the single child named name, reporting duplicates.
func (d *decoder) one(n *node, name string) *node {
	cs := all(n, name)
	if len(cs) > 1 {
		d.errf(cs[1], "<%s> may appear only once in <%s>", name, n.name.Local)
	}
	if len(cs) == 0 {
		return nil
	}
	return cs[0]
}

func (d *decoder) yesNo(n *node, name string) Tristate {
	s, ok := n.attr(name)
	if !ok {
		return TristateAbsent
	}
	t, err := parseYesNo(s)
	if err != nil {
		d.errf(n, "attribute %s: %v", name, err)
	}
	return t
}

func (d *decoder) onOff(n *node, name string) Tristate {
	s, ok := n.attr(name)
	if !ok {
		return TristateAbsent
	}
	t, err := parseOnOff(s)
	if err != nil {
		d.errf(n, "attribute %s: %v", name, err)
	}
	return t
}

// uintAttr parses a decimal unsigned attribute of at most bits bits.
func (d *decoder) uintAttr(n *node, name string, bits int) (uint64, bool) {
	s, ok := n.attr(name)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, bits)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			d.errf(n, "attribute %s: %q is out of range (maximum %d)", name, s, uint64(1)<<bits-1)
		} else {
			d.errf(n, "attribute %s: %q is not an unsigned integer", name, s)
		}
		return 0, false
	}
	return v, true
}

// hexOrDecAttr parses an unsigned attribute written in C notation (0x.. or decimal).
func (d *decoder) hexOrDecAttr(n *node, name string, max uint64) uint64 {
	s, ok := n.attr(name)
	if !ok {
		return 0
	}
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil || v > max {
		d.errf(n, "attribute %s: %q is not a number from 0 to %#x", name, s, max)
		return 0
	}
	return v
}

func (d *decoder) addrAttr(n *node, name string) (netip.Addr, bool) {
	s, ok := n.attr(name)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := parseAddr(s)
	if err != nil {
		d.errf(n, "attribute %s: %q is not an IP address", name, s)
		return netip.Addr{}, false
	}
	return a, true
}

// parseAddr parses an IPv4 or IPv6 address; zones are not network addresses.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, errZone
	}
	return a.Unmap(), nil
}

type constError string

func (e constError) Error() string { return string(e) }

const errZone = constError("zoned addresses are not allowed")

func (d *decoder) uuidAttr(n *node, name string) *uuid.UUID {
	s, ok := n.attr(name)
	if !ok {
		return nil
	}
	u, err := parseUUID(s)
	if err != nil {
		d.errf(n, "attribute %s: %q is not a UUID", name, s)
		return nil
	}
	return &u
}

// parseUUID accepts libvirt's UUID spellings: 32 hex digits, optionally with
// dashes anywhere between byte pairs.
func parseUUID(s string) (uuid.UUID, error) {
	s = strings.TrimSpace(s)
	hex := strings.ReplaceAll(s, "-", "")
	if len(hex) != 32 {
		return uuid.UUID{}, constError("malformed uuid")
	}
	return uuid.Parse(hex)
}

func (d *decoder) macAttr(n *node, name string) net.HardwareAddr {
	s, ok := n.attr(name)
	if !ok {
		return nil
	}
	mac, err := parseMAC(s)
	if err != nil {
		d.errf(n, "attribute %s: %v", name, err)
		return nil
	}
	return mac
}

// parseMAC parses a unicast 6-byte MAC address.
func parseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 || strings.Count(s, ":") != 5 {
		return nil, constError("\"" + s + "\" is not a MAC address (xx:xx:xx:xx:xx:xx)")
	}
	if mac[0]&1 != 0 {
		return nil, constError("\"" + s + "\" is a multicast MAC address, a unicast one is required")
	}
	return mac, nil
}

// Parse decodes a <network> document and applies libvirt's parse-time rules
// (libvirt-behavior.md §1a). It reports every problem it finds, each naming
// its element path and line. Define-time rules are Validate's. A missing
// <uuid> stays zero: ApplyDefaults generates one, and a redefinition without
// one keeps the UUID of the network it replaces.
func Parse(data []byte) (*Network, error) {
	root, err := readTree(data, "network")
	if err != nil {
		return nil, err
	}
	d := newDecoder()
	n := d.network(root)
	if len(d.list) > 0 {
		return nil, d.err()
	}
	if err := d.withLines(n.parseRules()); err != nil {
		return nil, err
	}
	return n, nil
}

// withLines adds the line of each problem's element.
func (d *decoder) withLines(err error) error {
	for _, e := range Problems(err) {
		if fe, ok := e.(*FieldError); ok && fe.Line == 0 {
			fe.Line = d.lines[fe.Path]
		}
	}
	return err
}

func (d *decoder) network(n *node) *Network {
	d.visit(n, []string{"connections", "ipv6", "trustGuestRxFilters"},
		[]string{"name", "uuid", "title", "description", "metadata", "forward", "bridge", "mtu", "mac",
			"domain", "dns", "vlan", "bandwidth", "port", "ip", "route", "virtualport", "portgroup"})
	net := &Network{Forward: Forward{Mode: ForwardNone}}
	if v, ok := d.uintAttr(n, "connections", 32); ok {
		net.Connections = uint(v)
	}
	net.IPv6 = d.yesNo(n, "ipv6") == TristateYes
	net.TrustGuestRxFilters = d.yesNo(n, "trustGuestRxFilters")

	if c := d.one(n, "name"); c != nil {
		net.Name = d.leaf(c)
	} else {
		d.errf(n, "missing <name>")
	}
	if c := d.one(n, "uuid"); c != nil {
		s := d.leaf(c)
		u, err := parseUUID(s)
		if err != nil {
			d.errf(c, "malformed uuid %q", s)
		}
		net.UUID = u
	}
	if c := d.one(n, "title"); c != nil {
		net.Title = d.leaf(c)
	}
	if c := d.one(n, "description"); c != nil {
		net.Description = d.leaf(c)
	}
	if c := d.one(n, "metadata"); c != nil {
		net.Metadata = d.metadata(c)
	}
	if c := d.one(n, "forward"); c != nil {
		net.Forward = d.forward(c)
	}
	if c := d.one(n, "bridge"); c != nil {
		net.Bridge = d.bridge(c)
	}
	if c := d.one(n, "mtu"); c != nil {
		d.visit(c, []string{"size"}, nil)
		if v, ok := d.uintAttr(c, "size", 16); ok {
			net.MTU = uint16(v)
		} else if _, present := c.attr("size"); !present {
			d.errf(c, "missing attribute size")
		}
	}
	if c := d.one(n, "mac"); c != nil {
		d.visit(c, []string{"address"}, nil)
		net.MAC = d.macAttr(c, "address")
		if _, ok := c.attr("address"); !ok {
			d.errf(c, "missing attribute address")
		}
	}
	if c := d.one(n, "domain"); c != nil {
		d.visit(c, []string{"name", "localOnly", "register"}, nil)
		dom := &Domain{LocalOnly: d.yesNo(c, "localOnly"), Register: d.yesNo(c, "register")}
		dom.Name, _ = c.attr("name")
		if dom.Name == "" {
			d.errf(c, "missing attribute name")
		}
		net.Domain = dom
	}
	if c := d.one(n, "dns"); c != nil {
		net.DNS = d.dns(c)
	}
	if c := d.one(n, "vlan"); c != nil {
		net.VLAN = d.vlan(c)
	}
	if c := d.one(n, "bandwidth"); c != nil {
		net.Bandwidth = d.bandwidth(c)
	}
	if c := d.one(n, "port"); c != nil {
		d.visit(c, []string{"isolated"}, nil)
		net.PortIsolated = d.yesNo(c, "isolated")
	}
	for _, c := range all(n, "ip") {
		net.IPs = append(net.IPs, d.ip(c))
	}
	for _, c := range all(n, "route") {
		net.Routes = append(net.Routes, d.route(c))
	}
	if c := d.one(n, "virtualport"); c != nil {
		net.VirtualPort = d.virtualPort(c)
	}
	for _, c := range all(n, "portgroup") {
		net.PortGroups = append(net.PortGroups, d.portGroup(c))
	}
	var opts []*node
	for _, c := range n.children {
		if c.space == DnsmasqNamespace {
			if c.name.Local != "options" {
				d.errf(c, "unknown dnsmasq element <%s>", c.name.Local)
				continue
			}
			opts = append(opts, c)
		}
	}
	if len(opts) > 1 {
		d.errf(opts[1], "<dnsmasq:options> may appear only once")
	}
	for _, o := range opts {
		d.lines[o.path] = o.line
		for _, a := range o.attrs {
			if !isNSDecl(a) {
				d.errf(o, "unknown attribute %q", qname(a.Name))
			}
		}
		for _, c := range o.children {
			if c.space != DnsmasqNamespace || c.name.Local != "option" {
				d.errf(c, "unknown element <%s> in <dnsmasq:options>", qname(c.name))
				continue
			}
			d.lines[c.path] = c.line
			for _, a := range c.attrs {
				if !isNSDecl(a) && !(a.Name.Prefix == "" && a.Name.Local == "value") {
					d.errf(c, "unknown attribute %q", qname(a.Name))
				}
			}
			v, ok := c.attr("value")
			if !ok {
				d.errf(c, "missing attribute value")
			}
			net.DnsmasqOptions = append(net.DnsmasqOptions, v)
		}
	}
	return net
}

func (d *decoder) metadata(n *node) *Metadata {
	d.lines[n.path] = n.line
	for _, a := range n.attrs {
		if !isNSDecl(a) {
			d.errf(n, "unknown attribute %q", qname(a.Name))
		}
	}
	if strings.TrimSpace(n.textContent()) != "" {
		d.errf(n, "text directly inside <metadata>; application data must be in namespaced elements")
	}
	md := &Metadata{}
	seen := map[string]bool{}
	for _, c := range n.children {
		if c.space == "" {
			d.errf(c, "metadata element <%s> has no namespace", qname(c.name))
			continue
		}
		if seen[c.space] {
			d.errf(c, "a second metadata element in namespace %q (one element per namespace)", c.space)
			continue
		}
		seen[c.space] = true
		md.Elements = append(md.Elements, rawElement(c))
	}
	return md
}

// rawElement copies n verbatim, declaring on it the namespaces it uses that
// were declared above top (so the copy stands on its own).
func rawElement(n *node) *RawElement {
	e := copyRaw(n)
	declared := map[string]bool{}
	var walk func(*RawElement)
	used := []string{}
	walk = func(r *RawElement) {
		for _, a := range r.Attrs {
			if isNSDecl(a) {
				continue
			}
			if a.Name.Prefix != "" && a.Name.Prefix != "xml" {
				used = append(used, a.Name.Prefix)
			}
		}
		used = append(used, r.Name.Prefix)
		for _, c := range r.Children {
			if c.Elem != nil {
				walk(c.Elem)
			}
		}
	}
	walk(e)
	for _, a := range allDecls(n) {
		declared[a] = true
	}
	for _, p := range used {
		if declared[p] {
			continue
		}
		declared[p] = true
		uri, ok := n.lookupNS(p)
		if !ok || (p == "" && uri == "") {
			continue
		}
		name := RawName{Prefix: "xmlns", Local: p}
		if p == "" {
			name = RawName{Local: "xmlns"}
		}
		e.Attrs = append([]RawAttr{{Name: name, Value: uri}}, e.Attrs...)
	}
	return e
}

// allDecls lists the prefixes declared anywhere inside n.
func allDecls(n *node) []string {
	var out []string
	for p := range n.scope {
		out = append(out, p)
	}
	for _, c := range n.children {
		out = append(out, allDecls(c)...)
	}
	return out
}

// copyRaw copies n; blank text between child elements is layout, not content
// (libvirt parses with blanks dropped), so it is not kept.
func copyRaw(n *node) *RawElement {
	e := &RawElement{Name: n.name, Attrs: append([]RawAttr(nil), n.attrs...)}
	layoutOnly := len(n.children) > 0 && strings.TrimSpace(n.textContent()) == ""
	for _, it := range n.items {
		switch {
		case it.child != nil:
			e.Children = append(e.Children, RawNode{Elem: copyRaw(it.child)})
		case layoutOnly:
		case len(e.Children) > 0 && e.Children[len(e.Children)-1].Elem == nil:
			e.Children[len(e.Children)-1].Text += it.text
		default:
			e.Children = append(e.Children, RawNode{Text: it.text})
		}
	}
	return e
}

func (d *decoder) forward(n *node) Forward {
	d.visit(n, []string{"mode", "dev", "managed"}, []string{"interface", "address", "pf", "driver", "nat"})
	f := Forward{Mode: ForwardNAT}
	if s, ok := n.attr("mode"); ok {
		m, err := ParseForwardMode(s)
		if err != nil {
			d.errf(n, "attribute mode: %v", err)
		}
		f.Mode = m
	}
	f.Managed = d.yesNo(n, "managed") == TristateYes
	if c := d.one(n, "driver"); c != nil {
		f.Driver = d.hostdevDriver(c)
	}
	if c := d.one(n, "nat"); c != nil {
		f.NAT = d.nat(c)
	}
	dev, hasDev := n.attr("dev")
	ifaces := all(n, "interface")
	addrs := all(n, "address")
	if hasDev {
		f.Interfaces = append(f.Interfaces, ForwardInterface{Dev: dev})
	}
	for i, c := range ifaces {
		d.visit(c, []string{"dev", "connections"}, nil)
		iface := ForwardInterface{}
		iface.Dev, _ = c.attr("dev")
		if iface.Dev == "" {
			d.errf(c, "missing attribute dev")
		}
		if v, ok := d.uintAttr(c, "connections", 32); ok {
			iface.Connections = uint(v)
		}
		if i == 0 && hasDev {
			if iface.Dev != dev {
				d.errf(c, "<forward dev='%s'> must match the first <interface dev='%s'/>", dev, iface.Dev)
			}
			f.Interfaces[0].Connections = iface.Connections
			continue
		}
		f.Interfaces = append(f.Interfaces, iface)
	}
	for _, c := range addrs {
		d.visit(c, []string{"type", "domain", "bus", "slot", "function", "multifunction", "connections"}, nil)
		typ, ok := c.attr("type")
		if !ok {
			d.errf(c, "missing attribute type")
		} else if typ != "pci" {
			d.errf(c, "attribute type: address type %q is not supported (only pci)", typ)
		}
		fa := ForwardAddress{PCI: d.pciAddress(c)}
		if v, ok := d.uintAttr(c, "connections", 32); ok {
			fa.Connections = uint(v)
		}
		f.Addresses = append(f.Addresses, fa)
	}
	pfs := all(n, "pf")
	if len(pfs) > 1 {
		d.errf(pfs[1], "only one <pf> element is allowed in <forward>")
	}
	if len(pfs) > 0 {
		d.visit(pfs[0], []string{"dev"}, nil)
		f.PF, _ = pfs[0].attr("dev")
		if f.PF == "" {
			d.errf(pfs[0], "missing attribute dev")
		}
	}
	if hasDev && (len(addrs) > 0 || len(pfs) > 0) {
		d.errf(n, "the dev attribute cannot be used together with <address> or <pf> elements")
	}
	return f
}

func (d *decoder) hostdevDriver(n *node) *HostdevDriver {
	d.visit(n, []string{"name", "model"}, nil)
	drv := &HostdevDriver{}
	if s, ok := n.attr("name"); ok {
		name, err := parseHostdevDriverName(s)
		if err != nil {
			d.errf(n, "attribute name: %v", err)
		}
		drv.Name = name
	}
	drv.Model, _ = n.attr("model")
	return drv
}

func (d *decoder) pciAddress(n *node) PCIAddress {
	if s, ok := n.attr("multifunction"); ok {
		if _, err := parseOnOff(s); err != nil {
			d.errf(n, "attribute multifunction: %v", err)
		}
	}
	return PCIAddress{
		Domain:   uint32(d.hexOrDecAttr(n, "domain", 0xffffffff)),
		Bus:      uint8(d.hexOrDecAttr(n, "bus", 0xff)),
		Slot:     uint8(d.hexOrDecAttr(n, "slot", 0x1f)),
		Function: uint8(d.hexOrDecAttr(n, "function", 7)),
	}
}

func (d *decoder) nat(n *node) *NAT {
	d.visit(n, []string{"ipv6"}, []string{"address", "port"})
	nat := &NAT{IPv6: d.yesNo(n, "ipv6")}
	if c := d.one(n, "address"); c != nil {
		d.visit(c, []string{"start", "end"}, nil)
		for _, attr := range []string{"start", "end"} {
			a, ok := d.addrAttr(c, attr)
			if _, present := c.attr(attr); !present {
				d.errf(c, "missing attribute %s", attr)
			} else if ok && !a.Is4() {
				d.errf(c, "attribute %s: %s is not an IPv4 address", attr, a)
			}
			if attr == "start" {
				nat.AddressStart = a
			} else {
				nat.AddressEnd = a
			}
		}
	}
	if c := d.one(n, "port"); c != nil {
		d.visit(c, []string{"start", "end"}, nil)
		for _, attr := range []string{"start", "end"} {
			v, ok := d.uintAttr(c, attr, 16)
			if _, present := c.attr(attr); !present {
				d.errf(c, "missing attribute %s", attr)
			}
			if !ok {
				continue
			}
			if attr == "start" {
				nat.PortStart = uint16(v)
			} else {
				nat.PortEnd = uint16(v)
			}
		}
	}
	return nat
}

func (d *decoder) bridge(n *node) Bridge {
	d.visit(n, []string{"name", "zone", "stp", "delay", "macTableManager"}, nil)
	b := Bridge{STP: d.onOff(n, "stp")}
	b.Name, _ = n.attr("name")
	b.Zone, _ = n.attr("zone")
	if v, ok := d.uintAttr(n, "delay", 64); ok {
		b.Delay = v
	}
	if s, ok := n.attr("macTableManager"); ok {
		m, err := parseMACTableManager(s)
		if err != nil {
			d.errf(n, "attribute macTableManager: %v", err)
		}
		b.MACTableManager = m
	}
	return b
}

func (d *decoder) dns(n *node) DNS {
	d.visit(n, []string{"enable", "forwardPlainNames"}, []string{"forwarder", "txt", "srv", "host"})
	dns := DNS{Enable: d.yesNo(n, "enable"), ForwardPlainNames: d.yesNo(n, "forwardPlainNames")}
	for _, c := range all(n, "forwarder") {
		d.visit(c, []string{"addr", "domain"}, nil)
		fw := DNSForwarder{}
		fw.Addr, _ = d.addrAttr(c, "addr")
		fw.Domain, _ = c.attr("domain")
		dns.Forwarders = append(dns.Forwarders, fw)
	}
	for _, c := range all(n, "txt") {
		dns.TXTs = append(dns.TXTs, d.dnsTXT(c))
	}
	for _, c := range all(n, "srv") {
		dns.SRVs = append(dns.SRVs, d.dnsSRV(c))
	}
	for _, c := range all(n, "host") {
		dns.Hosts = append(dns.Hosts, d.dnsHost(c))
	}
	return dns
}

func (d *decoder) dnsTXT(n *node) DNSTXT {
	d.visit(n, []string{"name", "value"}, nil)
	var t DNSTXT
	t.Name, _ = n.attr("name")
	t.Value, _ = n.attr("value")
	return t
}

func (d *decoder) dnsSRV(n *node) DNSSRV {
	d.visit(n, []string{"service", "protocol", "domain", "target", "port", "priority", "weight"}, nil)
	var s DNSSRV
	s.Service, _ = n.attr("service")
	s.Protocol, _ = n.attr("protocol")
	s.Domain, _ = n.attr("domain")
	s.Target, _ = n.attr("target")
	_, hasTarget := n.attr("target")
	for _, attr := range []string{"port", "priority", "weight"} {
		v, ok := d.uintAttr(n, attr, 16)
		if !ok {
			continue
		}
		if !hasTarget {
			d.errf(n, "attribute %s is only allowed together with target", attr)
		}
		switch attr {
		case "port":
			if v == 0 {
				d.errf(n, "attribute port: 0 is not a port (1-65535)")
			}
			s.Port = uint16(v)
		case "priority":
			s.Priority = uint16(v)
		case "weight":
			s.Weight = uint16(v)
		}
	}
	return s
}

func (d *decoder) dnsHost(n *node) DNSHost {
	d.visit(n, []string{"ip"}, []string{"hostname"})
	var h DNSHost
	h.IP, _ = d.addrAttr(n, "ip")
	for _, c := range all(n, "hostname") {
		h.Hostnames = append(h.Hostnames, d.leaf(c))
	}
	return h
}

func (d *decoder) ip(n *node) IP {
	d.visit(n, []string{"address", "netmask", "prefix", "family", "localPtr"}, []string{"tftp", "dhcp"})
	var ip IP
	ip.Family, _ = n.attr("family")
	ip.Address, _ = d.addrAttr(n, "address")
	ip.Netmask, _ = d.addrAttr(n, "netmask")
	if v, ok := d.uintAttr(n, "prefix", 8); ok {
		ip.Prefix = uint8(v)
	}
	ip.LocalPTR = d.yesNo(n, "localPtr")
	if c := d.one(n, "tftp"); c != nil {
		d.visit(c, []string{"root"}, nil)
		ip.TFTPRoot, _ = c.attr("root")
		if ip.TFTPRoot == "" {
			d.errf(c, "missing attribute root")
		}
	}
	if c := d.one(n, "dhcp"); c != nil {
		ip.DHCP = d.dhcp(c)
	}
	return ip
}

func (d *decoder) dhcp(n *node) *DHCP {
	d.visit(n, nil, []string{"range", "host", "bootp"})
	dh := &DHCP{}
	for _, c := range all(n, "range") {
		dh.Ranges = append(dh.Ranges, d.dhcpRange(c))
	}
	for _, c := range all(n, "host") {
		dh.Hosts = append(dh.Hosts, d.dhcpHost(c))
	}
	if c := d.one(n, "bootp"); c != nil {
		d.visit(c, []string{"file", "server"}, nil)
		b := &BootP{}
		b.File, _ = c.attr("file")
		b.Server, _ = d.addrAttr(c, "server")
		dh.BootP = b
	}
	return dh
}

func (d *decoder) dhcpRange(n *node) DHCPRange {
	d.visit(n, []string{"start", "end"}, []string{"lease"})
	var r DHCPRange
	r.Start, _ = d.addrAttr(n, "start")
	r.End, _ = d.addrAttr(n, "end")
	if c := d.one(n, "lease"); c != nil {
		r.Lease = d.lease(c)
	}
	return r
}

func (d *decoder) dhcpHost(n *node) DHCPHost {
	d.visit(n, []string{"mac", "id", "name", "ip"}, []string{"lease"})
	var h DHCPHost
	h.MAC = d.macAttr(n, "mac")
	h.ID, _ = n.attr("id")
	h.Name, _ = n.attr("name")
	h.IP, _ = d.addrAttr(n, "ip")
	if c := d.one(n, "lease"); c != nil {
		h.Lease = d.lease(c)
	}
	return h
}

func (d *decoder) lease(n *node) *Lease {
	d.visit(n, []string{"expiry", "unit"}, nil)
	l := &Lease{Unit: LeaseMinutes}
	v, ok := d.uintAttr(n, "expiry", 64)
	if _, present := n.attr("expiry"); !present {
		d.errf(n, "missing attribute expiry")
	}
	if ok {
		l.Expiry = v
	}
	if s, ok := n.attr("unit"); ok {
		u, err := parseLeaseUnit(s)
		if err != nil {
			d.errf(n, "attribute unit: %v", err)
		} else if l.Expiry != 0 {
			// an infinite lease has no unit; libvirt does not format one
			l.Unit = u
		}
	}
	return l
}

func (d *decoder) route(n *node) Route {
	d.visit(n, []string{"family", "address", "netmask", "prefix", "gateway", "metric"}, nil)
	var r Route
	r.Family, _ = n.attr("family")
	r.Address, _ = d.addrAttr(n, "address")
	r.Netmask, _ = d.addrAttr(n, "netmask")
	r.Gateway, _ = d.addrAttr(n, "gateway")
	if v, ok := d.uintAttr(n, "prefix", 8); ok {
		r.Prefix, r.HasPrefix = uint8(v), true
	}
	if v, ok := d.uintAttr(n, "metric", 32); ok {
		r.Metric = uint32(v)
	}
	for _, attr := range []string{"address", "gateway"} {
		if _, ok := n.attr(attr); !ok {
			d.errf(n, "missing attribute %s", attr)
		}
	}
	return r
}

func (d *decoder) vlan(n *node) *VLAN {
	d.visit(n, []string{"trunk"}, []string{"tag"})
	v := &VLAN{}
	trunk, hasTrunk := n.attr("trunk")
	for _, c := range all(n, "tag") {
		d.visit(c, []string{"id", "nativeMode"}, nil)
		tag := VLANTag{}
		if id, ok := d.uintAttr(c, "id", 16); ok {
			tag.ID = uint16(id)
		} else if _, present := c.attr("id"); !present {
			d.errf(c, "missing attribute id")
		}
		if s, ok := c.attr("nativeMode"); ok {
			switch s {
			case "tagged":
				tag.NativeMode = NativeTagged
			case "untagged":
				tag.NativeMode = NativeUntagged
			default:
				d.errf(c, "attribute nativeMode: %q is not tagged or untagged", s)
			}
		}
		v.Tags = append(v.Tags, tag)
	}
	if hasTrunk {
		switch trunk {
		case "yes":
			v.Trunk = true
		case "no":
			if len(v.Tags) > 1 {
				d.errf(n, "trunk='no' is not possible with more than one tag")
			}
		default:
			d.errf(n, "attribute trunk: %q is not yes or no", trunk)
		}
	} else if len(v.Tags) > 1 {
		v.Trunk = true
	}
	if hasTrunk && trunk == "no" {
		for _, t := range v.Tags {
			if t.NativeMode != NativeNone {
				d.errf(n, "trunk='no' is not allowed with a native VLAN")
			}
		}
	}
	return v
}

func (d *decoder) bandwidth(n *node) *Bandwidth {
	d.visit(n, []string{"classID"}, []string{"inbound", "outbound"})
	b := &Bandwidth{}
	if v, ok := d.uintAttr(n, "classID", 32); ok {
		b.ClassID = uint(v)
	}
	if c := d.one(n, "inbound"); c != nil {
		b.Inbound = d.rate(c)
	}
	if c := d.one(n, "outbound"); c != nil {
		b.Outbound = d.rate(c)
	}
	return b
}

func (d *decoder) rate(n *node) *Rate {
	d.visit(n, []string{"average", "peak", "floor", "burst"}, nil)
	r := &Rate{}
	r.Average, _ = d.uintAttr(n, "average", 64)
	r.Peak, _ = d.uintAttr(n, "peak", 64)
	r.Floor, _ = d.uintAttr(n, "floor", 64)
	r.Burst, _ = d.uintAttr(n, "burst", 64)
	return r
}

func (d *decoder) virtualPort(n *node) *VirtualPort {
	d.visit(n, []string{"type"}, []string{"parameters"})
	vp := &VirtualPort{Type: VirtualPortUntyped}
	if s, ok := n.attr("type"); ok {
		t, err := parseVirtualPortType(s)
		if err != nil {
			d.errf(n, "attribute type: %v", err)
		}
		vp.Type = t
	}
	c := d.one(n, "parameters")
	if c == nil {
		return vp
	}
	d.visit(c, []string{"managerid", "typeid", "typeidversion", "instanceid", "profileid", "interfaceid"}, nil)
	if v, ok := d.uintAttr(c, "managerid", 8); ok {
		m := uint8(v)
		vp.ManagerID = &m
	}
	if v, ok := d.uintAttr(c, "typeid", 24); ok {
		t := uint32(v)
		vp.TypeID = &t
	}
	if v, ok := d.uintAttr(c, "typeidversion", 8); ok {
		t := uint8(v)
		vp.TypeIDVersion = &t
	}
	vp.InstanceID = d.uuidAttr(c, "instanceid")
	vp.InterfaceID = d.uuidAttr(c, "interfaceid")
	vp.ProfileID, _ = c.attr("profileid")
	return vp
}

func (d *decoder) portGroup(n *node) PortGroup {
	d.visit(n, []string{"name", "default", "trustGuestRxFilters"}, []string{"virtualport", "bandwidth", "vlan"})
	var pg PortGroup
	pg.Name, _ = n.attr("name")
	if pg.Name == "" {
		d.errf(n, "missing attribute name")
	}
	pg.Default = d.yesNo(n, "default") == TristateYes
	pg.TrustGuestRxFilters = d.yesNo(n, "trustGuestRxFilters")
	if c := d.one(n, "virtualport"); c != nil {
		pg.VirtualPort = d.virtualPort(c)
	}
	if c := d.one(n, "bandwidth"); c != nil {
		pg.Bandwidth = d.bandwidth(c)
	}
	if c := d.one(n, "vlan"); c != nil {
		pg.VLAN = d.vlan(c)
	}
	return pg
}
