package dhcpd

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/insomniacslk/dhcp/rfc1035label"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/leases"
)

// net6XML is libvirt's networkxml2confdata/dhcp6-network.xml (with an IPv4
// <ip> added, which the DHCPv6 server must ignore).
const net6XML = `<network>
  <name>default</name>
  <forward dev='eth1' mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <domain name='mynet'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
  </ip>
  <ip family='ipv6' address='2001:db8:ac10:fd01::1' prefix='64'>
    <dhcp>
      <range start='2001:db8:ac10:fd01::1:10' end='2001:db8:ac10:fd01::1:ff'/>
      <host id='0:4:7e:7d:f0:7d:a8:bc:c5:d2:13:32:11:ed:16:ea:84:63' ip='2001:db8:ac10:fd01::1:20'/>
      <host name='paul' ip='2001:db8:ac10:fd01::1:21'/>
      <host id='0:3:0:1:0:16:3e:11:22:33' name='peter.xyz' ip='2001:db8:ac10:fd01::1:22'/>
      <host id='0:3:0:1:0:16:3e:44:55:33' ip='2001:db8:ac10:fd01::1:23'/>
      <host id='0:1:0:1:18:aa:62:fe:0:16:3e:44:55:66' name='badbob' ip='2001:db8:ac10:fd01::1:24'/>
    </dhcp>
  </ip>
</network>`

const pfx6 = "2001:db8:ac10:fd01::"

var (
	t06        = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	serverID6  = (&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0xaa, 0xbb, 0xcc}}).ToBytes()
	otherSID6  = (&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 1, 1, 1}}).ToBytes()
	peerA6     = netip.MustParseAddr("fe80::5054:ff:fe00:a")
	duidA6     = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0a}}
	duidB6     = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0b}}
	duidC6     = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0c}}
	duidBob6   = mustDUID6("0:1:0:1:18:aa:62:fe:0:16:3e:44:55:66") // badbob's <host id>
	duidPeter6 = mustDUID6("00:03:00:01:00:16:3e:11:22:33")        // peter.xyz, written with leading zeros
)

func mustDUID6(s string) dhcpv6.DUID {
	b, err := ParseDUID6(s)
	if err != nil {
		panic(err)
	}
	d, err := dhcpv6.DUIDFromBytes(b)
	if err != nil {
		panic(err)
	}
	return d
}

func parseNet6(t testing.TB, xml string, edit func(*conf.Network)) *conf.Network {
	t.Helper()
	n, err := conf.Parse([]byte(xml))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if edit != nil {
		edit(n)
	}
	return n
}

// ip6 returns the IPv6 <ip> with DHCP of n, for edits.
func ip6(n *conf.Network) *conf.IP {
	for i := range n.IPs {
		if n.IPs[i].IsIPv6() {
			return &n.IPs[i]
		}
	}
	panic("no IPv6 <ip>")
}

// tcl6 is a test client.
type tcl6 struct {
	duid  dhcpv6.DUID
	iaid  uint32
	fqdn  string // sent as option 39 when set
	rapid bool
	extra []dhcpv6.Option
}

func (c tcl6) ia(addrs ...string) *dhcpv6.OptIANA {
	o := &dhcpv6.OptIANA{}
	o.IaId = [4]byte{byte(c.iaid >> 24), byte(c.iaid >> 16), byte(c.iaid >> 8), byte(c.iaid)}
	for _, a := range addrs {
		o.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP(a), PreferredLifetime: time.Hour, ValidLifetime: time.Hour})
	}
	return o
}

// env6 runs a scenario: a handler, a fake clock and the answers so far.
type env6 struct {
	t     testing.TB
	h     *Handler6
	now   time.Time
	got   []netip.Addr // per step: the address granted (nonzero lifetimes), if any
	store map[netip.Addr]leases.Lease
}

// msg builds a client message of type mt from c, with the server ID when
// the type carries one, and round-trips it through the wire format.
func (e *env6) msg(c tcl6, mt dhcpv6.MessageType, opts ...dhcpv6.Option) *dhcpv6.Message {
	m := &dhcpv6.Message{MessageType: mt, TransactionID: dhcpv6.TransactionID{1, 2, 3}}
	if c.duid != nil {
		m.AddOption(dhcpv6.OptClientID(c.duid))
	}
	switch mt {
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		sid, _ := dhcpv6.DUIDFromBytes(serverID6)
		m.AddOption(dhcpv6.OptServerID(sid))
	}
	m.AddOption(dhcpv6.OptElapsedTime(0))
	m.AddOption(dhcpv6.OptRequestedOption(dhcpv6.OptionDNSRecursiveNameServer, dhcpv6.OptionDomainSearchList))
	if c.fqdn != "" {
		m.AddOption(&dhcpv6.OptFQDN{Flags: 0, DomainName: labels6(c.fqdn)})
	}
	if c.rapid && mt == dhcpv6.MessageTypeSolicit {
		m.AddOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit})
	}
	for _, o := range c.extra {
		m.AddOption(o)
	}
	for _, o := range opts {
		m.AddOption(o)
	}
	return roundTrip6(e.t, m)
}

// addr is the address granted at step i.
func (e *env6) addr(i int) string {
	if i >= len(e.got) || !e.got[i].IsValid() {
		e.t.Fatalf("step %d granted no address", i)
	}
	return e.got[i].String()
}

