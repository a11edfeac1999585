package dhcpd

import (
	"hash/fnv"
	"net/netip"
	"time"

	"github.com/vnetd/vnetd/leases"
)

const (
	// offerHold4 is how long an OFFERed address stays reserved for its
	// client. Offers are not written to the lease store.
	offerHold4 = time.Minute
	// declineHold4 is how long a DECLINEd address is not handed out.
	declineHold4 = 10 * time.Minute
)

// binding4 is a lease the pool knows: in the store, or about to be.
type binding4 struct {
	key   string
	lease leases.Lease
	// counted: the lease is live in idx (counted in idx.live).
	counted bool
}

type offer4 struct {
	key   string
	until time.Time
}

// pool4 is the address state of one network: leases, outstanding offers,
// declined addresses and addresses whose store deletion is in flight. It
// does no I/O and is not safe for concurrent use (Handler4 locks it).
type pool4 struct {
	cfg      *config4
	bindings map[netip.Addr]*binding4
	byKey    map[string]netip.Addr // a client's current (newest) binding
	offers   map[netip.Addr]offer4
	offerBy  map[string]netip.Addr
	declined map[netip.Addr]time.Time // until
	// pending counts store deletions in flight per address: the address is
	// not handed to anyone until they are done (Settle), so that a late
	// Delete never removes a newer lease of the same address.
	pending map[netip.Addr]int
	// hints remembers the last address of clients whose lease ended, so a
	// returning client gets it back when it is still free.
	hints map[string]netip.Addr

	// idx answers "is any address free, and which" and "how many leases
	// are live" without walking the pool: every DISCOVER asks, and a
	// guest that keeps a /16 fully offered must not make each one cost a
	// scan of 65000 addresses.
	idx free4
}

func newPool4(cfg *config4) *pool4 {
	return &pool4{
		cfg:      cfg,
		bindings: map[netip.Addr]*binding4{},
		byKey:    map[string]netip.Addr{},
		offers:   map[netip.Addr]offer4{},
		offerBy:  map[string]netip.Addr{},
		declined: map[netip.Addr]time.Time{},
		pending:  map[netip.Addr]int{},
		hints:    map[string]netip.Addr{},
		idx:      free4{dueAt: map[uint32]time.Time{}},
	}
}

// setConfig applies a changed configuration: the ranges, hosts and usable
// addresses change, so the index is rebuilt at its next use.
func (p *pool4) setConfig(cfg *config4) {
	p.cfg = cfg
	p.idx.valid = false
}

// leaseKey4 is the client identity of a stored lease: its client identifier
// when it had one, else its MAC.
func leaseKey4(l leases.Lease) string {
	if l.ClientID != "" {
		return "id:" + l.ClientID
	}
	return "hw:" + l.MAC.String()
}

// load adds stored leases (of any age: expired ones go at the next Expire).
func (p *pool4) load(ls []leases.Lease) {
	for _, l := range ls {
		if l.Kind != leases.V4 || !l.IP.Unmap().Is4() || (len(l.MAC) == 0 && l.ClientID == "") {
			continue
		}
		l.IP = l.IP.Unmap()
		key := leaseKey4(l)
		p.bindings[l.IP] = &binding4{key: key, lease: l}
		p.idx.valid = false
		if old, ok := p.byKey[key]; ok {
			if ob := p.bindings[old]; ob != nil && later4(ob.lease.Expiry, l.Expiry) {
				continue
			}
		}
		p.byKey[key] = l.IP
	}
}

// later4 reports whether expiry a is after b (zero is infinite).
func later4(a, b time.Time) bool {
	switch {
	case a.IsZero():
		return !b.IsZero()
	case b.IsZero():
		return false
	}
	return a.After(b)
}

// liveOther reports whether a is leased, unexpired, to another client.
func (p *pool4) liveOther(a netip.Addr, key string, now time.Time) bool {
	b := p.bindings[a]
	return b != nil && b.key != key && !b.lease.Expired(now)
}

