package dnsd

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	"github.com/vnetd/vnetd/leases"
)

func reverse(t testing.TB, ip string) string {
	t.Helper()
	r, err := dns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestLocalAndForwarded asks the test network's server every kind of
// question a guest asks, and checks the answer and which upstream (if
// any) saw the question.
func TestLocalAndForwarded(t *testing.T) {
	f := newFixture(t, testXML, testLeases())
	resolvUp := newUpstream(t, nil)
	corpUp := newUpstream(t, nil)
	f.route("198.51.100.1", resolvUp)
	f.route("192.0.2.53", corpUp)

	const (
		none   = ""
		resolv = "resolv"
		corp   = "corp"
	)
	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		src     netip.Addr
		tcp     bool
		rcode   int
		aa      bool
		answers []string
		extra   []string
		via     string
	}{
		{name: "dns host, plain", qname: "myhost.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"myhost. 0 A 192.168.122.5"}},
		{name: "dns host, expanded, any case", qname: "MyHost.Example.COM.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"myhost.example.com. 0 A 192.168.122.5"}},
		{name: "dns host AAAA", qname: "myhost.example.com.", qtype: dns.TypeAAAA,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"myhost.example.com. 0 AAAA fd00:1::5"}},
		{name: "dns host AAAA over TCP from v6", qname: "myhost.example.com.", qtype: dns.TypeAAAA, src: guest6, tcp: true,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"myhost.example.com. 0 AAAA fd00:1::5"}},
		{name: "dns host alias", qname: "myalias.example.com.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"myalias.example.com. 0 A 192.168.122.5"}},
		{name: "merged host line", qname: "second.example.com.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"second.example.com. 0 A 192.168.122.5"}},
		{name: "dotted hostname is not expanded", qname: "dotted.name.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"dotted.name. 0 A 192.168.122.5"}},
		{name: "dotted hostname with domain is forwarded", qname: "dotted.name.example.com.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, answers: []string{"dotted.name.example.com. 300 A 198.18.0.1"}, via: resolv},
		{name: "PTR v4 names the first hostname", qname: reverse(t, "192.168.122.5"), qtype: dns.TypePTR,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"5.122.168.192.in-addr.arpa. 0 PTR myhost.example.com."}},
		{name: "PTR v6", qname: reverse(t, "fd00:1::5"), qtype: dns.TypePTR,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{reverse(t, "fd00:1::5") + " 0 PTR myhost.example.com."}},
		{name: "static DHCP host", qname: "static1.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"static1. 0 A 192.168.122.10"}},
		{name: "static DHCP host with domain", qname: "static1.example.com.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"static1.example.com. 0 A 192.168.122.10"}},
		{name: "static DHCP host PTR", qname: reverse(t, "192.168.122.10"), qtype: dns.TypePTR,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"10.122.168.192.in-addr.arpa. 0 PTR static1.example.com."}},
		{name: "static DHCP host with its own domain", qname: "b.other.org.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"b.other.org. 0 A 192.168.122.11"}},
		{name: "static DHCP host with its own domain, plain", qname: "b.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"b. 0 A 192.168.122.11"}},
		{name: "lease hostname", qname: "guest1.example.com.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"guest1.example.com. 0 A 192.168.122.150"}},
		{name: "lease hostname v6, plain", qname: "guest1.", qtype: dns.TypeAAAA,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"guest1. 0 AAAA fd00:1::150"}},
		{name: "lease PTR", qname: reverse(t, "192.168.122.150"), qtype: dns.TypePTR,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"150.122.168.192.in-addr.arpa. 0 PTR guest1.example.com."}},
		{name: "infinite lease", qname: "forever.example.com.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"forever.example.com. 0 A 192.168.122.154"}},
		{name: "lease may not take a static name", qname: reverse(t, "192.168.122.152"), qtype: dns.TypePTR,
			rcode: dns.RcodeNameError},
		{name: "expired lease is gone (and the plain name forwarded)", qname: "old.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, answers: []string{"old. 300 A 198.18.0.1"}, via: resolv},
		{name: "TXT", qname: "example.", qtype: dns.TypeTXT,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{`example. 0 TXT "example value" "second"`}},
		{name: "SRV minimal: network domain, port 1, no target", qname: "_name._tcp.example.com.", qtype: dns.TypeSRV,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"_name._tcp.example.com. 0 SRV 0 0 1 ."}},
		{name: "SRV with domain and local target", qname: "_ldap._tcp.corp.test.", qtype: dns.TypeSRV,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"_ldap._tcp.corp.test. 0 SRV 10 5 389 myhost.example.com."},
			extra: []string{"myhost.example.com. 0 A 192.168.122.5", "myhost.example.com. 0 AAAA fd00:1::5"}},
		{name: "SRV positional defaults", qname: "_name5._udp.example.com.", qtype: dns.TypeSRV,
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"_name5._udp.example.com. 0 SRV 55 555 1 t5.example.com."}},
		{name: "other type of a local name: NODATA", qname: "myhost.example.com.", qtype: dns.TypeMX,
			rcode: dns.RcodeSuccess, aa: true},
		{name: "forwarded to resolv.conf's server", qname: "www.example.org.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, answers: []string{"www.example.org. 300 A 198.18.0.1"}, via: resolv},
		{name: "domain forwarder", qname: "x.corp.test.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, answers: []string{"x.corp.test. 300 A 198.18.0.1"}, via: corp},
		{name: "domain-only forwarder: local only", qname: "x.quiet.test.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError},
		{name: "localPtr: reverse of the subnet is local", qname: reverse(t, "192.168.122.99"), qtype: dns.TypePTR,
			rcode: dns.RcodeNameError},
		{name: "localPtr: the reverse zone apex is local", qname: "122.168.192.in-addr.arpa.", qtype: dns.TypeSOA,
			rcode: dns.RcodeSuccess},
		{name: "no localPtr on the v6 subnet: forwarded", qname: reverse(t, "fd00:1::99"), qtype: dns.TypePTR,
			rcode: dns.RcodeNameError, via: resolv},
		{name: "outside client: local name refused", qname: "myhost.example.com.", qtype: dns.TypeA, src: outside,
			rcode: dns.RcodeRefused},
		{name: "outside client: never forwarded", qname: "www.example.net.", qtype: dns.TypeA, src: outside, tcp: true,
			rcode: dns.RcodeRefused},
		{name: "host itself", qname: "www.example.net.", qtype: dns.TypeA, src: netip.MustParseAddr("192.168.122.1"),
			rcode: dns.RcodeSuccess, answers: []string{"www.example.net. 300 A 198.18.0.1"}, via: resolv},
		{name: "loopback", qname: "myhost.", qtype: dns.TypeA, src: netip.MustParseAddr("127.0.0.1"),
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"myhost. 0 A 192.168.122.5"}},
		{name: "link-local v6 client", qname: "myhost.", qtype: dns.TypeAAAA, src: netip.MustParseAddr("fe80::5054:ff:fe00:1"),
			rcode: dns.RcodeSuccess, aa: true, answers: []string{"myhost. 0 AAAA fd00:1::5"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src
			if !src.IsValid() {
				src = guest4
			}
			before := map[string]int{resolv: len(resolvUp.queries()), corp: len(corpUp.queries())}
			m := f.ask(src, tc.tcp, newQuery(tc.qname, tc.qtype))
			if m.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
			}
			if m.Authoritative != tc.aa {
				t.Errorf("AA %v, want %v", m.Authoritative, tc.aa)
			}
			if !m.RecursionAvailable || !m.RecursionDesired {
				t.Errorf("RA %v RD %v, want both", m.RecursionAvailable, m.RecursionDesired)
			}
			if len(m.Question) != 1 || m.Question[0].Name != tc.qname {
				t.Errorf("question %v, want %s as asked", m.Question, tc.qname)
			}
			if diff := cmp.Diff(tc.answers, ans(m)); diff != "" {
				t.Errorf("answers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.extra, rrLines(m.Extra)); diff != "" {
				t.Errorf("additional (-want +got):\n%s", diff)
			}
			got := map[string]int{resolv: len(resolvUp.queries()) - before[resolv], corp: len(corpUp.queries()) - before[corp]}
			want := map[string]int{resolv: 0, corp: 0}
			if tc.via != none {
				want[tc.via] = 1
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("upstream queries (-want +got):\n%s", diff)
			}
		})
	}
	st := f.s.Stats()
	if st.Refused != 2 || st.Responses["REFUSED"] != 2 {
		t.Errorf("refused %d, REFUSED answers %d, want 2 and 2", st.Refused, st.Responses["REFUSED"])
	}
	if st.Queries["A"] == 0 || st.Queries["PTR"] == 0 || st.Queries["other"] != 0 {
		t.Errorf("queries by type: %v", st.Queries)
	}
}

// TestPolicies checks libvirt's forwarding rules network by network.
func TestPolicies(t *testing.T) {
	type ask struct {
		qname string
		qtype uint16
		rcode int
		via   string // "", "resolv", "a", "b"
	}
	tests := []struct {
		name string
		xml  string
		asks []ask
	}{
		{
			name: "localOnly domain and forwardPlainNames=no",
			xml: `<network><name>t2</name><forward mode='nat'/><bridge name='vbr-t2'/>
  <domain name='lan.test' localOnly='yes'/>
  <dns forwardPlainNames='no'>
    <srv service='x' protocol='tcp' target='h.lan.test'/>
    <host ip='10.9.0.5'><hostname>h</hostname></host>
  </dns>
  <ip address='10.9.0.1' prefix='24'/></network>`,
			asks: []ask{
				{"h.lan.test.", dns.TypeA, dns.RcodeSuccess, ""},
				{"nope.lan.test.", dns.TypeA, dns.RcodeNameError, ""},
				{"deep.nope.lan.test.", dns.TypeAAAA, dns.RcodeNameError, ""},
				{"lan.test.", dns.TypeSOA, dns.RcodeSuccess, ""}, // exists: NODATA
				{"_tcp.lan.test.", dns.TypeSRV, dns.RcodeSuccess, ""},
				{"plainname.", dns.TypeA, dns.RcodeNameError, ""},
				{"h.", dns.TypeA, dns.RcodeSuccess, ""},
				{"www.example.org.", dns.TypeA, dns.RcodeSuccess, "resolv"},
			},
		},
		{
			name: "isolated: resolv.conf is never used",
			xml: `<network><name>t3</name><bridge name='vbr-t3'/>
  <ip address='10.9.1.1' prefix='24'/></network>`,
			asks: []ask{
				{"www.example.org.", dns.TypeA, dns.RcodeRefused, ""},
				{"plain.", dns.TypeA, dns.RcodeRefused, ""},
			},
		},
		{
			name: "isolated with a domain forwarder forwards that domain only",
			xml: `<network><name>t4</name><bridge name='vbr-t4'/>
  <dns><forwarder domain='corp.test' addr='192.0.2.10'/></dns>
  <ip address='10.9.2.1' prefix='24'/></network>`,
			asks: []ask{
				{"x.corp.test.", dns.TypeA, dns.RcodeSuccess, "a"},
				{"www.example.org.", dns.TypeA, dns.RcodeRefused, ""},
			},
		},
		{
			name: "addr-only forwarders replace resolv.conf, in order",
			xml: `<network><name>t5</name><forward mode='nat'/><bridge name='vbr-t5'/>
  <dns><forwarder addr='192.0.2.99'/><forwarder addr='192.0.2.11'/></dns>
  <ip address='10.9.3.1' prefix='24'/></network>`,
			asks: []ask{
				{"www.example.org.", dns.TypeA, dns.RcodeSuccess, "b"},
				{"plain.", dns.TypeA, dns.RcodeSuccess, "b"},
			},
		},
		{
			name: "localOnly beats a forwarder of the same domain",
			xml: `<network><name>t7</name><forward mode='nat'/><bridge name='vbr-t7'/>
  <domain name='corp.test' localOnly='yes'/>
  <dns><forwarder domain='corp.test' addr='192.0.2.10'/></dns>
  <ip address='10.9.4.1' prefix='24'/></network>`,
			asks: []ask{
				{"x.corp.test.", dns.TypeA, dns.RcodeNameError, ""},
				{"www.example.org.", dns.TypeA, dns.RcodeSuccess, "resolv"},
			},
		},
		{
			name: "longest domain wins; localPtr on IPv6",
			xml: `<network><name>t6</name><forward mode='route'/><bridge name='vbr-t6'/>
  <dns>
    <forwarder domain='example.org' addr='192.0.2.10'/>
    <forwarder domain='sub.example.org'/>
    <forwarder domain='deep.sub.example.org' addr='192.0.2.11'/>
  </dns>
  <ip family='ipv6' address='fd00:2::1' prefix='64' localPtr='yes'/></network>`,
			asks: []ask{
				{"www.example.org.", dns.TypeA, dns.RcodeSuccess, "a"},
				{"x.sub.example.org.", dns.TypeA, dns.RcodeNameError, ""},
				{"x.deep.sub.example.org.", dns.TypeA, dns.RcodeSuccess, "b"},
				{"EXAMPLE.ORG.", dns.TypeA, dns.RcodeSuccess, "a"},
				{reverse(t, "fd00:2::99"), dns.TypePTR, dns.RcodeNameError, ""},
				{reverse(t, "fd00:3::99"), dns.TypePTR, dns.RcodeNameError, "resolv"},
				{"www.example.net.", dns.TypeA, dns.RcodeSuccess, "resolv"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.xml, nil)
			ups := map[string]*upstream{"resolv": newUpstream(t, nil), "a": newUpstream(t, nil), "b": newUpstream(t, nil)}
			f.route("198.51.100.1", ups["resolv"])
			f.route("192.0.2.10", ups["a"])
			f.route("192.0.2.11", ups["b"])
			n := f.s.network
			src := n.IPs[0].Address.Next()
			for _, a := range tc.asks {
				before := map[string]int{}
				for k, u := range ups {
					before[k] = len(u.queries())
				}
				m := f.ask(src, false, newQuery(a.qname, a.qtype))
				if m.Rcode != a.rcode {
					t.Errorf("%s %s: rcode %s, want %s", a.qname, dns.TypeToString[a.qtype], dns.RcodeToString[m.Rcode], dns.RcodeToString[a.rcode])
				}
				for k, u := range ups {
					want := 0
					if k == a.via {
						want = 1
					}
					if got := len(u.queries()) - before[k]; got != want {
						t.Errorf("%s %s: upstream %s got %d queries, want %d", a.qname, dns.TypeToString[a.qtype], k, got, want)
					}
				}
			}
		})
	}
}

func TestNewRefusesDisabledDNS(t *testing.T) {
	for _, xml := range []string{
		`<network><name>d1</name><bridge name='vbr-d1'/><dns enable='no'/><ip address='10.9.9.1' prefix='24'/></network>`,
		`<network><name>d2</name><bridge name='vbr-d2'/></network>`,
	} {
		_, err := New(Config{Network: parseNet(t, xml), Bridge: "vbr-d"})
		if !errors.Is(err, ErrDisabled) {
			t.Errorf("New: %v, want ErrDisabled", err)
		}
	}
}

func TestUpdateSwapsZone(t *testing.T) {
	f := newFixture(t, testXML, nil)
	up := newUpstream(t, nil)
	f.route("198.51.100.1", up)
	if m := f.ask(guest4, false, newQuery("newhost.example.com.", dns.TypeA)); len(m.Answer) != 1 || m.Authoritative {
		t.Fatalf("before update: %v", m)
	}
	n := parseNet(t, testXML)
	n.DNS.Hosts = append(n.DNS.Hosts, n.DNS.Hosts[0])
	n.DNS.Hosts[len(n.DNS.Hosts)-1].Hostnames = []string{"newhost"}
	n.DNS.TXTs[0].Value = "changed"
	if err := f.s.Update(n); err != nil {
		t.Fatal(err)
	}
	m := f.ask(guest4, false, newQuery("newhost.example.com.", dns.TypeA))
	if diff := cmp.Diff([]string{"newhost.example.com. 0 A 192.168.122.5"}, ans(m)); diff != "" {
		t.Errorf("after update (-want +got):\n%s", diff)
	}
	m = f.ask(guest4, false, newQuery("example.", dns.TypeTXT))
	if diff := cmp.Diff([]string{`example. 0 TXT "changed"`}, ans(m)); diff != "" {
		t.Errorf("TXT after update (-want +got):\n%s", diff)
	}
	if f.s.Stats().CacheEntries != 0 {
		t.Error("Update kept the cache")
	}
	disabled := parseNet(t, testXML)
	disabled.DNS.Enable = 2 // TristateNo
	if err := f.s.Update(disabled); !errors.Is(err, ErrDisabled) {
		t.Errorf("Update to a disabled DNS: %v, want ErrDisabled", err)
	}
}

func TestLeaseChangesRebuildZone(t *testing.T) {
	f := newFixture(t, testXML, testLeases())
	up := newUpstream(t, nil)
	f.route("198.51.100.1", up)
	lv := f.s.cfg.Leases.(*fakeLeases)
	ls := testLeases()
	ls = slices.DeleteFunc(ls, func(l leases.Lease) bool { return l.Expiry.Equal(t0.Add(time.Hour)) }) // both guest1
	ls = append(ls, leases.Lease{Network: "t1", IP: netip.MustParseAddr("192.168.122.160"), Hostname: "guest2", Expiry: t0.Add(time.Minute)})
	lv.set(ls)
	f.s.reloadLeases()
	if m := f.ask(guest4, false, newQuery("guest2.example.com.", dns.TypeA)); !slices.Equal(ans(m), []string{"guest2.example.com. 0 A 192.168.122.160"}) {
		t.Errorf("new lease: %v", ans(m))
	}
	if m := f.ask(guest4, false, newQuery("guest1.example.com.", dns.TypeA)); m.Authoritative {
		t.Errorf("removed lease still answered: %v", ans(m))
	}
	if next := f.s.h.zone.Load().nextExpiry; !next.Equal(t0.Add(time.Minute)) {
		t.Errorf("next expiry %v, want %v", next, t0.Add(time.Minute))
	}
	// The lease runs out: the rebuild the expiry timer triggers drops it.
	f.advance(time.Minute + time.Second)
	f.s.mu.Lock()
	f.s.rebuildLocked()
	f.s.mu.Unlock()
	if m := f.ask(guest4, false, newQuery("guest2.example.com.", dns.TypeA)); m.Authoritative {
		t.Errorf("expired lease still answered: %v", ans(m))
	}
}
