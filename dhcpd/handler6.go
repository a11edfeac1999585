package dhcpd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/leases"
)

// Why Handle answers nothing. Both are counted, never logged per packet.
var (
	// ErrMalformed6 is a message that breaks RFC 8415's rules for its type
	// (no Client ID, a Server ID where none belongs, …).
	ErrMalformed6 = errors.New("malformed DHCPv6 message")
	// ErrIgnored6 is a well-formed message that is not for this server: for
	// another server's DUID, or of a type a server does not answer.
	ErrIgnored6 = errors.New("DHCPv6 message not for this server")
)

// infinity6 is the all-ones 32-bit lifetime (RFC 8415 §7.7).
const infinity6 = time.Duration(0xffffffff) * time.Second

// maxIAs6 bounds the IAs of one message. Clients ask for one IA_NA (and
// perhaps an IA_PD) per interface; a thousand in one Request would take a
// whole pool and make an answer of tens of kilobytes.
const maxIAs6 = 8

// Handler6 is the DHCPv6 protocol of one network, without I/O: it turns a
// client message into the answer, the leases to commit before sending it and
// the addresses to remove from the store. It is not safe for concurrent use.
type Handler6 struct {
	c    *netConf6
	pool *Pool6
	sid  []byte
	// sidOpt is the Server ID option, as every answer carries it.
	sidOpt []byte
}

// NewHandler6 serves the IPv6 <ip> with <dhcp> of n under server DUID duid.
func NewHandler6(n *conf.Network, duid []byte) (*Handler6, error) {
	c, err := netConf6From(n)
	if err != nil {
		return nil, err
	}
	if _, err := dhcpv6.DUIDFromBytes(duid); err != nil || len(duid) < 3 || len(duid) > 130 {
		return nil, fmt.Errorf("server DUID %s is not a DUID", FormatDUID6(duid))
	}
	return &Handler6{c: c, pool: newPool6(c), sid: bytes.Clone(duid), sidOpt: putOpt6(nil, dhcpv6.OptionServerID, duid)}, nil
}

// Update switches to a new definition of the network, keeping the bindings.
func (h *Handler6) Update(n *conf.Network) error {
	c, err := netConf6From(n)
	if err != nil {
		return err
	}
	h.c = c
	h.pool.reconfigure(c)
	return nil
}

// Load adopts stored leases (after a restart) and returns how many it took.
func (h *Handler6) Load(ls []leases.Lease, now time.Time) int {
	n := 0
	for _, l := range ls {
		if h.pool.load(l, now) {
			n++
		}
	}
	return n
}

// Sweep forgets expired bindings and returns the addresses whose leases
// the caller removes from the store.
func (h *Handler6) Sweep(now time.Time) []netip.Addr { return h.pool.sweep(now) }

// Bound is the number of live leases.
func (h *Handler6) Bound(now time.Time) int { return h.pool.boundCount(now) }

// PoolSize is the number of addresses the handler can lease: its ranges
// and the reserved addresses outside them.
func (h *Handler6) PoolSize() int { return h.c.poolSize() }

// ServerDUID is the server identifier, as bytes.
func (h *Handler6) ServerDUID() []byte { return bytes.Clone(h.sid) }

// Handle answers one client message received from peer (its link-local
// address). resp is nil when nothing is to be sent. The caller commits every
// lease of commits to the store, and only then sends resp; it removes the
// leases of releases. err wraps ErrMalformed6 or ErrIgnored6 for messages
// that are dropped.
func (h *Handler6) Handle(req *dhcpv6.Message, peer netip.Addr, now time.Time) (resp *dhcpv6.Message, commits []leases.Lease, releases []netip.Addr, err error) {
	if req == nil {
		return nil, nil, nil, fmt.Errorf("%w: no message", ErrMalformed6)
	}
	var m msg6
	m.fromMessage(req)
	a, err := h.handle(&m, peer, now, nil)
	if err != nil || a.resp == nil {
		return nil, a.commits, a.releases, err
	}
	if resp, err = dhcpv6.MessageFromBytes(a.resp); err != nil {
		// The encoder's fault, never the client's (FuzzHandle6).
		return nil, nil, nil, fmt.Errorf("the answer to a %s does not decode: %w", m.typ, err)
	}
	return resp, a.commits, a.releases, nil
}

// answer6 is what handle decided.
type answer6 struct {
	// resp is the encoded answer; nil: none.
	resp     []byte
	typ      dhcpv6.MessageType // of resp
	commits  []leases.Lease
	releases []netip.Addr
	// noAddrs: resp says NoAddrsAvail, at the top or in an IA_NA.
	noAddrs bool
}