// offeredOther reports whether a is reserved by an offer to another client.
func (p *pool4) offeredOther(a netip.Addr, key string, now time.Time) bool {
	o, ok := p.offers[a]
	return ok && o.key != key && now.Before(o.until)
}

func (p *pool4) isDeclined(a netip.Addr, now time.Time) bool {
	until, ok := p.declined[a]
	return ok && now.Before(until)
}

// free reports whether a could be handed to client key as far as other
// clients are concerned (the host reservation rules come on top).
func (p *pool4) free(a netip.Addr, key string, now time.Time) bool {
	return p.cfg.usable(a) && p.pending[a] == 0 && !p.liveOther(a, key, now) &&
		!p.offeredOther(a, key, now) && !p.isDeclined(a, now)
}

// hostAddr is the client's static address when it can have it now, else
// invalid (no host, or its address is in use by another client, declined…:
// then the client is served like any other, as dnsmasq does).
func (p *pool4) hostAddr(cl *client4, now time.Time) netip.Addr {
	if cl.host != nil && p.free(cl.host.ip, cl.key, now) {
		return cl.host.ip
	}
	return netip.Addr{}
}

// allowed reports whether client cl may hold address a now.
func (p *pool4) allowed(cl *client4, a netip.Addr, now time.Time) bool {
	if s := p.hostAddr(cl, now); s.IsValid() {
		return a == s
	}
	if !p.free(a, cl.key, now) {
		return false
	}
	if h := p.cfg.hostByIP(a); h != nil {
		return h == cl.host
	}
	return p.cfg.rangeOf(a) != nil
}

// atLeaseMax reports whether a new lease for cl would exceed dhcp-lease-max
// (Σ range sizes). A client that holds a live lease only moves it.
//
// It runs for every DISCOVER and REQUEST, so it must not walk the leases:
// the index counts the live ones.
func (p *pool4) atLeaseMax(cl *client4, now time.Time) bool {
	if p.cfg.leaseMax == 0 || len(p.bindings) < p.cfg.leaseMax {
		return false
	}
	if a, ok := p.byKey[cl.key]; ok {
		if b := p.bindings[a]; b != nil && !b.lease.Expired(now) {
			return false
		}
	}
	p.advance(now)
	return p.idx.live >= p.cfg.leaseMax
}

// choose picks the address to offer cl: its static address, its current
// or last address, the one it asks for, its offered one, else a free one
// starting at a point derived from its identity (so a client tends to get
// the same address even after its lease was forgotten).
func (p *pool4) choose(cl *client4, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if s := p.hostAddr(cl, now); s.IsValid() {
		if p.atLeaseMax(cl, now) {
			return netip.Addr{}, false
		}
		return s, true
	}
	if p.atLeaseMax(cl, now) {
		return netip.Addr{}, false
	}
	var candidates []netip.Addr
	if a, ok := p.byKey[cl.key]; ok {
		candidates = append(candidates, a)
	}
	if a, ok := p.offerBy[cl.key]; ok {
		candidates = append(candidates, a)
	}
	if requested.IsValid() {
		candidates = append(candidates, requested)
	}
	if a, ok := p.hints[cl.key]; ok {
		candidates = append(candidates, a)
	}
	for _, a := range candidates {
		if p.allowed(cl, a, now) {
			return a, true
		}
	}
	if p.cfg.total == 0 {
		return netip.Addr{}, false
	}
	// The first address after start that no one holds or may not have:
	// what a walk of the ranges from start would find, as the client's
	// own offer and lease were tried above.
	p.advance(now)
	if p.idx.nfree == 0 {
		return netip.Addr{}, false
	}
	h := fnv.New32a()
	h.Write([]byte(cl.key))
	start := int(h.Sum32() % uint32(p.cfg.total))
	i := p.idx.free.next(start)
	if i < 0 {
		i = p.idx.free.next(0)
	}
	return p.cfg.nth(i), true
}

