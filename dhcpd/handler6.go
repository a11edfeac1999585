package dhcpd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/insomniacslk/dhcp/rfc1035label"
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
	c        *netConf6
	pool     *Pool6
	serverID dhcpv6.DUID
	sid      []byte
}

// NewHandler6 serves the IPv6 <ip> with <dhcp> of n under server DUID duid.
func NewHandler6(n *conf.Network, duid []byte) (*Handler6, error) {
	c, err := netConf6From(n)
	if err != nil {
		return nil, err
	}
	sid, err := dhcpv6.DUIDFromBytes(duid)
	if err != nil || len(duid) < 3 || len(duid) > 130 {
		return nil, fmt.Errorf("server DUID %s is not a DUID", FormatDUID6(duid))
	}
	return &Handler6{c: c, pool: newPool6(c), serverID: sid, sid: bytes.Clone(duid)}, nil
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
	cid := req.Options.ClientID()
	sid := req.Options.ServerID()
	oursSID := sid != nil && bytes.Equal(sid.ToBytes(), h.sid)
	switch req.MessageType {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeRebind, dhcpv6.MessageTypeConfirm:
		if cid == nil {
			return nil, nil, nil, fmt.Errorf("%w: %s without Client ID", ErrMalformed6, req.MessageType)
		}
		if sid != nil {
			return nil, nil, nil, fmt.Errorf("%w: %s with a Server ID", ErrMalformed6, req.MessageType)
		}
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		if cid == nil || sid == nil {
			return nil, nil, nil, fmt.Errorf("%w: %s without Client ID or Server ID", ErrMalformed6, req.MessageType)
		}
		if !oursSID {
			return nil, nil, nil, fmt.Errorf("%w: %s for server %s", ErrIgnored6, req.MessageType, FormatDUID6(sid.ToBytes()))
		}
	case dhcpv6.MessageTypeInformationRequest:
		if sid != nil && !oursSID {
			return nil, nil, nil, fmt.Errorf("%w: %s for server %s", ErrIgnored6, req.MessageType, FormatDUID6(sid.ToBytes()))
		}
		if len(req.Options.IANA()) > 0 || len(req.Options.IATA()) > 0 || len(req.Options.IAPD()) > 0 {
			return nil, nil, nil, fmt.Errorf("%w: Information-request with an IA", ErrMalformed6)
		}
	default:
		return nil, nil, nil, fmt.Errorf("%w: message type %s", ErrIgnored6, req.MessageType)
	}
	if n := len(req.Options.IANA()) + len(req.Options.IATA()) + len(req.Options.IAPD()); n > maxIAs6 {
		return nil, nil, nil, fmt.Errorf("%w: %s with %d IAs, more than %d", ErrMalformed6, req.MessageType, n, maxIAs6)
	}

	var cl *client6
	if cid != nil {
		cl = h.client(req, cid.ToBytes(), peer)
	}
	r := &reply6{h: h, req: req, cl: cl, now: now}
	switch req.MessageType {
	case dhcpv6.MessageTypeSolicit:
		return r.solicit()
	case dhcpv6.MessageTypeRequest:
		return r.request()
	case dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
		return r.extend()
	case dhcpv6.MessageTypeConfirm:
		return r.confirm()
	case dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		return r.release(req.MessageType == dhcpv6.MessageTypeDecline)
	default: // Information-request
		m := r.new(dhcpv6.MessageTypeReply)
		r.configOptions(m)
		return m, nil, nil, nil
	}
}