func roundTrip6(t testing.TB, m *dhcpv6.Message) *dhcpv6.Message {
	t.Helper()
	out, err := dhcpv6.MessageFromBytes(m.ToBytes())
	if err != nil {
		t.Fatalf("round trip of %s: %v", m.Summary(), err)
	}
	return out
}

// want6 is what one step expects. Zero fields are not checked.
type want6 struct {
	drop    error              // ErrMalformed6 or ErrIgnored6
	noReply bool               // no answer, no error
	typ     dhcpv6.MessageType // answer type
	status  string             // top-level status code name ("Success", "NoAddrsAvail", ...); "-" none
	iaStat  string             // status of the first IA_NA; "-" none
	// addr is the first IA_NA address with nonzero lifetimes: an address,
	// "range" (any in the range), "none", or "$N" (the one of step N).
	addr     string
	notAddr  string   // must differ from this ("$N" allowed)
	zeroed   []string // addresses that must come back with lifetimes 0
	pref     int64    // preferred = valid lifetime, seconds (-1: infinite)
	t1, t2   int64
	commits  int // -1: none
	releases []string
	rapid    bool
	dns      string // "-" absent
	domain   string // "-" absent
	hostname string // of the first commit
	check    func(t *testing.T, e *env6, resp *dhcpv6.Message, commits []leases.Lease)
}

type step6 struct {
	after time.Duration // advance the fake clock first
	edit  func(*conf.Network)
	send  func(e *env6) *dhcpv6.Message
	sweep []string // instead of send: Sweep must return these
	want  want6
}

var (
	cA    = tcl6{duid: duidA6, iaid: 1}
	cB    = tcl6{duid: duidB6, iaid: 1}
	cC    = tcl6{duid: duidC6, iaid: 1}
	cBob  = tcl6{duid: duidBob6, iaid: 7}
	cPaul = tcl6{duid: duidC6, iaid: 3, fqdn: "paul.mynet."}
)

func solicit6(c tcl6, addrs ...string) func(*env6) *dhcpv6.Message {
	return func(e *env6) *dhcpv6.Message { return e.msg(c, dhcpv6.MessageTypeSolicit, c.ia(addrs...)) }
}

// withIA sends mt with one IA_NA holding the address of step i (or the
// literal addresses).
func withIA6(c tcl6, mt dhcpv6.MessageType, step int, addrs ...string) func(*env6) *dhcpv6.Message {
	return func(e *env6) *dhcpv6.Message {
		if step >= 0 {
			addrs = append([]string{e.addr(step)}, addrs...)
		}
		return e.msg(c, mt, c.ia(addrs...))
	}
}

