package conf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// This file is net-update on the model: libvirt's virNetworkDefUpdateSection
// and its per-section helpers, as pure functions. The daemon validates the
// result (Validate) before it stores or applies it; Update itself checks only
// what libvirt's update functions check.

// UpdateCommand is virNetworkUpdateCommand. The zero value is invalid.
type UpdateCommand uint8

const (
	updateCommandInvalid UpdateCommand = iota
	UpdateModify                       // replace an existing entry
	UpdateDelete                       // remove an existing entry
	UpdateAddLast                      // append a new entry
	UpdateAddFirst                     // insert a new entry before the others
)

var updateCommandNames = [...]string{"", "modify", "delete", "add-last", "add-first"}

func (c UpdateCommand) String() string {
	if c > updateCommandInvalid && int(c) < len(updateCommandNames) {
		return updateCommandNames[c]
	}
	return fmt.Sprintf("UpdateCommand(%d)", c)
}

func (c UpdateCommand) isAdd() bool { return c == UpdateAddFirst || c == UpdateAddLast }

// ParseUpdateCommand parses virsh's spelling of a net-update command; "add"
// is add-last, as in virsh.
func ParseUpdateCommand(s string) (UpdateCommand, error) {
	if s == "add" {
		return UpdateAddLast, nil
	}
	for i, n := range updateCommandNames {
		if i > 0 && n == s {
			return UpdateCommand(i), nil
		}
	}
	return updateCommandInvalid, fmt.Errorf("unknown net-update command %q (modify, delete, add-last, add-first or add)", s)
}

// UpdateSection is virNetworkUpdateSection. The zero value is invalid.
type UpdateSection uint8

const (
	updateSectionInvalid UpdateSection = iota
	SectionBridge
	SectionDomain
	SectionIP
	SectionIPDHCPHost
	SectionIPDHCPRange
	SectionForward
	SectionForwardInterface
	SectionForwardPF
	SectionPortGroup
	SectionDNSHost
	SectionDNSTXT
	SectionDNSSRV
)

var updateSectionNames = [...]string{"", "bridge", "domain", "ip", "ip-dhcp-host", "ip-dhcp-range",
	"forward", "forward-interface", "forward-pf", "portgroup", "dns-host", "dns-txt", "dns-srv"}

func (s UpdateSection) String() string {
	if s > updateSectionInvalid && int(s) < len(updateSectionNames) {
		return updateSectionNames[s]
	}
	return fmt.Sprintf("UpdateSection(%d)", s)
}

// ParseUpdateSection parses virsh's spelling of a net-update section.
func ParseUpdateSection(s string) (UpdateSection, error) {
	for i, n := range updateSectionNames {
		if i > 0 && n == s {
			return UpdateSection(i), nil
		}
	}
	return updateSectionInvalid, fmt.Errorf("unknown net-update section %q", s)
}

// ErrUpdateUnsupported is matched (errors.Is) by the Update errors libvirt
// reports as VIR_ERR_OPERATION_UNSUPPORTED: a section that cannot be updated
// at all, or a command a section does not support (modify of a dhcp range,
// forward interface or DNS SRV record). Every other Update error is libvirt's
// VIR_ERR_OPERATION_INVALID or an XML error.
var ErrUpdateUnsupported = errors.New("unsupported network update")

type updateUnsupported string

func (e updateUnsupported) Error() string        { return string(e) }
func (e updateUnsupported) Is(target error) bool { return target == ErrUpdateUnsupported }

// Update applies one net-update to n: cmd on the entry of section described by
// the XML snippet xml. parentIndex selects the <ip> for the ip-dhcp-host and
// ip-dhcp-range sections (-1: the most appropriate one) and is ignored by the
// others. n changes only when Update succeeds; on error it is left exactly as
// it was. Update applies libvirt's update rules only: the caller validates the
// whole network afterwards.
func (n *Network) Update(cmd UpdateCommand, section UpdateSection, parentIndex int, xml []byte) error {
	u := &updater{net: n.Clone(), name: n.Name, cmd: cmd, section: section}
	if cmd == updateCommandInvalid || int(cmd) >= len(updateCommandNames) {
		return u.errf("unrecognized network update command %s", cmd)
	}
	var err error
	switch section {
	case SectionBridge, SectionDomain, SectionIP, SectionForward, SectionForwardPF:
		return updateUnsupported(fmt.Sprintf("can't update '%s' section of network '%s'", section, n.Name))
	case SectionIPDHCPHost:
		err = u.dhcpHost(parentIndex, xml)
	case SectionIPDHCPRange:
		err = u.dhcpRange(parentIndex, xml)
	case SectionForwardInterface:
		err = u.forwardInterface(xml)
	case SectionPortGroup:
		err = u.portGroup(xml)
	case SectionDNSHost:
		err = u.dnsHost(xml)
	case SectionDNSTXT:
		err = u.dnsTXT(xml)
	case SectionDNSSRV:
		err = u.dnsSRV(xml)
	default:
		return fmt.Errorf("network %q: %w", n.Name, updateUnsupported(fmt.Sprintf("can't update unrecognized section %s", section)))
	}
	if err != nil {
		return err
	}
	*n = *u.net
	return nil
}