// offer reserves a for cl until now+offerHold4.
func (p *pool4) offer(cl *client4, a netip.Addr, now time.Time) {
	old := p.unoffer(cl.key)
	p.offers[a] = offer4{key: cl.key, until: now.Add(offerHold4)}
	p.offerBy[cl.key] = a
	p.touch(a)
	if old.IsValid() && old != a {
		p.touch(old)
	}
}

func (p *pool4) dropOffer(key string) {
	if a := p.unoffer(key); a.IsValid() {
		p.touch(a)
	}
}

// unoffer is dropOffer without updating the index: it returns the address
// whose offer it withdrew (invalid: none), for the caller to touch once it
// is done with it.
func (p *pool4) unoffer(key string) netip.Addr {
	a, ok := p.offerBy[key]
	if !ok {
		return netip.Addr{}
	}
	delete(p.offerBy, key)
	if o, ok := p.offers[a]; ok && o.key == key {
		delete(p.offers, a)
		return a
	}
	return netip.Addr{}
}

// bind records lease l for client key. It returns the client's previous
// address when it moved (to delete from the store), else invalid.
func (p *pool4) bind(key string, l leases.Lease) netip.Addr {
	var moved netip.Addr
	if old, ok := p.byKey[key]; ok && old != l.IP {
		if b := p.bindings[old]; b != nil && b.key == key {
			p.dropBinding(old)
			moved = old
			p.pending[old]++
			p.touch(old)
		}
	}
	if b := p.bindings[l.IP]; b != nil && b.key != key {
		// An expired lease of another client: the new one replaces it.
		if p.byKey[b.key] == l.IP {
			delete(p.byKey, b.key)
		}
		p.hint(b.key, l.IP)
	}
	if b := p.bindings[l.IP]; b != nil && b.key == key {
		b.lease = l // a renewal
	} else {
		p.dropBinding(l.IP)
		p.bindings[l.IP] = &binding4{key: key, lease: l}
	}
	p.byKey[key] = l.IP
	offered := p.unoffer(key)
	if o, ok := p.offers[l.IP]; ok && o.key != key {
		delete(p.offers, l.IP)
	}
	p.touch(l.IP)
	if offered.IsValid() && offered != l.IP {
		p.touch(offered)
	}
	delete(p.hints, key)
	return moved
}

// unbind forgets the lease of a and marks a pending until Settle.
func (p *pool4) unbind(a netip.Addr) {
	b := p.bindings[a]
	if b == nil {
		return
	}
	p.dropBinding(a)
	if p.byKey[b.key] == a {
		delete(p.byKey, b.key)
	}
	p.hint(b.key, a)
	p.pending[a]++
	p.touch(a)
}

// dropBinding forgets the binding of a, and its count in the index.
func (p *pool4) dropBinding(a netip.Addr) {
	if b := p.bindings[a]; b != nil && b.counted {
		p.idx.live--
	}
	delete(p.bindings, a)
}

// decline keeps a from everyone for declineHold4.
func (p *pool4) decline(a netip.Addr, now time.Time) {
	p.declined[a] = now.Add(declineHold4)
	p.touch(a)
}

func (p *pool4) hint(key string, a netip.Addr) {
	if len(p.hints) >= 2*p.cfg.total+256 {
		clear(p.hints)
	}
	p.hints[key] = a
}

// settle ends one store deletion of a.
func (p *pool4) settle(a netip.Addr) {
	if n := p.pending[a]; n > 1 {
		p.pending[a] = n - 1
	} else {
		delete(p.pending, a)
		p.touch(a)
	}
}