func TestHandler6(t *testing.T) {
	const (
		rq  = dhcpv6.MessageTypeRequest
		rn  = dhcpv6.MessageTypeRenew
		rb  = dhcpv6.MessageTypeRebind
		cf  = dhcpv6.MessageTypeConfirm
		rl  = dhcpv6.MessageTypeRelease
		dc  = dhcpv6.MessageTypeDecline
		adv = dhcpv6.MessageTypeAdvertise
		rep = dhcpv6.MessageTypeReply
	)
	tests := []struct {
		name  string
		edit  func(*conf.Network)
		steps []step6
	}{{
		name: "solicit advertise request reply",
		steps: []step6{
			{send: solicit6(cA), want: want6{typ: adv, status: "-", iaStat: "-", addr: "range", pref: 3600, t1: 1800, t2: 2880, commits: -1,
				dns: pfx6 + "1", domain: "mynet",
				check: func(t *testing.T, e *env6, m *dhcpv6.Message, _ []leases.Lease) {
					if m.Options.Preference() != 255 {
						t.Errorf("preference %d, want 255", m.Options.Preference())
					}
					if m.GetOneOption(dhcpv6.OptionRapidCommit) != nil {
						t.Error("Advertise has Rapid Commit")
					}
				}}},
			{send: withIA6(cA, rq, 0), want: want6{typ: rep, addr: "$0", pref: 3600, t1: 1800, t2: 2880, commits: 1,
				check: func(t *testing.T, e *env6, _ *dhcpv6.Message, c []leases.Lease) {
					l := c[0]
					if l.Network != "default" || l.Kind != leases.V6 || l.Prefix != 64 || l.IAID != 1 ||
						l.DUID != "00:03:00:01:52:54:00:00:00:0a" || l.MAC.String() != "52:54:00:00:00:0a" ||
						!l.Expiry.Equal(e.now.Add(time.Hour)) {
						t.Errorf("lease %+v", l)
					}
				}}},
			// A second Solicit of the bound client offers the same
			// address and leaves the lease alone.
			{after: time.Minute, send: solicit6(cA), want: want6{typ: adv, addr: "$0", pref: 3540, commits: -1}},
			// Another client never gets it.
			{send: solicit6(cB, "$0"), want: want6{typ: adv, addr: "range", notAddr: "$0"}},
		},
	}, {
		name: "offer is held for the solicitor only",
		steps: []step6{
			{send: solicit6(cA), want: want6{typ: adv, addr: "range"}},
			{send: func(e *env6) *dhcpv6.Message { return e.msg(cB, dhcpv6.MessageTypeSolicit, cB.ia(e.addr(0))) },
				want: want6{typ: adv, addr: "range", notAddr: "$0"}},
			{after: 2 * time.Minute, send: func(e *env6) *dhcpv6.Message { return e.msg(cC, dhcpv6.MessageTypeSolicit, cC.ia(e.addr(0))) },
				want: want6{typ: adv, addr: "$0"}},
		},
	}, {
		name: "rapid commit",
		steps: []step6{
			{send: solicit6(tcl6{duid: duidA6, iaid: 1, rapid: true}), want: want6{typ: rep, rapid: true, addr: "range", pref: 3600, commits: 1, dns: pfx6 + "1"}},
			{send: withIA6(cA, rn, 0), want: want6{typ: rep, addr: "$0", commits: 1}},
		},
	}, {
		name: "renew keeps the address and extends the lease",
		steps: []step6{
			{send: withIA6(cA, rq, -1), want: want6{typ: rep, addr: "range", commits: 1}},
			{after: 30 * time.Minute, send: withIA6(cA, rn, 0), want: want6{typ: rep, addr: "$0", pref: 3600, t1: 1800, t2: 2880, commits: 1,
				check: func(t *testing.T, e *env6, _ *dhcpv6.Message, c []leases.Lease) {
					if !c[0].Expiry.Equal(e.now.Add(time.Hour)) {
						t.Errorf("expiry %v, want %v", c[0].Expiry, e.now.Add(time.Hour))
					}
				}}},
			// Renew for an IA the server does not know, no address.
			{send: withIA6(cB, rn, -1), want: want6{typ: rep, iaStat: "NoBinding", addr: "none", commits: -1}},
		},
	}, {
		name: "rebind",
		steps: []step6{
			{send: withIA6(cA, rq, -1), want: want6{typ: rep, addr: "range", commits: 1}},
			{after: 50 * time.Minute, send: withIA6(cA, rb, 0), want: want6{typ: rep, addr: "$0", pref: 3600, commits: 1}},
			// Unknown IA, nothing asked: NoBinding.
			{send: withIA6(cB, rb, -1), want: want6{typ: rep, iaStat: "NoBinding", addr: "none", commits: -1}},
			// Unknown IA asking for an off-link address: lifetimes 0.
			{send: withIA6(cB, rb, -1, "2001:db8:ffff::5"), want: want6{typ: rep, addr: "none", zeroed: []string{"2001:db8:ffff::5"}, commits: -1}},
			// Unknown IA asking for an address bound to another client.
			{send: withIA6(cB, rb, 0), want: want6{typ: rep, addr: "none", zeroed: []string{"$0"}, commits: -1}},
			// Unknown IA asking for a free range address (the server lost
			// its state): the binding is made again.
			{send: withIA6(cC, rb, -1, pfx6+"1:99"), want: want6{typ: rep, addr: pfx6 + "1:99", commits: 1}},
		},
	}, {
		name: "confirm",
		steps: []step6{
			{send: withIA6(cA, cf, -1, pfx6+"1:99"), want: want6{typ: rep, status: "Success", commits: -1}},
			{send: withIA6(cA, cf, -1, pfx6+"1:99", "2001:db8:1::1"), want: want6{typ: rep, status: "NotOnLink"}},
			{send: withIA6(cA, cf, -1), want: want6{noReply: true}},
		},
	}, {
		name: "release frees the address",
		steps: []step6{
			{send: withIA6(cA, rq, -1), want: want6{typ: rep, addr: "range", commits: 1}},
			{send: withIA6(cA, rl, 0), want: want6{typ: rep, status: "Success", iaStat: "-", releases: []string{"$0"}, commits: -1, dns: "-"}},
			{send: withIA6(cA, rl, 0), want: want6{typ: rep, status: "Success", iaStat: "NoBinding", releases: []string{}}},
			// Freed: another client asking for it gets it.
			{send: withIA6(cB, rq, 0), want: want6{typ: rep, addr: "$0", commits: 1}},
			// A client cannot release someone else's address.
			{send: withIA6(cA, rl, 0), want: want6{typ: rep, iaStat: "NoBinding", releases: []string{}}},
		},
	}, {
		name: "decline quarantines the address",
		steps: []step6{
			{send: withIA6(cA, rq, -1), want: want6{typ: rep, addr: "range", commits: 1}},
			{send: withIA6(cA, dc, 0), want: want6{typ: rep, status: "Success", releases: []string{"$0"}}},
			{send: withIA6(cA, rq, 0), want: want6{typ: rep, addr: "range", notAddr: "$0", zeroed: []string{"$0"}, commits: 1}},
			{send: withIA6(cB, rq, 0), want: want6{typ: rep, addr: "range", notAddr: "$0", commits: 1}},
			{after: 11 * time.Minute, sweep: []string{}},
			{send: withIA6(cC, rq, 0), want: want6{typ: rep, addr: "$0", commits: 1}},
		},
	}, {
		name: "information-request",
		steps: []step6{
			{send: func(e *env6) *dhcpv6.Message { return e.msg(cA, dhcpv6.MessageTypeInformationRequest) },
				want: want6{typ: rep, status: "-", addr: "none", commits: -1, dns: pfx6 + "1", domain: "mynet"}},
			// Without a Client ID too.
			{send: func(e *env6) *dhcpv6.Message { return e.msg(tcl6{}, dhcpv6.MessageTypeInformationRequest) },
				want: want6{typ: rep, dns: pfx6 + "1"}},
			{send: func(e *env6) *dhcpv6.Message {
				return e.msg(cA, dhcpv6.MessageTypeInformationRequest, cA.ia())
			}, want: want6{drop: ErrMalformed6}},
		},
	}, {
		name: "reservation by DUID",
		steps: []step6{
			{send: solicit6(cBob), want: want6{typ: adv, addr: pfx6 + "1:24"}},
			{send: withIA6(cBob, rq, 0), want: want6{typ: rep, addr: pfx6 + "1:24", commits: 1, hostname: "badbob"}},
			// peter.xyz's DUID written with leading zeros matches
			// libvirt's '0:3:0:1:0:16:3e:11:22:33'.
			{send: withIA6(tcl6{duid: duidPeter6, iaid: 9}, rq, -1), want: want6{typ: rep, addr: pfx6 + "1:22", hostname: "peter.xyz"}},
			// Nobody else gets a reserved address, even asking for it.
			{send: withIA6(cA, rq, -1, pfx6+"1:23"), want: want6{typ: rep, addr: "range", notAddr: pfx6 + "1:23", zeroed: []string{pfx6 + "1:23"}}},
			// A Solicit's hint is only a hint: not answered with lifetimes 0.
			{send: solicit6(cA, pfx6+"1:23"), want: want6{typ: adv, addr: "range", notAddr: pfx6 + "1:23",
				check: func(t *testing.T, _ *env6, m *dhcpv6.Message, _ []leases.Lease) {
					if n := len(m.Options.OneIANA().Options.Addresses()); n != 1 {
						t.Errorf("Advertise IA has %d addresses", n)
					}
				}}},
			// A second IA of the reserved client gets a range address.
			{send: withIA6(tcl6{duid: duidBob6, iaid: 8}, rq, -1), want: want6{typ: rep, addr: "range"}},
		},
	}, {
		name: "reservation by name",
		steps: []step6{
			{send: solicit6(cPaul), want: want6{typ: adv, addr: pfx6 + "1:21"}},
			{send: withIA6(cPaul, rq, 0), want: want6{typ: rep, addr: pfx6 + "1:21", commits: 1, hostname: "paul"}},
			{send: withIA6(tcl6{duid: duidB6, iaid: 4, fqdn: "PETER.xyz"}, rq, -1), want: want6{typ: rep, addr: pfx6 + "1:22"}},
			// A client's own name, domain stripped, lands in the lease.
			{send: withIA6(tcl6{duid: duidA6, iaid: 4, fqdn: "guest.mynet."}, rq, -1), want: want6{typ: rep, addr: "range", hostname: "guest"}},
			{send: withIA6(tcl6{duid: duidA6, iaid: 5, fqdn: "bad name;rm"}, rq, -1), want: want6{typ: rep, addr: "range",
				check: func(t *testing.T, _ *env6, _ *dhcpv6.Message, c []leases.Lease) {
					if c[0].Hostname != "" {
						t.Errorf("hostname %q recorded", c[0].Hostname)
					}
				}}},
		},
	}, {
		name: "exhaustion",
		edit: func(n *conf.Network) {
			d := ip6(n).DHCP
			d.Ranges = []conf.DHCPRange{{Start: netip.MustParseAddr(pfx6 + "2:1"), End: netip.MustParseAddr(pfx6 + "2:2")}}
			d.Hosts = nil
		},
		steps: []step6{
			{send: withIA6(cA, rq, -1), want: want6{typ: rep, addr: "range", commits: 1}},
			{send: withIA6(cB, rq, -1), want: want6{typ: rep, addr: "range", notAddr: "$0", commits: 1}},
			{send: solicit6(cC), want: want6{typ: adv, status: "NoAddrsAvail", addr: "none", commits: -1}},
			{send: solicit6(tcl6{duid: duidC6, iaid: 1, rapid: true}), want: want6{typ: adv, status: "NoAddrsAvail", addr: "none", commits: -1}},
			{send: withIA6(cC, rq, -1), want: want6{typ: rep, iaStat: "NoAddrsAvail", addr: "none", commits: -1}},
			// Leases run out: the address is free again.
			{after: time.Hour + time.Second, send: withIA6(cC, rq, -1), want: want6{typ: rep, addr: "range", commits: 1}},
		},
	}, {
		name: "infinite lease",
		edit: func(n *conf.Network) {
			ip6(n).DHCP.Ranges[0].Lease = &conf.Lease{Expiry: 0, Unit: conf.LeaseHours}
		},
		steps: []step6{
			{send: withIA6(cA, rq, -1), want: want6{typ: rep, addr: "range", pref: -1, t1: -1, t2: -1, commits: 1,
				check: func(t *testing.T, _ *env6, _ *dhcpv6.Message, c []leases.Lease) {
					if !c[0].Expiry.IsZero() {
						t.Errorf("infinite lease has expiry %v", c[0].Expiry)
					}
				}}},
			{after: 1000 * time.Hour, sweep: []string{}},
			{send: withIA6(cA, rn, 0), want: want6{typ: rep, addr: "$0", pref: -1}},
		},
	}, {
		name: "lease times per range and host",
		edit: func(n *conf.Network) {
			d := ip6(n).DHCP
			d.Ranges[0].Lease = &conf.Lease{Expiry: 2, Unit: conf.LeaseHours}
			d.Hosts[4].Lease = &conf.Lease{Expiry: 10, Unit: conf.LeaseMinutes}
		},
		steps: []step6{
			{send: withIA6(cA, rq, -1), want: want6{typ: rep, addr: "range", pref: 7200, t1: 3600, t2: 5760}},
			{send: withIA6(cBob, rq, -1), want: want6{typ: rep, addr: pfx6 + "1:24", pref: 600, t1: 300, t2: 480}},
			// A host without its own lease inside the range takes the range's.
			{send: withIA6(tcl6{duid: duidPeter6, iaid: 1}, rq, -1), want: want6{typ: rep, addr: pfx6 + "1:22", pref: 7200}},
		},
	}, {
		name: "no DNS, no domain",
		edit: func(n *conf.Network) {
			n.DNS.Enable = conf.TristateNo
			n.Domain = nil
		},
		steps: []step6{
			{send: solicit6(cA), want: want6{typ: adv, addr: "range", dns: "-", domain: "-"}},
			{send: func(e *env6) *dhcpv6.Message { return e.msg(cA, dhcpv6.MessageTypeInformationRequest) },
				want: want6{typ: rep, dns: "-", domain: "-"}},
		},
	}, {
		name: "static only (hosts, no range)",
		edit: func(n *conf.Network) { ip6(n).DHCP.Ranges = nil },
		steps: []step6{
			{send: withIA6(cBob, rq, -1), want: want6{typ: rep, addr: pfx6 + "1:24", pref: 3600}},
			{send: solicit6(cA), want: want6{typ: adv, status: "NoAddrsAvail"}},
		},
	}, {
		name: "dropped messages",
		steps: []step6{
			{send: func(e *env6) *dhcpv6.Message { return e.msg(tcl6{}, dhcpv6.MessageTypeSolicit, cA.ia()) }, want: want6{drop: ErrMalformed6}},
			{send: func(e *env6) *dhcpv6.Message {
				sid, _ := dhcpv6.DUIDFromBytes(serverID6)
				return e.msg(cA, dhcpv6.MessageTypeSolicit, cA.ia(), dhcpv6.OptServerID(sid))
			}, want: want6{drop: ErrMalformed6}},
			{send: func(e *env6) *dhcpv6.Message { return e.msg(tcl6{}, dhcpv6.MessageTypeRequest, cA.ia()) }, want: want6{drop: ErrMalformed6}},
			{send: func(e *env6) *dhcpv6.Message {
				m := e.msg(cA, dhcpv6.MessageTypeRequest, cA.ia())
				sid, _ := dhcpv6.DUIDFromBytes(otherSID6)
				m.UpdateOption(dhcpv6.OptServerID(sid))
				return m
			}, want: want6{drop: ErrIgnored6}},
			{send: func(e *env6) *dhcpv6.Message { return e.msg(cA, dhcpv6.MessageTypeAdvertise, cA.ia()) }, want: want6{drop: ErrIgnored6}},
			{send: func(e *env6) *dhcpv6.Message { return e.msg(cA, dhcpv6.MessageTypeReply) }, want: want6{drop: ErrIgnored6}},
			{send: func(e *env6) *dhcpv6.Message {
				sid, _ := dhcpv6.DUIDFromBytes(serverID6)
				return e.msg(cA, dhcpv6.MessageTypeRebind, cA.ia(), dhcpv6.OptServerID(sid))
			}, want: want6{drop: ErrMalformed6}},
		},
	}, {
		name: "IA_TA and IA_PD are refused",
		steps: []step6{
			{send: func(e *env6) *dhcpv6.Message {
				return e.msg(cA, dhcpv6.MessageTypeSolicit, cA.ia(), &dhcpv6.OptIAPD{IaId: [4]byte{0, 0, 0, 9}}, &dhcpv6.OptIATA{IaId: [4]byte{0, 0, 0, 8}})
			}, want: want6{typ: adv, addr: "range",
				check: func(t *testing.T, _ *env6, m *dhcpv6.Message, _ []leases.Lease) {
					pd := m.Options.OneIAPD()
					if pd == nil || pd.Options.Status() == nil || pd.Options.Status().StatusCode != iana.StatusNoPrefixAvail {
						t.Errorf("IA_PD answer %v", pd)
					}
					ta := m.Options.OneIATA()
					if ta == nil || ta.Options.Status() == nil || ta.Options.Status().StatusCode != iana.StatusNoAddrsAvail {
						t.Errorf("IA_TA answer %v", ta)
					}
				}}},
		},
	}, {
		name: "multiple IA_NA",
		steps: []step6{
			{send: func(e *env6) *dhcpv6.Message {
				return e.msg(cA, dhcpv6.MessageTypeRequest, cA.ia(), tcl6{iaid: 2}.ia())
			}, want: want6{typ: rep, addr: "range", commits: 2,
				check: func(t *testing.T, _ *env6, m *dhcpv6.Message, c []leases.Lease) {
					ias := m.Options.IANA()
					if len(ias) != 2 || c[0].IP == c[1].IP || c[0].IAID != 1 || c[1].IAID != 2 {
						t.Errorf("IAs %v, commits %v", ias, c)
					}
				}}},
		},
	}, {
		name: "expiry and sweep",
		steps: []step6{
			{send: withIA6(cA, rq, -1), want: want6{typ: rep, addr: "range", commits: 1}},
			{after: time.Hour, sweep: []string{}}, // valid up to and including its expiry
			{after: time.Second, sweep: []string{"$0"}},
			{send: withIA6(cA, rn, 0), want: want6{typ: rep, addr: "$0", commits: 1}}, // free, so made again
		},
	}, {
		name: "update takes back addresses no longer served",
		steps: []step6{
			{send: withIA6(cA, rq, -1), want: want6{typ: rep, addr: "range", commits: 1}},
			{edit: func(n *conf.Network) {
				ip6(n).DHCP.Ranges = []conf.DHCPRange{{Start: netip.MustParseAddr(pfx6 + "3:1"), End: netip.MustParseAddr(pfx6 + "3:1")}}
			}, send: withIA6(cA, rn, 0), want: want6{typ: rep, addr: pfx6 + "3:1", zeroed: []string{"$0"}, releases: []string{"$0"}, commits: 1}},
			{edit: func(n *conf.Network) { ip6(n).DHCP.Ranges = nil },
				send: withIA6(cA, rn, 1), want: want6{typ: rep, addr: "none", iaStat: "NoAddrsAvail", zeroed: []string{"$1"}, releases: []string{"$1"}, commits: -1}},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := parseNet6(t, net6XML, tc.edit)
			h, err := NewHandler6(n, serverID6)
			if err != nil {
				t.Fatal(err)
			}
			e := &env6{t: t, h: h, now: t06}
			for i, s := range tc.steps {
				e.now = e.now.Add(s.after)
				e.got = append(e.got, netip.Addr{})
				if s.edit != nil {
					n = parseNet6(t, net6XML, tc.edit)
					s.edit(n)
					if err := h.Update(n); err != nil {
						t.Fatalf("step %d: update: %v", i, err)
					}
				}
				if s.sweep != nil {
					gone := h.Sweep(e.now)
					if got, want := addrStrings6(gone), e.expand(s.sweep); strings.Join(got, ",") != strings.Join(want, ",") {
						t.Errorf("step %d: sweep %v, want %v", i, got, want)
					}
					continue
				}
				req := s.send(e)
				resp, commits, releases, err := h.Handle(req, peerA6, e.now)
				e.checkStep(i, s.want, req, resp, commits, releases, err)
			}
		})
	}
}

