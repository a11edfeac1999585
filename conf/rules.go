package conf

import (
	"fmt"
	"math/big"
	"net/netip"
	"strings"
)

// Limits from libvirt's network driver and the tc it drives.
const (
	maxRate          = 1 << 54 // kB/s, average/peak/floor
	maxBurst         = 4194303 // kB (UINT_MAX >> 10)
	maxDHCPRangeSize = 65536
	maxSRVService    = 482
	maxProfileID     = 39
	minLeaseSeconds  = 120
	maxLeaseSeconds  = 0xfffffffe // DHCP's 32-bit lease time; all ones means infinite
	maxBridgeNameLen = 15         // IFNAMSIZ - 1
)

// Subnet is the network of the <ip>: its address masked by the netmask, the
// prefix, or the classful default for IPv4 (A/B/C) and /64 for IPv6.
func (ip *IP) Subnet() (netip.Prefix, error) {
	bits, err := ip.PrefixLen()
	if err != nil {
		return netip.Prefix{}, err
	}
	return ip.Address.Prefix(bits)
}

// PrefixLen is the effective prefix length of the <ip>.
func (ip *IP) PrefixLen() (int, error) {
	switch {
	case !ip.Address.IsValid():
		return 0, fmt.Errorf("no address")
	case ip.Netmask.IsValid():
		return netmaskBits(ip.Netmask)
	case ip.Prefix > 0:
		return int(ip.Prefix), nil
	}
	return defaultPrefixLen(ip.Address)
}

// defaultPrefixLen is libvirt's prefix for an address given without one:
// classful for IPv4 (A/B/C), 64 for IPv6.
func defaultPrefixLen(a netip.Addr) (int, error) {
	if a.Is6() {
		return 64, nil
	}
	first := a.As4()[0]
	switch {
	case first < 128:
		return 8, nil
	case first < 192:
		return 16, nil
	case first < 224:
		return 24, nil
	}
	return 0, fmt.Errorf("address %s is class D or E: give a netmask or prefix", a)
}

func netmaskBits(mask netip.Addr) (int, error) {
	if !mask.Is4() {
		return 0, fmt.Errorf("netmask %s is not IPv4", mask)
	}
	b := mask.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := 0
	for v&0x80000000 != 0 {
		ones++
		v <<= 1
	}
	if v != 0 {
		return 0, fmt.Errorf("netmask %s is not contiguous", mask)
	}
	return ones, nil
}

// IsIPv6 reports whether the <ip> is an IPv6 one.
func (ip *IP) IsIPv6() bool { return ip.Address.Is6() }

// HasDHCP reports whether the <ip> hands out addresses (ranges or static hosts).
func (ip *IP) HasDHCP() bool {
	return ip.DHCP != nil && (len(ip.DHCP.Ranges) > 0 || len(ip.DHCP.Hosts) > 0)
}

// Seconds is the lease time in seconds; 0 means infinite.
func (l *Lease) Seconds() uint64 { return l.Expiry * l.Unit.Seconds() }