// updater applies one update to a copy of the network.
type updater struct {
	net     *Network // the working copy
	name    string
	cmd     UpdateCommand
	section UpdateSection
}

// errf is an error naming the network and the section.
func (u *updater) errf(format string, args ...any) error {
	return fmt.Errorf("network %q: %s: %s", u.name, u.section, fmt.Sprintf(format, args...))
}

// unsupported is an errf that matches ErrUpdateUnsupported.
func (u *updater) unsupported(format string, args ...any) error {
	return fmt.Errorf("network %q: %s: %w", u.name, u.section, updateUnsupported(fmt.Sprintf(format, args...)))
}

// problems joins the collected problems, each naming the network and section.
func (u *updater) problems(list []error) error {
	if len(list) == 0 {
		return nil
	}
	var out []error
	for _, e := range list[:min(len(list), maxProblems)] {
		out = append(out, fmt.Errorf("network %q: %s: %w", u.name, u.section, e))
	}
	if len(list) > maxProblems {
		out = append(out, fmt.Errorf("network %q: %s: and %d more problems", u.name, u.section, len(list)-maxProblems))
	}
	return errors.Join(out...)
}

// snippet reads the update XML, whose root must be <root>.
func (u *updater) snippet(data []byte, root string) (*node, error) {
	if got, ok := snippetRoot(data); ok && got != root {
		return nil, u.errf("unexpected element <%s>, expecting <%s>", got, root)
	}
	n, err := readTree(data, root)
	if err != nil {
		return nil, u.errf("%v", err)
	}
	return n, nil
}

// snippetRoot is the name of the first element of data, as written.
func snippetRoot(data []byte) (string, bool) {
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := d.RawToken()
		if err != nil {
			return "", false
		}
		if se, ok := tok.(xml.StartElement); ok {
			return qname(RawName{Prefix: se.Name.Space, Local: se.Name.Local}), true
		}
	}
}

// ipFamily is 4, 6 or 0 (unknown) for an address.
func ipFamily(a netip.Addr) int {
	switch {
	case !a.IsValid():
		return 0
	case a.Is4():
		return 4
	}
	return 6
}

// dhcpParent finds the <ip> whose <dhcp> an ip-dhcp-host or ip-dhcp-range
// update works on. parentIndex >= 0 is the index among all <ip> elements. -1
// picks the first <ip> of the snippet's family that already has DHCP (ranges
// or hosts), else the first <ip> of that family; a snippet without a family
// looks at IPv4 first, then at IPv6 if the network has no IPv4 <ip>.
func (u *updater) dhcpParent(parentIndex, family int) (*IP, error) {
	ips := u.net.IPs
	if parentIndex >= 0 {
		if parentIndex >= len(ips) {
			return nil, u.errf("no <ip> element found at index %d", parentIndex)
		}
		return &ips[parentIndex], nil
	}
	if parentIndex != -1 {
		return nil, u.errf("invalid parent index %d (an <ip> index, or -1 for the most appropriate one)", parentIndex)
	}
	pick := func(f int) *IP {
		first := -1
		for i := range ips {
			if ipFamily(ips[i].Address) != f {
				continue
			}
			if ips[i].HasDHCP() {
				return &ips[i]
			}
			if first < 0 {
				first = i
			}
		}
		if first >= 0 {
			return &ips[first]
		}
		return nil
	}
	if family != 0 {
		if ip := pick(family); ip != nil {
			return ip, nil
		}
		return nil, u.errf("no IPv%d <ip> element found", family)
	}
	if ip := pick(4); ip != nil {
		return ip, nil
	}
	if ip := pick(6); ip != nil {
		return ip, nil
	}
	return nil, u.errf("no <ip> element found")
}