func addrStrings6(a []netip.Addr) []string {
	out := []string{}
	for _, x := range a {
		out = append(out, x.String())
	}
	return out
}

func (e *env6) expand(s []string) []string {
	out := []string{}
	for _, x := range s {
		out = append(out, e.ref(x))
	}
	return out
}

// ref resolves "$N" to the address of step N.
func (e *env6) ref(s string) string {
	if strings.HasPrefix(s, "$") {
		i, err := strconv.Atoi(s[1:])
		if err != nil {
			e.t.Fatalf("bad ref %q", s)
		}
		return e.addr(i)
	}
	return s
}

func statusName6(st *dhcpv6.OptStatusCode) string {
	if st == nil {
		return "-"
	}
	return st.StatusCode.String()
}

func (e *env6) checkStep(i int, w want6, req, resp *dhcpv6.Message, commits []leases.Lease, releases []netip.Addr, err error) {
	t := e.t
	t.Helper()
	if w.drop != nil {
		if !errors.Is(err, w.drop) || resp != nil {
			t.Errorf("step %d: got %v, %v; want drop %v", i, resp, err, w.drop)
		}
		return
	}
	if err != nil {
		t.Fatalf("step %d: %v", i, err)
	}
	if w.noReply {
		if resp != nil {
			t.Errorf("step %d: answered %s, want no answer", i, resp.Summary())
		}
		return
	}
	if resp == nil {
		t.Fatalf("step %d: no answer", i)
	}
	resp = roundTrip6(t, resp)
	if resp.MessageType != w.typ || resp.TransactionID != req.TransactionID {
		t.Errorf("step %d: answer %s (xid %v), want %s", i, resp.MessageType, resp.TransactionID, w.typ)
	}
	if sid := resp.Options.ServerID(); sid == nil || string(sid.ToBytes()) != string(serverID6) {
		t.Errorf("step %d: server ID %v", i, sid)
	}
	if cid := req.Options.ClientID(); cid != nil {
		if got := resp.Options.ClientID(); got == nil || !got.Equal(cid) {
			t.Errorf("step %d: client ID %v, want %v echoed", i, got, cid)
		}
	}
	if w.status != "" {
		if got := statusName6(resp.Options.Status()); got != w.status {
			t.Errorf("step %d: status %s, want %s", i, got, w.status)
		}
	}
	var first *dhcpv6.OptIANA
	if ias := resp.Options.IANA(); len(ias) > 0 {
		first = ias[0]
	}
	if w.iaStat != "" {
		got := "-"
		if first != nil {
			got = statusName6(first.Options.Status())
		}
		if got != w.iaStat {
			t.Errorf("step %d: IA status %s, want %s", i, got, w.iaStat)
		}
	}
	var granted *dhcpv6.OptIAAddress
	zeroed := map[string]bool{}
	if first != nil {
		for _, a := range first.Options.Addresses() {
			if a.ValidLifetime == 0 && a.PreferredLifetime == 0 {
				zeroed[a.IPv6Addr.String()] = true
			} else if granted == nil {
				granted = a
			}
		}
	}
	if granted != nil {
		e.got[i], _ = netip.AddrFromSlice(granted.IPv6Addr)
	}
	switch w.addr {
	case "":
	case "none":
		if granted != nil {
			t.Errorf("step %d: granted %s, want nothing", i, granted.IPv6Addr)
		}
	case "range":
		if granted == nil {
			t.Errorf("step %d: no address granted", i)
		} else if a := e.got[i]; !(a.Compare(netip.MustParseAddr(pfx6+"1:10")) >= 0 && a.Compare(netip.MustParseAddr(pfx6+"1:ff")) <= 0) &&
			!netip.MustParsePrefix(pfx6+"2:0/112").Contains(a) || a == netip.MustParseAddr(pfx6+"1:20") ||
			(a.Compare(netip.MustParseAddr(pfx6+"1:20")) >= 0 && a.Compare(netip.MustParseAddr(pfx6+"1:24")) <= 0) {
			t.Errorf("step %d: granted %s, not a free range address", i, a)
		}
	default:
		if want := e.ref(w.addr); granted == nil || e.got[i].String() != want {
			t.Errorf("step %d: granted %v, want %s", i, e.got[i], want)
		}
	}
	if w.notAddr != "" && e.got[i].String() == e.ref(w.notAddr) {
		t.Errorf("step %d: granted %s, which it must not", i, e.got[i])
	}
	for _, z := range w.zeroed {
		if !zeroed[e.ref(z)] {
			t.Errorf("step %d: %s not returned with lifetimes 0 (IA %v)", i, e.ref(z), first)
		}
	}
	secs := func(d time.Duration) int64 {
		if d == infinity6 {
			return -1
		}
		return int64(d / time.Second)
	}
	if w.pref != 0 {
		if granted == nil || secs(granted.PreferredLifetime) != w.pref || secs(granted.ValidLifetime) != w.pref {
			t.Errorf("step %d: lifetimes %v, want %ds", i, granted, w.pref)
		}
	}
	if w.t1 != 0 && (first == nil || secs(first.T1) != w.t1) {
		t.Errorf("step %d: T1 %v, want %ds", i, first, w.t1)
	}
	if w.t2 != 0 && (first == nil || secs(first.T2) != w.t2) {
		t.Errorf("step %d: T2 %v, want %ds", i, first, w.t2)
	}
	switch {
	case w.commits == -1 && len(commits) != 0:
		t.Errorf("step %d: commits %v, want none", i, commits)
	case w.commits > 0 && len(commits) != w.commits:
		t.Errorf("step %d: %d commits, want %d", i, len(commits), w.commits)
	}
	if granted != nil && len(commits) > 0 && commits[0].IP != e.got[i] {
		t.Errorf("step %d: commits %s, answer %s", i, commits[0].IP, e.got[i])
	}
	if w.releases != nil {
		if got, want := addrStrings6(releases), e.expand(w.releases); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("step %d: releases %v, want %v", i, got, want)
		}
	}
	if w.rapid != (resp.GetOneOption(dhcpv6.OptionRapidCommit) != nil) {
		t.Errorf("step %d: rapid commit option present=%v, want %v", i, !w.rapid, w.rapid)
	}
	if w.dns != "" {
		got := "-"
		if d := resp.Options.DNS(); len(d) > 0 {
			got = d[0].String()
		}
		if got != w.dns {
			t.Errorf("step %d: DNS %s, want %s", i, got, w.dns)
		}
	}
	if w.domain != "" {
		got := "-"
		if d := resp.Options.DomainSearchList(); d != nil {
			got = strings.Join(d.Labels, ",")
		}
		if got != w.domain {
			t.Errorf("step %d: domain search %s, want %s", i, got, w.domain)
		}
	}
	if w.hostname != "" && (len(commits) == 0 || commits[0].Hostname != w.hostname) {
		t.Errorf("step %d: commits %v, want hostname %q", i, commits, w.hostname)
	}
	if w.check != nil {
		w.check(t.(*testing.T), e, resp, commits)
	}
}