// RangeSize is the number of addresses from start to end inclusive (0 when
// reversed or of different families).
func RangeSize(start, end netip.Addr) *big.Int {
	if start.BitLen() != end.BitLen() || end.Less(start) {
		return new(big.Int)
	}
	s := new(big.Int).SetBytes(start.AsSlice())
	e := new(big.Int).SetBytes(end.AsSlice())
	return e.Sub(e, s).Add(e, big.NewInt(1))
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

const (
	srvServiceChars  = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+/*"
	srvProtocolChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-+/"
	dnsNameChars     = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-"
	zoneNameChars    = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
	deviceNameChars  = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-\\:/"
)

// only reports whether every character of s is in chars.
func only(s, chars string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return !strings.ContainsRune(chars, r) })
}

// parseRules are libvirt's parser rules (libvirt-behavior.md §1a): what
// virNetworkDefParseXML itself rejects. Every problem is reported.
func (n *Network) parseRules() error {
	var p problems
	if n.Name == "" {
		p.add("network/name", "missing network name")
	} else if strings.Contains(n.Name, "/") {
		p.add("network/name", "name %q cannot contain '/'", n.Name)
	}
	if strings.Contains(n.Title, "\n") {
		p.add("network/title", "title must not contain newlines")
	}
	if n.MAC != nil {
		if len(n.MAC) != 6 {
			p.add("network/mac", "address %s is not a 6-byte MAC address", n.MAC)
		} else if n.MAC[0]&1 != 0 {
			p.add("network/mac", "address %s is multicast, a bridge needs a unicast MAC", n.MAC)
		}
	}
	if d := n.Domain; d != nil {
		if d.Name == "" || !only(d.Name, dnsNameChars) {
			p.add("network/domain", "name %q is not a DNS name (letters, digits, '.' and '-')", d.Name)
		}
		if d.Register == TristateYes && d.LocalOnly != TristateYes {
			p.add("network/domain", "register='yes' requires localOnly='yes'")
		}
	}
	n.forwardRules(&p)
	n.bridgeRules(&p)
	for i := range n.IPs {
		n.ipRules(&p, i)
	}
	for i := range n.Routes {
		n.routeRules(&p, i)
	}
	n.DNS.rules(&p, "network/dns")
	if n.VLAN != nil {
		n.VLAN.rules(&p, "network/vlan")
	}
	if n.Bandwidth != nil {
		n.Bandwidth.rules(&p, "network/bandwidth", false)
	}
	if n.VirtualPort != nil {
		n.VirtualPort.rules(&p, "network/virtualport")
	}
	for i := range n.PortGroups {
		pg := &n.PortGroups[i]
		path := fmt.Sprintf("network/portgroup[%d]", i+1)
		if pg.Name == "" {
			p.add(path, "missing portgroup name")
		} else if !only(pg.Name, deviceNameChars) {
			p.add(path, "name %q has characters outside letters, digits and _.-\\:/", pg.Name)
		}
		if pg.VLAN != nil {
			pg.VLAN.rules(&p, path+"/vlan")
		}
		if pg.Bandwidth != nil {
			pg.Bandwidth.rules(&p, path+"/bandwidth", false)
		}
		if pg.VirtualPort != nil {
			pg.VirtualPort.rules(&p, path+"/virtualport")
		}
	}
	return p.err()
}

func (n *Network) forwardRules(p *problems) {
	f := &n.Forward
	const path = "network/forward"
	if !f.Mode.Valid() {
		p.add(path, "forward mode is not set (ForwardNone for an isolated network)")
		return
	}
	if f.NAT != nil {
		if f.Mode != ForwardNAT {
			p.add(path+"/nat", "<nat> is only allowed with mode='nat', not mode='%s'", f.Mode)
		}
		nat := f.NAT
		if nat.AddressStart.IsValid() != nat.AddressEnd.IsValid() {
			p.add(path+"/nat/address", "both start and end are required")
		} else if nat.AddressStart.IsValid() {
			switch {
			case !nat.AddressStart.Is4() || !nat.AddressEnd.Is4():
				p.add(path+"/nat/address", "range %s-%s: NAT addresses must be IPv4", nat.AddressStart, nat.AddressEnd)
			case nat.AddressEnd.Less(nat.AddressStart):
				p.add(path+"/nat/address", "range %s-%s is reversed", nat.AddressStart, nat.AddressEnd)
			}
		}
		if nat.PortStart != 0 || nat.PortEnd != 0 {
			switch {
			case nat.PortStart == 0 || nat.PortEnd == 0:
				p.add(path+"/nat/port", "start and end must both be ports from 1 to 65535")
			case nat.PortEnd < nat.PortStart:
				p.add(path+"/nat/port", "range %d-%d is reversed", nat.PortStart, nat.PortEnd)
			}
		}
	}
	seen := map[string]bool{}
	for i, iface := range f.Interfaces {
		ipath := fmt.Sprintf("%s/interface[%d]", path, i+1)
		if iface.Dev == "" {
			p.add(ipath, "missing dev")
		} else if seen[iface.Dev] {
			p.add(ipath, "interface %q can only be listed once", iface.Dev)
		}
		seen[iface.Dev] = true
	}
	seenPCI := map[PCIAddress]bool{}
	for i, a := range f.Addresses {
		if seenPCI[a.PCI] {
			p.add(fmt.Sprintf("%s/address[%d]", path, i+1), "PCI device %s can only be listed once", a.PCI)
		}
		seenPCI[a.PCI] = true
	}
	switch f.Mode {
	case ForwardNAT, ForwardRoute, ForwardOpen:
		if len(n.IPs) == 0 {
			p.add(path, "mode='%s' needs at least one <ip> address on the network", f.Mode)
		}
		if len(f.Interfaces) > 1 {
			p.add(path, "mode='%s' supports only one forward interface, %d are listed", f.Mode, len(f.Interfaces))
		}
		if f.Mode == ForwardOpen && len(f.Interfaces) > 0 {
			p.add(path, "forward dev not allowed with mode='open'")
		}
	case ForwardNone:
		if len(f.Interfaces) > 0 || len(f.Addresses) > 0 || f.PF != "" || f.NAT != nil {
			p.add(path, "an isolated network (no <forward>) cannot have forward devices")
		}
	}
	if f.Mode != ForwardHostdev && (f.Managed || f.Driver != nil) {
		p.add(path, "managed and <driver> are only for mode='hostdev'")
	}
	if n.MTU != 0 && !f.Mode.Managed() {
		p.add("network/mtu", "an MTU is only allowed in open, route, nat and isolated mode, not in mode='%s'", f.Mode)
	}
}

func (n *Network) bridgeRules(p *problems) {
	b := &n.Bridge
	const path = "network/bridge"
	mode := n.Forward.Mode
	if b.Zone != "" && !only(b.Zone, zoneNameChars) {
		p.add(path, "zone %q has characters outside letters, digits, '_' and '-'", b.Zone)
	}
	switch mode {
	case ForwardPrivate, ForwardVEPA, ForwardPassthrough, ForwardHostdev:
		if b.Name != "" {
			p.add(path, "a bridge name is not allowed in mode='%s'", mode)
		}
		if b.MACTableManager != MACTableDefault {
			p.add(path, "macTableManager is not allowed in mode='%s'", mode)
		}
		fallthrough
	case ForwardBridge:
		if b.Delay != 0 || b.STP != TristateAbsent || b.Zone != "" {
			p.add(path, "stp, delay and zone are only allowed in route, nat, open and isolated mode, not in mode='%s'", mode)
		}
		if b.Name != "" && (len(n.Forward.Interfaces) > 0 || n.Forward.PF != "") {
			p.add(path, "mode='%s' takes a bridge name or a forward dev, not both", mode)
		}
	}
}

func (n *Network) ipRules(p *problems, i int) {
	ip := &n.IPs[i]
	path := fmt.Sprintf("network/ip[%d]", i+1)
	if !ip.Address.IsValid() {
		p.add(path, "missing address")
		return
	}
	switch ip.Family {
	case "":
		if !ip.Address.Is4() {
			p.add(path, "no family given for non-IPv4 address %s (add family='ipv6')", ip.Address)
		}
	case "ipv4":
		if !ip.Address.Is4() {
			p.add(path, "family='ipv4' given for non-IPv4 address %s", ip.Address)
		}
	case "ipv6":
		if !ip.Address.Is6() {
			p.add(path, "family='ipv6' given for non-IPv6 address %s", ip.Address)
		}
	default:
		p.add(path, "unknown family %q (ipv4 or ipv6)", ip.Family)
	}
	if ip.Netmask.IsValid() {
		switch {
		case !ip.Address.Is4():
			p.add(path, "netmask is only for IPv4 addresses, use prefix for %s", ip.Address)
		case ip.Prefix > 0:
			p.add(path, "cannot have both prefix='%d' and netmask", ip.Prefix)
		default:
			if _, err := netmaskBits(ip.Netmask); err != nil {
				p.add(path, "%v", err)
			}
		}
	}
	if ip.Address.Is4() && ip.Prefix > 32 {
		p.add(path, "prefix %d is over 32 for IPv4", ip.Prefix)
	}
	if ip.Address.Is6() && ip.Prefix > 128 {
		p.add(path, "prefix %d is over 128 for IPv6", ip.Prefix)
	}
	if ip.TFTPRoot != "" && !ip.Address.Is4() {
		p.add(path+"/tftp", "<tftp> is only supported in an IPv4 <ip>")
	}
	subnet, err := ip.Subnet()
	if err != nil {
		p.add(path, "%v", err)
		return
	}
	if ip.DHCP == nil {
		return
	}
	for j, r := range ip.DHCP.Ranges {
		rpath := fmt.Sprintf("%s/dhcp/range[%d]", path, j+1)
		if err := checkRange(r.Start, r.End, subnet); err != nil {
			p.add(rpath, "%v", err)
		}
		if r.Lease != nil {
			r.Lease.rules(p, rpath+"/lease")
		}
	}
	for j := range ip.DHCP.Hosts {
		h := &ip.DHCP.Hosts[j]
		hpath := fmt.Sprintf("%s/dhcp/host[%d]", path, j+1)
		if err := h.check(ip.Address.Is6(), false); err != nil {
			p.add(hpath, "%v", err)
		}
		if h.Lease != nil {
			h.Lease.rules(p, hpath+"/lease")
		}
	}
	if b := ip.DHCP.BootP; b != nil {
		switch {
		case !ip.Address.Is4():
			p.add(path+"/dhcp/bootp", "<bootp> is only supported in an IPv4 <ip>")
		case b.File == "":
			p.add(path+"/dhcp/bootp", "missing file")
		case b.Server.IsValid() && !b.Server.Is4():
			p.add(path+"/dhcp/bootp", "server %s is not an IPv4 address", b.Server)
		}
	}
}

// checkRange applies libvirt's DHCP range rules within subnet.
func checkRange(start, end netip.Addr, subnet netip.Prefix) error {
	r := fmt.Sprintf("range %s - %s", start, end)
	switch {
	case !start.IsValid() || !end.IsValid():
		return fmt.Errorf("start and end addresses are both required")
	case start.BitLen() != end.BitLen():
		return fmt.Errorf("%s mixes address families", r)
	case start.BitLen() != subnet.Addr().BitLen():
		return fmt.Errorf("%s is not of the family of network %s", r, subnet)
	case !subnet.Contains(start) || !subnet.Contains(end):
		return fmt.Errorf("%s is not entirely within network %s", r, subnet)
	case end.Less(start):
		return fmt.Errorf("%s is reversed", r)
	case start == subnet.Masked().Addr():
		return fmt.Errorf("%s starts with the network address of %s", r, subnet)
	case start.Is4() && end == broadcast(subnet):
		return fmt.Errorf("%s ends with the broadcast address of %s", r, subnet)
	}
	if start.Is6() {
		s, e := start.As16(), end.As16()
		if [14]byte(s[:14]) != [14]byte(e[:14]) {
			return fmt.Errorf("%s is too large: only the last 16 bits may differ (at most %d addresses)", r, maxDHCPRangeSize)
		}
	} else if RangeSize(start, end).Cmp(big.NewInt(maxDHCPRangeSize)) > 0 {
		return fmt.Errorf("%s is too large (at most %d addresses)", r, maxDHCPRangeSize)
	}
	return nil
}

// check applies libvirt's static host rules; partial allows the incomplete
// hosts that net-update delete matches with.
func (h *DHCPHost) check(ipv6, partial bool) error {
	var errs []string
	if h.MAC != nil {
		if ipv6 {
			errs = append(errs, fmt.Sprintf("mac %s is not allowed in an IPv6 host (use id, a DUID)", h.MAC))
		} else if len(h.MAC) != 6 || h.MAC[0]&1 != 0 {
			errs = append(errs, fmt.Sprintf("mac %s is not a unicast MAC address", h.MAC))
		}
	}
	if h.ID != "" {
		if !only(h.ID, "0123456789abcdefABCDEF:") {
			errs = append(errs, fmt.Sprintf("id %q is not a DUID (hex digits and ':')", h.ID))
		}
	}
	if h.Name != "" {
		c := h.Name[0]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			errs = append(errs, fmt.Sprintf("name %q must start with a letter or digit", h.Name))
		}
	}
	if h.IP.IsValid() && h.IP.Is6() != ipv6 {
		errs = append(errs, fmt.Sprintf("ip %s is not of the family of its <ip>", h.IP))
	}
	if partial {
		if h.MAC == nil && h.Name == "" && !h.IP.IsValid() && h.ID == "" {
			errs = append(errs, "at least one of mac, id, name or ip is required")
		}
	} else {
		if ipv6 && h.ID == "" && h.Name == "" {
			errs = append(errs, "an IPv6 host needs id or name")
		}
		if !ipv6 && h.MAC == nil && h.Name == "" {
			errs = append(errs, "an IPv4 host needs mac or name")
		}
		if !h.IP.IsValid() {
			errs = append(errs, "missing ip")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (l *Lease) rules(p *problems, path string) {
	if l.Unit.Seconds() == 0 {
		p.add(path, "unit is not seconds, minutes or hours")
		return
	}
	if l.Expiry > 0 && l.Seconds() < minLeaseSeconds {
		p.add(path, "expiry %d %s is below the minimum lease time of 2 minutes", l.Expiry, l.Unit)
	}
	if l.Expiry > maxLeaseSeconds/l.Unit.Seconds() {
		p.add(path, "expiry %d %s is over DHCP's maximum of %d seconds (use 0 for infinite)", l.Expiry, l.Unit, uint64(maxLeaseSeconds))
	}
}

func (n *Network) routeRules(p *problems, i int) {
	r := &n.Routes[i]
	path := fmt.Sprintf("network/route[%d]", i+1)
	if !r.Address.IsValid() || !r.Gateway.IsValid() {
		p.add(path, "address and gateway are both required")
		return
	}
	switch r.Family {
	case "", "ipv4":
		if !r.Address.Is4() || !r.Gateway.Is4() {
			if r.Family == "" {
				p.add(path, "no family given for non-IPv4 address %s or gateway %s (add family='ipv6')", r.Address, r.Gateway)
			} else {
				p.add(path, "family='ipv4' given for non-IPv4 address %s or gateway %s", r.Address, r.Gateway)
			}
			return
		}
		if r.Netmask.IsValid() {
			if r.HasPrefix {
				p.add(path, "cannot have both a prefix and a netmask")
				return
			}
		} else if r.Prefix > 32 {
			p.add(path, "prefix %d is over 32 for IPv4", r.Prefix)
			return
		}
	case "ipv6":
		if !r.Address.Is6() || !r.Gateway.Is6() {
			p.add(path, "family='ipv6' given for non-IPv6 address %s or gateway %s", r.Address, r.Gateway)
			return
		}
		if r.Netmask.IsValid() {
			p.add(path, "netmask is only for IPv4, use prefix")
			return
		}
		if r.Prefix > 128 {
			p.add(path, "prefix %d is over 128 for IPv6", r.Prefix)
			return
		}
	default:
		p.add(path, "unknown family %q (ipv4 or ipv6)", r.Family)
		return
	}
	dest, err := r.RoutePrefix()
	if err != nil {
		p.add(path, "%v", err)
		return
	}
	if dest.Addr() != r.Address {
		p.add(path, "address %s is not a network address for prefix %d (host bits set)", r.Address, dest.Bits())
	}
	for j := range n.IPs {
		subnet, err := n.IPs[j].Subnet()
		if err == nil && subnet.Addr().BitLen() == r.Gateway.BitLen() && subnet.Contains(r.Gateway) {
			return
		}
	}
	p.add(path, "unreachable static route gateway %s: it is in none of the network's <ip> subnets", r.Gateway)
}

// RoutePrefix is the route's destination network: address with the netmask,
// the prefix, or libvirt's default prefix for the address.
func (r *Route) RoutePrefix() (netip.Prefix, error) {
	bits := int(r.Prefix)
	switch {
	case r.Netmask.IsValid():
		b, err := netmaskBits(r.Netmask)
		if err != nil {
			return netip.Prefix{}, err
		}
		bits = b
	case !r.HasPrefix:
		b, err := defaultPrefixLen(r.Address)
		if err != nil {
			return netip.Prefix{}, err
		}
		bits = b
	}
	return r.Address.Prefix(bits)
}

func (d *DNS) rules(p *problems, path string) {
	for i, f := range d.Forwarders {
		fpath := fmt.Sprintf("%s/forwarder[%d]", path, i+1)
		if !f.Addr.IsValid() && f.Domain == "" {
			p.add(fpath, "needs addr, domain or both")
		}
		if f.Domain != "" && !only(f.Domain, dnsNameChars) {
			p.add(fpath, "domain %q is not a DNS name", f.Domain)
		}
	}
	for i := range d.TXTs {
		if err := d.TXTs[i].check(false); err != nil {
			p.add(fmt.Sprintf("%s/txt[%d]", path, i+1), "%v", err)
		}
	}
	for i := range d.SRVs {
		if err := d.SRVs[i].check(false); err != nil {
			p.add(fmt.Sprintf("%s/srv[%d]", path, i+1), "%v", err)
		}
	}
	for i := range d.Hosts {
		if err := d.Hosts[i].check(false); err != nil {
			p.add(fmt.Sprintf("%s/host[%d]", path, i+1), "%v", err)
		}
	}
	if d.Enable == TristateNo && (len(d.Forwarders) > 0 || len(d.TXTs) > 0 || len(d.SRVs) > 0 || len(d.Hosts) > 0) {
		p.add(path, "extra data in disabled DNS: enable='no' cannot have forwarder, txt, srv or host children")
	}
}

func (t *DNSTXT) check(partial bool) error {
	switch {
	case t.Name == "":
		return fmt.Errorf("missing name")
	case strings.ContainsAny(t.Name, " ,"):
		return fmt.Errorf("name %q must not contain space or comma", t.Name)
	case t.Value == "" && !partial:
		return fmt.Errorf("missing value")
	}
	return nil
}

func (s *DNSSRV) check(partial bool) error {
	var errs []string
	if s.Service == "" && !partial {
		errs = append(errs, "missing service")
	}
	if len(s.Service) > maxSRVService {
		errs = append(errs, fmt.Sprintf("service is %d characters, the limit is %d", len(s.Service), maxSRVService))
	}
	if s.Service != "" && !only(s.Service, srvServiceChars) {
		errs = append(errs, fmt.Sprintf("service %q has characters outside letters, digits and _-+/*", s.Service))
	}
	if s.Protocol == "" && !partial {
		errs = append(errs, "missing protocol")
	}
	if s.Protocol != "" && !only(s.Protocol, srvProtocolChars) {
		errs = append(errs, fmt.Sprintf("protocol %q has characters outside letters, digits and -+/", s.Protocol))
	}
	if s.Target == "" && (s.Port != 0 || s.Priority != 0 || s.Weight != 0) {
		errs = append(errs, "port, priority and weight are only allowed together with target")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (h *DNSHost) check(partial bool) error {
	for _, name := range h.Hostnames {
		if name == "" {
			return fmt.Errorf("empty <hostname>")
		}
	}
	switch {
	case partial && !h.IP.IsValid() && len(h.Hostnames) == 0:
		return fmt.Errorf("needs ip or a hostname")
	case !partial && !h.IP.IsValid():
		return fmt.Errorf("missing ip")
	case !partial && len(h.Hostnames) == 0:
		return fmt.Errorf("needs at least one <hostname>")
	}
	return nil
}

func (v *VLAN) rules(p *problems, path string) {
	if len(v.Tags) == 0 {
		p.add(path, "at least one <tag id='N'/> is required")
	}
	natives := 0
	for i, t := range v.Tags {
		if t.ID > 4095 {
			p.add(fmt.Sprintf("%s/tag[%d]", path, i+1), "vlan id %d is over 4095", t.ID)
		}
		if t.NativeMode != NativeNone {
			natives++
		}
	}
	if natives > 1 {
		p.add(path, "only one tag can be the native VLAN")
	}
	if len(v.Tags) > 1 && !v.Trunk {
		p.add(path, "more than one tag needs trunk='yes'")
	}
	if natives > 0 && !v.Trunk {
		p.add(path, "a native VLAN needs trunk='yes'")
	}
}

type direction struct {
	name string
	r    *Rate
}

// directions are the two rates with their element names.
func (b *Bandwidth) directions() []direction {
	return []direction{{"inbound", b.Inbound}, {"outbound", b.Outbound}}
}

// rules checks a <bandwidth>; floor is only for ports.
func (b *Bandwidth) rules(p *problems, path string, port bool) {
	if b.ClassID != 0 && !port {
		p.add(path, "classID is only for network ports")
	}
	for _, dir := range b.directions() {
		r := dir.r
		if r == nil {
			continue
		}
		rpath := path + "/" + dir.name
		if r.Average == 0 && r.Floor == 0 {
			p.add(rpath, "needs average or floor")
		}
		if (r.Peak != 0 || r.Burst != 0) && r.Average == 0 {
			p.add(rpath, "peak and burst need average")
		}
		if r.Floor != 0 {
			if dir.name == "outbound" {
				p.add(rpath, "floor is only allowed in <inbound>")
			} else if !port {
				p.add(rpath, "floor is only allowed on a port's bandwidth, not on a network or portgroup")
			}
		}
	}
}

func (vp *VirtualPort) rules(p *problems, path string) {
	if vp.Type == virtualPortInvalid || vp.Type > VirtualPortMidonet {
		p.add(path, "virtualport type is not set (VirtualPortUntyped for none)")
		return
	}
	if len(vp.ProfileID) > maxProfileID {
		p.add(path+"/parameters", "profileid is %d characters, the limit is %d", len(vp.ProfileID), maxProfileID)
	}
	if vp.TypeID != nil && *vp.TypeID > 0xffffff {
		p.add(path+"/parameters", "typeid %d is over 24 bits", *vp.TypeID)
	}
	extra := func(attr string) {
		p.add(path+"/parameters", "%s is not a parameter of virtualport type='%s'", attr, vp.Type)
	}
	switch vp.Type {
	case VirtualPort8021Qbg:
		if vp.ProfileID != "" {
			extra("profileid")
		}
		if vp.InterfaceID != nil {
			extra("interfaceid")
		}
	case VirtualPort8021Qbh:
		if vp.ManagerID != nil {
			extra("managerid")
		}
		if vp.TypeID != nil {
			extra("typeid")
		}
		if vp.TypeIDVersion != nil {
			extra("typeidversion")
		}
		if vp.InstanceID != nil {
			extra("instanceid")
		}
		if vp.InterfaceID != nil {
			extra("interfaceid")
		}
	case VirtualPortOpenvswitch, VirtualPortMidonet:
		if vp.ManagerID != nil {
			extra("managerid")
		}
		if vp.TypeID != nil {
			extra("typeid")
		}
		if vp.TypeIDVersion != nil {
			extra("typeidversion")
		}
		if vp.InstanceID != nil {
			extra("instanceid")
		}
		if vp.Type == VirtualPortMidonet && vp.ProfileID != "" {
			extra("profileid")
		}
	}
}

func (a PCIAddress) String() string {
	return fmt.Sprintf("%04x:%02x:%02x.%x", a.Domain, a.Bus, a.Slot, a.Function)
}