// checkMultiDHCP is libvirt's rule that only one <ip> of each family has DHCP:
// adding to ip's <dhcp> fails when another <ip> of its family already has some.
func (u *updater) checkMultiDHCP(ip *IP) error {
	for i := range u.net.IPs {
		other := &u.net.IPs[i]
		if other != ip && other.IsIPv6() == ip.IsIPv6() && other.HasDHCP() {
			fam := "IPv4"
			if ip.IsIPv6() {
				fam = "IPv6"
			}
			return u.errf("dhcp is supported only for a single %s address on each network (<ip address='%s'> already has dhcp)", fam, other.Address)
		}
	}
	return nil
}

func leaseProblems(l *Lease, path string) []error {
	if l == nil {
		return nil
	}
	var p problems
	l.rules(&p, path)
	return p.list
}

// hostFamily is the family a <host> snippet belongs to: its ip's, else IPv6
// for a DUID without a MAC, IPv4 for a MAC, 0 when nothing tells.
func hostFamily(h *DHCPHost) int {
	switch {
	case h.IP.IsValid():
		return ipFamily(h.IP)
	case h.ID != "" && h.MAC == nil:
		return 6
	case h.MAC != nil:
		return 4
	}
	return 0
}

func describeDHCPHost(h *DHCPHost) string { return "<host" + dhcpHostAttrs(h) + "/>" }

// sameHost is the match of ADD (a duplicate) and MODIFY (the entry to
// replace): the same MAC, the same name or the same IP.
func sameHost(snip, h *DHCPHost) bool {
	return (snip.MAC != nil && h.MAC != nil && bytes.Equal(snip.MAC, h.MAC)) ||
		(snip.Name != "" && snip.Name == h.Name) ||
		(snip.IP.IsValid() && snip.IP == h.IP)
}

// matchesHost is DELETE's match: every attribute the snippet gives agrees
// (an existing host without a MAC agrees with any MAC, as in libvirt).
func matchesHost(snip, h *DHCPHost) bool {
	return (snip.MAC == nil || h.MAC == nil || bytes.Equal(snip.MAC, h.MAC)) &&
		(snip.ID == "" || strings.EqualFold(snip.ID, h.ID)) &&
		(snip.Name == "" || snip.Name == h.Name) &&
		(!snip.IP.IsValid() || snip.IP == h.IP)
}

func (u *updater) dhcpHost(parentIndex int, data []byte) error {
	n, err := u.snippet(data, "host")
	if err != nil {
		return err
	}
	d := newDecoder()
	h := d.dhcpHost(n)
	if err := u.problems(d.list); err != nil {
		return err
	}
	ip, err := u.dhcpParent(parentIndex, hostFamily(&h))
	if err != nil {
		return err
	}
	partial := u.cmd == UpdateDelete
	if err := h.check(ip.IsIPv6(), partial); err != nil {
		return u.errf("invalid %s: %v", describeDHCPHost(&h), err)
	}
	if err := u.problems(leaseProblems(h.Lease, "host/lease")); err != nil {
		return err
	}
	if !partial && h.IP.Is6() != ip.IsIPv6() {
		return u.errf("the address family of host ip %s must match the address family of the dhcp element's parent <ip address='%s'>", h.IP, ip.Address)
	}
	var hosts []DHCPHost
	if ip.DHCP != nil {
		hosts = ip.DHCP.Hosts
	}
	switch u.cmd {
	case UpdateModify:
		i := slices.IndexFunc(hosts, func(e DHCPHost) bool { return sameHost(&h, &e) })
		if i < 0 {
			return u.errf("couldn't locate an existing dhcp host entry with%s", dhcpHostAttrs(&h))
		}
		hosts[i] = h
	case UpdateAddFirst, UpdateAddLast:
		if err := u.checkMultiDHCP(ip); err != nil {
			return err
		}
		if i := slices.IndexFunc(hosts, func(e DHCPHost) bool { return sameHost(&h, &e) }); i >= 0 {
			return u.errf("there is an existing dhcp host entry %s that matches %s", describeDHCPHost(&hosts[i]), describeDHCPHost(&h))
		}
		if ip.DHCP == nil {
			ip.DHCP = &DHCP{}
		}
		ip.DHCP.Hosts = insertAt(ip.DHCP.Hosts, u.cmd, h)
	case UpdateDelete:
		i := slices.IndexFunc(hosts, func(e DHCPHost) bool { return matchesHost(&h, &e) })
		if i < 0 {
			return u.errf("couldn't locate a matching dhcp host entry for %s", describeDHCPHost(&h))
		}
		ip.DHCP.Hosts = slices.Delete(ip.DHCP.Hosts, i, i+1)
	}
	return nil
}