func TestParseDUID6(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "0:1:0:1:18:aa:62:fe:0:16:3e:44:55:66", want: "00:01:00:01:18:aa:62:fe:00:16:3e:44:55:66"},
		{in: "00:03:00:01:00:16:3E:11:22:33", want: "00:03:00:01:00:16:3e:11:22:33"},
		{in: "000300010016", want: "00:03:00:01:00:16"},
		{in: "3:1:0:16", want: "03:01:00:16"},
		{in: "", bad: true},
		{in: "0", bad: true},
		{in: "0::1", bad: true},
		{in: "zz:1", bad: true},
	} {
		b, err := ParseDUID6(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseDUID6(%q) = %x, want error", tc.in, b)
			}
			continue
		}
		if err != nil || FormatDUID6(b) != tc.want {
			t.Errorf("ParseDUID6(%q) = %s, %v; want %s", tc.in, FormatDUID6(b), err, tc.want)
		}
	}
}

func TestServes6(t *testing.T) {
	if !Serves6(parseNet6(t, net6XML, nil)) {
		t.Error("dhcp6-network does not need a DHCPv6 server")
	}
	if Serves6(parseNet6(t, net6XML, func(n *conf.Network) { ip6(n).DHCP = nil })) {
		t.Error("a network without IPv6 <dhcp> needs a DHCPv6 server")
	}
	if _, err := NewHandler6(parseNet6(t, net6XML, func(n *conf.Network) { ip6(n).DHCP = nil }), serverID6); !errors.Is(err, errNoDHCP6) {
		t.Errorf("NewHandler6 without IPv6 <dhcp>: %v", err)
	}
	if _, err := NewHandler6(parseNet6(t, net6XML, nil), []byte{0}); err == nil {
		t.Error("NewHandler6 accepted a 1-byte server DUID")
	}
}

