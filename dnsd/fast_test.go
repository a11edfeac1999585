package dnsd

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// sink records what a worker sends.
type sink struct {
	mu   sync.Mutex
	sent [][]byte
	got  chan struct{}
}

func newSink() *sink { return &sink{got: make(chan struct{}, 1000)} }

func (s *sink) send(b []byte, _ netip.AddrPort) error {
	s.mu.Lock()
	s.sent = append(s.sent, slices.Clone(b))
	s.mu.Unlock()
	select {
	case s.got <- struct{}{}:
	default:
	}
	return nil
}

func (s *sink) take() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sent
	s.sent = nil
	return out
}

// testWorker is a UDP reader without a socket.
func (f *fixture) worker(t testing.TB) (*worker, *sink, *sync.WaitGroup) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	w := newWorker(f.s.h, nil, ctx, &wg)
	s := newSink()
	w.send = s.send
	return w, s, &wg
}

// normalize renders a message for comparison: owner names in lowercase
// (the fast path echoes the question's spelling through compression).
func normalize(t testing.TB, b []byte) string {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("answer does not decode: %v", err)
	}
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			rr.Header().Name = strings.ToLower(rr.Header().Name)
		}
	}
	return m.String()
}

// fastCases are queries the fast path must answer exactly as the slow one.
func fastCases(t testing.TB, f *fixture) []*dns.Msg {
	var names []string
	for name := range f.s.h.zone.Load().nodes {
		names = append(names, name)
	}
	slices.Sort(names)
	names = append(names, "www.example.org.", "cached.example.net.")
	var qs []*dns.Msg
	for _, name := range names {
		for _, qt := range fastTypes {
			for _, variant := range []int{0, 1, 2, 3} {
				spelled := name
				if variant&1 != 0 {
					spelled = strings.ToUpper(name[:1]) + name[1:]
				}
				q := newQuery(spelled, qt)
				q.Id = uint16(len(qs) + 1)
				if variant&2 != 0 {
					q.SetEdns0(1232, true)
					q.CheckingDisabled = true
				}
				qs = append(qs, q)
			}
		}
	}
	return qs
}

func TestFastPathMatchesSlowPath(t *testing.T) {
	f := newFixture(t, testXML, testLeases())
	f.route("198.51.100.1", newUpstream(t, nil))
	w, sk, wg := f.worker(t)
	from := netip.AddrPortFrom(guest4, 40000)
	fast := 0
	for _, q := range fastCases(t, f) {
		// The slow path first: it fills the cache for forwarded names.
		rec := &recorder{remote: net.UDPAddrFromAddrPort(from)}
		f.s.h.ServeDNS(rec, q.Copy())
		pkt, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		var pq query
		if !parseQuery(pkt, &pq) {
			t.Fatalf("%v: fast path cannot parse", q.Question)
		}
		if w.fast(f.s.h.zone.Load(), &pq, nil) != nil {
			fast++
		}
		w.handle(pkt, from)
		wg.Wait()
		sent := sk.take()
		if len(sent) != 1 || len(rec.raw) != 1 {
			t.Fatalf("%v: %d fast answers, %d slow", q.Question, len(sent), len(rec.raw))
		}
		if diff := cmp.Diff(normalize(t, rec.raw[0]), normalize(t, sent[0])); diff != "" {
			t.Errorf("%v: worker and ServeDNS differ (-slow +worker):\n%s", q.Question, diff)
		}
	}
	// Every local name and, once cached, every forwarded one.
	if want := len(fastCases(t, f)); fast != want {
		t.Errorf("fast path answered %d of %d", fast, want)
	}
}

func TestFastPathDoesNotAllocate(t *testing.T) {
	f := newFixture(t, testXML, testLeases())
	f.route("198.51.100.1", newUpstream(t, nil))
	w, _, _ := f.worker(t)
	w.send = func([]byte, netip.AddrPort) error { return nil }
	from := netip.AddrPortFrom(guest4, 40000)
	f.ask(guest4, false, newQuery("www.example.org.", dns.TypeA)) // cached now
	for _, name := range []string{"myhost.example.com.", "www.example.org."} {
		q := newQuery(name, dns.TypeA)
		q.SetEdns0(1232, false)
		pkt, _ := q.Pack()
		if n := testing.AllocsPerRun(1000, func() { w.handle(pkt, from) }); n != 0 {
			t.Errorf("%s: %v allocations per query", name, n)
		}
	}
}