// client gathers what the pool needs to know about the sender.
func (h *Handler6) client(req *dhcpv6.Message, duid []byte, peer netip.Addr) *client6 {
	cl := &client6{duid: duid, mac: macFrom6(duid, peer)}
	if f := req.Options.FQDN(); f != nil && f.DomainName != nil && len(f.DomainName.Labels) > 0 {
		cl.name = normName6(f.DomainName.Labels[0])
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
	return cl
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

// macFrom6 is the client's MAC address: from an EUI-64 link-local source
// address, else from a DUID-LL or DUID-LLT of an Ethernet interface.
func macFrom6(duid []byte, peer netip.Addr) net.HardwareAddr {
	if peer.Is6() && peer.IsLinkLocalUnicast() {
		a := peer.As16()
		if a[11] == 0xff && a[12] == 0xfe {
			return net.HardwareAddr{a[8] ^ 0x02, a[9], a[10], a[13], a[14], a[15]}
		}
	}
	if len(duid) >= 4 && binary.BigEndian.Uint16(duid[2:4]) == uint16(iana.HWTypeEthernet) {
		switch binary.BigEndian.Uint16(duid[:2]) {
		case uint16(dhcpv6.DUID_LL):
			if len(duid) == 4+6 {
				return net.HardwareAddr(bytes.Clone(duid[4:]))
			}
		case uint16(dhcpv6.DUID_LLT):
			if len(duid) == 8+6 {
				return net.HardwareAddr(bytes.Clone(duid[8:]))
			}
		}
	}
	return nil
}

// reply6 is the answer to one message being built.
type reply6 struct {
	h        *Handler6
	req      *dhcpv6.Message
	cl       *client6
	now      time.Time
	commits  []leases.Lease
	releases []netip.Addr
}

// new starts a message of type t with the transaction ID, Server ID and the
// client's Client ID option echoed.
func (r *reply6) new(t dhcpv6.MessageType) *dhcpv6.Message {
	m := &dhcpv6.Message{MessageType: t, TransactionID: r.req.TransactionID}
	m.AddOption(dhcpv6.OptServerID(r.h.serverID))
	if o := r.req.GetOneOption(dhcpv6.OptionClientID); o != nil {
		m.AddOption(o)
	}
	return m
}

// configOptions adds the network's options: DNS servers (23) when DNS is on,
// the domain search list (24) when it has a domain.
func (r *reply6) configOptions(m *dhcpv6.Message) {
	if len(r.h.c.dns) > 0 {
		ips := make([]net.IP, 0, len(r.h.c.dns))
		for _, a := range r.h.c.dns {
			ips = append(ips, net.IP(a.AsSlice()))
		}
		m.AddOption(dhcpv6.OptDNS(ips...))
	}
	if r.h.c.domain != "" {
		m.AddOption(dhcpv6.OptDomainSearchList(&rfc1035label.Labels{Labels: []string{r.h.c.domain}}))
	}
}

func status6(code iana.StatusCode, msg string) *dhcpv6.OptStatusCode {
	return &dhcpv6.OptStatusCode{StatusCode: code, StatusMessage: msg}
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

// addrs6 are the addresses a client put in an IA.
func addrs6(o dhcpv6.IdentityOptions) []netip.Addr {
	var out []netip.Addr
	for _, a := range o.Addresses() {
		if ip, ok := netip.AddrFromSlice(a.IPv6Addr); ok && ip.Is6() {
			out = append(out, ip.WithZone(""))
		}
	}
	return out
}

func iaid6(ia *dhcpv6.OptIANA) uint32 { return binary.BigEndian.Uint32(ia.IaId[:]) }

// grant answers one IA_NA of a Solicit, Request, Renew or Rebind. commit
// binds the address (else it is only offered); extend is a Renew or Rebind,
// which never hands out a brand-new address to an IA the server does not
// know unless it asks for an appropriate one.
func (r *reply6) grant(ia *dhcpv6.OptIANA, commit, extend bool) (*dhcpv6.OptIANA, bool) {
	key := iaKey6{duid: string(r.cl.duid), iaid: iaid6(ia)}
	out := &dhcpv6.OptIANA{IaId: ia.IaId}
	asked := addrs6(ia.Options)
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
			if l, ok = r.h.pool.usable(a, key, r.cl, r.now); ok {
				ip = a
				break
			}
		}
	} else {
		ip, l, ok = r.h.pool.pick(key, r.cl, asked, r.now)
	}
	if r.req.MessageType != dhcpv6.MessageTypeSolicit {
		for _, a := range asked {
			if a != ip {
				// What the client holds or wants and does not get:
				// lifetimes 0 (a Solicit's addresses are mere hints).
				out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.IP(a.AsSlice())})
			}
		}
	}
	if !ok {
		if known != nil && !known.offered {
			// The IA's address is no longer appropriate and there is no
			// other: take it back.
			r.h.pool.drop(known)
			r.releases = append(r.releases, known.ip)
			if !contains6(asked, known.ip) || r.req.MessageType == dhcpv6.MessageTypeSolicit {
				out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.IP(known.ip.AsSlice())})
			}
		}
		switch {
		case extend && (known == nil || known.offered):
			out.Options.Add(status6(iana.StatusNoBinding, "no binding for this IA"))
		default:
			out.Options.Add(status6(iana.StatusNoAddrsAvail, "no addresses available"))
		}
		return out, false
	}
	b, old := r.h.pool.bind(key, r.cl, ip, l, r.now, !commit)
	if old.IsValid() {
		r.releases = append(r.releases, old)
		if !contains6(asked, old) || r.req.MessageType == dhcpv6.MessageTypeSolicit {
			out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.IP(old.AsSlice())})
		}
	}
	if commit {
		r.commits = append(r.commits, r.h.pool.lease(b))
	} else if !b.offered {
		// A Solicit from a client with a live lease: advertise what is left.
		l = remaining6(b, r.now)
	}
	pref, t1, t2 := lifetimes6(l)
	out.T1, out.T2 = t1, t2
	out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.IP(ip.AsSlice()), PreferredLifetime: pref, ValidLifetime: pref})
	return out, true
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
func (r *reply6) unsupportedIAs(m *dhcpv6.Message) {
	for _, ta := range r.req.Options.IATA() {
		o := &dhcpv6.OptIATA{IaId: ta.IaId}
		o.Options.Add(status6(iana.StatusNoAddrsAvail, "no temporary addresses"))
		m.AddOption(o)
	}
	for _, pd := range r.req.Options.IAPD() {
		o := &dhcpv6.OptIAPD{IaId: pd.IaId}
		o.Options.Add(status6(iana.StatusNoPrefixAvail, "no prefix delegation"))
		m.AddOption(o)
	}
}

