package dnsd

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/leases"
)

// localTTL is the TTL of every local answer. It is dnsmasq's local-ttl
// default, which libvirt keeps: guests never cache a name, so a changed
// <dns><host> or a new lease is seen at once.
const localTTL = 0

// fastTypes are the query types whose answers for local names are packed in
// advance. Other types of local names still get an answer (NODATA), from the
// slow path.
var fastTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypePTR, dns.TypeTXT, dns.TypeSRV, dns.TypeMX, dns.TypeHTTPS, dns.TypeSVCB}

// zone is the immutable DNS view of one network: its local records, the
// packed answers of the fast path, where to forward what, and who may ask.
// A new one is built for every change (net-update, a lease) and swapped in
// atomically, so a query always sees one consistent version.
type zone struct {
	network string
	domain  string // lowercase FQDN of <domain name>, "" without one

	nodes map[string]*node    // lowercase FQDN → its records
	ents  map[string]struct{} // empty non-terminals above local names
	// wire holds the lowercase wire form of every name in nodes: the fast
	// path must not take a cached upstream answer for a name that is local.
	wire map[string]struct{}
	// fast maps a lowercase wire name followed by the big-endian query type
	// to the packed answer (ID 0, no OPT, question as the name in
	// lowercase).
	fast map[string][]byte

	routes     []route          // longest first
	plainLocal bool             // forwardPlainNames='no'
	upstreams  []netip.AddrPort // <forwarder addr> without domain: the only default servers
	useResolv  bool             // default servers come from resolv.conf
	clients    []netip.Prefix   // sources allowed to ask
	self       []netip.Addr     // the bridge's addresses: never upstreams

	records    int       // number of local resource records, for logs
	nextExpiry time.Time // earliest expiry of a lease in the zone; zero if none
}

type node struct {
	rrs map[uint16][]dns.RR
}

// routeKind says what to do with names under a route.
type routeKind uint8

const (
	// routeLocal: answer from local data only; NXDOMAIN when absent.
	routeLocal routeKind = iota + 1
	// routeServers: forward to these servers only, in order.
	routeServers
)

// route is one domain policy: <forwarder domain addr>, <forwarder domain>,
// <domain localOnly='yes'> or the reverse zone of an <ip localPtr='yes'>.
type route struct {
	suffix  string       // lowercase FQDN; "" for a reverse-zone route
	dotted  string       // "." + suffix
	prefix  netip.Prefix // reverse-zone route: the subnet
	labels  int          // precedence: the longest match wins
	kind    routeKind
	servers []netip.AddrPort
}

func (r *route) match(name string, rev netip.Prefix, revOK bool) bool {
	if r.prefix.IsValid() {
		return revOK && rev.Bits() >= r.prefix.Bits() && r.prefix.Contains(rev.Addr())
	}
	return name == r.suffix || strings.HasSuffix(name, r.dotted)
}

// decision is where a query for a name that has no local records goes.
type decision struct {
	local     bool             // answer NXDOMAIN/NODATA from local data
	servers   []netip.AddrPort // forward to these, in order
	useResolv bool             // forward to resolv.conf's servers
}

// decide applies the forwarding rules of libvirt's dnsmasq configuration to
// a lowercase FQDN. With no server to ask, the query is refused, as dnsmasq
// does.
func (z *zone) decide(name string) decision {
	rev, revOK := reversePrefix(name)
	for i := range z.routes {
		r := &z.routes[i]
		if !r.match(name, rev, revOK) {
			continue
		}
		if r.kind == routeLocal {
			return decision{local: true}
		}
		return decision{servers: r.servers}
	}
	if z.plainLocal && dns.CountLabel(name) <= 1 {
		return decision{local: true}
	}
	if len(z.upstreams) > 0 {
		return decision{servers: z.upstreams}
	}
	return decision{useResolv: z.useResolv}
}

