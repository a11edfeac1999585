// Package radvd sends IPv6 router advertisements on a network's bridge, as
// dnsmasq's enable-ra / ra-only did for libvirt (libvirt-behavior.md §3 item 17
// and the radvd block).
//
// The package has three layers. ParamsFromNetwork and BuildRA turn a
// *conf.Network into the advertisement, purely. The scheduler decides when
// advertisements go out (RFC 4861 §6.2.4–6.2.6), purely, on the times it is
// given. Server is the thin shell around one raw ICMPv6 socket bound to the
// bridge.
package radvd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/vnetd/vnetd/conf"
)

// Advertised values. libvirt's <network> has no knobs for them: these are
// the defaults of RFC 4861 §6.2.1 and of the radvd that old libvirt ran
// (its generated config set none of them).
const (
	// MaxInterval and MinInterval bound the randomised gap between
	// unsolicited advertisements (MaxRtrAdvInterval, MinRtrAdvInterval =
	// 0.33 × MaxRtrAdvInterval).
	MaxInterval = 600 * time.Second
	MinInterval = 198 * time.Second
	// RouterLifetime is AdvDefaultLifetime, 3 × MaxRtrAdvInterval: a guest
	// keeps its default route across two lost advertisements.
	RouterLifetime = 3 * MaxInterval
	// ValidLifetime and PreferredLifetime are radvd's AdvValidLifetime and
	// AdvPreferredLifetime. A day of validity bounds how long a guest keeps
	// an address from a network that disappeared without a word; the
	// periodic advertisements refresh both long before they run out.
	ValidLifetime     = 24 * time.Hour
	PreferredLifetime = 4 * time.Hour
	// DNSLifetime is the RDNSS and DNSSL lifetime, 2 × MaxRtrAdvInterval,
	// the upper bound RFC 8106 §5.1 recommends.
	DNSLifetime = 2 * MaxInterval
	// CurHopLimit is AdvCurHopLimit, the Internet's usual default.
	CurHopLimit = 64
	// minMTU is the IPv6 minimum link MTU: hosts ignore smaller MTU
	// options (RFC 4861 §6.3.4), so none is sent.
	minMTU = 1280
	// slaacPrefixLen is the only prefix length SLAAC works with on
	// Ethernet (RFC 4862 §5.5.3 d with RFC 4291's 64-bit interface IDs).
	slaacPrefixLen = 64
)

// ErrNoIPv6 is returned for a network without an IPv6 <ip>: there is
// nothing to advertise.
var ErrNoIPv6 = errors.New("no IPv6 <ip> to advertise")

// Params is everything one router advertisement says.
type Params struct {
	// Managed and Other are the M and O flags: addresses and other
	// configuration come from DHCPv6.
	Managed, Other bool
	// RouterLifetime 0 means "not a default router" (isolated networks,
	// and the final advertisement when the network stops).
	RouterLifetime time.Duration
	HopLimit       uint8
	// MTU is the MTU option; 0 means none.
	MTU uint32
	// SourceLinkLayer is the bridge's MAC for the source link-layer
	// address option; nil means none.
	SourceLinkLayer net.HardwareAddr
	// Prefixes are the prefix information options. One with a zero valid
	// lifetime withdraws a prefix advertised before.
	Prefixes []Prefix
	// RDNSS and DNSSL are the DNS options (RFC 8106), with DNSLifetime.
	RDNSS       []netip.Addr
	DNSSL       []string
	DNSLifetime time.Duration
	// RetiredRDNSS and RetiredDNSSL were advertised before and no longer
	// are: they go out with lifetime 0 so guests drop them now.
	RetiredRDNSS []netip.Addr
	RetiredDNSSL []string
}

// Prefix is one prefix information option.
type Prefix struct {
	Prefix            netip.Prefix
	OnLink            bool
	Autonomous        bool
	ValidLifetime     time.Duration
	PreferredLifetime time.Duration
}