func (r *reply6) solicit() (*dhcpv6.Message, []leases.Lease, []netip.Addr, error) {
	rapid := r.req.GetOneOption(dhcpv6.OptionRapidCommit) != nil
	var ias []*dhcpv6.OptIANA
	granted := 0
	for _, ia := range r.req.Options.IANA() {
		o, ok := r.grant(ia, rapid, false)
		if ok {
			granted++
		}
		ias = append(ias, o)
	}
	if granted == 0 {
		// RFC 8415 §18.3.9: nothing to offer at all: an Advertise with
		// only a NoAddrsAvail status (no rapid commit, nothing bound).
		m := r.new(dhcpv6.MessageTypeAdvertise)
		m.AddOption(status6(iana.StatusNoAddrsAvail, "no addresses available"))
		return m, nil, r.releases, nil
	}
	var m *dhcpv6.Message
	if rapid {
		m = r.new(dhcpv6.MessageTypeReply)
		m.AddOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit})
	} else {
		m = r.new(dhcpv6.MessageTypeAdvertise)
		// The only server on the bridge: the client need not wait for
		// other Advertises.
		m.AddOption(dhcpv6.OptPreference(255))
	}
	for _, o := range ias {
		m.AddOption(o)
	}
	r.unsupportedIAs(m)
	r.configOptions(m)
	return m, r.commits, r.releases, nil
}

func (r *reply6) request() (*dhcpv6.Message, []leases.Lease, []netip.Addr, error) {
	m := r.new(dhcpv6.MessageTypeReply)
	for _, ia := range r.req.Options.IANA() {
		o, _ := r.grant(ia, true, false)
		m.AddOption(o)
	}
	r.unsupportedIAs(m)
	r.configOptions(m)
	return m, r.commits, r.releases, nil
}

// extend answers Renew and Rebind.
func (r *reply6) extend() (*dhcpv6.Message, []leases.Lease, []netip.Addr, error) {
	m := r.new(dhcpv6.MessageTypeReply)
	for _, ia := range r.req.Options.IANA() {
		o, _ := r.grant(ia, true, true)
		m.AddOption(o)
	}
	r.unsupportedIAs(m)
	r.configOptions(m)
	return m, r.commits, r.releases, nil
}

// confirm answers whether the client's addresses are still on-link (RFC
// 8415 §18.3.3); with no address at all, it is not answered.
func (r *reply6) confirm() (*dhcpv6.Message, []leases.Lease, []netip.Addr, error) {
	var all []netip.Addr
	for _, ia := range r.req.Options.IANA() {
		all = append(all, addrs6(ia.Options)...)
	}
	for _, ta := range r.req.Options.IATA() {
		all = append(all, addrs6(ta.Options)...)
	}
	if len(all) == 0 {
		return nil, nil, nil, nil
	}
	m := r.new(dhcpv6.MessageTypeReply)
	st := status6(iana.StatusSuccess, "all addresses on-link")
	for _, a := range all {
		if !r.h.pool.onLink(a) {
			st = status6(iana.StatusNotOnLink, fmt.Sprintf("%s is not on-link", a))
			break
		}
	}
	m.AddOption(st)
	r.configOptions(m)
	return m, nil, nil, nil
}

// release answers Release and Decline (RFC 8415 §18.3.7, §18.3.8).
func (r *reply6) release(decline bool) (*dhcpv6.Message, []leases.Lease, []netip.Addr, error) {
	m := r.new(dhcpv6.MessageTypeReply)
	for _, ia := range r.req.Options.IANA() {
		key := iaKey6{duid: string(r.cl.duid), iaid: iaid6(ia)}
		held := false
		for _, a := range addrs6(ia.Options) {
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
			o := &dhcpv6.OptIANA{IaId: ia.IaId}
			o.Options.Add(status6(iana.StatusNoBinding, "no binding for this IA"))
			m.AddOption(o)
		}
	}
	msg := "released"
	if decline {
		msg = "declined"
	}
	m.AddOption(status6(iana.StatusSuccess, msg))
	return m, nil, r.releases, nil
}