// allowed reports whether src may use this server: the network's own
// subnets, link-local peers and the host itself. Everything else is
// refused, so the server is never an open resolver on a routed network.
func (z *zone) allowed(src netip.Addr) bool {
	src = src.Unmap()
	if src.IsLoopback() || src.IsLinkLocalUnicast() {
		return true
	}
	for _, p := range z.clients {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// isSelf reports whether a is one of the bridge's own addresses: a
// resolv.conf naming this server must not make it forward to itself.
func (z *zone) isSelf(a netip.Addr) bool {
	return slices.Contains(z.self, a.Unmap())
}

// buildZone derives the zone of n with the lease hostnames of ls that are
// still valid at now.
func buildZone(n *conf.Network, ls []leases.Lease, now time.Time) (*zone, error) {
	if n == nil {
		return nil, fmt.Errorf("no network definition")
	}
	if !n.DNS.Enabled() {
		return nil, fmt.Errorf("network %q: %w", n.Name, ErrDisabled)
	}
	z := &zone{
		network: n.Name,
		nodes:   map[string]*node{},
		ents:    map[string]struct{}{},
		wire:    map[string]struct{}{},
		fast:    map[string][]byte{},
	}
	if n.Domain != nil && n.Domain.Name != "" {
		if d, ok := canonical(n.Domain.Name); ok {
			z.domain = d
		}
	}
	b := zoneBuilder{z: z, ptrDone: map[netip.Addr]bool{}, static: map[string]bool{}, seen: map[string]struct{}{}}

	// <dns><host>: dnsmasq's addn-hosts with expand-hosts. libvirt writes
	// one line per address, so the PTR names the first hostname of the
	// first <host> with that address.
	for _, h := range n.DNS.Hosts {
		if !h.IP.IsValid() {
			continue
		}
		ip := h.IP.Unmap()
		for i, hn := range h.Hostnames {
			names := b.expand(hn)
			for _, name := range names {
				b.addAddr(name, ip, true)
			}
			if i == 0 && len(names) > 0 {
				b.addPTR(ip, names[len(names)-1])
			}
		}
	}
	// Static DHCP hosts with a name and an address: "name" and
	// "name.<domain>" (a dotted name keeps its own domain).
	for i := range n.IPs {
		if n.IPs[i].DHCP == nil {
			continue
		}
		for _, h := range n.IPs[i].DHCP.Hosts {
			if h.Name == "" || !h.IP.IsValid() {
				continue
			}
			names := b.dhcpNames(h.Name)
			for _, name := range names {
				b.addAddr(name, h.IP.Unmap(), true)
			}
			if len(names) > 0 {
				b.addPTR(h.IP.Unmap(), names[len(names)-1])
			}
		}
	}
	// Lease hostnames, unless a static record already owns the name in
	// that family (dnsmasq refuses to give a DHCP client a name from its
	// hosts files).
	for _, l := range ls {
		if l.Hostname == "" || !l.IP.IsValid() || l.Expired(now) {
			continue
		}
		if !l.Expiry.IsZero() && (z.nextExpiry.IsZero() || l.Expiry.Before(z.nextExpiry)) {
			z.nextExpiry = l.Expiry
		}
		names := b.dhcpNames(leaseLabel(l.Hostname))
		ip := l.IP.Unmap()
		added := false
		for _, name := range names {
			if b.static[staticKey(name, ip)] {
				continue
			}
			b.addAddr(name, ip, false)
			added = true
		}
		if added {
			b.addPTR(ip, names[len(names)-1])
		}
	}
	for _, t := range n.DNS.TXTs {
		name, ok := canonical(t.Name)
		if !ok {
			continue
		}
		b.add(name, &dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: splitTXT(t.Value)})
	}
	for _, s := range n.DNS.SRVs {
		b.addSRV(s)
	}
	b.finish()

	// Forwarding, in the order libvirt writes dnsmasq's configuration.
	for _, f := range n.DNS.Forwarders {
		switch {
		case f.Domain != "" && f.Addr.IsValid():
			z.addRoute(f.Domain, routeServers, port53(f.Addr))
		case f.Domain != "":
			// libvirt's "server=/D/#", which the issue defines as "answered
			// locally only".
			z.addRoute(f.Domain, routeLocal, netip.AddrPort{})
		case f.Addr.IsValid():
			z.upstreams = append(z.upstreams, port53(f.Addr))
		}
	}
	if n.Domain != nil && n.Domain.LocalOnly == conf.TristateYes && z.domain != "" {
		z.addRoute(z.domain, routeLocal, netip.AddrPort{})
	}
	for i := range n.IPs {
		ip := &n.IPs[i]
		sub, err := ip.Subnet()
		if err != nil {
			continue
		}
		sub = sub.Masked()
		z.clients = append(z.clients, sub)
		z.self = append(z.self, ip.Address.Unmap())
		if ip.LocalPTR == conf.TristateYes {
			z.routes = append(z.routes, route{prefix: sub, labels: reverseLabels(sub), kind: routeLocal})
		}
	}
	slices.SortStableFunc(z.routes, func(a, b route) int { return b.labels - a.labels })
	z.plainLocal = n.DNS.ForwardPlainNames == conf.TristateNo
	// Isolated networks get "no-resolv": only explicit forwarders.
	isolated := n.Forward.Mode == conf.ForwardNone || !n.Forward.Mode.Valid()
	z.useResolv = len(z.upstreams) == 0 && !isolated
	return z, nil
}

// addRoute adds a domain policy. Forwarders of the same domain accumulate
// in XML order; "local only" for a domain beats forwarders of the very
// same domain, since it promises that nothing under it leaves the host.
func (z *zone) addRoute(domain string, kind routeKind, srv netip.AddrPort) {
	d, ok := canonical(domain)
	if !ok {
		return
	}
	for i := range z.routes {
		r := &z.routes[i]
		if r.suffix != d || r.prefix.IsValid() {
			continue
		}
		switch {
		case kind == routeLocal:
			r.kind, r.servers = routeLocal, nil
		case r.kind == routeServers:
			r.servers = append(r.servers, srv)
		}
		return
	}
	r := route{suffix: d, dotted: "." + d, labels: dns.CountLabel(d), kind: kind}
	if kind == routeServers {
		r.servers = []netip.AddrPort{srv}
	}
	z.routes = append(z.routes, r)
}

func port53(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a.Unmap(), 53) }