// ParamsFromNetwork is the advertisement of network n, whose bridge has MAC
// mac (nil: no source link-layer address option). It follows dnsmasq as
// libvirt configures it (libvirt-behavior.md §3 items 9 and 17):
//
//   - the first IPv6 <ip> with <dhcp> makes the network stateful: M and O
//     set, and its prefix is the only one advertised, on-link but not
//     autonomous. Other IPv6 <ip>s get no prefix of their own (libvirt only
//     warns that mixing stateful and SLAAC is unsupported);
//   - otherwise every IPv6 <ip> is a SLAAC prefix, on-link and autonomous
//     (autonomous only when it is a /64: SLAAC cannot use other lengths);
//   - an isolated network (no <forward>) has router lifetime 0;
//   - with DNS enabled, RDNSS is the address of the first advertised <ip>
//     (the bridge's address there, the same server DHCPv6 hands out), and
//     DNSSL is the <domain> name;
//   - the MTU option carries <mtu size> (when at least 1280).
func ParamsFromNetwork(n *conf.Network, mac net.HardwareAddr) (Params, error) {
	if n == nil {
		return Params{}, errors.New("radvd: no network")
	}
	var v6 []*conf.IP
	var stateful *conf.IP
	for i := range n.IPs {
		ip := &n.IPs[i]
		if !ip.IsIPv6() {
			continue
		}
		v6 = append(v6, ip)
		if stateful == nil && ip.HasDHCP() {
			stateful = ip
		}
	}
	if len(v6) == 0 {
		return Params{}, fmt.Errorf("radvd: network %s: %w", n.Name, ErrNoIPv6)
	}
	p := Params{
		RouterLifetime: RouterLifetime,
		HopLimit:       CurHopLimit,
		DNSLifetime:    DNSLifetime,
	}
	if len(mac) > 0 {
		p.SourceLinkLayer = slices.Clone(mac)
	}
	if n.Forward.Mode == conf.ForwardNone {
		p.RouterLifetime = 0
	}
	if n.MTU >= minMTU {
		p.MTU = uint32(n.MTU)
	}
	advertised := v6
	if stateful != nil {
		advertised = []*conf.IP{stateful}
		p.Managed, p.Other = true, true
	}
	for _, ip := range advertised {
		sub, err := ip.Subnet()
		if err != nil {
			return Params{}, fmt.Errorf("radvd: network %s: ip %s: %w", n.Name, ip.Address, err)
		}
		sub = sub.Masked()
		if slices.ContainsFunc(p.Prefixes, func(x Prefix) bool { return x.Prefix == sub }) {
			continue
		}
		p.Prefixes = append(p.Prefixes, Prefix{
			Prefix:            sub,
			OnLink:            true,
			Autonomous:        stateful == nil && sub.Bits() == slaacPrefixLen,
			ValidLifetime:     ValidLifetime,
			PreferredLifetime: PreferredLifetime,
		})
	}
	if n.DNS.Enabled() {
		p.RDNSS = []netip.Addr{advertised[0].Address.WithZone("")}
		if n.Domain != nil {
			if d := strings.TrimSuffix(n.Domain.Name, "."); d != "" {
				if err := checkDomain(d); err != nil {
					return Params{}, fmt.Errorf("radvd: network %s: DNS search list: %w", n.Name, err)
				}
				p.DNSSL = []string{d}
			}
		}
	}
	// Catch anything else the wire format cannot carry here, where the
	// caller can report it, rather than on every send.
	if _, err := ndp.MarshalMessage(BuildRA(p)); err != nil {
		return Params{}, fmt.Errorf("radvd: network %s: %w", n.Name, err)
	}
	return p, nil
}

