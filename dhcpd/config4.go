package dhcpd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vnetd/vnetd/conf"
)

// Lease times, in seconds as DHCP carries them.
const (
	// defaultLease4 is dnsmasq's lease time when neither the range nor the
	// host gives one: one hour.
	defaultLease4 = 3600
	// infiniteLease4 is DHCP's "infinite" lease time (option 51 all ones).
	infiniteLease4 = math.MaxUint32
	// minRequestedLease4 is the shortest lease time a client may ask for
	// (dnsmasq's sanity floor).
	minRequestedLease4 = 120
)

// range4 is one <range>, as host-order integers for arithmetic.
type range4 struct {
	start, end uint32
	lease      uint32 // seconds; infiniteLease4: infinite; 0: not given
}

func (r range4) size() int { return int(r.end-r.start) + 1 }

func (r range4) contains(a uint32) bool { return a >= r.start && a <= r.end }

// host4 is a static <host>: matched by MAC, else by the client's host name.
type host4 struct {
	mac   net.HardwareAddr // nil: name-only host
	name  string           // "" when absent
	label string           // lower-case first label of name: what is matched and stored
	ip    netip.Addr
	lease uint32 // 0: not given
}

// config4 is what the DHCPv4 handler needs of a network: the IPv4 <ip> that
// has <dhcp>, reduced to plain values. It is immutable once built.
type config4 struct {
	network   string
	server    netip.Addr // the bridge address: server identifier, router, DNS
	subnet    netip.Prefix
	mask      net.IPMask
	broadcast netip.Addr
	ranges    []range4
	total     int // Σ range sizes
	hosts     []host4
	hostAt    map[netip.Addr]*host4 // hosts by address
	// hostMAC and hostLabel index hosts by MAC and, for hosts without a
	// MAC, by name label; the first host in XML order wins, as in a scan.
	hostMAC   map[string]*host4
	hostLabel map[string]*host4
	// leaseMax is dnsmasq's dhcp-lease-max: Σ range sizes; 0 (static-only
	// service) means no limit beyond the hosts themselves.
	leaseMax int
	router   bool // false on isolated networks: no option 3 at all
	dns      bool
	domain   string
	mtu      uint16
	bootFile string
	// nextServer is siaddr: <bootp server>, else the bridge address when
	// there is a <bootp> or <tftp root>; invalid: none.
	nextServer netip.Addr
	// opts are the options every OFFER and ACK carries, encoded once.
	opts replyOpts4
}

// replyOpts4 are a configuration's reply options on the wire, in the two
// runs that option 12 (per client) separates in code order.
type replyOpts4 struct {
	low      []byte  // 1 subnet mask, 3 router, 6 DNS server
	high     []byte  // 15 domain, 26 MTU, 28 broadcast address
	serverID [6]byte // 54
}

func (c *config4) encodeOpts() {
	s := c.server.As4()
	c.opts.serverID = [6]byte{dhcpv4.OptionServerIdentifier.Code(), 4, s[0], s[1], s[2], s[3]}
	o := &c.opts
	o.low = appendOpt4(nil, dhcpv4.OptionSubnetMask.Code(), []byte(c.mask))
	if c.router {
		o.low = appendOpt4(o.low, dhcpv4.OptionRouter.Code(), s[:])
	}
	if c.dns {
		o.low = appendOpt4(o.low, dhcpv4.OptionDomainNameServer.Code(), s[:])
	}
	if c.domain != "" {
		o.high = appendOpt4(o.high, dhcpv4.OptionDomainName.Code(), c.domain)
	}
	if c.mtu != 0 {
		o.high = appendOpt4(o.high, dhcpv4.OptionInterfaceMTU.Code(), binary.BigEndian.AppendUint16(nil, c.mtu))
	}
	bc := c.broadcast.As4()
	o.high = appendOpt4(o.high, dhcpv4.OptionBroadcastAddress.Code(), bc[:])
}

// dhcp4IP is the network's IPv4 <ip> that serves DHCP (libvirt allows one).
func dhcp4IP(n *conf.Network) (*conf.IP, error) {
	if n == nil {
		return nil, errors.New("no network definition")
	}
	for i := range n.IPs {
		ip := &n.IPs[i]
		if ip.Address.Is4() && ip.HasDHCP() {
			return ip, nil
		}
	}
	return nil, fmt.Errorf("network %q has no IPv4 <ip> with <dhcp> ranges or hosts", n.Name)
}

// leaseSeconds4 converts a <lease> to DHCP seconds; nil gives 0 (not given).
func leaseSeconds4(l *conf.Lease) uint32 {
	if l == nil {
		return 0
	}
	s := l.Seconds()
	switch {
	case s == 0:
		return infiniteLease4
	case s >= infiniteLease4:
		return infiniteLease4 - 1
	}
	return uint32(s)
}

