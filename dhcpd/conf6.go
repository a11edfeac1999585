package dhcpd

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/rfc1035label"
	"github.com/vnetd/vnetd/conf"
)

// Lease-time defaults of the DHCPv6 service (libvirt-behavior.md §3).
const (
	// defaultLease6 is dnsmasq's default lease time, used when neither the
	// <host> nor the <range> has a <lease>.
	defaultLease6 = time.Hour
	// maxRangeSize6 bounds one range. libvirt refuses larger IPv6 ranges
	// (only the last 16 bits may differ); a larger one that slipped through
	// is served truncated rather than scanned for ever.
	maxRangeSize6 = 1 << 16
)

// lease6 is a lease time; infinite is <lease expiry='0'/>.
type lease6 struct {
	d        time.Duration
	infinite bool
}

func leaseFrom6(l *conf.Lease, def lease6) lease6 {
	if l == nil || l.Unit.Seconds() == 0 {
		return def
	}
	s := l.Seconds()
	if s == 0 {
		return lease6{infinite: true}
	}
	if s >= 0xffffffff {
		// DHCPv6 lifetimes are 32-bit seconds; all ones means infinity.
		return lease6{infinite: true}
	}
	return lease6{d: time.Duration(s) * time.Second}
}

// range6 is one <range> of the IPv6 <ip>.
type range6 struct {
	start netip.Addr
	size  uint64 // addresses from start, at most maxRangeSize6
	lease lease6
}

func (r *range6) contains(a netip.Addr) bool {
	off, ok := offset6(r.start, a)
	return ok && off < r.size
}

// host6 is one <host> reservation of the IPv6 <ip>.
type host6 struct {
	duid  []byte // nil: match by name only
	name  string // lower case, no trailing dot; "" for none
	ip    netip.Addr
	lease lease6
}

// netConf6 is the DHCPv6 service a network definition asks for: everything
// the handler needs from conf.Network, resolved once per definition.
type netConf6 struct {
	network string
	prefix  netip.Prefix // the subnet of the IPv6 <ip>: on-link addresses
	addr    netip.Addr   // the bridge's address on it
	dns     []netip.Addr // option 23; empty when <dns enable='no'>
	domain  string       // option 24; "" when no <domain>
	ranges  []range6
	hosts   []host6
	// opts are options 23 and 24 as every answer carries them, encoded.
	opts []byte
}

// poolSize is the number of addresses that can be leased: the ranges and
// the reserved addresses outside them.
func (c *netConf6) poolSize() int {
	n := 0
	for _, r := range c.ranges {
		n += int(r.size)
	}
	outside := map[netip.Addr]bool{}
	for _, h := range c.hosts {
		if !slices.ContainsFunc(c.ranges, func(r range6) bool { return r.contains(h.ip) }) {
			outside[h.ip] = true
		}
	}
	return n + len(outside)
}

// Serves6 reports whether n has an IPv6 <ip> with DHCP ranges or hosts,
// that is whether it needs a Server6.
func Serves6(n *conf.Network) bool {
	for i := range n.IPs {
		if n.IPs[i].IsIPv6() && n.IPs[i].HasDHCP() {
			return true
		}
	}
	return false
}

// errNoDHCP6 says the network has no IPv6 <ip> with <dhcp> to serve.
var errNoDHCP6 = errors.New("no IPv6 <ip> with <dhcp> ranges or hosts")

// netConf6From picks the IPv6 <ip> with DHCP of n, as libvirt does (there is
// at most one), and resolves its ranges and hosts.
func netConf6From(n *conf.Network) (*netConf6, error) {
	if n == nil {
		return nil, errors.New("no network definition")
	}
	var ip *conf.IP
	for i := range n.IPs {
		if n.IPs[i].IsIPv6() && n.IPs[i].HasDHCP() {
			ip = &n.IPs[i]
			break
		}
	}
	if ip == nil {
		return nil, fmt.Errorf("network %s: %w", n.Name, errNoDHCP6)
	}
	prefix, err := ip.Subnet()
	if err != nil {
		return nil, fmt.Errorf("network %s: ip %s: %w", n.Name, ip.Address, err)
	}
	c := &netConf6{
		network: n.Name,
		prefix:  prefix.Masked(),
		addr:    ip.Address.WithZone(""),
	}
	if n.DNS.Enabled() {
		c.dns = []netip.Addr{c.addr}
	}
	if n.Domain != nil {
		c.domain = strings.TrimSuffix(n.Domain.Name, ".")
	}
	c.opts = configOptions6(c.dns, c.domain)
	def := lease6{d: defaultLease6}
	for i, r := range ip.DHCP.Ranges {
		if !r.Start.Is6() || !r.End.Is6() || r.End.Less(r.Start) {
			return nil, fmt.Errorf("network %s: range %d (%s - %s) is not an IPv6 range", n.Name, i+1, r.Start, r.End)
		}
		size, ok := offset6(r.Start, r.End)
		if !ok || size >= maxRangeSize6 {
			size = maxRangeSize6 - 1
		}
		c.ranges = append(c.ranges, range6{start: r.Start.WithZone(""), size: size + 1, lease: leaseFrom6(r.Lease, def)})
	}
	for i, h := range ip.DHCP.Hosts {
		if !h.IP.Is6() {
			return nil, fmt.Errorf("network %s: host %d has no IPv6 address", n.Name, i+1)
		}
		hh := host6{ip: h.IP.WithZone(""), name: normName6(h.Name)}
		if h.ID != "" {
			d, err := ParseDUID6(h.ID)
			if err != nil {
				return nil, fmt.Errorf("network %s: host %d: %w", n.Name, i+1, err)
			}
			hh.duid = d
		}
		if hh.duid == nil && hh.name == "" {
			return nil, fmt.Errorf("network %s: host %d (%s) has neither id nor name", n.Name, i+1, h.IP)
		}
		// A host's own <lease> wins; else the lease of the range holding
		// its address; else the default.
		hl := def
		for _, r := range c.ranges {
			if r.contains(hh.ip) {
				hl = r.lease
				break
			}
		}
		hh.lease = leaseFrom6(h.Lease, hl)
		c.hosts = append(c.hosts, hh)
	}
	return c, nil
}

