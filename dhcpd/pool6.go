package dhcpd

import (
	"bytes"
	"net"
	"net/netip"
	"time"

	"github.com/vnetd/vnetd/leases"
)

// How long the pool holds addresses that are not bound.
const (
	// offerHold6 keeps an advertised address for the client that was
	// offered it, so that its Request gets it and no other Solicit does.
	offerHold6 = time.Minute
	// declineHold6 keeps a declined address out of the pool (dnsmasq's
	// DECLINE_BACKOFF).
	declineHold6 = 10 * time.Minute
)

// iaKey6 names one IA_NA of one client.
type iaKey6 struct {
	duid string // the raw DUID bytes
	iaid uint32
}

// client6 is what the pool knows about the client of a message.
type client6 struct {
	duid     []byte
	key      string // duid, as iaKey6 holds it
	name     string // FQDN (option 39), normalised; "" when not sent
	hostname string // the name to record in the lease
	mac      [6]byte
	hasMAC   bool
}

// binding6 is an address held for one IA: offered (advertised, in memory
// only) or bound (committed to the lease store).
type binding6 struct {
	ip       netip.Addr
	key      iaKey6
	mac      net.HardwareAddr
	hostname string
	// expiry is the end of the lease when bound (zero: infinite) and the
	// end of the offer when offered.
	expiry  time.Time
	offered bool
	// duidText is key.duid as leases show it, made by the first lease.
	duidText string
}

func (b *binding6) live(now time.Time) bool {
	if b.offered {
		return now.Before(b.expiry)
	}
	return b.expiry.IsZero() || !b.expiry.Before(now)
}

// Pool6 is the address allocator of one network's DHCPv6 service: ranges,
// reservations and the bindings, all in memory. It does no I/O and is not
// safe for concurrent use; Handler6 drives it.
type Pool6 struct {
	c        *netConf6
	byIP     map[netip.Addr]*binding6
	byIA     map[iaKey6]*binding6
	declined map[netip.Addr]time.Time // until
	reserved map[netip.Addr][]int     // address -> indexes in c.hosts
}

func newPool6(c *netConf6) *Pool6 {
	p := &Pool6{
		byIP:     map[netip.Addr]*binding6{},
		byIA:     map[iaKey6]*binding6{},
		declined: map[netip.Addr]time.Time{},
	}
	p.reconfigure(c)
	return p
}

// reconfigure switches to a new definition and keeps the bindings: an
// address that is no longer appropriate is taken back when its client next
// renews.
func (p *Pool6) reconfigure(c *netConf6) {
	p.c = c
	p.reserved = map[netip.Addr][]int{}
	for i, h := range c.hosts {
		p.reserved[h.ip] = append(p.reserved[h.ip], i)
	}
}

// hostFor is the reservation of a client: by DUID first, then by the name
// in its FQDN option, as dnsmasq looks them up.
func (p *Pool6) hostFor(cl *client6) (host6, bool) {
	for _, h := range p.c.hosts {
		if h.duid != nil && bytes.Equal(h.duid, cl.duid) {
			return h, true
		}
	}
	for _, h := range p.c.hosts {
		if nameMatch6(h.name, cl.name) {
			return h, true
		}
	}
	return host6{}, false
}

// hostMatches reports whether reservation h is the client's.
func hostMatches6(h host6, cl *client6) bool {
	if h.duid != nil && bytes.Equal(h.duid, cl.duid) {
		return true
	}
	return nameMatch6(h.name, cl.name)
}

// reservedForOther reports whether ip is reserved and none of its
// reservations is the client's.
func (p *Pool6) reservedForOther(ip netip.Addr, cl *client6) bool {
	idx, ok := p.reserved[ip]
	if !ok {
		return false
	}
	for _, i := range idx {
		if hostMatches6(p.c.hosts[i], cl) {
			return false
		}
	}
	return true
}

// onLink reports whether a is in the subnet of the IPv6 <ip>.
func (p *Pool6) onLink(a netip.Addr) bool {
	return a.Is6() && p.c.prefix.Contains(a.WithZone(""))
}

