package dnsd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/internal/nettest"
	"github.com/vnetd/vnetd/leases"
)

// lab is three namespaces: "host" with the network's bridge and the server
// under test, "guest" plugged into the bridge, and "up" (an uplink of the
// host, not on the network) with two upstream DNS servers.
//
//	guest eth0 10.55.0.2, fd00:55::2 ── bridge 10.55.0.1, fd00:55::1 (host)
//	host vup 10.56.0.1, fd00:56::1 ── up eth0 10.56.0.2 (resolv.conf), .3 (corp.test)
type lab struct {
	t      *testing.T
	host   string
	guest  string
	up     string
	bridge string
	net    *conf.Network
	store  *leases.Store
	srv    *Server
	ups    map[string]*labUpstream // by address
}

const labXML = `<network>
  <name>lab</name>
  <forward mode='nat'/>
  <bridge name='%s'/>
  <domain name='lab.test'/>
  <dns>
    <forwarder domain='corp.test' addr='10.56.0.3'/>
    <forwarder domain='quiet.test'/>
    <txt name='info.lab.test' value='hello,world'/>
    <srv service='http' protocol='tcp' target='web.lab.test' port='8080' priority='1' weight='2'/>
    <host ip='10.55.0.10'><hostname>web</hostname></host>
    <host ip='fd00:55::10'><hostname>web</hostname></host>
  </dns>
  <ip address='10.55.0.1' prefix='24' localPtr='yes'>
    <dhcp>
      <range start='10.55.0.100' end='10.55.0.200'/>
      <host mac='52:54:00:aa:bb:01' name='fixed' ip='10.55.0.20'/>
    </dhcp>
  </ip>
  <ip family='ipv6' address='fd00:55::1' prefix='64'/>
</network>`