// BuildRA is the router advertisement for p. Options go in a fixed order:
// source link-layer address, MTU, prefixes, RDNSS, DNSSL, then the
// withdrawn DNS options.
func BuildRA(p Params) *ndp.RouterAdvertisement {
	ra := &ndp.RouterAdvertisement{
		CurrentHopLimit:           p.HopLimit,
		ManagedConfiguration:      p.Managed,
		OtherConfiguration:        p.Other,
		RouterSelectionPreference: ndp.Medium,
		RouterLifetime:            p.RouterLifetime,
	}
	if len(p.SourceLinkLayer) > 0 {
		ra.Options = append(ra.Options, &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: slices.Clone(p.SourceLinkLayer)})
	}
	if p.MTU != 0 {
		ra.Options = append(ra.Options, ndp.NewMTU(p.MTU))
	}
	for _, x := range p.Prefixes {
		ra.Options = append(ra.Options, &ndp.PrefixInformation{
			PrefixLength:                   uint8(x.Prefix.Bits()),
			OnLink:                         x.OnLink,
			AutonomousAddressConfiguration: x.Autonomous,
			ValidLifetime:                  x.ValidLifetime,
			PreferredLifetime:              x.PreferredLifetime,
			Prefix:                         x.Prefix.Masked().Addr(),
		})
	}
	if len(p.RDNSS) > 0 {
		ra.Options = append(ra.Options, &ndp.RecursiveDNSServer{Lifetime: p.DNSLifetime, Servers: slices.Clone(p.RDNSS)})
	}
	if len(p.DNSSL) > 0 {
		ra.Options = append(ra.Options, &ndp.DNSSearchList{Lifetime: p.DNSLifetime, DomainNames: slices.Clone(p.DNSSL)})
	}
	if len(p.RetiredRDNSS) > 0 {
		ra.Options = append(ra.Options, &ndp.RecursiveDNSServer{Servers: slices.Clone(p.RetiredRDNSS)})
	}
	if len(p.RetiredDNSSL) > 0 {
		ra.Options = append(ra.Options, &ndp.DNSSearchList{DomainNames: slices.Clone(p.RetiredDNSSL)})
	}
	return ra
}

// withdrawn is what old advertised that cur no longer does, plus what prev
// (an earlier withdrawal still being announced) withdrew and cur has not
// brought back: prefixes with zero lifetimes, DNS servers and domains.
// Announcing them with lifetime 0 for a few advertisements after a change
// makes guests drop an old prefix's on-link route and deprecate its
// addresses, and forget an old DNS server, at once rather than when their
// lifetimes run out. (Hosts keep a SLAAC address's valid lifetime at two
// hours at least, RFC 4862 §5.5.3 e; a preferred lifetime of 0 still stops
// them using it for new connections.)
func withdrawn(prev, old, cur Params) Params {
	var w Params
	for _, x := range slices.Concat(prev.Prefixes, old.Prefixes) {
		if slices.ContainsFunc(cur.Prefixes, func(c Prefix) bool { return c.Prefix == x.Prefix }) ||
			slices.ContainsFunc(w.Prefixes, func(c Prefix) bool { return c.Prefix == x.Prefix }) {
			continue
		}
		x.ValidLifetime, x.PreferredLifetime = 0, 0
		w.Prefixes = append(w.Prefixes, x)
	}
	for _, a := range slices.Concat(prev.RetiredRDNSS, old.RDNSS) {
		if !slices.Contains(cur.RDNSS, a) && !slices.Contains(w.RetiredRDNSS, a) {
			w.RetiredRDNSS = append(w.RetiredRDNSS, a)
		}
	}
	for _, d := range slices.Concat(prev.RetiredDNSSL, old.DNSSL) {
		if !slices.Contains(cur.DNSSL, d) && !slices.Contains(w.RetiredDNSSL, d) {
			w.RetiredDNSSL = append(w.RetiredDNSSL, d)
		}
	}
	return w
}

// empty reports whether w withdraws nothing.
func (w Params) empty() bool {
	return len(w.Prefixes) == 0 && len(w.RetiredRDNSS) == 0 && len(w.RetiredDNSSL) == 0
}

// with is p plus the withdrawals of w.
func (p Params) with(w Params) Params {
	p.Prefixes = slices.Concat(p.Prefixes, w.Prefixes)
	p.RetiredRDNSS = slices.Concat(p.RetiredRDNSS, w.RetiredRDNSS)
	p.RetiredDNSSL = slices.Concat(p.RetiredDNSSL, w.RetiredDNSSL)
	return p
}

// checkDomain checks what ndp does not: the DNS wire-format limits of
// RFC 1035 §2.3.4 (a label of 64 octets would be read as a compression
// pointer).
func checkDomain(d string) error {
	if len(d) > 253 {
		return fmt.Errorf("domain %.20s… is longer than 253 characters", d)
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("domain %q has a label of %d characters (1 to 63 allowed)", d, len(l))
		}
	}
	return nil
}