// appropriate reports whether ip may be bound to the client at all, and
// with which lease time: its reservation, or a range address reserved for
// nobody else.
func (p *Pool6) appropriate(ip netip.Addr, cl *client6) (lease6, bool) {
	if !p.onLink(ip) || ip == p.c.addr || ip == p.c.prefix.Addr() {
		return lease6{}, false
	}
	for _, i := range p.reserved[ip] {
		if h := p.c.hosts[i]; hostMatches6(h, cl) {
			return h.lease, true
		}
	}
	if p.reservedForOther(ip, cl) {
		return lease6{}, false
	}
	for _, r := range p.c.ranges {
		if r.contains(ip) {
			return r.lease, true
		}
	}
	return lease6{}, false
}

// free reports whether ip is held by nobody but key: no live binding of
// another IA and not declined.
func (p *Pool6) free(ip netip.Addr, key iaKey6, now time.Time) bool {
	if until, ok := p.declined[ip]; ok && now.Before(until) {
		return false
	}
	b := p.byIP[ip]
	return b == nil || b.key == key || !b.live(now)
}

// usable is appropriate and free.
func (p *Pool6) usable(ip netip.Addr, key iaKey6, cl *client6, now time.Time) (lease6, bool) {
	l, ok := p.appropriate(ip, cl)
	if !ok || !p.free(ip, key, now) {
		return lease6{}, false
	}
	return l, true
}

// pick chooses the address for one IA: the client's reservation, else the
// address the IA already has, else one the client asked for, else the
// first free range address from a point that hashes the DUID and IAID (so
// a client gets the same address back even from an empty lease store).
func (p *Pool6) pick(key iaKey6, cl *client6, hints []netip.Addr, now time.Time) (netip.Addr, lease6, bool) {
	if h, ok := p.hostFor(cl); ok {
		if l, ok := p.usable(h.ip, key, cl, now); ok {
			return h.ip, l, true
		}
	}
	if b := p.byIA[key]; b != nil {
		if l, ok := p.usable(b.ip, key, cl, now); ok {
			return b.ip, l, true
		}
	}
	for _, a := range hints {
		a = a.WithZone("")
		if l, ok := p.usable(a, key, cl, now); ok {
			return a, l, true
		}
	}
	var total uint64
	for _, r := range p.c.ranges {
		total += r.size
	}
	if total == 0 {
		return netip.Addr{}, lease6{}, false
	}
	start := fnv64a6(key) % total
	for i := uint64(0); i < total; i++ {
		off := (start + i) % total
		for _, r := range p.c.ranges {
			if off >= r.size {
				off -= r.size
				continue
			}
			a := add6(r.start, off)
			if l, ok := p.usable(a, key, cl, now); ok {
				return a, l, true
			}
			break
		}
	}
	return netip.Addr{}, lease6{}, false
}

// bind holds ip for key: an offer until now+offerHold6, or a lease of l.
// It returns the address key was bound (committed) to before, if that is
// another one: the caller removes it from the store.
func (p *Pool6) bind(key iaKey6, cl *client6, ip netip.Addr, l lease6, now time.Time, offer bool) (*binding6, netip.Addr) {
	var old netip.Addr
	if b := p.byIA[key]; b != nil && b.ip != ip {
		if !b.offered {
			old = b.ip
		}
		p.drop(b)
	}
	if b := p.byIP[ip]; b != nil && b.key != key {
		// A dead binding of another IA: its store entry is overwritten
		// by this lease when committed, or removed when swept.
		p.drop(b)
	}
	b := p.byIP[ip]
	fresh := b == nil
	if fresh {
		b = &binding6{ip: ip, key: key}
		p.byIP[ip] = b
		p.byIA[key] = b
	}
	if cl.hasMAC && !bytes.Equal(b.mac, cl.mac[:]) {
		// A new slice: leases already made keep theirs.
		b.mac = net.HardwareAddr(bytes.Clone(cl.mac[:]))
	}
	if cl.hostname != "" {
		b.hostname = cl.hostname
	}
	switch {
	case offer && !fresh && !b.offered && b.live(now):
		// An offer never shortens a live lease.
	case offer:
		b.offered = true
		b.expiry = now.Add(offerHold6)
	default:
		b.offered = false
		b.expiry = time.Time{}
		if !l.infinite {
			b.expiry = now.Add(l.d)
		}
	}
	return b, old
}