// newLab builds the lab; with dad the bridge's IPv6 address goes through
// DAD after the server bound it (IPV6_FREEBIND), otherwise it is usable at
// once.
func newLab(t *testing.T, dad bool) *lab {
	t.Helper()
	nettest.SkipUnlessRoot(t)
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("needs dig (dnsutils)")
	}
	l := &lab{t: t, ups: map[string]*labUpstream{}}
	l.host = nettest.NewNS(t, "dnsh")
	l.guest = nettest.NewNS(t, "dnsg")
	l.up = nettest.NewNS(t, "dnsu")
	l.bridge = nettest.Unique("brd", 15)
	must := func(args ...string) { nettest.Must(t, "ip", args...) }
	must("-n", l.host, "link", "add", l.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
	must("-n", l.host, "link", "set", l.bridge, "up")
	nettest.Veth(t, l.host, "vg", l.guest, "eth0")
	must("-n", l.host, "link", "set", "vg", "master", l.bridge)
	must("-n", l.guest, "addr", "add", "10.55.0.2/24", "dev", "eth0")
	must("-n", l.guest, "addr", "add", "fd00:55::2/64", "dev", "eth0", "nodad")
	nettest.Veth(t, l.host, "vup", l.up, "eth0")
	must("-n", l.host, "addr", "add", "10.56.0.1/24", "dev", "vup")
	must("-n", l.host, "addr", "add", "fd00:56::1/64", "dev", "vup", "nodad")
	for _, a := range []string{"10.56.0.2/24", "10.56.0.3/24"} {
		must("-n", l.up, "addr", "add", a, "dev", "eth0")
	}
	must("-n", l.up, "addr", "add", "fd00:56::2/64", "dev", "eth0", "nodad")
	must("-n", l.up, "route", "add", "10.55.0.0/24", "via", "10.56.0.1")
	must("-n", l.up, "route", "add", "fd00:55::/64", "via", "fd00:56::1")
	for _, a := range []string{"10.56.0.2", "10.56.0.3"} {
		l.ups[a] = startLabUpstream(t, l.up, a)
	}
	must("-n", l.host, "addr", "add", "10.55.0.1/24", "dev", l.bridge)
	if !dad {
		must("-n", l.host, "addr", "add", "fd00:55::1/64", "dev", l.bridge, "nodad")
	}

	l.net = l.fresh()
	var err error
	l.store, err = leases.Open(filepath.Join(t.TempDir(), "leases.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.store.Close() })
	l.srv = l.newServer()
	if err := nettest.Do(l.host, func() error { return l.srv.Start(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.srv.Close() })
	if !dad {
		return l
	}
	// The address comes after the server bound it; it receives once DAD
	// is over.
	must("-n", l.host, "addr", "add", "fd00:55::1/64", "dev", l.bridge)
	l.waitFor("IPv6 DAD on the bridge", func() bool {
		out, _ := nettest.In(l.host, "ip", "-6", "addr", "show", "dev", l.bridge, "tentative")
		return !strings.Contains(out, "fd00:55::1")
	})
	return l
}

// fresh is a new copy of the lab's network definition.
func (l *lab) fresh() *conf.Network {
	n, err := conf.Parse([]byte(fmt.Sprintf(labXML, l.bridge)))
	if err != nil {
		l.t.Fatal(err)
	}
	return n
}

// newServer makes a server of the lab network, forwarding from the host
// namespace.
func (l *lab) newServer() *Server {
	l.t.Helper()
	resolv := filepath.Join(l.t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 10.56.0.2\n"), 0o644); err != nil {
		l.t.Fatal(err)
	}
	s, err := New(Config{Network: l.net, Bridge: l.bridge, Leases: l.store, ResolvConf: resolv, Log: testLogger(l.t)})
	if err != nil {
		l.t.Fatal(err)
	}
	s.h.fwd.timeout = 500 * time.Millisecond
	host := l.host
	// The test's goroutines run in the root namespace; the daemon's run
	// in the one it serves.
	s.h.fwd.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := nettest.Do(host, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return s
}

// labUpstream is a DNS server in the "up" namespace: A records under
// upstream.test and corp.test are its own address, PTR queries get
// NXDOMAIN, anything else NXDOMAIN with an SOA.
type labUpstream struct {
	addr string
	mu   sync.Mutex
	got  []string // "name TYPE"
}

func startLabUpstream(t *testing.T, ns, addr string) *labUpstream {
	u := &labUpstream{addr: addr}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		q := r.Question[0]
		u.mu.Lock()
		u.got = append(u.got, strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype])
		u.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		name := strings.ToLower(q.Name)
		if q.Qtype == dns.TypeA && (strings.HasSuffix(name, "upstream.test.") || strings.HasSuffix(name, "corp.test.") || dns.CountLabel(name) == 1) {
			rr, _ := dns.NewRR(q.Name + " 600 IN A " + addr)
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
			soa, _ := dns.NewRR(". 900 IN SOA ns. host. 1 2 3 4 60")
			m.Ns = append(m.Ns, soa)
		}
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(1232, opt.Do())
		}
		w.WriteMsg(m)
	})
	var pc net.PacketConn
	var ln net.Listener
	if err := nettest.Do(ns, func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", addr+":53"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", addr+":53")
		return err
	}); err != nil {
		t.Fatalf("upstream %s: %v", addr, err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

func (u *labUpstream) saw(q string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Contains(u.got, q)
}

func (u *labUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.got)
}

// dig asks from namespace ns and returns the status and the answer
// section as "name TYPE data" lines.
func (l *lab) dig(ns string, args ...string) (string, []string) {
	l.t.Helper()
	out, err := nettest.In(ns, "dig", append([]string{"+time=2", "+tries=1", "+noall", "+comments", "+answer"}, args...)...)
	if err != nil {
		l.t.Fatalf("dig %v: %v", args, err)
	}
	status := ""
	var answers []string
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "status: "); i >= 0 {
			status = strings.TrimSuffix(strings.Fields(line[i+len("status: "):])[0], ",")
			continue
		}
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 5 {
			answers = append(answers, strings.Join(append([]string{f[0], f[3]}, f[4:]...), " "))
		}
	}
	return status, answers
}

