package dhcpd

import (
	"encoding/binary"
	"encoding/hex"
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
	// Dropped counts packets that were malformed, not for a server, relayed,
	// or that found the worker queues full.
	Dropped uint64
	// Overflow counts the packets of Dropped that found the worker queues
	// full: the server is overloaded rather than the client broken.
	Overflow uint64
	// PoolExhausted counts clients left without an offer because no address
	// was free or dhcp-lease-max was reached.
	PoolExhausted uint64
	// StoreErrors counts lease store writes that failed (no ACK was sent).
	StoreErrors uint64
	// SendErrors counts replies that could not be sent.
	SendErrors uint64
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
	h.pool.cfg = cfg
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
	clientID string         // option 61 as "01:52:54:…"; "" if none
	label    string         // sanitised option 12, "" if none
	host     *host4         // matching static host, if any
	req      *dhcpv4.DHCPv4 // the request
	reqIP    netip.Addr     // option 50, invalid if absent
	ciaddr   netip.Addr     // invalid if 0.0.0.0
	serverID netip.Addr     // option 54, invalid if absent
}

// hexColon4 is b as lower-case hex bytes joined with ':' (dnsmasq's form).
func hexColon4(b []byte) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(hex.EncodeToString([]byte{c}))
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

// optIP4 is an option carrying exactly one IPv4 address.
func optIP4(req *dhcpv4.DHCPv4, code dhcpv4.OptionCode) netip.Addr {
	v := req.Options.Get(code)
	if len(v) != 4 {
		return netip.Addr{}
	}
	return ip4(net.IP(v))
}

var (
	errNotRequest4 = errors.New("not a BOOTREQUEST")
	errNotEther4   = errors.New("hardware type is not Ethernet with a 6-byte address")
	errRelayed4    = errors.New("relayed request (giaddr set): vnetd serves its bridge only")
	errNoType4     = errors.New("no DHCP message type (BOOTP is not served)")
)