// handle is Handle on a decoded message, the answer appended to out.
func (h *Handler6) handle(m *msg6, peer netip.Addr, now time.Time, out []byte) (answer6, error) {
	oursSID := m.sid != nil && bytes.Equal(m.sid, h.sid)
	switch m.typ {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeRebind, dhcpv6.MessageTypeConfirm:
		if m.cid == nil {
			return answer6{}, fmt.Errorf("%w: %s without Client ID", ErrMalformed6, m.typ)
		}
		if m.sid != nil {
			return answer6{}, fmt.Errorf("%w: %s with a Server ID", ErrMalformed6, m.typ)
		}
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		if m.cid == nil || m.sid == nil {
			return answer6{}, fmt.Errorf("%w: %s without Client ID or Server ID", ErrMalformed6, m.typ)
		}
		if !oursSID {
			return answer6{}, fmt.Errorf("%w: %s for server %s", ErrIgnored6, m.typ, FormatDUID6(m.sid))
		}
	case dhcpv6.MessageTypeInformationRequest:
		if m.sid != nil && !oursSID {
			return answer6{}, fmt.Errorf("%w: %s for server %s", ErrIgnored6, m.typ, FormatDUID6(m.sid))
		}
		if m.numIAs() > 0 {
			return answer6{}, fmt.Errorf("%w: Information-request with an IA", ErrMalformed6)
		}
	default:
		return answer6{}, fmt.Errorf("%w: message type %s", ErrIgnored6, m.typ)
	}
	if n := m.numIAs(); n > maxIAs6 {
		return answer6{}, fmt.Errorf("%w: %s with %d IAs, more than %d", ErrMalformed6, m.typ, n, maxIAs6)
	}

	r := reply6{h: h, m: m, now: now, b: out, start: len(out)}
	if m.cid != nil {
		h.client(&r.cl, m, peer)
	}
	switch m.typ {
	case dhcpv6.MessageTypeSolicit:
		r.solicit()
	case dhcpv6.MessageTypeRequest:
		r.request(false)
	case dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
		r.request(true)
	case dhcpv6.MessageTypeConfirm:
		r.confirm()
	case dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		r.release(m.typ == dhcpv6.MessageTypeDecline)
	default: // Information-request
		r.begin(dhcpv6.MessageTypeReply)
		r.configOptions()
	}
	a := answer6{commits: r.commits, releases: r.releases}
	if r.answered {
		a.resp, a.typ, a.noAddrs = r.b[r.start:], dhcpv6.MessageType(r.b[r.start]), r.noAddrs
	}
	return a, nil
}

// client gathers in cl what the pool needs to know about the sender of m.
func (h *Handler6) client(cl *client6, m *msg6, peer netip.Addr) {
	*cl = client6{duid: m.cid, key: string(m.cid)}
	cl.mac, cl.hasMAC = mac6(m.cid, peer)
	if m.hasFQDN {
		cl.name = normName6(m.fqdn)
		cl.hostname = cl.name
		// Like dnsmasq, record the bare host name when the client's FQDN
		// is in the network's domain.
		if h.c.domain != "" {
			cl.hostname = strings.TrimSuffix(cl.hostname, "."+strings.ToLower(h.c.domain))
		}
		if !validHostname6(cl.hostname) {
			cl.hostname = ""
		}
	}
	if hh, ok := h.pool.hostFor(cl); ok && hh.name != "" {
		cl.hostname = hh.name
	}
}

