package conf

import (
	"fmt"
	"strconv"
	"strings"
)

// FormatFlags select a view of a network.
type FormatFlags uint

// FormatInactive formats the persistent definition: no status counters.
const FormatInactive FormatFlags = 1 << iota

// writer builds libvirt's canonical XML: two-space indentation, single-quoted
// attributes, elements in libvirt's fixed order.
type writer struct {
	b      strings.Builder
	indent int
}

func (w *writer) line(format string, args ...any) {
	w.b.WriteString(strings.Repeat("  ", w.indent))
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteByte('\n')
}

// escape is libvirt's virBufferEscapeString for attribute and text values,
// plus CR, which XML parsers would otherwise read back as LF.
func escape(s string) string {
	if !strings.ContainsAny(s, "<>&'\"\r") {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '\'':
			b.WriteString("&apos;")
		case '"':
			b.WriteString("&quot;")
		case '\r':
			// a raw CR would read back as LF
			b.WriteString("&#13;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// attrs accumulates " name='value'" pairs.
type attrs []string

func (a *attrs) add(name, value string) { *a = append(*a, " "+name+"='"+escape(value)+"'") }
func (a *attrs) opt(name, value string) {
	if value != "" {
		a.add(name, value)
	}
}
func (a attrs) String() string { return strings.Join(a, "") }

// Format writes n as libvirt does (virNetworkDefFormat).
func (n *Network) Format(flags FormatFlags) []byte {
	w := &writer{}
	n.format(w, flags)
	return []byte(w.b.String())
}

func (n *Network) format(w *writer, flags FormatFlags) {
	var a attrs
	if flags&FormatInactive == 0 && n.Connections > 0 {
		a.add("connections", strconv.FormatUint(uint64(n.Connections), 10))
	}
	if n.IPv6 {
		a.add("ipv6", "yes")
	}
	a.opt("trustGuestRxFilters", n.TrustGuestRxFilters.YesNo())
	if len(n.DnsmasqOptions) > 0 {
		a.add("xmlns:dnsmasq", DnsmasqNamespace)
	}
	w.line("<network%s>", a)
	w.indent++
	w.line("<name>%s</name>", escape(n.Name))
	w.line("<uuid>%s</uuid>", n.UUID)
	if n.Title != "" {
		w.line("<title>%s</title>", escape(n.Title))
	}
	if n.Description != "" {
		w.line("<description>%s</description>", escape(n.Description))
	}
	if n.Metadata != nil {
		n.Metadata.format(w)
	}
	n.Forward.format(w, flags)
	mode := n.Forward.Mode
	if mode.Managed() || n.Bridge.Name != "" || n.Bridge.MACTableManager != MACTableDefault {
		var a attrs
		a.opt("name", n.Bridge.Name)
		a.opt("zone", n.Bridge.Zone)
		if mode.Managed() {
			stp := "on"
			if !n.Bridge.STPEnabled() {
				stp = "off"
			}
			a.add("stp", stp)
			a.add("delay", strconv.FormatUint(n.Bridge.Delay, 10))
		}
		a.opt("macTableManager", n.Bridge.MACTableManager.String())
		w.line("<bridge%s/>", a)
	}
	if n.MTU != 0 {
		w.line("<mtu size='%d'/>", n.MTU)
	}
	if n.MAC != nil {
		w.line("<mac address='%s'/>", n.MAC)
	}
	if d := n.Domain; d != nil {
		var a attrs
		a.add("name", d.Name)
		a.opt("localOnly", d.LocalOnly.YesNo())
		a.opt("register", d.Register.YesNo())
		w.line("<domain%s/>", a)
	}
	n.DNS.format(w)
	n.VLAN.format(w)
	n.Bandwidth.format(w)
	formatPortOptions(w, n.PortIsolated)
	for i := range n.IPs {
		n.IPs[i].format(w)
	}
	for i := range n.Routes {
		n.Routes[i].format(w)
	}
	n.VirtualPort.format(w)
	for i := range n.PortGroups {
		n.PortGroups[i].format(w)
	}
	if len(n.DnsmasqOptions) > 0 {
		w.line("<dnsmasq:options>")
		w.indent++
		for _, o := range n.DnsmasqOptions {
			w.line("<dnsmasq:option value='%s'/>", escape(o))
		}
		w.indent--
		w.line("</dnsmasq:options>")
	}
	w.indent--
	w.line("</network>")
}

func (f *Forward) format(w *writer, flags FormatFlags) {
	if f.Mode == ForwardNone {
		return
	}
	var a attrs
	if f.PF == "" {
		a.opt("dev", f.Dev())
	}
	a.add("mode", f.Mode.String())
	if f.Mode == ForwardHostdev {
		a.add("managed", map[bool]string{true: "yes", false: "no"}[f.Managed])
	}
	nat := f.NAT != nil && (f.NAT.AddressStart.IsValid() || f.NAT.PortStart != 0 || f.NAT.PortEnd != 0 || f.NAT.IPv6 != TristateAbsent)
	if len(f.Interfaces) == 0 && len(f.Addresses) == 0 && f.PF == "" && f.Driver == nil && !nat {
		w.line("<forward%s/>", a)
		return
	}
	w.line("<forward%s>", a)
	w.indent++
	if f.Driver != nil {
		var a attrs
		a.opt("name", f.Driver.Name.String())
		a.opt("model", f.Driver.Model)
		w.line("<driver%s/>", a)
	}
	if nat {
		f.NAT.format(w)
	}
	if f.PF != "" {
		w.line("<pf dev='%s'/>", escape(f.PF))
	}
	if f.PF == "" || flags&FormatInactive == 0 {
		for _, iface := range f.Interfaces {
			var a attrs
			a.add("dev", iface.Dev)
			if flags&FormatInactive == 0 && iface.Connections > 0 {
				a.add("connections", strconv.FormatUint(uint64(iface.Connections), 10))
			}
			w.line("<interface%s/>", a)
		}
		for _, addr := range f.Addresses {
			conn := ""
			if flags&FormatInactive == 0 && addr.Connections > 0 {
				conn = fmt.Sprintf(" connections='%d'", addr.Connections)
			}
			w.line("<address type='pci' %s%s/>", addr.PCI.attrs(), conn)
		}
	}
	w.indent--
	w.line("</forward>")
}

func (a PCIAddress) attrs() string {
	return fmt.Sprintf("domain='0x%04x' bus='0x%02x' slot='0x%02x' function='0x%d'", a.Domain, a.Bus, a.Slot, a.Function)
}

func (n *NAT) format(w *writer) {
	var a attrs
	a.opt("ipv6", n.IPv6.YesNo())
	if !n.AddressStart.IsValid() && n.PortStart == 0 && n.PortEnd == 0 {
		w.line("<nat%s/>", a)
		return
	}
	w.line("<nat%s>", a)
	w.indent++
	if n.AddressStart.IsValid() {
		end := ""
		if n.AddressEnd.IsValid() {
			end = fmt.Sprintf(" end='%s'", n.AddressEnd)
		}
		w.line("<address start='%s'%s/>", n.AddressStart, end)
	}
	if n.PortStart != 0 || n.PortEnd != 0 {
		end := ""
		if n.PortEnd != 0 {
			end = fmt.Sprintf(" end='%d'", n.PortEnd)
		}
		w.line("<port start='%d'%s/>", n.PortStart, end)
	}
	w.indent--
	w.line("</nat>")
}

func (d *DNS) format(w *writer) {
	children := len(d.Forwarders) > 0 || len(d.TXTs) > 0 || len(d.SRVs) > 0 || len(d.Hosts) > 0
	if d.Enable == TristateAbsent && d.ForwardPlainNames == TristateAbsent && !children {
		return
	}
	var a attrs
	a.opt("enable", d.Enable.YesNo())
	a.opt("forwardPlainNames", d.ForwardPlainNames.YesNo())
	if !children {
		w.line("<dns%s/>", a)
		return
	}
	w.line("<dns%s>", a)
	w.indent++
	for _, f := range d.Forwarders {
		var a attrs
		a.opt("domain", f.Domain)
		if f.Addr.IsValid() {
			a.add("addr", f.Addr.String())
		}
		w.line("<forwarder%s/>", a)
	}
	for _, t := range d.TXTs {
		w.line("<txt name='%s' value='%s'/>", escape(t.Name), escape(t.Value))
	}
	for _, s := range d.SRVs {
		var a attrs
		a.add("service", s.Service)
		a.add("protocol", s.Protocol)
		a.opt("domain", s.Domain)
		a.opt("target", s.Target)
		for _, v := range []struct {
			name string
			v    uint16
		}{{"port", s.Port}, {"priority", s.Priority}, {"weight", s.Weight}} {
			if v.v != 0 {
				a.add(v.name, strconv.Itoa(int(v.v)))
			}
		}
		w.line("<srv%s/>", a)
	}
	for _, h := range d.Hosts {
		w.line("<host ip='%s'>", h.IP)
		w.indent++
		for _, name := range h.Hostnames {
			w.line("<hostname>%s</hostname>", escape(name))
		}
		w.indent--
		w.line("</host>")
	}
	w.indent--
	w.line("</dns>")
}

func (v *VLAN) format(w *writer) {
	if v == nil || len(v.Tags) == 0 {
		return
	}
	trunk := ""
	if v.Trunk {
		trunk = " trunk='yes'"
	}
	w.line("<vlan%s>", trunk)
	w.indent++
	for _, t := range v.Tags {
		native := ""
		if t.NativeMode != NativeNone {
			native = fmt.Sprintf(" nativeMode='%s'", t.NativeMode)
		}
		w.line("<tag id='%d'%s/>", t.ID, native)
	}
	w.indent--
	w.line("</vlan>")
}

func (b *Bandwidth) format(w *writer) {
	if b == nil {
		return
	}
	class := ""
	if b.ClassID != 0 {
		class = fmt.Sprintf(" classID='%d'", b.ClassID)
	}
	w.line("<bandwidth%s>", class)
	w.indent++
	b.Inbound.format(w, "inbound")
	b.Outbound.format(w, "outbound")
	w.indent--
	w.line("</bandwidth>")
}

func (r *Rate) format(w *writer, elem string) {
	if r == nil || (r.Average == 0 && r.Floor == 0) {
		return
	}
	var a attrs
	for _, v := range []struct {
		name string
		v    uint64
	}{{"average", r.Average}, {"peak", r.Peak}, {"floor", r.Floor}, {"burst", r.Burst}} {
		if v.v != 0 {
			a.add(v.name, strconv.FormatUint(v.v, 10))
		}
	}
	w.line("<%s%s/>", elem, a)
}

func formatPortOptions(w *writer, isolated Tristate) {
	if isolated != TristateAbsent {
		w.line("<port isolated='%s'/>", isolated.YesNo())
	}
}

func (ip *IP) format(w *writer) {
	var a attrs
	a.opt("family", ip.Family)
	if ip.Address.IsValid() {
		a.add("address", ip.Address.String())
	}
	if ip.Netmask.IsValid() {
		a.add("netmask", ip.Netmask.String())
	}
	if ip.Prefix > 0 {
		a.add("prefix", strconv.Itoa(int(ip.Prefix)))
	}
	a.opt("localPtr", ip.LocalPTR.YesNo())
	w.line("<ip%s>", a)
	w.indent++
	if ip.TFTPRoot != "" {
		w.line("<tftp root='%s'/>", escape(ip.TFTPRoot))
	}
	if d := ip.DHCP; d != nil && (len(d.Ranges) > 0 || len(d.Hosts) > 0 || d.BootP != nil) {
		w.line("<dhcp>")
		w.indent++
		for _, r := range d.Ranges {
			formatWithLease(w, fmt.Sprintf("range start='%s' end='%s'", r.Start, r.End), "range", r.Lease)
		}
		for i := range d.Hosts {
			formatWithLease(w, "host"+dhcpHostAttrs(&d.Hosts[i]), "host", d.Hosts[i].Lease)
		}
		if b := d.BootP; b != nil {
			var a attrs
			a.add("file", b.File)
			if b.Server.IsValid() {
				a.add("server", b.Server.String())
			}
			w.line("<bootp%s/>", a)
		}
		w.indent--
		w.line("</dhcp>")
	}
	w.indent--
	w.line("</ip>")
}

// dhcpHostAttrs are a static host's attributes in libvirt's order.
func dhcpHostAttrs(h *DHCPHost) string {
	var a attrs
	if h.MAC != nil {
		a.add("mac", h.MAC.String())
	}
	a.opt("id", h.ID)
	a.opt("name", h.Name)
	if h.IP.IsValid() {
		a.add("ip", h.IP.String())
	}
	return a.String()
}

func formatWithLease(w *writer, open, elem string, l *Lease) {
	if l == nil {
		w.line("<%s/>", open)
		return
	}
	w.line("<%s>", open)
	w.indent++
	if l.Expiry == 0 {
		w.line("<lease expiry='0'/>")
	} else {
		w.line("<lease expiry='%d' unit='%s'/>", l.Expiry, l.Unit)
	}
	w.indent--
	w.line("</%s>", elem)
}

func (r *Route) format(w *writer) {
	var a attrs
	a.opt("family", r.Family)
	a.add("address", r.Address.String())
	if r.Netmask.IsValid() {
		a.add("netmask", r.Netmask.String())
	}
	if r.HasPrefix {
		a.add("prefix", strconv.Itoa(int(r.Prefix)))
	}
	a.add("gateway", r.Gateway.String())
	if r.Metric > 0 {
		a.add("metric", strconv.FormatUint(uint64(r.Metric), 10))
	}
	w.line("<route%s/>", a)
}

func (vp *VirtualPort) format(w *writer) {
	if vp == nil {
		return
	}
	t := vp.Type
	untyped := t == VirtualPortUntyped
	var a attrs
	if vp.ManagerID != nil && (t == VirtualPort8021Qbg || untyped) {
		a.add("managerid", strconv.Itoa(int(*vp.ManagerID)))
	}
	if vp.TypeID != nil && (t == VirtualPort8021Qbg || untyped) {
		a.add("typeid", strconv.FormatUint(uint64(*vp.TypeID), 10))
	}
	if vp.TypeIDVersion != nil && (t == VirtualPort8021Qbg || untyped) {
		a.add("typeidversion", strconv.Itoa(int(*vp.TypeIDVersion)))
	}
	if vp.InstanceID != nil && (t == VirtualPort8021Qbg || untyped) {
		a.add("instanceid", vp.InstanceID.String())
	}
	if vp.InterfaceID != nil && (t == VirtualPortOpenvswitch || t == VirtualPortMidonet || untyped) {
		a.add("interfaceid", vp.InterfaceID.String())
	}
	if vp.ProfileID != "" && (t == VirtualPortOpenvswitch || t == VirtualPort8021Qbh || untyped) {
		a.add("profileid", vp.ProfileID)
	}
	open := "<virtualport>"
	if !untyped {
		open = fmt.Sprintf("<virtualport type='%s'>", t)
	}
	if len(a) == 0 {
		if !untyped {
			w.line("<virtualport type='%s'/>", t)
		}
		return
	}
	w.line("%s", open)
	w.indent++
	w.line("<parameters%s/>", a)
	w.indent--
	w.line("</virtualport>")
}

func (pg *PortGroup) format(w *writer) {
	var a attrs
	a.add("name", pg.Name)
	if pg.Default {
		a.add("default", "yes")
	}
	a.opt("trustGuestRxFilters", pg.TrustGuestRxFilters.YesNo())
	w.line("<portgroup%s>", a)
	w.indent++
	pg.VLAN.format(w)
	pg.VirtualPort.format(w)
	pg.Bandwidth.format(w)
	w.indent--
	w.line("</portgroup>")
}

// format writes <metadata> the way libvirt does through libxml2: its content
// indented, double-quoted attributes, mixed content left as it is.
func (m *Metadata) format(w *writer) {
	if len(m.Elements) == 0 {
		w.line("<metadata/>")
		return
	}
	w.line("<metadata>")
	w.indent++
	for _, e := range m.Elements {
		w.b.WriteString(strings.Repeat("  ", w.indent))
		e.dump(&w.b, w.indent, true)
		w.b.WriteByte('\n')
	}
	w.indent--
	w.line("</metadata>")
}

func (e *RawElement) dump(b *strings.Builder, level int, format bool) {
	b.WriteByte('<')
	b.WriteString(qname(e.Name))
	for _, a := range e.Attrs {
		b.WriteByte(' ')
		b.WriteString(qname(a.Name))
		b.WriteString(`="`)
		b.WriteString(escapeAttrLibxml(a.Value))
		b.WriteByte('"')
	}
	children := e.Children
	if format {
		// libxml2 does not indent mixed content; blank text between elements
		// is not content (libvirt parses with blanks dropped).
		hasElem, hasText := false, false
		for _, c := range children {
			if c.Elem != nil {
				hasElem = true
			} else if strings.TrimSpace(c.Text) != "" {
				hasText = true
			}
		}
		if hasElem && !hasText {
			var kept []RawNode
			for _, c := range children {
				if c.Elem != nil {
					kept = append(kept, c)
				}
			}
			children = kept
		} else if hasElem || hasText {
			format = false
		}
	}
	if len(children) == 0 {
		b.WriteString("/>")
		return
	}
	b.WriteByte('>')
	indented := format && children[0].Elem != nil
	for _, c := range children {
		if indented {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat("  ", level+1))
		}
		if c.Elem != nil {
			c.Elem.dump(b, level+1, format)
		} else {
			b.WriteString(escapeTextLibxml(c.Text))
		}
	}
	if indented {
		b.WriteByte('\n')
		b.WriteString(strings.Repeat("  ", level))
	}
	b.WriteString("</")
	b.WriteString(qname(e.Name))
	b.WriteByte('>')
}

var (
	libxmlAttrEscaper = strings.NewReplacer("<", "&lt;", ">", "&gt;", "&", "&amp;", `"`, "&quot;", "\n", "&#10;", "\r", "&#13;", "\t", "&#9;")
	libxmlTextEscaper = strings.NewReplacer("<", "&lt;", ">", "&gt;", "&", "&amp;", "\r", "&#13;")
)

func escapeAttrLibxml(s string) string { return libxmlAttrEscaper.Replace(s) }
func escapeTextLibxml(s string) string { return libxmlTextEscaper.Replace(s) }