type zoneBuilder struct {
	z       *zone
	ptrDone map[netip.Addr]bool
	static  map[string]bool // name+family owned by <dns><host> or a static DHCP host
	// seen holds every record added, as owner, type and data: guests name
	// their own leases, and thousands of them under one name must not
	// make each rebuild compare every pair of records.
	seen map[string]struct{}
}

func staticKey(name string, ip netip.Addr) string {
	if ip.Is4() {
		return name + "/4"
	}
	return name + "/6"
}

// expand is expand-hosts: a plain name is also given the network's domain.
func (b *zoneBuilder) expand(hostname string) []string {
	name, ok := canonical(hostname)
	if !ok {
		return nil
	}
	if dns.CountLabel(name) == 1 && b.z.domain != "" {
		return []string{name, name[:len(name)-1] + "." + b.z.domain}
	}
	return []string{name}
}

// dhcpNames are the names of a DHCP host: its first label alone, and with
// its own domain or the network's.
func (b *zoneBuilder) dhcpNames(hostname string) []string {
	label, rest, dotted := strings.Cut(strings.TrimSuffix(hostname, "."), ".")
	plain, ok := canonical(label)
	if !ok || dns.CountLabel(plain) != 1 {
		return nil
	}
	domain := b.z.domain
	if dotted && rest != "" {
		if d, ok := canonical(rest); ok {
			domain = d
		}
	}
	if domain == "" {
		return []string{plain}
	}
	return []string{plain, plain[:len(plain)-1] + "." + domain}
}

func (b *zoneBuilder) node(name string) *node {
	nd := b.z.nodes[name]
	if nd == nil {
		nd = &node{rrs: map[uint16][]dns.RR{}}
		b.z.nodes[name] = nd
	}
	return nd
}