// validHostname6 accepts DNS names (letters, digits, '-', '.'), nothing a
// client could use to smuggle bytes into the lease store or virsh output.
func validHostname6(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

// mac6 is the client's MAC address: from an EUI-64 link-local source
// address, else from a DUID-LL or DUID-LLT of an Ethernet interface.
func mac6(duid []byte, peer netip.Addr) ([6]byte, bool) {
	if peer.Is6() && peer.IsLinkLocalUnicast() {
		a := peer.As16()
		if a[11] == 0xff && a[12] == 0xfe {
			return [6]byte{a[8] ^ 0x02, a[9], a[10], a[13], a[14], a[15]}, true
		}
	}
	if len(duid) >= 4 && binary.BigEndian.Uint16(duid[2:4]) == uint16(iana.HWTypeEthernet) {
		switch binary.BigEndian.Uint16(duid[:2]) {
		case uint16(dhcpv6.DUID_LL):
			if len(duid) == 4+6 {
				return [6]byte(duid[4:]), true
			}
		case uint16(dhcpv6.DUID_LLT):
			if len(duid) == 8+6 {
				return [6]byte(duid[8:]), true
			}
		}
	}
	return [6]byte{}, false
}

// reply6 is the answer to one message being built, appended to b.
type reply6 struct {
	h        *Handler6
	m        *msg6
	cl       client6
	now      time.Time
	b        []byte
	start    int  // where the answer starts in b
	answered bool // there is one
	noAddrs  bool
	commits  []leases.Lease
	releases []netip.Addr
}

// begin starts a message of type t with the transaction ID, Server ID and
// the client's Client ID option echoed.
func (r *reply6) begin(t dhcpv6.MessageType) {
	r.answered = true
	r.b = append(r.b, byte(t), r.m.xid[0], r.m.xid[1], r.m.xid[2])
	r.b = append(r.b, r.h.sidOpt...)
	if r.m.cid != nil {
		r.b = putOpt6(r.b, dhcpv6.OptionClientID, r.m.cid)
	}
}

// configOptions adds the network's options: DNS servers (23) when DNS is on,
// the domain search list (24) when it has a domain.
func (r *reply6) configOptions() { r.b = append(r.b, r.h.c.opts...) }

// status adds a Status Code option.
func (r *reply6) status(code iana.StatusCode, msg string) {
	r.b = putStatus6(r.b, uint16(code), msg)
	if code == iana.StatusNoAddrsAvail {
		r.noAddrs = true
	}
}

// lifetimes6 are the preferred and valid lifetimes of a lease and its T1
// and T2 (1/2 and 4/5 of the preferred lifetime; all infinite for an
// infinite lease).
func lifetimes6(l lease6) (pref, t1, t2 time.Duration) {
	if l.infinite {
		return infinity6, infinity6, infinity6
	}
	d := l.d.Truncate(time.Second)
	if d > infinity6-time.Second {
		d = infinity6 - time.Second
	}
	return d, (d / 2).Truncate(time.Second), (d * 4 / 5).Truncate(time.Second)
}

// remaining is the lease time left on a committed binding, for a message
// that reports it without extending it.
func remaining6(b *binding6, now time.Time) lease6 {
	if b.offered || b.expiry.IsZero() {
		return lease6{infinite: !b.offered && b.expiry.IsZero()}
	}
	return lease6{d: b.expiry.Sub(now)}
}

// grant answers one IA_NA of a Solicit, Request, Renew or Rebind. commit
// binds the address (else it is only offered); extend is a Renew or Rebind,
// which never hands out a brand-new address to an IA the server does not
// know unless it asks for an appropriate one.
func (r *reply6) grant(ia ia6, commit, extend bool) bool {
	key := iaKey6{duid: r.cl.key, iaid: binary.BigEndian.Uint32(ia.id[:])}
	var at int
	r.b, at = openOpt6(r.b, dhcpv6.OptionIANA)
	r.b = append(r.b, ia.id[:]...)
	times := len(r.b)
	r.b = append(r.b, 0, 0, 0, 0, 0, 0, 0, 0) // T1, T2: set when granted
	asked := r.m.iaAddrs(ia)
	known := r.h.pool.byIA[key]
	var (
		ip netip.Addr
		l  lease6
		ok bool
	)
	if extend && (known == nil || known.offered) {
		// No binding: take one of the addresses the client renews if
		// it may have it (the server lost its state, the client did not).
		for _, a := range asked {
			if l, ok = r.h.pool.usable(a, key, &r.cl, r.now); ok {
				ip = a
				break
			}
		}
	} else {
		ip, l, ok = r.h.pool.pick(key, &r.cl, asked, r.now)
	}
	solicit := r.m.typ == dhcpv6.MessageTypeSolicit
	if !solicit {
		for _, a := range asked {
			if a != ip {
				// What the client holds or wants and does not get:
				// lifetimes 0 (a Solicit's addresses are mere hints).
				r.b = putIAAddr6(r.b, a, 0, 0)
			}
		}
	}
	if !ok {
		if known != nil && !known.offered {
			// The IA's address is no longer appropriate and there is no
			// other: take it back.
			r.h.pool.drop(known)
			r.releases = append(r.releases, known.ip)
			if !contains6(asked, known.ip) || solicit {
				r.b = putIAAddr6(r.b, known.ip, 0, 0)
			}
		}
		switch {
		case extend && (known == nil || known.offered):
			r.status(iana.StatusNoBinding, "no binding for this IA")
		default:
			r.status(iana.StatusNoAddrsAvail, "no addresses available")
		}
		closeOpt6(r.b, at)
		return false
	}
	b, old := r.h.pool.bind(key, &r.cl, ip, l, r.now, !commit)
	if old.IsValid() {
		r.releases = append(r.releases, old)
		if !contains6(asked, old) || solicit {
			r.b = putIAAddr6(r.b, old, 0, 0)
		}
	}
	if commit {
		r.commits = append(r.commits, r.h.pool.lease(b))
	} else if !b.offered {
		// A Solicit from a client with a live lease: advertise what is left.
		l = remaining6(b, r.now)
	}
	pref, t1, t2 := lifetimes6(l)
	binary.BigEndian.PutUint32(r.b[times:], secs6(t1))
	binary.BigEndian.PutUint32(r.b[times+4:], secs6(t2))
	r.b = putIAAddr6(r.b, ip, pref, pref)
	closeOpt6(r.b, at)
	return true
}

func contains6(s []netip.Addr, a netip.Addr) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

// unsupportedIAs answers IA_TA and IA_PD, which vnetd does not hand out.
func (r *reply6) unsupportedIAs() {
	var at int
	for _, ta := range r.m.iatas {
		r.b, at = openOpt6(r.b, dhcpv6.OptionIATA)
		r.b = append(r.b, ta.id[:]...)
		r.b = putStatus6(r.b, uint16(iana.StatusNoAddrsAvail), "no temporary addresses")
		closeOpt6(r.b, at)
	}
	for _, id := range r.m.iapds {
		r.b, at = openOpt6(r.b, dhcpv6.OptionIAPD)
		r.b = append(r.b, id[:]...)
		r.b = append(r.b, 0, 0, 0, 0, 0, 0, 0, 0) // T1, T2
		r.b = putStatus6(r.b, uint16(iana.StatusNoPrefixAvail), "no prefix delegation")
		closeOpt6(r.b, at)
	}
}

func (r *reply6) solicit() {
	if r.m.rapid {
		r.begin(dhcpv6.MessageTypeReply)
	} else {
		r.begin(dhcpv6.MessageTypeAdvertise)
	}
	ids := len(r.b)
	if r.m.rapid {
		r.b = putOpt6(r.b, dhcpv6.OptionRapidCommit, nil)
	} else {
		// The only server on the bridge: the client need not wait for
		// other Advertises.
		r.b = putOpt6(r.b, dhcpv6.OptionPreference, []byte{255})
	}
	granted := 0
	for _, ia := range r.m.ianas {
		if r.grant(ia, r.m.rapid, false) {
			granted++
		}
	}
	if granted == 0 {
		// RFC 8415 §18.3.9: nothing to offer at all: an Advertise with
		// only a NoAddrsAvail status (no rapid commit, nothing bound).
		r.b = r.b[:ids]
		r.b[r.start] = byte(dhcpv6.MessageTypeAdvertise)
		r.status(iana.StatusNoAddrsAvail, "no addresses available")
		r.commits = nil
		return
	}
	r.unsupportedIAs()
	r.configOptions()
}

// request answers Request, and Renew and Rebind (extend).
func (r *reply6) request(extend bool) {
	r.begin(dhcpv6.MessageTypeReply)
	for _, ia := range r.m.ianas {
		r.grant(ia, true, extend)
	}
	r.unsupportedIAs()
	r.configOptions()
}

// confirm answers whether the client's addresses are still on-link (RFC
// 8415 §18.3.3); with no address at all, it is not answered.
func (r *reply6) confirm() {
	var (
		any   bool
		first netip.Addr // the first one off-link
	)
	for _, ias := range [][]ia6{r.m.ianas, r.m.iatas} {
		for _, ia := range ias {
			for _, a := range r.m.iaAddrs(ia) {
				any = true
				if !first.IsValid() && !r.h.pool.onLink(a) {
					first = a
				}
			}
		}
	}
	if !any {
		return
	}
	r.begin(dhcpv6.MessageTypeReply)
	if first.IsValid() {
		r.status(iana.StatusNotOnLink, fmt.Sprintf("%s is not on-link", first))
	} else {
		r.status(iana.StatusSuccess, "all addresses on-link")
	}
	r.configOptions()
}

// release answers Release and Decline (RFC 8415 §18.3.7, §18.3.8).
func (r *reply6) release(decline bool) {
	r.begin(dhcpv6.MessageTypeReply)
	for _, ia := range r.m.ianas {
		key := iaKey6{duid: r.cl.key, iaid: binary.BigEndian.Uint32(ia.id[:])}
		held := false
		for _, a := range r.m.iaAddrs(ia) {
			var h, committed bool
			if decline {
				h, committed = r.h.pool.decline(a, key, r.now)
			} else {
				h, committed = r.h.pool.release(a, key)
			}
			held = held || h
			if committed {
				r.releases = append(r.releases, a)
			}
		}
		if !held {
			var at int
			r.b, at = openOpt6(r.b, dhcpv6.OptionIANA)
			r.b = append(r.b, ia.id[:]...)
			r.b = append(r.b, 0, 0, 0, 0, 0, 0, 0, 0) // T1, T2
			r.status(iana.StatusNoBinding, "no binding for this IA")
			closeOpt6(r.b, at)
		}
	}
	msg := "released"
	if decline {
		msg = "declined"
	}
	r.status(iana.StatusSuccess, msg)
}