func TestMACFrom6(t *testing.T) {
	llt := mustDUID6("0:1:0:1:18:aa:62:fe:0:16:3e:44:55:66").ToBytes()
	for _, tc := range []struct {
		duid []byte
		peer string
		want string
	}{
		{duidA6.ToBytes(), "fe80::1", "52:54:00:00:00:0a"},
		{llt, "fe80::1", "00:16:3e:44:55:66"},
		{llt, "fe80::5054:ff:fe12:3456", "52:54:00:12:34:56"}, // EUI-64 source wins
		{[]byte{0, 2, 0, 0, 0, 9, 1}, "fe80::1", ""},
	} {
		got := macFrom6(tc.duid, netip.MustParseAddr(tc.peer))
		if got.String() != tc.want {
			t.Errorf("macFrom6(%x, %s) = %s, want %s", tc.duid, tc.peer, got, tc.want)
		}
	}
}

// TestHandler6Load restarts a handler from the store: a client renewing
// keeps its address, and nobody else gets it.
func TestHandler6Load(t *testing.T) {
	n := parseNet6(t, net6XML, nil)
	h1, _ := NewHandler6(n, serverID6)
	e := &env6{t: t, h: h1, now: t06}
	_, commits, _, err := h1.Handle(e.msg(cA, dhcpv6.MessageTypeRequest, cA.ia()), peerA6, t06)
	if err != nil || len(commits) != 1 {
		t.Fatalf("request: %v %v", commits, err)
	}
	stored := append(commits,
		leases.Lease{Network: "default", Kind: leases.V6, IP: netip.MustParseAddr(pfx6 + "1:50"), DUID: "00:01", Expiry: t06.Add(-time.Second)}, // expired
		leases.Lease{Network: "other", Kind: leases.V6, IP: netip.MustParseAddr(pfx6 + "1:51"), DUID: "00:01"},
		leases.Lease{Network: "default", Kind: leases.V4, IP: netip.MustParseAddr("192.168.122.5")},
	)
	h2, _ := NewHandler6(n, serverID6)
	if got := h2.Load(stored, t06.Add(time.Minute)); got != 1 {
		t.Fatalf("loaded %d leases, want 1", got)
	}
	e.h = h2
	ip := commits[0].IP.String()
	resp, c2, _, _ := h2.Handle(e.msg(cB, dhcpv6.MessageTypeRequest, cB.ia(ip)), peerA6, t06.Add(time.Minute))
	if len(c2) != 1 || c2[0].IP.String() == ip {
		t.Errorf("another client got %s after restart: %v", ip, resp)
	}
	resp, c3, _, _ := h2.Handle(e.msg(cA, dhcpv6.MessageTypeRenew, cA.ia(ip)), peerA6, t06.Add(time.Minute))
	if len(c3) != 1 || c3[0].IP.String() != ip {
		t.Errorf("renew after restart: %v", resp)
	}
}

