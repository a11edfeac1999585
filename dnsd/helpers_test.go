package dnsd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/leases"
)

// testXML is the network most tests serve: a NAT network with every kind
// of local record and forwarder.
const testXML = `<network>
  <name>t1</name>
  <forward mode='nat'/>
  <bridge name='vbr-t1'/>
  <domain name='example.com'/>
  <dns>
    <forwarder domain='corp.test' addr='192.0.2.53'/>
    <forwarder domain='corp.test' addr='192.0.2.54'/>
    <forwarder domain='quiet.test'/>
    <txt name='example' value='example value,second'/>
    <srv service='name' protocol='tcp'/>
    <srv service='ldap' protocol='tcp' domain='corp.test' target='myhost.example.com' port='389' priority='10' weight='5'/>
    <srv service='name5' protocol='udp' target='t5.example.com' priority='55' weight='555'/>
    <host ip='192.168.122.5'>
      <hostname>myhost</hostname>
      <hostname>myalias</hostname>
      <hostname>dotted.name</hostname>
    </host>
    <host ip='192.168.122.5'>
      <hostname>second</hostname>
    </host>
    <host ip='fd00:1::5'>
      <hostname>myhost</hostname>
    </host>
  </dns>
  <ip address='192.168.122.1' netmask='255.255.255.0' localPtr='yes'>
    <dhcp>
      <range start='192.168.122.100' end='192.168.122.200'/>
      <host mac='52:54:00:00:00:01' name='static1' ip='192.168.122.10'/>
      <host mac='52:54:00:00:00:02' name='b.other.org' ip='192.168.122.11'/>
    </dhcp>
  </ip>
  <ip family='ipv6' address='fd00:1::1' prefix='64'/>
</network>`

var (
	guest4  = netip.MustParseAddr("192.168.122.77")
	guest6  = netip.MustParseAddr("fd00:1::77")
	outside = netip.MustParseAddr("203.0.113.9")
)

// t0 is the fixed clock of the tests.
var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func testLeases() []leases.Lease {
	return []leases.Lease{
		{Network: "t1", Kind: leases.V4, IP: netip.MustParseAddr("192.168.122.150"), Hostname: "guest1", Expiry: t0.Add(time.Hour)},
		{Network: "t1", Kind: leases.V6, IP: netip.MustParseAddr("fd00:1::150"), Hostname: "Guest1.example.com", Expiry: t0.Add(time.Hour)},
		{Network: "t1", Kind: leases.V4, IP: netip.MustParseAddr("192.168.122.151"), Hostname: "old", Expiry: t0.Add(-time.Minute)},
		{Network: "t1", Kind: leases.V4, IP: netip.MustParseAddr("192.168.122.152"), Hostname: "myhost"},
		{Network: "t1", Kind: leases.V4, IP: netip.MustParseAddr("192.168.122.153"), Hostname: "bad name"},
		{Network: "t1", Kind: leases.V4, IP: netip.MustParseAddr("192.168.122.154"), Hostname: "forever"},
	}
}