func TestMalformedDropped(t *testing.T) {
	f := newFixture(t, testXML, nil)
	w, sk, _ := f.worker(t)
	from := netip.AddrPortFrom(guest4, 40000)
	resp := newQuery("myhost.", dns.TypeA)
	resp.Response = true
	respPkt, _ := resp.Pack()
	okPkt, _ := newQuery("myhost.", dns.TypeA).Pack()
	for _, pkt := range [][]byte{nil, {1, 2, 3}, respPkt, okPkt[:len(okPkt)-3], append(slices.Clone(okPkt[:12]), 0xc0, 0x0c, 0, 1, 0, 1)} {
		w.handle(pkt, from)
	}
	if sent := sk.take(); len(sent) != 0 {
		t.Errorf("%d answers to garbage", len(sent))
	}
	if n := w.st.malformed.Load(); n != 5 {
		t.Errorf("malformed %d, want 5", n)
	}
	// A well-formed header without a question is a query in error.
	w.handle(make([]byte, 12), from)
	if sent := sk.take(); len(sent) != 1 || !strings.Contains(normalize(t, sent[0]), "FORMERR") {
		t.Errorf("empty query: %q, want FORMERR", sent)
	}
}

func TestWorkerDoesNotWaitForUpstreams(t *testing.T) {
	f := newFixture(t, testXML, nil)
	f.route("198.51.100.1", newUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		time.Sleep(150 * time.Millisecond)
		defaultUpstream(w, r)
	}))
	w, sk, _ := f.worker(t)
	from := netip.AddrPortFrom(guest4, 40000)
	slowQ, _ := newQuery("slow.example.org.", dns.TypeA).Pack()
	localQ, _ := newQuery("myhost.", dns.TypeA).Pack()
	start := time.Now()
	w.handle(slowQ, from)
	w.handle(localQ, from)
	if el := time.Since(start); el > 100*time.Millisecond {
		t.Errorf("the reader was blocked %v", el)
	}
	<-sk.got
	if sent := sk.take(); len(sent) != 1 || normalize(t, sent[0]) == "" || !strings.Contains(normalize(t, sent[0]), "192.168.122.5") {
		t.Fatalf("local answer first: %q", sent)
	}
	select {
	case <-sk.got:
	case <-time.After(5 * time.Second):
		t.Fatal("no forwarded answer")
	}
	if sent := sk.take(); len(sent) != 1 || !strings.Contains(normalize(t, sent[0]), "198.18.0.1") {
		t.Errorf("forwarded answer: %q", sent)
	}
}

func TestParseQueryRejectsOddPackets(t *testing.T) {
	ok := newQuery("a.example.", dns.TypeA)
	okPkt, _ := ok.Pack()
	two := newQuery("a.example.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	twoPkt, _ := two.Pack()
	v1 := newQuery("a.example.", dns.TypeA)
	v1.SetEdns0(1232, false)
	v1.IsEdns0().SetVersion(1)
	v1Pkt, _ := v1.Pack()
	notify := newQuery("a.example.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	notifyPkt, _ := notify.Pack()
	axfr, _ := newQuery("example.", dns.TypeAXFR).Pack()
	chaos := newQuery("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	chaosPkt, _ := chaos.Pack()
	tests := map[string][]byte{
		"two questions":  twoPkt,
		"EDNS version 1": v1Pkt,
		"NOTIFY":         notifyPkt,
		"AXFR":           axfr,
		"CHAOS":          chaosPkt,
		"trailing data":  append(slices.Clone(okPkt), 0),
		"short":          okPkt[:len(okPkt)-1],
	}
	var q query
	if !parseQuery(okPkt, &q) {
		t.Fatal("plain query rejected")
	}
	for name, pkt := range tests {
		if parseQuery(pkt, &q) {
			t.Errorf("%s: taken by the fast path", name)
		}
	}
}

func TestSplitTXT(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := map[string][]string{
		"example value":       {"example value"},
		"a,b":                 {"a", "b"},
		`"a,b",c`:             {"a,b", "c"},
		"":                    {""},
		long:                  {long[:255], long[255:]},
		"v=spf1 a -all,other": {"v=spf1 a -all", "other"},
	}
	for in, want := range tests {
		if diff := cmp.Diff(want, splitTXT(in)); diff != "" {
			t.Errorf("splitTXT(%q) (-want +got):\n%s", in, diff)
		}
	}
}

func TestReversePrefix(t *testing.T) {
	tests := map[string]string{
		"5.122.168.192.in-addr.arpa.":               "192.168.122.5/32",
		"122.168.192.in-addr.arpa.":                 "192.168.122.0/24",
		"1.0.e.f.0.1.c.a.8.b.d.0.1.0.0.2.ip6.arpa.": "2001:db8:ac10:fe01::/64",
		"bad.in-addr.arpa.":                         "",
		"256.in-addr.arpa.":                         "",
		"1.2.3.4.5.in-addr.arpa.":                   "",
		"g.ip6.arpa.":                               "",
		"www.example.com.":                          "",
	}
	for in, want := range tests {
		p, ok := reversePrefix(in)
		got := ""
		if ok {
			got = p.String()
		}
		if got != want {
			t.Errorf("reversePrefix(%q) = %q, want %q", in, got, want)
		}
	}
}