// insertAt adds v first (ADD_FIRST) or last (ADD_LAST).
func insertAt[T any](list []T, cmd UpdateCommand, v T) []T {
	if cmd == UpdateAddFirst {
		return slices.Insert(list, 0, v)
	}
	return append(list, v)
}

func (u *updater) dhcpRange(parentIndex int, data []byte) error {
	n, err := u.snippet(data, "range")
	if err != nil {
		return err
	}
	if u.cmd == UpdateModify {
		return u.unsupported("dhcp ranges cannot be modified, only added or deleted")
	}
	d := newDecoder()
	r := d.dhcpRange(n)
	if err := u.problems(d.list); err != nil {
		return err
	}
	ip, err := u.dhcpParent(parentIndex, ipFamily(r.Start))
	if err != nil {
		return err
	}
	subnet, err := ip.Subnet()
	if err != nil {
		return u.errf("<ip address='%s'>: %v", ip.Address, err)
	}
	desc := fmt.Sprintf("<range start='%s' end='%s'/>", r.Start, r.End)
	if err := checkRange(r.Start, r.End, subnet); err != nil {
		return u.errf("invalid %s: %v", desc, err)
	}
	if err := u.problems(leaseProblems(r.Lease, "range/lease")); err != nil {
		return err
	}
	if r.Start.Is6() != ip.IsIPv6() {
		return u.errf("the address family of a dhcp range must match the address family of the dhcp element's parent <ip address='%s'>", ip.Address)
	}
	var ranges []DHCPRange
	if ip.DHCP != nil {
		ranges = ip.DHCP.Ranges
	}
	i := slices.IndexFunc(ranges, func(e DHCPRange) bool { return e.Start == r.Start && e.End == r.End })
	switch u.cmd {
	case UpdateAddFirst, UpdateAddLast:
		if err := u.checkMultiDHCP(ip); err != nil {
			return err
		}
		if i >= 0 {
			return u.errf("there is an existing dhcp range entry that matches %s", desc)
		}
		if ip.DHCP == nil {
			ip.DHCP = &DHCP{}
		}
		ip.DHCP.Ranges = insertAt(ip.DHCP.Ranges, u.cmd, r)
	case UpdateDelete:
		if i < 0 {
			return u.errf("couldn't locate a matching dhcp range entry for %s", desc)
		}
		ip.DHCP.Ranges = slices.Delete(ip.DHCP.Ranges, i, i+1)
	}
	return nil
}

func (u *updater) forwardInterface(data []byte) error {
	n, err := u.snippet(data, "interface")
	if err != nil {
		return err
	}
	if u.cmd == UpdateModify {
		return u.unsupported("forward interface entries cannot be modified, only added or deleted")
	}
	d := newDecoder()
	d.visit(n, []string{"dev"}, nil)
	dev, _ := n.attr("dev")
	if dev == "" {
		d.errf(n, "missing dev attribute in <interface> element")
	}
	if err := u.problems(d.list); err != nil {
		return err
	}
	f := &u.net.Forward
	i := slices.IndexFunc(f.Interfaces, func(e ForwardInterface) bool { return e.Dev == dev })
	switch u.cmd {
	case UpdateAddFirst, UpdateAddLast:
		if i >= 0 {
			return u.errf("there is an existing interface entry that matches <interface dev='%s'/>", dev)
		}
		f.Interfaces = insertAt(f.Interfaces, u.cmd, ForwardInterface{Dev: dev})
	case UpdateDelete:
		if i < 0 {
			return u.errf("couldn't find an interface entry matching <interface dev='%s'/>", dev)
		}
		if c := f.Interfaces[i].Connections; c > 0 {
			return u.errf("unable to delete interface %s: it is in use by %d ports", dev, c)
		}
		f.Interfaces = slices.Delete(f.Interfaces, i, i+1)
	}
	return nil
}