func (b *zoneBuilder) add(name string, rr dns.RR) {
	name = strings.ToLower(name)
	t := rr.Header().Rrtype
	// Every record of the zone has the same class and TTL, and names in
	// record data are lowercase: owner, type and data identify it as
	// dns.IsDuplicate would.
	key := name + "\x00" + strconv.Itoa(int(t)) + "\x00" + strings.TrimPrefix(rr.String(), rr.Header().String())
	if _, dup := b.seen[key]; dup {
		return
	}
	b.seen[key] = struct{}{}
	nd := b.node(name)
	nd.rrs[t] = append(nd.rrs[t], rr)
	b.z.records++
}

func (b *zoneBuilder) addAddr(name string, ip netip.Addr, static bool) {
	name = strings.ToLower(name)
	if static {
		b.static[staticKey(name, ip)] = true
	}
	if ip.Is4() {
		b.add(name, &dns.A{Hdr: hdr(name, dns.TypeA), A: ip.AsSlice()})
	} else {
		b.add(name, &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: ip.AsSlice()})
	}
}

// addPTR gives ip its reverse name, unless an earlier source already did:
// like dnsmasq, one canonical name per address.
func (b *zoneBuilder) addPTR(ip netip.Addr, target string) {
	if b.ptrDone[ip] {
		return
	}
	rev, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return
	}
	b.ptrDone[ip] = true
	b.add(rev, &dns.PTR{Hdr: hdr(rev, dns.TypePTR), Ptr: strings.ToLower(target)})
}

// addSRV writes libvirt's srv-host: without a domain the record lives under
// the network's; a missing port is 1, priority and weight 0; no target (or
// ".") means "no such service".
func (b *zoneBuilder) addSRV(s conf.DNSSRV) {
	owner := "_" + s.Service + "._" + s.Protocol
	switch {
	case s.Domain != "":
		owner += "." + s.Domain
	case b.z.domain != "":
		owner += "." + b.z.domain
	}
	name, ok := canonical(owner)
	if !ok {
		return
	}
	target := "."
	if s.Target != "" && s.Target != "." {
		t, ok := canonical(s.Target)
		if !ok {
			return
		}
		target = t
	}
	port := s.Port
	if port == 0 {
		port = 1
	}
	b.add(name, &dns.SRV{Hdr: hdr(name, dns.TypeSRV), Priority: s.Priority, Weight: s.Weight, Port: port, Target: target})
}

// finish computes the empty non-terminals and packs the fast answers.
func (b *zoneBuilder) finish() {
	z := b.z
	for name := range z.nodes {
		for off, end := dns.NextLabel(name, 0); !end; off, end = dns.NextLabel(name, off) {
			parent := name[off:]
			if _, ok := z.nodes[parent]; !ok {
				z.ents[parent] = struct{}{}
			}
		}
	}
	buf := make([]byte, 256)
	for name := range z.nodes {
		n, err := dns.PackDomainName(name, buf, 0, nil, false)
		if err != nil {
			continue
		}
		wire := string(buf[:n])
		z.wire[wire] = struct{}{}
		for _, t := range fastTypes {
			m := z.localAnswer(name, t)
			if m == nil {
				continue
			}
			m.Compress = true
			packed, err := m.Pack()
			if err != nil || len(packed) > ednsSize {
				// Too big for any UDP answer: the slow path truncates it.
				continue
			}
			z.fast[wire+string([]byte{byte(t >> 8), byte(t)})] = packed
		}
	}
}

// localAnswer is the answer to a query for a local name (a lowercase FQDN),
// with ID 0 and the question in lowercase; nil if the name is not local.
// A local name answers every type: the records it has, or NODATA. (dnsmasq
// forwards the types it has no data of; answering them here keeps local
// names from leaking upstream and gives guests a definite answer.)
func (z *zone) localAnswer(name string, qtype uint16) *dns.Msg {
	nd := z.nodes[name]
	if nd == nil {
		return nil
	}
	m := new(dns.Msg)
	m.Response = true
	m.Authoritative = true
	m.RecursionAvailable = true
	m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
	if qtype == dns.TypeANY {
		for _, t := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypePTR, dns.TypeTXT, dns.TypeSRV} {
			m.Answer = append(m.Answer, nd.rrs[t]...)
		}
	} else {
		m.Answer = append(m.Answer, nd.rrs[qtype]...)
	}
	if qtype == dns.TypeSRV {
		// Save the guest a query when the target is local too.
		for _, rr := range nd.rrs[dns.TypeSRV] {
			if t := z.nodes[rr.(*dns.SRV).Target]; t != nil {
				m.Extra = append(m.Extra, t.rrs[dns.TypeA]...)
				m.Extra = append(m.Extra, t.rrs[dns.TypeAAAA]...)
			}
		}
	}
	return m
}