func newConfig4(n *conf.Network) (*config4, error) {
	ip, err := dhcp4IP(n)
	if err != nil {
		return nil, err
	}
	subnet, err := ip.Subnet()
	if err != nil {
		return nil, fmt.Errorf("network %q: %v", n.Name, err)
	}
	subnet = subnet.Masked()
	if subnet.Bits() > 30 {
		return nil, fmt.Errorf("network %q: subnet %s is too small to serve DHCP", n.Name, subnet)
	}
	c := &config4{
		network:   n.Name,
		server:    ip.Address.Unmap(),
		subnet:    subnet,
		mask:      net.CIDRMask(subnet.Bits(), 32),
		broadcast: u2a4(a2u4(subnet.Addr()) | (1<<(32-subnet.Bits()) - 1)),
		router:    n.Forward.Mode != conf.ForwardNone,
		dns:       n.DNS.Enabled(),
		mtu:       n.MTU,
	}
	if n.Domain != nil {
		c.domain = n.Domain.Name
	}
	for _, r := range ip.DHCP.Ranges {
		s, e := r.Start.Unmap(), r.End.Unmap()
		if !s.Is4() || !e.Is4() || !subnet.Contains(s) || !subnet.Contains(e) || e.Less(s) {
			return nil, fmt.Errorf("network %q: range %s - %s is not within %s", n.Name, r.Start, r.End, subnet)
		}
		rr := range4{start: a2u4(s), end: a2u4(e), lease: leaseSeconds4(r.Lease)}
		c.ranges = append(c.ranges, rr)
		c.total += rr.size()
	}
	c.leaseMax = c.total
	for _, h := range ip.DHCP.Hosts {
		a := h.IP.Unmap()
		if !a.Is4() || !subnet.Contains(a) {
			return nil, fmt.Errorf("network %q: host address %s is not within %s", n.Name, h.IP, subnet)
		}
		if h.MAC == nil && h.Name == "" {
			return nil, fmt.Errorf("network %q: host %s has neither mac nor name", n.Name, h.IP)
		}
		c.hosts = append(c.hosts, host4{
			mac:   h.MAC,
			name:  h.Name,
			label: strings.ToLower(firstLabel4(h.Name)),
			ip:    a,
			lease: leaseSeconds4(h.Lease),
		})
	}
	c.hostAt = make(map[netip.Addr]*host4, len(c.hosts))
	c.hostMAC = make(map[string]*host4, len(c.hosts))
	c.hostLabel = map[string]*host4{}
	for i := range c.hosts {
		h := &c.hosts[i]
		if _, dup := c.hostAt[h.ip]; !dup {
			c.hostAt[h.ip] = h
		}
		switch {
		case h.mac != nil:
			if k := macKey4(h.mac); c.hostMAC[k] == nil {
				c.hostMAC[k] = h
			}
		case h.label != "":
			if c.hostLabel[h.label] == nil {
				c.hostLabel[h.label] = h
			}
		}
	}
	if b := ip.DHCP.BootP; b != nil && b.File != "" {
		c.bootFile = b.File
		c.nextServer = c.server
		if b.Server.IsValid() && b.Server.Unmap().Is4() {
			c.nextServer = b.Server.Unmap()
		}
	}
	if ip.TFTPRoot != "" && !c.nextServer.IsValid() {
		c.nextServer = c.server
	}
	c.encodeOpts()
	return c, nil
}

// hostByMAC is the static host reserved for mac, if any.
func (c *config4) hostByMAC(mac net.HardwareAddr) *host4 { return c.hostMAC[macKey4(mac)] }

// macKey4 is a MAC as a map key.
func macKey4(mac net.HardwareAddr) string { return string(mac) }

// hostByName is the name-only static host matching a client's host name
// (dnsmasq compares names without their domain, case-insensitively).
func (c *config4) hostByName(label string) *host4 {
	if label == "" {
		return nil
	}
	return c.hostLabel[label]
}

// hostByIP is the static host whose address is a, if any.
func (c *config4) hostByIP(a netip.Addr) *host4 { return c.hostAt[a] }

// rangeOf is the range holding a, or nil.
func (c *config4) rangeOf(a netip.Addr) *range4 {
	if !a.Is4() {
		return nil
	}
	u := a2u4(a)
	for i := range c.ranges {
		if c.ranges[i].contains(u) {
			return &c.ranges[i]
		}
	}
	return nil
}

// poolSize is the number of addresses that can be leased: the ranges and
// the static hosts outside them.
func (c *config4) poolSize() int {
	n := c.total
	for a := range c.hostAt {
		if c.rangeOf(a) == nil {
			n++
		}
	}
	return n
}

// usable reports whether a may be leased at all: inside the subnet and not
// its network, broadcast or the server's own address.
func (c *config4) usable(a netip.Addr) bool {
	return a.Is4() && c.subnet.Contains(a) && a != c.subnet.Addr() && a != c.broadcast && a != c.server
}

// nth is the i-th address of the concatenated ranges, 0 <= i < total.
func (c *config4) nth(i int) netip.Addr {
	for _, r := range c.ranges {
		if i < r.size() {
			return u2a4(r.start + uint32(i))
		}
		i -= r.size()
	}
	return netip.Addr{}
}

// leaseFor is the lease time, in seconds, for address a given to a client
// with host config h (nil: none): the host's, else the range's, else one
// hour.
func (c *config4) leaseFor(a netip.Addr, h *host4) uint32 {
	if h != nil && h.lease != 0 && h.ip == a {
		return h.lease
	}
	if r := c.rangeOf(a); r != nil && r.lease != 0 {
		return r.lease
	}
	return defaultLease4
}

func a2u4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func u2a4(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

// firstLabel4 is name up to its first dot.
func firstLabel4(name string) string {
	if i := strings.IndexByte(name, '.'); i >= 0 {
		return name[:i]
	}
	return name
}

// hostLabel4 sanitises a client-supplied host name (option 12) the way
// dnsmasq does: the domain part is dropped, and a name that is not a valid
// DNS label is ignored ("").
func hostLabel4(raw string) string {
	s := strings.TrimRight(raw, "\x00")
	s = firstLabel4(s)
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return ""
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-') {
			return ""
		}
	}
	return s
}

// leaseExpiry4 turns DHCP seconds into an expiry (zero: infinite).
func leaseExpiry4(now time.Time, secs uint32) time.Time {
	if secs == infiniteLease4 {
		return time.Time{}
	}
	return now.Add(time.Duration(secs) * time.Second)
}