// portGroupRules are the parser's rules for one <portgroup>.
func portGroupRules(p *problems, pg *PortGroup, path string) {
	if pg.Name == "" {
		p.add(path, "missing portgroup name")
	} else if !only(pg.Name, deviceNameChars) {
		p.add(path, "name %q has characters outside letters, digits and _.-\\:/", pg.Name)
	}
	if pg.VLAN != nil {
		pg.VLAN.rules(p, path+"/vlan")
	}
	if pg.Bandwidth != nil {
		pg.Bandwidth.rules(p, path+"/bandwidth", false)
	}
	if pg.VirtualPort != nil {
		pg.VirtualPort.rules(p, path+"/virtualport")
	}
}

func (u *updater) portGroup(data []byte) error {
	n, err := u.snippet(data, "portgroup")
	if err != nil {
		return err
	}
	d := newDecoder()
	pg := d.portGroup(n)
	if err := u.problems(d.list); err != nil {
		return err
	}
	var p problems
	portGroupRules(&p, &pg, "portgroup")
	if err := u.problems(Problems(d.withLines(p.err()))); err != nil {
		return err
	}
	pgs := u.net.PortGroups
	foundName := slices.IndexFunc(pgs, func(e PortGroup) bool { return e.Name == pg.Name })
	foundDefault := slices.IndexFunc(pgs, func(e PortGroup) bool { return e.Default })
	switch {
	case foundName < 0 && (u.cmd == UpdateModify || u.cmd == UpdateDelete):
		return u.errf("couldn't find a portgroup entry matching <portgroup name='%s'>", pg.Name)
	case foundName >= 0 && u.cmd.isAdd():
		return u.errf("there is an existing portgroup entry that matches <portgroup name='%s'>", pg.Name)
	case u.cmd != UpdateDelete && pg.Default && foundDefault >= 0 && foundDefault != foundName:
		return u.errf("a different portgroup is already the default (<portgroup name='%s'>); only one default is allowed", pgs[foundDefault].Name)
	}
	switch u.cmd {
	case UpdateModify:
		pgs[foundName] = pg
	case UpdateAddFirst, UpdateAddLast:
		u.net.PortGroups = insertAt(u.net.PortGroups, u.cmd, pg)
	case UpdateDelete:
		u.net.PortGroups = slices.Delete(u.net.PortGroups, foundName, foundName+1)
	}
	return nil
}

func describeDNSHost(h *DNSHost) string {
	var b strings.Builder
	b.WriteString("<host")
	if h.IP.IsValid() {
		fmt.Fprintf(&b, " ip='%s'", h.IP)
	}
	b.WriteString(">")
	for _, name := range h.Hostnames {
		fmt.Fprintf(&b, "<hostname>%s</hostname>", escape(name))
	}
	b.WriteString("</host>")
	return b.String()
}

func (u *updater) dnsHost(data []byte) error {
	n, err := u.snippet(data, "host")
	if err != nil {
		return err
	}
	d := newDecoder()
	h := d.dnsHost(n)
	if err := u.problems(d.list); err != nil {
		return err
	}
	if err := h.check(u.cmd == UpdateDelete); err != nil {
		return u.errf("invalid %s: %v", describeDNSHost(&h), err)
	}
	dns := &u.net.DNS
	found, foundIdx := 0, -1
	for i := range dns.Hosts {
		e := &dns.Hosts[i]
		match := h.IP.IsValid() && h.IP == e.IP
		// When adding or modifying only the address identifies a record:
		// several addresses with the same hostname is a legitimate
		// configuration. A delete also matches by any shared hostname.
		if !match && u.cmd == UpdateDelete {
			for _, name := range h.Hostnames {
				if slices.Contains(e.Hostnames, name) {
					match = true
					break
				}
			}
		}
		if match {
			found++
			foundIdx = i
		}
	}
	if u.cmd.isAdd() {
		if found > 0 {
			return u.errf("there is already at least one DNS HOST record with a matching field (%s)", describeDNSHost(&h))
		}
		dns.Hosts = insertAt(dns.Hosts, u.cmd, h)
		return nil
	}
	switch {
	case found == 0:
		return u.errf("couldn't locate a matching DNS HOST record for %s", describeDNSHost(&h))
	case found > 1:
		return u.errf("multiple matching DNS HOST records were found for %s", describeDNSHost(&h))
	}
	if u.cmd == UpdateModify {
		dns.Hosts[foundIdx] = h
	} else {
		dns.Hosts = slices.Delete(dns.Hosts, foundIdx, foundIdx+1)
	}
	return nil
}

