package dhcpd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/leases"
)

// Stats4 are the DHCPv4 server's counters since it was made. Discover,
// Request, Decline, Release and Inform count requests received; Offer, Ack
// and Nak replies decided (an ACK whose lease could not be stored is counted
// in StoreErrors too and is not sent).
type Stats4 struct {
	Discover, Offer, Request, Ack, Nak, Decline, Release, Inform uint64
	// Dropped counts packets that were malformed, not for a server, or
	// relayed.
	Dropped uint64
	// Overflow is always 0 for DHCPv4, and kept for the metric it shares
	// with DHCPv6: requests wait in the socket's buffer, not in a queue of
	// the server's, and an overloaded server loses them there.
	Overflow uint64
	// PoolExhausted counts clients left without an offer because no address
	// was free or dhcp-lease-max was reached.
	PoolExhausted uint64
	// StoreErrors counts lease store writes that failed (no ACK was sent).
	StoreErrors uint64
	// SendErrors counts replies that could not be sent.
	SendErrors uint64
	// Panic counts packets whose handling panicked (a bug), dropped and
	// not in Dropped. Only Server4.Stats fills it in.
	Panic uint64
	// Bound is the number of leases that have not expired, PoolSize the
	// number of addresses the server can lease (Handler4.Bound, PoolSize).
	// Only Server4.Stats fills them in: they are not counters, and Bound
	// needs the server's clock.
	Bound, PoolSize int
}

// counters4.dropped leaves out overflow, which Stats4.Dropped includes:
// the drops other than overflow then never go down between two snapshots.
type counters4 struct {
	discover, offer, request, ack, nak, decline, release, inform atomic.Uint64
	dropped, overflow, poolExhausted, storeErrors, sendErrors    atomic.Uint64
}

func (c *counters4) snapshot() Stats4 {
	overflow := c.overflow.Load()
	return Stats4{
		Discover: c.discover.Load(), Offer: c.offer.Load(), Request: c.request.Load(),
		Ack: c.ack.Load(), Nak: c.nak.Load(), Decline: c.decline.Load(),
		Release: c.release.Load(), Inform: c.inform.Load(), Dropped: c.dropped.Load() + overflow, Overflow: overflow,
		PoolExhausted: c.poolExhausted.Load(), StoreErrors: c.storeErrors.Load(),
		SendErrors: c.sendErrors.Load(),
	}
}

// Handler4 decides the DHCPv4 replies of one network. It does no I/O: the
// caller persists what Handle returns and only then sends the reply. It is
// safe for concurrent use.
type Handler4 struct {
	mu    sync.Mutex
	pool  *pool4
	stats counters4
}

// NewHandler4 builds the handler of the network's IPv4 <ip> that has <dhcp>,
// knowing the leases already stored for it.
func NewHandler4(n *conf.Network, stored []leases.Lease) (*Handler4, error) {
	cfg, err := newConfig4(n)
	if err != nil {
		return nil, err
	}
	p := newPool4(cfg)
	p.load(stored)
	return &Handler4{pool: p}, nil
}

// Update applies a changed network definition. Leases are kept; a client
// whose address is no longer valid is NAKed at its next renewal.
func (h *Handler4) Update(n *conf.Network) error {
	cfg, err := newConfig4(n)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.pool.setConfig(cfg)
	h.mu.Unlock()
	return nil
}

// Stats returns the counters.
func (h *Handler4) Stats() Stats4 { return h.stats.snapshot() }

// Bound is the number of leases that have not expired at now.
func (h *Handler4) Bound(now time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, b := range h.pool.bindings {
		if !b.lease.Expired(now) {
			n++
		}
	}
	return n
}

// PoolSize is the number of addresses the handler can lease: its ranges and
// the static hosts outside them.
func (h *Handler4) PoolSize() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pool.cfg.poolSize()
}

// Settle tells the handler that the store deletion of ip that Handle or
// Expire asked for is done (successfully or not): until then ip is not
// handed to another client.
func (h *Handler4) Settle(ip netip.Addr) {
	h.mu.Lock()
	h.pool.settle(ip)
	h.mu.Unlock()
}