// configOptions6 encodes the DNS servers (option 23) when there are any and
// the domain search list (24) when there is a domain, with the dhcpv6
// codec, once per definition.
func configOptions6(dns []netip.Addr, domain string) []byte {
	var m dhcpv6.Message
	if len(dns) > 0 {
		ips := make([]net.IP, 0, len(dns))
		for _, a := range dns {
			ips = append(ips, net.IP(a.AsSlice()))
		}
		m.AddOption(dhcpv6.OptDNS(ips...))
	}
	if domain != "" {
		m.AddOption(dhcpv6.OptDomainSearchList(&rfc1035label.Labels{Labels: []string{domain}}))
	}
	return m.Options.ToBytes()
}

// ParseDUID6 parses a DUID as libvirt writes it in <host id>: hex bytes
// joined with ':', each of one or two digits ("0:1:0:1:18:aa:62:fe"). A run
// of more digits is read two digits a byte, after a leading '0' when its
// length is odd, so a plain hex string ("000100011800") works too.
func ParseDUID6(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty DUID")
	}
	var out []byte
	for _, part := range strings.Split(s, ":") {
		if part == "" {
			return nil, fmt.Errorf("DUID %q: empty byte", s)
		}
		if len(part)%2 == 1 {
			part = "0" + part
		}
		b, err := hex.DecodeString(part)
		if err != nil {
			return nil, fmt.Errorf("DUID %q: %v", s, err)
		}
		out = append(out, b...)
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("DUID %q: shorter than its 2-byte type", s)
	}
	return out, nil
}

// FormatDUID6 writes a DUID the way the lease store and virsh show it: two
// hex digits per byte joined with ':'.
func FormatDUID6(b []byte) string { return formatDUID6(b) }

// formatDUID6 is FormatDUID6 of a DUID held in a string too, in one
// allocation.
func formatDUID6[T string | []byte](b T) string {
	if len(b) == 0 {
		return ""
	}
	const digits = "0123456789abcdef"
	var sb strings.Builder
	sb.Grow(3*len(b) - 1)
	for i := 0; i < len(b); i++ {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteByte(digits[b[i]>>4])
		sb.WriteByte(digits[b[i]&0xf])
	}
	return sb.String()
}

// normName6 lowercases a host name and drops a trailing dot.
func normName6(s string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
}

// nameMatch6 reports whether a client's FQDN (already normalised) names the
// <host name>: the same name, or the same first label when either side is a
// bare host name ("paul" matches "paul.example.com" and vice versa).
func nameMatch6(host, client string) bool {
	if host == "" || client == "" {
		return false
	}
	if host == client {
		return true
	}
	hf, _, hdot := strings.Cut(host, ".")
	cf, _, cdot := strings.Cut(client, ".")
	return (!hdot || !cdot) && hf == cf
}

// offset6 is b - a for two IPv6 addresses when b >= a and the difference
// fits in 64 bits.
func offset6(a, b netip.Addr) (uint64, bool) {
	if !a.Is6() || !b.Is6() {
		return 0, false
	}
	x, y := a.As16(), b.As16()
	ahi, alo := binary.BigEndian.Uint64(x[:8]), binary.BigEndian.Uint64(x[8:])
	bhi, blo := binary.BigEndian.Uint64(y[:8]), binary.BigEndian.Uint64(y[8:])
	lo := blo - alo
	borrow := uint64(0)
	if blo < alo {
		borrow = 1
	}
	hi := bhi - ahi - borrow
	if bhi < ahi || (bhi == ahi && blo < alo) || hi != 0 {
		return 0, false
	}
	return lo, true
}

// add6 is a + off, wrapping at 2^128.
func add6(a netip.Addr, off uint64) netip.Addr {
	x := a.As16()
	hi, lo := binary.BigEndian.Uint64(x[:8]), binary.BigEndian.Uint64(x[8:])
	nlo := lo + off
	if nlo < lo {
		hi++
	}
	var y [16]byte
	binary.BigEndian.PutUint64(y[:8], hi)
	binary.BigEndian.PutUint64(y[8:], nlo)
	return netip.AddrFrom16(y)
}