func (u *updater) dnsTXT(data []byte) error {
	n, err := u.snippet(data, "txt")
	if err != nil {
		return err
	}
	d := newDecoder()
	t := d.dnsTXT(n)
	if err := u.problems(d.list); err != nil {
		return err
	}
	if err := t.check(!u.cmd.isAdd()); err != nil {
		return u.errf("invalid <txt>: %v", err)
	}
	if u.cmd == UpdateModify && t.Value == "" {
		return u.errf("invalid <txt name='%s'>: a value is required to modify a DNS TXT record", escape(t.Name))
	}
	dns := &u.net.DNS
	i := slices.IndexFunc(dns.TXTs, func(e DNSTXT) bool { return e.Name == t.Name })
	switch u.cmd {
	case UpdateAddFirst, UpdateAddLast:
		if i >= 0 {
			return u.errf("there is already a DNS TXT record with name '%s'", t.Name)
		}
		dns.TXTs = insertAt(dns.TXTs, u.cmd, t)
	case UpdateDelete:
		if i < 0 {
			return u.errf("couldn't locate a matching DNS TXT record with name '%s'", t.Name)
		}
		dns.TXTs = slices.Delete(dns.TXTs, i, i+1)
	case UpdateModify:
		if i < 0 {
			return u.errf("couldn't locate a matching DNS TXT record with name '%s'", t.Name)
		}
		dns.TXTs[i].Value = t.Value
	}
	return nil
}

func describeSRV(s *DNSSRV) string {
	var a attrs
	a.opt("service", s.Service)
	a.opt("protocol", s.Protocol)
	a.opt("domain", s.Domain)
	a.opt("target", s.Target)
	return "<srv" + a.String() + "/>"
}

func (u *updater) dnsSRV(data []byte) error {
	n, err := u.snippet(data, "srv")
	if err != nil {
		return err
	}
	if u.cmd == UpdateModify {
		return u.unsupported("DNS SRV records cannot be modified, only added or deleted")
	}
	d := newDecoder()
	s := d.dnsSRV(n)
	if err := u.problems(d.list); err != nil {
		return err
	}
	if err := s.check(u.cmd == UpdateDelete); err != nil {
		return u.errf("invalid %s: %v", describeSRV(&s), err)
	}
	dns := &u.net.DNS
	found, foundIdx := 0, -1
	for i := range dns.SRVs {
		e := &dns.SRVs[i]
		if (s.Domain == "" || s.Domain == e.Domain) &&
			(s.Service == "" || s.Service == e.Service) &&
			(s.Protocol == "" || s.Protocol == e.Protocol) &&
			(s.Target == "" || s.Target == e.Target) {
			found++
			foundIdx = i
		}
	}
	if u.cmd.isAdd() {
		if found > 0 {
			return u.errf("there is already at least one DNS SRV record matching all specified fields of %s", describeSRV(&s))
		}
		dns.SRVs = insertAt(dns.SRVs, u.cmd, s)
		return nil
	}
	switch {
	case found == 0:
		return u.errf("couldn't locate a matching DNS SRV record for %s", describeSRV(&s))
	case found > 1:
		return u.errf("multiple DNS SRV records matching all specified fields of %s were found", describeSRV(&s))
	}
	dns.SRVs = slices.Delete(dns.SRVs, foundIdx, foundIdx+1)
	return nil
}

// Clone returns a deep copy of n: nothing in the copy shares memory with n
// (nil and empty slices stay as they are).
func (n *Network) Clone() *Network {
	if n == nil {
		return nil
	}
	c := *n
	c.Metadata = n.Metadata.deepCopy()
	c.Forward = n.Forward.deepCopy()
	c.MAC = cloneMAC(n.MAC)
	if n.Domain != nil {
		dom := *n.Domain
		c.Domain = &dom
	}
	c.DNS = n.DNS.deepCopy()
	c.VLAN = n.VLAN.Clone()
	c.Bandwidth = n.Bandwidth.Clone()
	if n.IPs != nil {
		c.IPs = make([]IP, len(n.IPs))
		for i := range n.IPs {
			c.IPs[i] = n.IPs[i].deepCopy()
		}
	}
	c.Routes = slices.Clone(n.Routes)
	c.VirtualPort = n.VirtualPort.Clone()
	if n.PortGroups != nil {
		c.PortGroups = make([]PortGroup, len(n.PortGroups))
		for i, pg := range n.PortGroups {
			pg.VLAN = pg.VLAN.Clone()
			pg.VirtualPort = pg.VirtualPort.Clone()
			pg.Bandwidth = pg.Bandwidth.Clone()
			c.PortGroups[i] = pg
		}
	}
	c.DnsmasqOptions = slices.Clone(n.DnsmasqOptions)
	return &c
}