// Expire forgets the leases that ran out before now, and the offers and
// declines that are over. It returns the addresses whose leases the caller
// must delete from the store, then Settle.
func (h *Handler4) Expire(now time.Time) []netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pool.expire(now)
}

// Leases returns the leases the handler holds, expired ones included.
func (h *Handler4) Leases() []leases.Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]leases.Lease, 0, len(h.pool.bindings))
	for _, b := range h.pool.bindings {
		out = append(out, b.lease)
	}
	return out
}

// client4 is who sent a request.
type client4 struct {
	key      string // "id:" + client identifier, else "hw:" + MAC
	mac      net.HardwareAddr
	clientID string     // option 61 as "01:52:54:…"; "" if none
	label    string     // sanitised option 12, "" if none
	host     *host4     // matching static host, if any
	reqIP    netip.Addr // option 50, invalid if absent
	ciaddr   netip.Addr // invalid if 0.0.0.0
	serverID netip.Addr // option 54, invalid if absent
	// What the reply takes of the request, copied: a pointer to it would
	// move every request to the heap (escape analysis follows cl.key into
	// the pool's maps, and everything else cl points to with it).
	htype     iana.HWType
	xid       dhcpv4.TransactionID
	flags     uint16
	id        []byte // option 61 as sent, nil if none
	leaseOpt  []byte // option 51
	wantsName bool   // option 12 is requested; known only with a host
}

// hexKey4 is prefix then b as lower-case hex bytes joined with ':'
// (dnsmasq's form), made in one allocation: a client's key is made for
// every request.
func hexKey4(prefix string, b []byte) string {
	if len(b) == 0 {
		return prefix
	}
	const digits = "0123456789abcdef"
	var sb strings.Builder
	sb.Grow(len(prefix) + 3*len(b) - 1)
	sb.WriteString(prefix)
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&0xf])
	}
	return sb.String()
}