// check4 rejects what no request of a client on the bridge can look like.
func check4(req *dhcpv4.DHCPv4) error {
	switch {
	case req == nil || req.Options == nil:
		return errors.New("no packet")
	case req.OpCode != dhcpv4.OpcodeBootRequest:
		return errNotRequest4
	case req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6:
		return errNotEther4
	case req.ClientHWAddr[0]&1 != 0 || isZero4(req.ClientHWAddr):
		return fmt.Errorf("client hardware address %s is not unicast", req.ClientHWAddr)
	case ip4(req.GatewayIPAddr).IsValid():
		return errRelayed4
	case len(req.Options.Get(dhcpv4.OptionDHCPMessageType)) != 1:
		return errNoType4
	case len(req.Options.Get(dhcpv4.OptionClientIdentifier)) > maxClientID4:
		// Concatenated options (RFC 3396) could make it kilobytes, and
		// every reply echoes it (RFC 6842).
		return fmt.Errorf("client identifier of %d bytes, more than %d", len(req.Options.Get(dhcpv4.OptionClientIdentifier)), maxClientID4)
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

func (h *Handler4) client(req *dhcpv4.DHCPv4) *client4 {
	cfg := h.pool.cfg
	cl := &client4{
		mac:      req.ClientHWAddr,
		label:    hostLabel4(string(req.Options.Get(dhcpv4.OptionHostName))),
		req:      req,
		reqIP:    optIP4(req, dhcpv4.OptionRequestedIPAddress),
		ciaddr:   ip4(req.ClientIPAddr),
		serverID: optIP4(req, dhcpv4.OptionServerIdentifier),
	}
	if id := req.Options.Get(dhcpv4.OptionClientIdentifier); len(id) > 0 {
		cl.clientID = hexColon4(id)
		cl.key = "id:" + cl.clientID
	} else {
		cl.key = "hw:" + cl.mac.String()
	}
	cl.host = cfg.hostByMAC(cl.mac)
	if cl.host == nil {
		cl.host = cfg.hostByName(strings.ToLower(cl.label))
	}
	return cl
}

// Handle decides what to do with one request at time now. resp is the reply
// to send (nil: none); commit, when set, must be durably stored before resp
// is sent (and resp dropped if that fails); release, when set, is an
// address whose lease must be deleted from the store, then Settled. err
// reports a malformed or unservable packet (counted as Dropped).
func (h *Handler4) Handle(req *dhcpv4.DHCPv4, now time.Time) (resp *dhcpv4.DHCPv4, commit *leases.Lease, release *netip.Addr, err error) {
	if err := check4(req); err != nil {
		h.stats.dropped.Add(1)
		return nil, nil, nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cl := h.client(req)
	switch mt := req.MessageType(); mt {
	case dhcpv4.MessageTypeDiscover:
		h.stats.discover.Add(1)
		resp, err = h.discover(cl, now)
	case dhcpv4.MessageTypeRequest:
		h.stats.request.Add(1)
		resp, commit, release, err = h.request(cl, now)
	case dhcpv4.MessageTypeDecline:
		h.stats.decline.Add(1)
		release, err = h.decline(cl, now)
	case dhcpv4.MessageTypeRelease:
		h.stats.release.Add(1)
		release, err = h.releaseMsg(cl)
	case dhcpv4.MessageTypeInform:
		h.stats.inform.Add(1)
		resp, err = h.inform(cl)
	default:
		err = fmt.Errorf("message type %s is not a client request", mt)
	}
	if err != nil {
		h.stats.dropped.Add(1)
		return nil, nil, nil, err
	}
	if resp != nil {
		switch resp.MessageType() {
		case dhcpv4.MessageTypeOffer:
			h.stats.offer.Add(1)
		case dhcpv4.MessageTypeAck:
			h.stats.ack.Add(1)
		case dhcpv4.MessageTypeNak:
			h.stats.nak.Add(1)
		}
	}
	return resp, commit, release, nil
}

func (h *Handler4) discover(cl *client4, now time.Time) (*dhcpv4.DHCPv4, error) {
	p := h.pool
	a, ok := p.choose(cl, cl.reqIP, now)
	if !ok {
		if len(p.cfg.ranges) > 0 || cl.host != nil {
			h.stats.poolExhausted.Add(1)
		}
		// Static-only service and an unknown client: no offer, as dnsmasq.
		return nil, nil
	}
	p.offer(cl, a, now)
	return h.reply(cl, dhcpv4.MessageTypeOffer, a, h.leaseTime(cl, a)), nil
}

func (h *Handler4) request(cl *client4, now time.Time) (*dhcpv4.DHCPv4, *leases.Lease, *netip.Addr, error) {
	p := h.pool
	if cl.serverID.IsValid() && cl.serverID != p.cfg.server {
		// The client chose another server's offer.
		p.dropOffer(cl.key)
		return nil, nil, nil, nil
	}
	a := cl.reqIP
	if !a.IsValid() {
		a = cl.ciaddr
	}
	if !a.IsValid() {
		return nil, nil, nil, errors.New("REQUEST with neither requested address nor ciaddr")
	}
	if !p.cfg.subnet.Contains(a) {
		return h.nak(cl, fmt.Sprintf("address %s is not in subnet %s", a, p.cfg.subnet)), nil, nil, nil
	}
	if !p.allowed(cl, a, now) || p.atLeaseMax(cl, now) {
		var release *netip.Addr
		if b := p.bindings[a]; b != nil && b.key == cl.key {
			p.unbind(a)
			release = &a
		}
		msg := "address not available"
		if s := p.hostAddr(cl, now); s.IsValid() && s != a {
			msg = "static lease available"
		} else if hr := p.cfg.hostByIP(a); hr != nil && hr != cl.host {
			msg = "address reserved"
		}
		return h.nak(cl, msg), nil, release, nil
	}
	secs := h.leaseTime(cl, a)
	l := leases.Lease{
		Network:  p.cfg.network,
		Kind:     leases.V4,
		IP:       a,
		Prefix:   p.cfg.subnet.Bits(),
		MAC:      append(net.HardwareAddr(nil), cl.mac...),
		ClientID: cl.clientID,
		Hostname: cl.label,
		Expiry:   leaseExpiry4(now, secs),
	}
	if cl.host != nil && cl.host.ip == a && cl.host.label != "" {
		l.Hostname = cl.host.label
	}
	if l.Hostname == "" {
		if b := p.bindings[a]; b != nil && b.key == cl.key {
			l.Hostname = b.lease.Hostname
		}
	}
	var release *netip.Addr
	if moved := p.bind(cl.key, l); moved.IsValid() {
		release = &moved
	}
	return h.reply(cl, dhcpv4.MessageTypeAck, a, secs), &l, release, nil
}

func (h *Handler4) decline(cl *client4, now time.Time) (*netip.Addr, error) {
	p := h.pool
	if cl.serverID.IsValid() && cl.serverID != p.cfg.server {
		return nil, nil
	}
	a := cl.reqIP
	if !a.IsValid() {
		return nil, errors.New("DECLINE without requested address")
	}
	b := p.bindings[a]
	mine := b != nil && b.key == cl.key
	if o, ok := p.offers[a]; ok && o.key == cl.key {
		mine = true
		p.dropOffer(cl.key)
	}
	if !mine {
		return nil, nil
	}
	p.declined[a] = now.Add(declineHold4)
	if b != nil && b.key == cl.key {
		p.unbind(a)
		delete(p.hints, cl.key)
		return &a, nil
	}
	return nil, nil
}

func (h *Handler4) releaseMsg(cl *client4) (*netip.Addr, error) {
	p := h.pool
	if cl.serverID.IsValid() && cl.serverID != p.cfg.server {
		return nil, nil
	}
	a := cl.ciaddr
	if !a.IsValid() {
		return nil, errors.New("RELEASE without ciaddr")
	}
	if b := p.bindings[a]; b == nil || b.key != cl.key {
		return nil, nil
	}
	p.unbind(a)
	return &a, nil
}

func (h *Handler4) inform(cl *client4) (*dhcpv4.DHCPv4, error) {
	if !cl.ciaddr.IsValid() || !h.pool.cfg.subnet.Contains(cl.ciaddr) {
		return nil, errors.New("INFORM without a ciaddr in the subnet")
	}
	return h.reply(cl, dhcpv4.MessageTypeAck, netip.Addr{}, 0), nil
}

// leaseTime is the lease, in seconds, for a given to cl: the host's, else
// the range's, else one hour; a client asking for a shorter one (at least
// 2 minutes) gets it, as with dnsmasq.
func (h *Handler4) leaseTime(cl *client4, a netip.Addr) uint32 {
	secs := h.pool.cfg.leaseFor(a, cl.host)
	if v := cl.req.Options.Get(dhcpv4.OptionIPAddressLeaseTime); len(v) == 4 {
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