func cloneMAC(m net.HardwareAddr) net.HardwareAddr {
	if m == nil {
		return nil
	}
	return slices.Clone(m)
}

func (m *Metadata) deepCopy() *Metadata {
	if m == nil {
		return nil
	}
	c := &Metadata{}
	if m.Elements != nil {
		c.Elements = make([]*RawElement, len(m.Elements))
		for i, e := range m.Elements {
			c.Elements[i] = e.deepCopy()
		}
	}
	return c
}

func (e *RawElement) deepCopy() *RawElement {
	if e == nil {
		return nil
	}
	c := &RawElement{Name: e.Name, Attrs: slices.Clone(e.Attrs)}
	if e.Children != nil {
		c.Children = make([]RawNode, len(e.Children))
		for i, ch := range e.Children {
			c.Children[i] = RawNode{Elem: ch.Elem.deepCopy(), Text: ch.Text}
		}
	}
	return c
}

func (f Forward) deepCopy() Forward {
	if f.Driver != nil {
		drv := *f.Driver
		f.Driver = &drv
	}
	f.Interfaces = slices.Clone(f.Interfaces)
	f.Addresses = slices.Clone(f.Addresses)
	if f.NAT != nil {
		nat := *f.NAT
		f.NAT = &nat
	}
	return f
}

func (d DNS) deepCopy() DNS {
	d.Forwarders = slices.Clone(d.Forwarders)
	d.TXTs = slices.Clone(d.TXTs)
	d.SRVs = slices.Clone(d.SRVs)
	if d.Hosts != nil {
		hosts := make([]DNSHost, len(d.Hosts))
		for i, h := range d.Hosts {
			h.Hostnames = slices.Clone(h.Hostnames)
			hosts[i] = h
		}
		d.Hosts = hosts
	}
	return d
}

// Clone is a deep copy (nil stays nil).
func (v *VLAN) Clone() *VLAN {
	if v == nil {
		return nil
	}
	return &VLAN{Trunk: v.Trunk, Tags: slices.Clone(v.Tags)}
}

// Clone is a deep copy (nil stays nil).
func (b *Bandwidth) Clone() *Bandwidth {
	if b == nil {
		return nil
	}
	c := *b
	c.Inbound = clonePtr(b.Inbound)
	c.Outbound = clonePtr(b.Outbound)
	return &c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// Clone is a deep copy (nil stays nil).
func (vp *VirtualPort) Clone() *VirtualPort {
	if vp == nil {
		return nil
	}
	c := *vp
	c.ManagerID = clonePtr(vp.ManagerID)
	c.TypeID = clonePtr(vp.TypeID)
	c.TypeIDVersion = clonePtr(vp.TypeIDVersion)
	c.InstanceID = clonePtr[uuid.UUID](vp.InstanceID)
	c.InterfaceID = clonePtr[uuid.UUID](vp.InterfaceID)
	return &c
}

func (ip IP) deepCopy() IP {
	if ip.DHCP == nil {
		return ip
	}
	d := *ip.DHCP
	if d.Ranges != nil {
		d.Ranges = make([]DHCPRange, len(ip.DHCP.Ranges))
		for i, r := range ip.DHCP.Ranges {
			r.Lease = clonePtr(r.Lease)
			d.Ranges[i] = r
		}
	}
	if d.Hosts != nil {
		d.Hosts = make([]DHCPHost, len(ip.DHCP.Hosts))
		for i, h := range ip.DHCP.Hosts {
			h.MAC = cloneMAC(h.MAC)
			h.Lease = clonePtr(h.Lease)
			d.Hosts[i] = h
		}
	}
	d.BootP = clonePtr(d.BootP)
	ip.DHCP = &d
	return ip
}