// ip4 converts a header or option address; 0.0.0.0 and garbage are invalid.
func ip4(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	a = a.Unmap()
	if !a.Is4() || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

var (
	errNotRequest4 = errors.New("not a BOOTREQUEST")
	errNotEther4   = errors.New("hardware type is not Ethernet with a 6-byte address")
	errRelayed4    = errors.New("relayed request (giaddr set): vnetd serves its bridge only")
	errNoType4     = errors.New("no DHCP message type (BOOTP is not served)")
	errNoPacket4   = errors.New("no packet")
)

// check4 rejects what no request of a client on the bridge can look like.
func check4(req *request4) error {
	switch {
	case req.op != dhcpv4.OpcodeBootRequest:
		return errNotRequest4
	case req.htype != iana.HWTypeEthernet || len(req.chaddr) != 6:
		return errNotEther4
	case req.chaddr[0]&1 != 0 || isZero4(req.chaddr):
		return fmt.Errorf("client hardware address %s is not unicast", req.chaddr)
	case req.relayed:
		return errRelayed4
	case len(req.opts.msgType) != 1:
		return errNoType4
	case len(req.opts.clientID) > maxClientID4:
		// Concatenated options (RFC 3396) could make it kilobytes, and
		// every reply echoes it (RFC 6842).
		return fmt.Errorf("client identifier of %d bytes, more than %d", len(req.opts.clientID), maxClientID4)
	}
	return nil
}

// maxClientID4 bounds option 61: one option's worth, which keeps a reply
// within the 576 bytes every client accepts. Real ones are a type byte and
// a MAC address, or an IAID and a DUID (RFC 4361): at most 135 bytes.
const maxClientID4 = 255

func isZero4(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (h *Handler4) client(req *request4) client4 {
	cfg := h.pool.cfg
	cl := client4{
		mac:      req.chaddr,
		reqIP:    optIP4(req.opts.reqIP),
		ciaddr:   req.ciaddr,
		serverID: optIP4(req.opts.serverID),
		htype:    req.htype,
		xid:      req.xid,
		flags:    req.flags,
		id:       req.opts.clientID,
		leaseOpt: req.opts.lease,
	}
	if len(req.opts.hostname) > 0 {
		cl.label = hostLabel4(string(req.opts.hostname))
	}
	if id := req.opts.clientID; len(id) > 0 {
		cl.key = hexKey4("id:", id)
		cl.clientID = cl.key[len("id:"):]
	} else {
		cl.key = hexKey4("hw:", cl.mac)
	}
	cl.host = cfg.hostByMAC(cl.mac)
	if cl.host == nil {
		cl.host = cfg.hostByName(strings.ToLower(cl.label))
	}
	if cl.host != nil {
		cl.wantsName = req.requested(dhcpv4.OptionHostName)
	}
	return cl
}

// decision4 is what Handler4 decided for one request: the reply (none when
// not ok), the lease to store before it is sent (none: invalid IP), the
// address whose lease to delete (invalid: none).
type decision4 struct {
	ans     answer4
	commit  leases.Lease
	release netip.Addr
}

// Handle decides what to do with one request at time now. resp is the reply
// to send (nil: none); commit, when set, must be durably stored before resp
// is sent (and resp dropped if that fails); release, when set, is an
// address whose lease must be deleted from the store, then Settled. err
// reports a malformed or unservable packet (counted as Dropped).
func (h *Handler4) Handle(req *dhcpv4.DHCPv4, now time.Time) (resp *dhcpv4.DHCPv4, commit *leases.Lease, release *netip.Addr, err error) {
	if req == nil || req.Options == nil {
		h.stats.dropped.Add(1)
		return nil, nil, nil, errNoPacket4
	}
	r := requestFrom4(req)
	d, err := h.decide(&r, now)
	if err != nil {
		return nil, nil, nil, err
	}
	if d.commit.IP.IsValid() {
		commit = &d.commit
	}
	if d.release.IsValid() {
		release = &d.release
	}
	return d.ans.message(), commit, release, nil
}

// decide is Handle on a request4: the server's way in.
func (h *Handler4) decide(req *request4, now time.Time) (d decision4, err error) {
	if err := check4(req); err != nil {
		h.stats.dropped.Add(1)
		return d, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cl := h.client(req)
	switch mt := req.messageType(); mt {
	case dhcpv4.MessageTypeDiscover:
		h.stats.discover.Add(1)
		d.ans, err = h.discover(&cl, now)
	case dhcpv4.MessageTypeRequest:
		h.stats.request.Add(1)
		err = h.request(&cl, now, &d)
	case dhcpv4.MessageTypeDecline:
		h.stats.decline.Add(1)
		d.release, err = h.decline(&cl, now)
	case dhcpv4.MessageTypeRelease:
		h.stats.release.Add(1)
		d.release, err = h.releaseMsg(&cl)
	case dhcpv4.MessageTypeInform:
		h.stats.inform.Add(1)
		d.ans, err = h.inform(&cl)
	default:
		err = fmt.Errorf("message type %s is not a client request", mt)
	}
	if err != nil {
		h.stats.dropped.Add(1)
		return decision4{}, err
	}
	switch d.ans.mt {
	case dhcpv4.MessageTypeOffer:
		h.stats.offer.Add(1)
	case dhcpv4.MessageTypeAck:
		h.stats.ack.Add(1)
	case dhcpv4.MessageTypeNak:
		h.stats.nak.Add(1)
	}
	return d, nil
}

func (h *Handler4) discover(cl *client4, now time.Time) (answer4, error) {
	p := h.pool
	a, ok := p.choose(cl, cl.reqIP, now)
	if !ok {
		if len(p.cfg.ranges) > 0 || cl.host != nil {
			h.stats.poolExhausted.Add(1)
		}
		// Static-only service and an unknown client: no offer, as dnsmasq.
		return answer4{}, nil
	}
	p.offer(cl, a, now)
	return h.reply(cl, dhcpv4.MessageTypeOffer, a, h.leaseTime(cl, a)), nil
}

func (h *Handler4) request(cl *client4, now time.Time, d *decision4) error {
	p := h.pool
	if cl.serverID.IsValid() && cl.serverID != p.cfg.server {
		// The client chose another server's offer.
		p.dropOffer(cl.key)
		return nil
	}
	a := cl.reqIP
	if !a.IsValid() {
		a = cl.ciaddr
	}
	if !a.IsValid() {
		return errors.New("REQUEST with neither requested address nor ciaddr")
	}
	if !p.cfg.subnet.Contains(a) {
		d.ans = h.nak(cl, fmt.Sprintf("address %s is not in subnet %s", a, p.cfg.subnet))
		return nil
	}
	if !p.allowed(cl, a, now) || p.atLeaseMax(cl, now) {
		if b := p.bindings[a]; b != nil && b.key == cl.key {
			p.unbind(a)
			d.release = a
		}
		msg := "address not available"
		if s := p.hostAddr(cl, now); s.IsValid() && s != a {
			msg = "static lease available"
		} else if hr := p.cfg.hostByIP(a); hr != nil && hr != cl.host {
			msg = "address reserved"
		}
		d.ans = h.nak(cl, msg)
		return nil
	}
	secs := h.leaseTime(cl, a)
	d.commit = leases.Lease{
		Network:  p.cfg.network,
		Kind:     leases.V4,
		IP:       a,
		Prefix:   p.cfg.subnet.Bits(),
		MAC:      append(net.HardwareAddr(nil), cl.mac...),
		ClientID: cl.clientID,
		Hostname: cl.label,
		Expiry:   leaseExpiry4(now, secs),
	}
	l := &d.commit
	if cl.host != nil && cl.host.ip == a && cl.host.label != "" {
		l.Hostname = cl.host.label
	}
	if l.Hostname == "" {
		if b := p.bindings[a]; b != nil && b.key == cl.key {
			l.Hostname = b.lease.Hostname
		}
	}
	d.release = p.bind(cl.key, *l)
	d.ans = h.reply(cl, dhcpv4.MessageTypeAck, a, secs)
	return nil
}

func (h *Handler4) decline(cl *client4, now time.Time) (netip.Addr, error) {
	p := h.pool
	if cl.serverID.IsValid() && cl.serverID != p.cfg.server {
		return netip.Addr{}, nil
	}
	a := cl.reqIP
	if !a.IsValid() {
		return netip.Addr{}, errors.New("DECLINE without requested address")
	}
	b := p.bindings[a]
	mine := b != nil && b.key == cl.key
	if o, ok := p.offers[a]; ok && o.key == cl.key {
		mine = true
		p.dropOffer(cl.key)
	}
	if !mine {
		return netip.Addr{}, nil
	}
	p.decline(a, now)
	if b != nil && b.key == cl.key {
		p.unbind(a)
		delete(p.hints, cl.key)
		return a, nil
	}
	return netip.Addr{}, nil
}

func (h *Handler4) releaseMsg(cl *client4) (netip.Addr, error) {
	p := h.pool
	if cl.serverID.IsValid() && cl.serverID != p.cfg.server {
		return netip.Addr{}, nil
	}
	a := cl.ciaddr
	if !a.IsValid() {
		return netip.Addr{}, errors.New("RELEASE without ciaddr")
	}
	if b := p.bindings[a]; b == nil || b.key != cl.key {
		return netip.Addr{}, nil
	}
	p.unbind(a)
	return a, nil
}

func (h *Handler4) inform(cl *client4) (answer4, error) {
	if !cl.ciaddr.IsValid() || !h.pool.cfg.subnet.Contains(cl.ciaddr) {
		return answer4{}, errors.New("INFORM without a ciaddr in the subnet")
	}
	return h.reply(cl, dhcpv4.MessageTypeAck, netip.Addr{}, 0), nil
}

// leaseTime is the lease, in seconds, for a given to cl: the host's, else
// the range's, else one hour; a client asking for a shorter one (at least
// 2 minutes) gets it, as with dnsmasq.
func (h *Handler4) leaseTime(cl *client4, a netip.Addr) uint32 {
	secs := h.pool.cfg.leaseFor(a, cl.host)
	if v := cl.leaseOpt; len(v) == 4 {
		want := binary.BigEndian.Uint32(v)
		if want < minRequestedLease4 {
			want = minRequestedLease4
		}
		if secs == infiniteLease4 || (want != infiniteLease4 && want < secs) {
			secs = want
		}
	}
	return secs
}

// serverAddr is the server's own address (the bridge's <ip> address).
func (h *Handler4) serverAddr() netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pool.cfg.server
}