// TestLabRecords: dig from a guest, over IPv4 and IPv6, UDP and TCP, for
// every kind of local record, and lease hostnames coming and going.
func TestLabRecords(t *testing.T) {
	l := newLab(t, true)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"web.lab.test", "A"}, []string{"web.lab.test. A 10.55.0.10"}},
		{[]string{"web", "AAAA"}, []string{"web. AAAA fd00:55::10"}},
		{[]string{"-x", "10.55.0.10"}, []string{"10.0.55.10.in-addr.arpa. PTR web.lab.test."}},
		{[]string{"-x", "fd00:55::10"}, []string{reverse(t, "fd00:55::10") + " PTR web.lab.test."}},
		{[]string{"fixed.lab.test", "A"}, []string{"fixed.lab.test. A 10.55.0.20"}},
		{[]string{"-x", "10.55.0.20"}, []string{"20.0.55.10.in-addr.arpa. PTR fixed.lab.test."}},
		{[]string{"info.lab.test", "TXT"}, []string{`info.lab.test. TXT "hello" "world"`}},
		{[]string{"_http._tcp.lab.test", "SRV"}, []string{"_http._tcp.lab.test. SRV 1 2 8080 web.lab.test."}},
	}
	for _, server := range []string{"@10.55.0.1", "@fd00:55::1"} {
		for _, transport := range []string{"+notcp", "+tcp"} {
			for _, tc := range tests {
				args := append([]string{server, transport}, tc.args...)
				status, got := l.dig(l.guest, args...)
				if status != "NOERROR" || !slices.Equal(got, tc.want) {
					t.Errorf("dig %v: %s %q, want NOERROR %q", args, status, got, tc.want)
				}
			}
		}
	}

	// A lease appears: its hostname is served, with its domain, both
	// families; it goes away with the lease.
	ctx := context.Background()
	for _, ls := range []leases.Lease{
		{Network: "lab", Kind: leases.V4, IP: netip.MustParseAddr("10.55.0.150"), Hostname: "vm1", Expiry: time.Now().Add(time.Hour)},
		{Network: "lab", Kind: leases.V6, IP: netip.MustParseAddr("fd00:55::150"), Hostname: "vm1", Expiry: time.Now().Add(time.Hour)},
	} {
		if err := l.store.Put(ctx, ls); err != nil {
			t.Fatal(err)
		}
	}
	l.waitFor("lease hostname served", func() bool {
		_, a4 := l.dig(l.guest, "@10.55.0.1", "vm1.lab.test", "A")
		_, a6 := l.dig(l.guest, "@fd00:55::1", "vm1", "AAAA")
		_, ptr := l.dig(l.guest, "@10.55.0.1", "-x", "10.55.0.150")
		return slices.Equal(a4, []string{"vm1.lab.test. A 10.55.0.150"}) && slices.Equal(a6, []string{"vm1. AAAA fd00:55::150"}) &&
			slices.Equal(ptr, []string{"150.0.55.10.in-addr.arpa. PTR vm1.lab.test."})
	})
	if err := l.store.Delete(ctx, "lab", netip.MustParseAddr("10.55.0.150")); err != nil {
		t.Fatal(err)
	}
	l.waitFor("lease hostname gone", func() bool {
		status, a := l.dig(l.guest, "@10.55.0.1", "vm1.lab.test", "A")
		return status == "NOERROR" && len(a) == 0 // the v6 lease still owns the name
	})
}