func parseNet(t testing.TB, xml string) *conf.Network {
	t.Helper()
	n, err := conf.Parse([]byte(xml))
	if err != nil {
		t.Fatalf("parsing network: %v", err)
	}
	return n
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func testLogger(t testing.TB) *slog.Logger {
	switch t.(type) {
	case *testing.F:
		return discardLogger() // f.Log is forbidden in the target
	case *testing.B:
		return discardLogger()
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fakeLeases is a LeaseView in memory.
type fakeLeases struct {
	mu       sync.Mutex
	ls       []leases.Lease
	watchers []chan struct{}
}

func (f *fakeLeases) List(network string) ([]leases.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []leases.Lease
	for _, l := range f.ls {
		if l.Network == network {
			out = append(out, l)
		}
	}
	return out, nil
}

func (f *fakeLeases) WatchRelevant(string, func(leases.Changes) bool) (<-chan struct{}, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{}, 1)
	f.watchers = append(f.watchers, ch)
	return ch, func() {}
}

func (f *fakeLeases) set(ls []leases.Lease) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ls = ls
	for _, ch := range f.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// fixture is a Server that is not started: tests drive its handler and a
// worker directly, with the clock under control and upstreams on loopback.
type fixture struct {
	t      testing.TB
	s      *Server
	now    time.Time
	resolv string
	mu     sync.Mutex
	// routes maps an upstream as the server knows it ("192.0.2.53:53") to
	// the loopback address of a test upstream.
	routes map[string]string
}

func newFixture(t testing.TB, xml string, ls []leases.Lease) *fixture {
	t.Helper()
	f := &fixture{t: t, now: t0, routes: map[string]string{}}
	f.resolv = filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(f.resolv, []byte("# test\nnameserver 198.51.100.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := parseNet(t, xml)
	var lv LeaseView
	if ls != nil {
		lv = &fakeLeases{ls: ls}
	}
	s, err := newAt(Config{Network: n, Bridge: n.Bridge.Name, Leases: lv, ResolvConf: f.resolv, Log: testLogger(t)}, f.clock)
	if err != nil {
		t.Fatal(err)
	}
	s.h.fwd.timeout = 300 * time.Millisecond
	s.h.fwd.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		f.mu.Lock()
		target := f.routes[addr]
		f.mu.Unlock()
		if target == "" {
			return nil, fmt.Errorf("test: no route to %s", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, target)
	}
	f.s = s
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// route sends the server's queries for upstream addr (port 53) to u.
func (f *fixture) route(addr string, u *upstream) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[net.JoinHostPort(addr, "53")] = u.addr
}

// ask sends a query through ServeDNS, as a UDP (or TCP) client from src.
func (f *fixture) ask(src netip.Addr, tcp bool, q *dns.Msg) *dns.Msg {
	f.t.Helper()
	w := &recorder{remote: &net.UDPAddr{IP: src.AsSlice(), Port: 5353}}
	if tcp {
		w.remote = &net.TCPAddr{IP: src.AsSlice(), Port: 5353}
	}
	f.s.h.ServeDNS(w, q)
	if len(w.msgs) != 1 {
		f.t.Fatalf("%v: %d answers, want 1", q.Question, len(w.msgs))
	}
	return w.msgs[0]
}

func newQuery(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

// recorder is a dns.ResponseWriter that keeps what is written, decoded.
type recorder struct {
	remote net.Addr
	mu     sync.Mutex
	msgs   []*dns.Msg
	raw    [][]byte
}

func (r *recorder) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(192, 168, 122, 1), Port: 53}
}
func (r *recorder) RemoteAddr() net.Addr { return r.remote }
func (r *recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = r.Write(b)
	return err
}
func (r *recorder) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, fmt.Errorf("recorder: answer does not decode: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	r.raw = append(r.raw, slices.Clone(b))
	return len(b), nil
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

// upstream is a test DNS server on a loopback port (UDP and TCP) that
// records the queries it gets.
type upstream struct {
	addr string
	mu   sync.Mutex
	got  []*dns.Msg
	tcp  int
}

// newUpstream serves fn on 127.0.0.1; fn nil answers every A query with
// 198.18.0.1 (TTL 300) and everything else NXDOMAIN with an SOA (minimum
// 60).
func newUpstream(t testing.TB, fn func(w dns.ResponseWriter, r *dns.Msg)) *upstream {
	t.Helper()
	if fn == nil {
		fn = defaultUpstream
	}
	u := &upstream{}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.mu.Lock()
		u.got = append(u.got, r.Copy())
		if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
			u.tcp++
		}
		u.mu.Unlock()
		fn(w, r)
	})
	var pc net.PacketConn
	var l net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no loopback port free for UDP and TCP")
	}
	u.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: l, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

func defaultUpstream(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	q := r.Question[0]
	if q.Qtype == dns.TypeA {
		rr, _ := dns.NewRR(q.Name + " 300 IN A 198.18.0.1")
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
}

func (u *upstream) queries() []*dns.Msg {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.got)
}

func (u *upstream) names() []string {
	var out []string
	for _, m := range u.queries() {
		out = append(out, m.Question[0].Name)
	}
	return out
}

// ans renders the answer section as "NAME TTL TYPE DATA" lines, names
// in lowercase.
func ans(m *dns.Msg) []string { return rrLines(m.Answer) }

func rrLines(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		data := strings.TrimPrefix(rr.String(), h.String())
		out = append(out, fmt.Sprintf("%s %d %s %s", strings.ToLower(h.Name), h.Ttl, dns.TypeToString[h.Rrtype], data))
	}
	return out
}

func TestLeaseChangeMatters(t *testing.T) {
	s := &Server{name: "default"}
	named := map[netip.Addr]bool{netip.MustParseAddr("10.0.0.5"): true}
	s.named.Store(&named)
	ip := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		c    leases.Changes
		want bool
	}{
		{"unnamed new lease", leases.Changes{Put: []leases.Lease{{Network: "default", IP: ip("10.0.0.9")}}}, false},
		{"named new lease", leases.Changes{Put: []leases.Lease{{Network: "default", IP: ip("10.0.0.9"), Hostname: "vm"}}}, true},
		{"named lease of another network", leases.Changes{Put: []leases.Lease{{Network: "other", IP: ip("10.0.0.9"), Hostname: "vm"}}}, false},
		{"named address taken without a name", leases.Changes{Put: []leases.Lease{{Network: "default", IP: ip("10.0.0.5")}}}, true},
		{"named lease deleted", leases.Changes{Delete: []leases.Key{{Network: "default", IP: ip("10.0.0.5")}}}, true},
		{"unnamed lease deleted", leases.Changes{Delete: []leases.Key{{Network: "default", IP: ip("10.0.0.6")}}}, false},
	} {
		if got := s.leaseChangeMatters(tc.c); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