// isENT reports whether name has no records but local names below it: it
// exists, so a local-only query for it gets NODATA, not NXDOMAIN.
func (z *zone) isENT(name string) bool {
	_, ok := z.ents[name]
	return ok
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: localTTL}
}

// canonical returns the lowercase FQDN of a name from the configuration, or
// false if it is not a valid domain name.
func canonical(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "." || strings.ContainsAny(s, " \t\\") {
		return "", false
	}
	s = dns.Fqdn(strings.ToLower(s))
	if _, ok := dns.IsDomainName(s); !ok || strings.Contains(s, "..") {
		return "", false
	}
	return s, true
}

// leaseLabel is the name a DHCP client gets in DNS: the first label of the
// name it sent (dnsmasq ignores a domain part the network does not own, and
// the network's own domain is added back by dhcpNames).
func leaseLabel(h string) string {
	label, _, _ := strings.Cut(h, ".")
	for i := 0; i < len(label); i++ {
		c := label[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return ""
		}
	}
	return label
}

// splitTXT is dnsmasq's txt-record value: strings separated by commas
// (a double-quoted part may contain commas), each at most 255 bytes.
func splitTXT(v string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	flush := func() {
		s := cur.String()
		cur.Reset()
		for len(s) > 255 {
			out = append(out, s[:255])
			s = s[255:]
		}
		out = append(out, s)
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			flush()
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return out
}

// reversePrefix parses an in-addr.arpa or ip6.arpa name (a lowercase FQDN)
// into the address prefix it stands for.
func reversePrefix(name string) (netip.Prefix, bool) {
	var labels []string
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa."):
		labels = strings.Split(strings.TrimSuffix(name, ".in-addr.arpa."), ".")
		if len(labels) > 4 {
			return netip.Prefix{}, false
		}
		var b [4]byte
		for i, l := range labels {
			v := 0
			if l == "" || len(l) > 3 {
				return netip.Prefix{}, false
			}
			for j := 0; j < len(l); j++ {
				if l[j] < '0' || l[j] > '9' {
					return netip.Prefix{}, false
				}
				v = v*10 + int(l[j]-'0')
			}
			if v > 255 {
				return netip.Prefix{}, false
			}
			b[len(labels)-1-i] = byte(v)
		}
		return netip.PrefixFrom(netip.AddrFrom4(b), 8*len(labels)), true
	case strings.HasSuffix(name, ".ip6.arpa."):
		labels = strings.Split(strings.TrimSuffix(name, ".ip6.arpa."), ".")
		if len(labels) > 32 {
			return netip.Prefix{}, false
		}
		var b [16]byte
		for i, l := range labels {
			if len(l) != 1 {
				return netip.Prefix{}, false
			}
			var v byte
			switch c := l[0]; {
			case c >= '0' && c <= '9':
				v = c - '0'
			case c >= 'a' && c <= 'f':
				v = c - 'a' + 10
			default:
				return netip.Prefix{}, false
			}
			nib := len(labels) - 1 - i // nibble index from the left
			if nib%2 == 0 {
				b[nib/2] |= v << 4
			} else {
				b[nib/2] |= v
			}
		}
		return netip.PrefixFrom(netip.AddrFrom16(b), 4*len(labels)), true
	}
	return netip.Prefix{}, false
}

// reverseLabels is the label count of the reverse zone of p (rounded up to
// whole octets or nibbles), its precedence among the domain routes.
func reverseLabels(p netip.Prefix) int {
	if p.Addr().Is4() {
		return (p.Bits()+7)/8 + 2
	}
	return (p.Bits()+3)/4 + 2
}