// expire forgets leases that ran out, outstanding offers and declines that
// are over, and returns the addresses whose leases must leave the store
// (each pending until settled).
func (p *pool4) expire(now time.Time) []netip.Addr {
	p.advance(now)
	var gone []netip.Addr
	for a, b := range p.bindings {
		if b.lease.Expired(now) {
			gone = append(gone, a)
		}
	}
	for _, a := range gone {
		p.unbind(a)
	}
	for a, o := range p.offers {
		if !now.Before(o.until) {
			delete(p.offers, a)
			if p.offerBy[o.key] == a {
				delete(p.offerBy, o.key)
			}
			p.touch(a)
		}
	}
	for a, until := range p.declined {
		if !now.Before(until) {
			delete(p.declined, a)
			p.touch(a)
		}
	}
	return gone
}

// advance brings the index to now: it re-reads the addresses whose records
// ran out by then, or is rebuilt when it has not been built since the
// configuration or stored leases changed, or when now is before the time
// it was built for (a test's clock: the server's only goes forward).
func (p *pool4) advance(now time.Time) {
	x := &p.idx
	if !x.valid || now.Before(x.at) {
		p.rebuild(now)
		return
	}
	x.at = now
	for len(x.due) > 0 && !now.Before(x.due[0].at) {
		d := x.due.pop()
		x.popped(d.a, d.at)
		p.touch(u2a4(d.a))
	}
}

// rebuild makes the index anew at now, in O(pool size / 64 + records):
// every address starts free, then those that are not are read.
func (p *pool4) rebuild(now time.Time) {
	x := &p.idx
	clear(x.dueAt)
	*x = free4{valid: true, at: now, free: newFullBitset4(p.cfg.total), nfree: p.cfg.total, due: x.due[:0], dueAt: x.dueAt}
	for _, b := range p.bindings {
		b.counted = false
	}
	c := p.cfg
	for _, a := range []netip.Addr{c.subnet.Addr(), c.broadcast, c.server} {
		p.touch(a)
	}
	for a := range c.hostAt {
		p.touch(a)
	}
	for a := range p.bindings {
		p.touch(a)
	}
	for a := range p.offers {
		p.touch(a)
	}
	for a := range p.declined {
		p.touch(a)
	}
	for a := range p.pending {
		p.touch(a)
	}
}

// touch re-reads the records of a into the index, after they changed or
// when they may have run out: whether a is free for anyone, whether its
// lease is live, and when that may change next.
func (p *pool4) touch(a netip.Addr) {
	x := &p.idx
	if !x.valid {
		return
	}
	at := x.at
	busy := p.pending[a] > 0 || p.cfg.hostByIP(a) != nil || !p.cfg.usable(a)
	var next time.Time
	if b := p.bindings[a]; b != nil {
		live := !b.lease.Expired(at)
		if live != b.counted {
			b.counted = live
			if live {
				x.live++
			} else {
				x.live--
			}
		}
		if live {
			busy = true
			if !b.lease.Expiry.IsZero() {
				// Expired is Expiry.Before(now): the lease ends one
				// nanosecond after its expiry.
				next = b.lease.Expiry.Add(time.Nanosecond)
			}
		}
	}
	if o, ok := p.offers[a]; ok && at.Before(o.until) {
		busy = true
		next = earlier4(next, o.until)
	}
	if until, ok := p.declined[a]; ok && at.Before(until) {
		busy = true
		next = earlier4(next, until)
	}
	p.setFree(a, !busy)
	if !next.IsZero() && a.Is4() {
		x.schedule(a2u4(a), next)
	}
}

// earlier4 is the earlier of a (zero: none) and b.
func earlier4(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// setFree marks a free or not at each of its range positions (ranges may
// overlap).
func (p *pool4) setFree(a netip.Addr, free bool) {
	if !a.Is4() {
		return
	}
	x := &p.idx
	u := a2u4(a)
	base := 0
	for _, r := range p.cfg.ranges {
		if r.contains(u) {
			i := base + int(u-r.start)
			switch was := x.free.has(i); {
			case free && !was:
				x.free.add(i)
				x.nfree++
			case !free && was:
				x.free.remove(i)
				x.nfree--
			}
		}
		base += r.size()
	}
}