func (l *lab) waitFor(what string, cond func() bool) {
	l.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			l.t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLabForwarding checks what reaches the upstream servers, and live
// updates of the forwarding rules.
func TestLabForwarding(t *testing.T) {
	l := newLab(t, false)
	resolv, corp := l.ups["10.56.0.2"], l.ups["10.56.0.3"]
	ask := func(args ...string) (string, []string) {
		return l.dig(l.guest, append([]string{"@10.55.0.1"}, args...)...)
	}
	check := func(what string, ok bool) {
		t.Helper()
		if !ok {
			t.Error(what)
		}
	}

	status, a := ask("www.upstream.test", "A")
	check("resolv.conf's upstream answers", status == "NOERROR" && slices.Equal(a, []string{"www.upstream.test. A 10.56.0.2"}))
	check("resolv.conf's upstream was asked", resolv.saw("www.upstream.test. A"))
	n := resolv.count()
	status, a = ask("WWW.upstream.test", "A")
	check("cached answer", status == "NOERROR" && len(a) == 1 && resolv.count() == n)

	status, a = ask("x.corp.test", "A", "+dnssec")
	check("domain forwarder answers", status == "NOERROR" && slices.Equal(a, []string{"x.corp.test. A 10.56.0.3"}))
	check("only the domain forwarder was asked", corp.saw("x.corp.test. A") && !resolv.saw("x.corp.test. A"))

	status, _ = ask("x.quiet.test", "A")
	check("domain-only forwarder: NXDOMAIN locally", status == "NXDOMAIN" && !resolv.saw("x.quiet.test. A") && !corp.saw("x.quiet.test. A"))

	status, a = ask("plainname", "A")
	check("plain names forwarded by default", status == "NOERROR" && len(a) == 1 && resolv.saw("plainname. A"))

	status, _ = ask("-x", "10.55.0.99")
	check("localPtr subnet answered locally", status == "NXDOMAIN" && !resolv.saw("99.0.55.10.in-addr.arpa. PTR"))
	status, _ = ask("-x", "fd00:55::99")
	check("v6 subnet without localPtr forwarded", status == "NXDOMAIN" && resolv.saw(reverse(t, "fd00:55::99")+" PTR"))

	status, _ = ask("nope.lab.test", "A")
	check("the network's domain is forwarded without localOnly", status == "NXDOMAIN" && resolv.saw("nope.lab.test. A"))

	// net-update: localOnly, forwardPlainNames='no'.
	n2 := l.fresh()
	n2.Domain.LocalOnly = conf.TristateYes
	n2.DNS.ForwardPlainNames = conf.TristateNo
	if err := l.srv.Update(n2); err != nil {
		t.Fatal(err)
	}
	status, _ = ask("nope2.lab.test", "A")
	check("localOnly domain: NXDOMAIN locally", status == "NXDOMAIN" && !resolv.saw("nope2.lab.test. A"))
	status, _ = ask("plain2", "A")
	check("forwardPlainNames='no': NXDOMAIN locally", status == "NXDOMAIN" && !resolv.saw("plain2. A"))
	status, a = ask("web", "A")
	check("local plain names still answered", status == "NOERROR" && len(a) == 1)

	// Isolated: resolv.conf is never used; the domain forwarder still is.
	n3 := l.fresh()
	n3.Forward = conf.Forward{Mode: conf.ForwardNone}
	if err := l.srv.Update(n3); err != nil {
		t.Fatal(err)
	}
	before := resolv.count()
	status, _ = ask("www2.upstream.test", "A")
	check("isolated network never forwards to resolv.conf's servers", status == "REFUSED" && resolv.count() == before)
	status, a = ask("y.corp.test", "A")
	check("isolated network still uses its domain forwarder", status == "NOERROR" && len(a) == 1)
}

// TestLabRefusesOutsideClients: a client on the bridge whose address is
// not the network's gets REFUSED, for local and forwarded names alike.
func TestLabRefusesOutsideClients(t *testing.T) {
	l := newLab(t, false)
	// The guest also has addresses of no subnet of the network, which the
	// host routes back through it.
	must := func(args ...string) { nettest.Must(t, "ip", args...) }
	must("-n", l.guest, "addr", "add", "10.57.0.2/32", "dev", "eth0")
	must("-n", l.guest, "addr", "add", "2001:db8:57::2/128", "dev", "eth0", "nodad")
	must("-n", l.host, "route", "add", "10.57.0.0/24", "via", "10.55.0.2")
	must("-n", l.host, "route", "add", "2001:db8:57::/64", "via", "fd00:55::2")
	for _, server := range []string{"@10.55.0.1", "@fd00:55::1"} {
		src := "-b10.57.0.2"
		if strings.Contains(server, ":") {
			src = "-b2001:db8:57::2"
		}
		for _, name := range []string{"web.lab.test", "www.upstream.test"} {
			for _, transport := range []string{"+notcp", "+tcp"} {
				if status, a := l.dig(l.guest, server, src, transport, name, "A"); status != "REFUSED" || len(a) != 0 {
					t.Errorf("outside client, %s %s %s: %s %v", server, transport, name, status, a)
				}
			}
		}
	}
	if l.ups["10.56.0.2"].saw("www.upstream.test. A") {
		t.Error("a query from outside was forwarded")
	}
	if st := l.srv.Stats(); st.Refused != 8 {
		t.Errorf("Refused %d, want 8", st.Refused)
	}
}

// silent reports whether dig from ns got no answer at all: it timed out,
// or the connection was refused.
func (l *lab) silent(ns string, args ...string) bool {
	l.t.Helper()
	out, err := nettest.In(ns, "dig", append([]string{"+time=1", "+tries=1", "+noall", "+comments"}, args...)...)
	if err == nil {
		l.t.Logf("dig %v answered:\n%s", args, out)
		return false
	}
	return strings.Contains(out, "timed out") || strings.Contains(out, "connection refused") ||
		strings.Contains(out, "no servers could be reached")
}

// TestLabUplinkNeighbourIgnored: a neighbour on another interface of the
// host (the uplink), with link-local addresses, that routes to the
// network's addresses through the host gets nothing, over UDP or TCP, for
// local or forwarded names; the UDP queries are counted. Guests, a
// link-local one included, and the host itself are answered.
func TestLabUplinkNeighbourIgnored(t *testing.T) {
	l := newLab(t, false)
	must := func(args ...string) { nettest.Must(t, "ip", args...) }
	nb := nettest.NewNS(t, "dnsn")
	nettest.Veth(t, l.host, "vnb", nb, "eth0")
	must("-n", l.host, "addr", "add", "169.254.7.1/16", "dev", "vnb")
	must("-n", l.host, "addr", "add", "fe80::7:1/64", "dev", "vnb", "nodad")
	must("-n", nb, "addr", "add", "169.254.7.2/16", "dev", "eth0")
	must("-n", nb, "addr", "add", "fe80::7:2/64", "dev", "eth0", "nodad")
	must("-n", nb, "route", "add", "10.55.0.0/24", "via", "169.254.7.1", "src", "169.254.7.2")
	must("-n", nb, "route", "add", "fd00:55::/64", "via", "fe80::7:1", "dev", "eth0", "src", "fe80::7:2")
	// The neighbour can reach the server's addresses: another service
	// of the host on them accepts its connections.
	for _, a := range []string{"10.55.0.1:8053", "[fd00:55::1]:8053"} {
		var ln net.Listener
		if err := nettest.Do(l.host, func() (err error) { ln, err = net.Listen("tcp", a); return err }); err != nil {
			t.Fatal(err)
		}
		err := nettest.Do(nb, func() error {
			c, err := net.DialTimeout("tcp", a, 2*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		ln.Close()
		if err != nil {
			t.Fatalf("the neighbour cannot reach %s at all: %v", a, err)
		}
	}

	for _, server := range []string{"@10.55.0.1", "@fd00:55::1"} {
		for _, name := range []string{"web.lab.test", "www.upstream.test"} {
			for _, transport := range []string{"+notcp", "+tcp"} {
				if !l.silent(nb, server, transport, name, "A") {
					t.Errorf("neighbour on the uplink, %s %s %s: answered", server, transport, name)
				}
			}
		}
	}
	if l.ups["10.56.0.2"].saw("www.upstream.test. A") {
		t.Error("a query from the uplink was forwarded")
	}
	st := l.srv.Stats()
	if st.WrongInterface != 4 {
		t.Errorf("WrongInterface %d, want 4 (the UDP queries)", st.WrongInterface)
	}
	if st.Refused != 0 {
		t.Errorf("Refused %d: queries from the uplink reached the handler", st.Refused)
	}

	// Still answered: a guest, a guest asking from its link-local
	// address, and the host itself.
	must("-n", l.guest, "addr", "add", "fe80::55:2/64", "dev", "eth0", "nodad")
	for _, c := range []struct {
		ns   string
		args []string
	}{
		{l.guest, []string{"@10.55.0.1"}},
		{l.guest, []string{"@fd00:55::1"}},
		{l.host, []string{"@10.55.0.1"}},
		{l.host, []string{"@fd00:55::1"}},
	} {
		for _, transport := range []string{"+notcp", "+tcp"} {
			args := append(append([]string{transport}, c.args...), "web.lab.test", "A")
			if status, a := l.dig(c.ns, args...); status != "NOERROR" || len(a) != 1 {
				t.Errorf("dig %v from %s: %s %v", args, c.ns, status, a)
			}
		}
	}
	// A numeric zone: Go's cache of interface names is the process's, not
	// the namespace's.
	var eth0 *net.Interface
	if err := nettest.Do(l.guest, func() (err error) { eth0, err = net.InterfaceByName("eth0"); return err }); err != nil {
		t.Fatal(err)
	}
	zone := strconv.Itoa(eth0.Index)
	for _, network := range []string{"udp6", "tcp6"} {
		var local net.Addr = &net.UDPAddr{IP: net.ParseIP("fe80::55:2"), Zone: zone}
		if network == "tcp6" {
			local = &net.TCPAddr{IP: net.ParseIP("fe80::55:2"), Zone: zone}
		}
		c := dns.Client{Net: network, Dialer: &net.Dialer{LocalAddr: local}, Timeout: 2 * time.Second}
		var m *dns.Msg
		if err := nettest.Do(l.guest, func() (err error) {
			m, _, err = c.Exchange(newQuery("web.lab.test.", dns.TypeA), "[fd00:55::1]:53")
			return err
		}); err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
			t.Errorf("link-local guest over %s: %v %v", network, err, m)
		}
	}
	if got := l.srv.Stats().WrongInterface; got != 4 {
		t.Errorf("WrongInterface %d after the allowed clients, want still 4", got)
	}
}

// TestLabTCPBounds: a guest cannot hold more TCP connections than its
// share, nor all guests together more than the server's bound; the ones
// beyond are closed at once and counted, and a slot freed is taken again.
func TestLabTCPBounds(t *testing.T) {
	l := newLab(t, false)
	l.srv.Close()
	s := l.newServer()
	s.tcpLim = newTCPLimiter(5, 3)
	if err := nettest.Do(l.host, func() error { return s.Start(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nettest.Must(t, "ip", "-n", l.guest, "addr", "add", "10.55.0.3/24", "dev", "eth0")
	q, _ := newQuery("web.lab.test.", dns.TypeA).Pack()
	msg := append([]byte{byte(len(q) >> 8), byte(len(q))}, q...)
	// open connects from src and reports whether the connection is
	// served: it is answered rather than closed. A connection refused is
	// reset as soon as it is accepted, which may be before the client's
	// connect returned.
	open := func(src string) (net.Conn, bool) {
		t.Helper()
		var c net.Conn
		if err := nettest.Do(l.guest, func() error {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
			var err error
			c, err = d.Dial("tcp4", "10.55.0.1:53")
			return err
		}); err != nil {
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("from %s: %v", src, err)
			}
			return nil, false
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write(msg); err != nil {
			return c, false
		}
		var n [2]byte
		_, err := io.ReadFull(c, n[:])
		return c, err == nil
	}
	var held []net.Conn
	for i := range 4 {
		c, ok := open("10.55.0.2")
		if ok != (i < 3) {
			t.Fatalf("connection %d from 10.55.0.2 served: %v, want %v", i, ok, i < 3)
		}
		if ok {
			held = append(held, c)
		}
	}
	for i := range 3 {
		if _, ok := open("10.55.0.3"); ok != (i < 2) {
			t.Fatalf("connection %d from 10.55.0.3 served: %v, want %v (5 in all)", i, ok, i < 2)
		}
	}
	st := s.Stats()
	if st.TCPRejectedPerClient != 1 || st.TCPRejectedGlobal != 1 || st.TCPConnections != 5 {
		t.Errorf("rejected %d per client, %d global, %d open; want 1, 1, 5", st.TCPRejectedPerClient, st.TCPRejectedGlobal, st.TCPConnections)
	}
	held[0].Close()
	l.waitFor("the slot given back", func() bool { return s.Stats().TCPConnections == 4 })
	if _, ok := open("10.55.0.2"); !ok {
		t.Error("a connection after one was closed is not served")
	}
}

// TestLabPortTaken: another process on port 53 of a bridge address makes
// Start fail, saying so, and binding nothing.
func TestLabPortTaken(t *testing.T) {
	l := newLab(t, false)
	// The lab's server holds the port: a second one must fail.
	other := l.newServer()
	err := nettest.Do(l.host, func() error { return other.Start(context.Background()) })
	if err == nil || !strings.Contains(err.Error(), "port 53 on 10.55.0.1 is taken by another process") {
		t.Fatalf("second server: %v", err)
	}
	t.Log(err)
	l.srv.Close()

	// A foreign socket on the IPv6 address only.
	var pc net.PacketConn
	if err := nettest.Do(l.host, func() error {
		var err error
		pc, err = net.ListenPacket("udp6", "[fd00:55::1]:53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	err = nettest.Do(l.host, func() error { return other.Start(context.Background()) })
	if err == nil || !strings.Contains(err.Error(), "port 53 on fd00:55::1 is taken by another process") {
		t.Fatalf("with a foreign socket: %v", err)
	}
	// Nothing was left bound on the IPv4 address: the port is free there.
	if err := nettest.Do(l.host, func() error {
		c, err := net.ListenPacket("udp4", "10.55.0.1:53")
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Errorf("failed Start left 10.55.0.1:53 bound: %v", err)
	}
	pc.Close()
	if err := nettest.Do(l.host, func() error { return other.Start(context.Background()) }); err != nil {
		t.Fatalf("Start once the port is free: %v", err)
	}
	defer other.Close()
	if status, a := l.dig(l.guest, "@fd00:55::1", "web.lab.test", "AAAA"); status != "NOERROR" || len(a) != 1 {
		t.Errorf("after retry: %s %v", status, a)
	}
}

// TestLabUpdateDropsNothing: queries keep flowing, all answered, while the
// zone is replaced again and again.
func TestLabUpdateDropsNothing(t *testing.T) {
	l := newLab(t, false)
	var conn *net.UDPConn
	if err := nettest.Do(l.guest, func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.55.0.1:53")))
		conn = c
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			n := l.fresh()
			n.DNS.TXTs[0].Value = fmt.Sprintf("version %d", i)
			if err := l.srv.Update(n); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	const total = 2000
	lost := 0
	buf := make([]byte, 1500)
	for i := range total {
		q := newQuery("web.lab.test.", dns.TypeA)
		q.Id = uint16(i)
		pkt, _ := q.Pack()
		conn.Write(pkt)
		conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				lost++
				break
			}
			m := new(dns.Msg)
			if m.Unpack(buf[:n]) == nil && m.Id == uint16(i) {
				if len(m.Answer) != 1 {
					t.Errorf("query %d: %v", i, m)
				}
				break
			}
		}
	}
	stop.Store(true)
	<-done
	if lost != 0 {
		t.Errorf("%d of %d queries lost during updates", lost, total)
	}
}
