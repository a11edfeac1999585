package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/vnetd/vnetd/conf"
)

// Family is the nftables address family of a table.
type Family uint8

const (
	IPv4 Family = iota + 1 // nft family "ip"
	IPv6                   // nft family "ip6"
)

// String is the nft spelling of the family.
func (f Family) String() string {
	switch f {
	case IPv4:
		return "ip"
	case IPv6:
		return "ip6"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// The chains of each table, named as in libvirt's shared libvirt_network table
// so that rules read the same.
const (
	ChainForward = "forward"      // base chain, filter hook forward priority 0
	ChainOutput  = "guest_output" // traffic leaving the network's guests
	ChainInput   = "guest_input"  // traffic headed to the network's guests
	ChainCross   = "guest_cross"  // guest to guest on the same bridge
	ChainNAT     = "guest_nat"    // base chain, nat hook postrouting priority 100
)

// TablePrefix starts the name of every table vnetd owns.
const TablePrefix = "vnetd_"

// TableName is the name of the network's tables (one per family): the bridge
// name is unique on the host, so tables of different networks never collide.
func TableName(bridge string) string { return TablePrefix + bridge }

// MatchKind says what a Match tests.
type MatchKind uint8

const (
	MatchIIF                MatchKind = iota + 1 // iif IFACE: input interface, by index
	MatchOIF                                     // oif IFACE: output interface, by index
	MatchIIFName                                 // iifname IFACE: input interface, by name
	MatchOIFName                                 // oifname IFACE: output interface, by name
	MatchL4Proto                                 // meta l4proto udp|tcp
	MatchSaddr                                   // ip[6] saddr [!=] PREFIX
	MatchDaddr                                   // ip[6] daddr [!=] PREFIX
	MatchRelatedEstablished                      // ct state related,established
)

// Match is one condition of a rule.
type Match struct {
	Kind   MatchKind
	Iface  string       // MatchIIF, MatchOIF, MatchIIFName, MatchOIFName
	Proto  Proto        // MatchL4Proto
	Prefix netip.Prefix // MatchSaddr, MatchDaddr; always masked
	Not    bool         // MatchSaddr, MatchDaddr: "!="
}

// Proto is a transport protocol number.
type Proto uint8

const (
	ProtoTCP Proto = 6
	ProtoUDP Proto = 17
)

// String is the nft name of the protocol.
func (p Proto) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return fmt.Sprintf("%d", uint8(p))
}

// Verdict is what a rule does when it matches.
type Verdict uint8

const (
	Accept     Verdict = iota + 1
	Reject             // ICMP port unreachable, nft's default reject
	Return             // back to the calling chain (in a base chain: the policy)
	Jump               // Action.Chain
	Masquerade         // source NAT to the output interface's address
	SNAT               // source NAT to Action.AddrStart[-AddrEnd]
)

// Action is the statement that ends a rule.
type Action struct {
	Verdict Verdict
	Chain   string // Jump
	// AddrStart/AddrEnd is the SNAT address range; an invalid AddrEnd means a
	// single address.
	AddrStart, AddrEnd netip.Addr
	// PortStart/PortEnd map the source port into a range (Masquerade, SNAT);
	// both zero: ports are left alone.
	PortStart, PortEnd uint16
}

// Rule is one rule of a chain.
type Rule struct {
	Chain string
	// Match holds the conditions in libvirt's order, which is also the order
	// the kernel evaluates them in.
	Match   []Match
	Counter bool
	Action  Action
}

// Chain is a chain declaration.
type Chain struct {
	Name string
	// Base is nil for a regular chain, only reached by a jump.
	Base *BaseChain
}

// BaseChain is the hook of a base chain. The policy is always accept: vnetd's
// tables only ever reject their own networks' traffic explicitly.
type BaseChain struct {
	Type     string // "filter" or "nat"
	Hook     string // "forward" or "postrouting"
	Priority int32
}

// Table is one family's table of a network.
type Table struct {
	Family Family
	Name   string
	Chains []Chain
	// Rules are grouped by chain, in the order of Chains, and in evaluation
	// order within a chain.
	Rules []Rule
}

// ChainRules returns the rules of one chain in evaluation order.
func (t *Table) ChainRules(chain string) []Rule {
	var out []Rule
	for _, r := range t.Rules {
		if r.Chain == chain {
			out = append(out, r)
		}
	}
	return out
}

// Plan is the complete firewall of one network. Its Tables are exactly what
// Apply creates and Remove deletes; no Tables means the network has no rules at
// all (forward mode open and the pool modes), and applying such a plan only
// removes stale tables of the bridge.
type Plan struct {
	Network string
	Bridge  string
	Tables  []Table
}

// The local destinations that must never be masqueraded (libvirt's
// networkLocalBroadcast, networkLocalMulticastIPv4/IPv6).
var (
	localBroadcast     = netip.MustParsePrefix("255.255.255.255/32")
	localMulticastIPv4 = netip.MustParsePrefix("224.0.0.0/24")
	localMulticastIPv6 = netip.MustParsePrefix("ff02::/16")
)

// defaultPortStart/End is libvirt's source-port range for masquerade and SNAT:
// guests must not get host ports below 1024, which NFS and others trust.
const (
	defaultPortStart = 1024
	defaultPortEnd   = 65535
)

var errNilNetwork = errors.New("firewall: nil network")

// Build computes the firewall of a network, mirroring libvirt 11.3's nftables
// backend (network_nftables.c) rule for rule, in vnetd's own per-network
// tables. n.Bridge.Name must be the concrete bridge name for isolated, nat and
// route networks.
func Build(n *conf.Network) (*Plan, error) {
	if n == nil {
		return nil, errNilNetwork
	}
	p, err := build(n)
	if err != nil {
		return nil, fmt.Errorf("network %q: firewall: %w", n.Name, err)
	}
	return p, nil
}

func build(n *conf.Network) (*Plan, error) {
	p := &Plan{Network: n.Name, Bridge: n.Bridge.Name}
	mode := n.Forward.Mode
	switch mode {
	case conf.ForwardNone, conf.ForwardNAT, conf.ForwardRoute:
	case conf.ForwardOpen:
		// libvirt's open mode exists precisely to leave the firewall to the
		// administrator: not a single rule.
		return p, nil
	default:
		if !mode.Valid() {
			return nil, fmt.Errorf("invalid forward mode %v", mode)
		}
		// bridge/private/vepa/passthrough/hostdev use host interfaces
		// vnetd does not own; libvirt adds no rules for them either.
		return p, nil
	}
	if err := checkTableIdent(n.Bridge.Name); err != nil {
		return nil, err
	}
	dev := n.Forward.Dev()
	if dev != "" {
		if err := checkIfname(dev); err != nil {
			return nil, fmt.Errorf("forward dev: %w", err)
		}
	}

	b := &builder{bridge: n.Bridge.Name, dev: dev}
	hasIPv6 := n.IPv6
	for i := range n.IPs {
		if n.IPs[i].Address.Is6() {
			hasIPv6 = true
		}
	}

	// The once-per-host part of libvirt's base.nftables, per table: each
	// insert puts the jump at the head, so guest_cross ends up first.
	fams := []Family{IPv4}
	if hasIPv6 {
		fams = append(fams, IPv6)
	}
	for _, f := range fams {
		for _, c := range []string{ChainOutput, ChainInput, ChainCross} {
			b.add(f, Rule{Chain: ChainForward, Counter: true, Action: Action{Verdict: Jump, Chain: c}})
		}
	}

	// nftablesAddGeneralFirewallRules: the catch-all rejects and the
	// guest-to-guest accept, IPv6 only with IPv6 addresses or ipv6='yes'.
	for _, f := range fams {
		b.add(f, Rule{Chain: ChainOutput, Match: []Match{b.iif()}, Counter: true, Action: Action{Verdict: Reject}})
		b.add(f, Rule{Chain: ChainInput, Match: []Match{b.oif()}, Counter: true, Action: Action{Verdict: Reject}})
		b.add(f, Rule{Chain: ChainCross, Match: []Match{b.iif(), b.oif()}, Counter: true, Action: Action{Verdict: Accept}})
	}

	// nftablesAddIPSpecificFirewallRules, for every <ip> in document order.
	natIPv6 := n.Forward.NAT != nil && n.Forward.NAT.IPv6 == conf.TristateYes
	for i := range n.IPs {
		ip := &n.IPs[i]
		subnet, err := ip.Subnet()
		if err != nil {
			return nil, fmt.Errorf("<ip address='%s'>: invalid prefix or netmask: %w", ip.Address, err)
		}
		subnet = subnet.Masked()
		switch {
		case mode == conf.ForwardNAT && (subnet.Addr().Is4() || natIPv6):
			if err := b.masquerading(subnet, n.Forward.NAT); err != nil {
				return nil, err
			}
		case mode == conf.ForwardNAT || mode == conf.ForwardRoute:
			// IPv6 has no NAT in libvirt unless asked for: NAT networks route it.
			b.routing(subnet)
		}
	}

	for _, f := range fams {
		p.Tables = append(p.Tables, b.table(f))
	}
	return p, nil
}

// builder collects rules in libvirt's emission order. libvirt inserts every
// rule at the head of its chain, so a chain's evaluation order is the reverse
// of the emission order; table() does that reversal.
type builder struct {
	bridge, dev string
	emitted     [3][]Rule // by Family
}

func (b *builder) add(f Family, r Rule) { b.emitted[f] = append(b.emitted[f], r) }

func (b *builder) iif() Match { return Match{Kind: MatchIIF, Iface: b.bridge} }
func (b *builder) oif() Match { return Match{Kind: MatchOIF, Iface: b.bridge} }

// withDev appends m only when the network has a forward dev.
func (b *builder) withDev(kind MatchKind) []Match {
	if b.dev == "" {
		return nil
	}
	return []Match{{Kind: kind, Iface: b.dev}}
}

func familyOf(p netip.Prefix) Family { return addrFamily(p.Addr()) }

func addrFamily(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

func cat(parts ...[]Match) []Match {
	var out []Match
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// masquerading is nftablesAddMasqueradingFirewallRules.
func (b *builder) masquerading(net netip.Prefix, nat *conf.NAT) error {
	f := familyOf(net)
	saddr := Match{Kind: MatchSaddr, Prefix: net}
	daddr := Match{Kind: MatchDaddr, Prefix: net}
	notDaddr := Match{Kind: MatchDaddr, Prefix: net, Not: true}

	// Out from the bridge, and back in for connections that already exist.
	b.add(f, Rule{Chain: ChainOutput, Match: cat([]Match{saddr, b.iif()}, b.withDev(MatchOIFName)), Counter: true, Action: Action{Verdict: Accept}})
	b.add(f, Rule{Chain: ChainInput, Match: cat(b.withDev(MatchIIFName), []Match{b.oif(), daddr, {Kind: MatchRelatedEstablished}}), Counter: true, Action: Action{Verdict: Accept}})

	// SNAT when <nat><address> is of the subnet's family, else masquerade.
	var addrStart, addrEnd netip.Addr
	var portStart, portEnd uint16
	if nat != nil {
		if nat.AddressStart.IsValid() && nat.AddressStart.Is4() == net.Addr().Is4() {
			addrStart = nat.AddressStart
			if nat.AddressEnd.IsValid() && nat.AddressEnd.Is4() == net.Addr().Is4() {
				addrEnd = nat.AddressEnd
			}
		}
		portStart, portEnd = nat.PortStart, nat.PortEnd
	}
	if portStart == 0 && portEnd == 0 {
		portStart, portEnd = defaultPortStart, defaultPortEnd
	}
	if portStart >= portEnd {
		// libvirt refuses to start such a network ("Invalid port range").
		return fmt.Errorf("<nat><port start='%d' end='%d'>: invalid port range (start must be below end)", portStart, portEnd)
	}
	snat := func(ports bool) Action {
		a := Action{Verdict: Masquerade}
		if addrStart.IsValid() {
			a = Action{Verdict: SNAT, AddrStart: addrStart, AddrEnd: addrEnd}
		}
		if ports {
			a.PortStart, a.PortEnd = portStart, portEnd
		}
		return a
	}
	match := []Match{saddr, notDaddr}
	// Any protocol, then udp and tcp with the source-port restriction.
	b.add(f, Rule{Chain: ChainNAT, Match: cat(match, b.withDev(MatchOIFName)), Counter: true, Action: snat(false)})
	for _, proto := range []Proto{ProtoUDP, ProtoTCP} {
		b.add(f, Rule{Chain: ChainNAT, Match: cat([]Match{{Kind: MatchL4Proto, Proto: proto}}, match, b.withDev(MatchOIFName)), Counter: true, Action: snat(true)})
	}
	// Never NAT local broadcast (strict DHCP clients reject replies with a
	// changed source port) or link-local multicast.
	ret := func(dst netip.Prefix) {
		b.add(f, Rule{Chain: ChainNAT, Match: cat(b.withDev(MatchOIFName), []Match{saddr, {Kind: MatchDaddr, Prefix: dst}}), Counter: true, Action: Action{Verdict: Return}})
	}
	if f == IPv4 {
		ret(localBroadcast)
		ret(localMulticastIPv4)
	} else {
		ret(localMulticastIPv6)
	}
	return nil
}

// routing is nftablesAddRoutingFirewallRules: both directions, no conntrack.
func (b *builder) routing(net netip.Prefix) {
	f := familyOf(net)
	b.add(f, Rule{Chain: ChainOutput, Match: cat([]Match{{Kind: MatchSaddr, Prefix: net}, b.iif()}, b.withDev(MatchOIFName)), Counter: true, Action: Action{Verdict: Accept}})
	b.add(f, Rule{Chain: ChainInput, Match: cat([]Match{{Kind: MatchDaddr, Prefix: net}}, b.withDev(MatchIIFName), []Match{b.oif()}), Counter: true, Action: Action{Verdict: Accept}})
}

// chains are libvirt's nftablesChains, in its creation order.
var chains = []Chain{
	{Name: ChainForward, Base: &BaseChain{Type: "filter", Hook: "forward", Priority: 0}},
	{Name: ChainOutput},
	{Name: ChainInput},
	{Name: ChainCross},
	{Name: ChainNAT, Base: &BaseChain{Type: "nat", Hook: "postrouting", Priority: 100}},
}

func (b *builder) table(f Family) Table {
	t := Table{Family: f, Name: TableName(b.bridge)}
	for _, c := range chains {
		cc := c
		if c.Base != nil {
			base := *c.Base
			cc.Base = &base
		}
		t.Chains = append(t.Chains, cc)
		em := b.emitted[f]
		for i := len(em) - 1; i >= 0; i-- {
			if em[i].Chain == c.Name {
				t.Rules = append(t.Rules, em[i])
			}
		}
	}
	return t
}

// checkIfname applies the kernel's dev_valid_name, and refuses the characters
// that could not be written inside an nft quoted string.
func checkIfname(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("%q is not an interface name", name)
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || c == '/' || c == ':' || c == '"' || c == '\\' {
			return fmt.Errorf("interface name %q has a character the kernel or nft cannot take", name)
		}
	}
	return nil
}

// checkTableIdent checks a bridge name, which becomes part of the table name.
// nft (1.0.x) only reads unquoted table names made of letters, digits, '_',
// '.' and '-': a table named otherwise would make `nft list ruleset` output
// that `nft -f` can no longer load, breaking every ruleset backup on the host.
func checkTableIdent(bridge string) error {
	if bridge == "" {
		return errors.New("the network has no bridge name")
	}
	if err := checkIfname(bridge); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	if i := strings.IndexFunc(bridge, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-')
	}); i >= 0 {
		return fmt.Errorf("bridge name %q: only letters, digits, '_', '.' and '-' fit in an nftables table name", bridge)
	}
	return nil
}