// drop forgets a binding.
func (p *Pool6) drop(b *binding6) {
	if p.byIP[b.ip] == b {
		delete(p.byIP, b.ip)
	}
	if p.byIA[b.key] == b {
		delete(p.byIA, b.key)
	}
}

// release frees ip if key holds it and reports whether it was committed.
func (p *Pool6) release(ip netip.Addr, key iaKey6) (held, committed bool) {
	b := p.byIP[ip.WithZone("")]
	if b == nil || b.key != key {
		return false, false
	}
	p.drop(b)
	return true, !b.offered
}

// decline frees ip like release and keeps it out of the pool for a while.
func (p *Pool6) decline(ip netip.Addr, key iaKey6, now time.Time) (held, committed bool) {
	held, committed = p.release(ip, key)
	if held {
		p.declined[ip.WithZone("")] = now.Add(declineHold6)
	}
	return held, committed
}

// sweep forgets dead bindings and declines and returns the addresses of the
// expired committed leases, for the caller to remove from the store.
func (p *Pool6) sweep(now time.Time) []netip.Addr {
	var gone []netip.Addr
	for ip, b := range p.byIP {
		if b.live(now) {
			continue
		}
		p.drop(b)
		if !b.offered {
			gone = append(gone, ip)
		}
	}
	for ip, until := range p.declined {
		if !now.Before(until) {
			delete(p.declined, ip)
		}
	}
	return gone
}

// load adopts a lease from the store (after a restart). It reports false
// for leases that are not this pool's or are expired.
func (p *Pool6) load(l leases.Lease, now time.Time) bool {
	if l.Kind != leases.V6 || l.Network != p.c.network || l.Expired(now) || !p.onLink(l.IP) {
		return false
	}
	duid, err := ParseDUID6(l.DUID)
	if err != nil {
		return false
	}
	ip := l.IP.WithZone("")
	if p.byIP[ip] != nil {
		return false
	}
	key := iaKey6{duid: string(duid), iaid: l.IAID}
	if old := p.byIA[key]; old != nil {
		p.drop(old)
	}
	b := &binding6{ip: ip, key: key, mac: l.MAC, hostname: l.Hostname, expiry: l.Expiry}
	p.byIP[ip] = b
	p.byIA[key] = b
	return true
}

// boundCount is the number of live committed bindings.
func (p *Pool6) boundCount(now time.Time) int {
	n := 0
	for _, b := range p.byIP {
		if !b.offered && b.live(now) {
			n++
		}
	}
	return n
}

// fnv64a6 is FNV-1a of the DUID and the big-endian IAID, without the
// allocations of hash/fnv and binary.Write.
func fnv64a6(key iaKey6) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := 0; i < len(key.duid); i++ {
		h = (h ^ uint64(key.duid[i])) * prime
	}
	for _, c := range [4]byte{byte(key.iaid >> 24), byte(key.iaid >> 16), byte(key.iaid >> 8), byte(key.iaid)} {
		h = (h ^ uint64(c)) * prime
	}
	return h
}

// lease is the store record of a committed binding.
func (p *Pool6) lease(b *binding6) leases.Lease {
	if b.duidText == "" {
		b.duidText = formatDUID6(b.key.duid)
	}
	return leases.Lease{
		Network:  p.c.network,
		Kind:     leases.V6,
		IP:       b.ip,
		Prefix:   p.c.prefix.Bits(),
		MAC:      b.mac,
		DUID:     b.duidText,
		IAID:     b.key.iaid,
		Hostname: b.hostname,
		Expiry:   b.expiry,
	}
}