// TestHandler6Corpus serves every DHCPv6 network of libvirt's
// networkxml2confdata corpus: each <host id> and <host name> gets its
// address, the first Solicit gets a range address.
func TestHandler6Corpus(t *testing.T) {
	dir := os.Getenv("VNETD_LIBVIRT_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "conformance", "libvirt")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "tests", "networkxml2confdata", "dhcp6*.xml"))
	if len(files) == 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("libvirt corpus not found at %s", dir)
		}
		t.Skipf("libvirt corpus not found at %s", dir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			n := parseNet6(t, string(data), nil)
			h, err := NewHandler6(n, serverID6)
			if err != nil {
				t.Fatal(err)
			}
			e := &env6{t: t, h: h, now: t06}
			for i, host := range ip6(n).DHCP.Hosts {
				c := tcl6{iaid: uint32(i + 1), duid: &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}}}
				if host.ID != "" {
					c.duid = mustDUID6(host.ID)
				} else {
					c.fqdn = host.Name
				}
				_, commits, _, err := h.Handle(e.msg(c, dhcpv6.MessageTypeRequest, c.ia()), peerA6, t06)
				if err != nil || len(commits) != 1 || commits[0].IP != host.IP {
					t.Errorf("host %d (%s %s): %v %v, want %s", i+1, host.ID, host.Name, commits, err, host.IP)
				}
			}
			resp, _, _, err := h.Handle(e.msg(cA, dhcpv6.MessageTypeSolicit, cA.ia()), peerA6, t06)
			wantAddr := len(ip6(n).DHCP.Ranges) > 0
			gotAddr := err == nil && resp != nil && resp.Options.OneIANA() != nil && resp.Options.OneIANA().Options.OneAddress() != nil
			if gotAddr != wantAddr {
				t.Errorf("solicit: %v %v (want an address: %v)", resp, err, wantAddr)
			}
		})
	}
}

func labels6(name string) *rfc1035label.Labels {
	return &rfc1035label.Labels{Labels: []string{strings.TrimSuffix(name, ".")}}
}
