package dnsd

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// forwardXML forwards everything to two upstreams, in order.
const forwardXML = `<network><name>f1</name><forward mode='nat'/><bridge name='vbr-f1'/>
  <dns><forwarder addr='192.0.2.1'/><forwarder addr='192.0.2.2'/></dns>
  <ip address='10.8.0.1' prefix='24'/></network>`

var fwdClient = netip.MustParseAddr("10.8.0.50")

func TestForwardKeepsEDNS(t *testing.T) {
	f := newFixture(t, forwardXML, nil)
	up := newUpstream(t, nil)
	f.route("192.0.2.1", up)

	q := newQuery("dnssec.example.", dns.TypeA)
	q.SetEdns0(4096, true)
	q.CheckingDisabled = true
	m := f.ask(fwdClient, false, q)
	got := up.queries()[0]
	opt := got.IsEdns0()
	if opt == nil || !opt.Do() || !got.CheckingDisabled || !got.RecursionDesired {
		t.Errorf("upstream query lost DO/CD/RD: %v", got)
	}
	if o := m.IsEdns0(); o == nil || !o.Do() || !m.CheckingDisabled {
		t.Errorf("answer lost OPT/DO/CD: %v", m)
	}

	m = f.ask(fwdClient, false, newQuery("plain.example.", dns.TypeA))
	got = up.queries()[1]
	if opt := got.IsEdns0(); opt == nil || opt.Do() {
		t.Errorf("upstream query without EDNS0 or with DO: %v", got)
	}
	if m.IsEdns0() != nil {
		t.Errorf("answer to a client without EDNS0 has OPT: %v", m)
	}
}

func TestForwardToServerWithoutEDNS(t *testing.T) {
	f := newFixture(t, forwardXML, nil)
	up := newUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		if r.IsEdns0() != nil {
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeFormatError)
			m.Extra = nil
			w.WriteMsg(m)
			return
		}
		defaultUpstream(w, r)
	})
	f.route("192.0.2.1", up)
	q := newQuery("old.example.", dns.TypeA)
	q.SetEdns0(1232, false)
	m := f.ask(fwdClient, false, q)
	if len(m.Answer) != 1 || m.IsEdns0() == nil {
		t.Errorf("answer %v, want one A record and our OPT", m)
	}
	if n := len(up.queries()); n != 2 {
		t.Errorf("%d upstream queries, want 2 (with EDNS0, then without)", n)
	}
}

func TestForwardRetriesTruncatedOverTCP(t *testing.T) {
	f := newFixture(t, forwardXML, nil)
	up := newUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			m.Truncated = true
		} else {
			for i := range 60 {
				rr, _ := dns.NewRR(fmt.Sprintf("%s 300 IN A 198.18.1.%d", r.Question[0].Name, i))
				m.Answer = append(m.Answer, rr)
			}
		}
		w.WriteMsg(m)
	})
	f.route("192.0.2.1", up)
	m := f.ask(fwdClient, true, newQuery("big.example.", dns.TypeA))
	if len(m.Answer) != 60 || m.Truncated {
		t.Errorf("TCP client: %d answers, TC %v; want 60, false", len(m.Answer), m.Truncated)
	}
	up.mu.Lock()
	tcp := up.tcp
	up.mu.Unlock()
	if len(up.queries()) != 2 || tcp != 1 {
		t.Errorf("upstream got %d queries (%d TCP), want one over UDP then one over TCP", len(up.queries()), tcp)
	}
	// A UDP client without EDNS0 gets what fits in 512 bytes, from the
	// cache.
	m = f.ask(fwdClient, false, newQuery("big.example.", dns.TypeA))
	if !m.Truncated || len(m.Answer) == 0 || len(m.Answer) >= 60 {
		t.Errorf("UDP client: %d answers, TC %v; want some, true", len(m.Answer), m.Truncated)
	}
	if len(up.queries()) != 2 {
		t.Errorf("cached answer asked again upstream")
	}
}

func TestForwardTimesOutCleanly(t *testing.T) {
	f := newFixture(t, forwardXML, nil)
	silent := newUpstream(t, func(dns.ResponseWriter, *dns.Msg) {})
	f.route("192.0.2.1", silent)
	f.route("192.0.2.2", silent)
	start := time.Now()
	m := f.ask(fwdClient, false, newQuery("slow.example.", dns.TypeA))
	if el := time.Since(start); el > 2*f.s.h.fwd.timeout+500*time.Millisecond {
		t.Errorf("took %v with a %v timeout per upstream", el, f.s.h.fwd.timeout)
	}
	if m.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	if n := len(silent.queries()); n != 2 {
		t.Errorf("%d upstream attempts, want 2 (both servers)", n)
	}
	if st := f.s.Stats(); st.UpstreamErrors != 2 || st.Responses["SERVFAIL"] != 1 {
		t.Errorf("stats: %+v", st)
	}
}

func TestForwardStrictOrder(t *testing.T) {
	f := newFixture(t, forwardXML, nil)
	var mu sync.Mutex
	var order []string
	refusing := newUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		order = append(order, "first")
		mu.Unlock()
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		w.WriteMsg(m)
	})
	good := newUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		order = append(order, "second")
		mu.Unlock()
		defaultUpstream(w, r)
	})
	f.route("192.0.2.1", refusing)
	f.route("192.0.2.2", good)
	m := f.ask(fwdClient, false, newQuery("www.example.", dns.TypeA))
	if diff := cmp.Diff([]string{"www.example. 300 A 198.18.0.1"}, ans(m)); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	mu.Lock()
	got := slices.Clone(order)
	mu.Unlock()
	if diff := cmp.Diff([]string{"first", "second"}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	// The first server is dead: the second still answers.
	f.mu.Lock()
	f.routes["192.0.2.1:53"] = ""
	f.mu.Unlock()
	m = f.ask(fwdClient, false, newQuery("www2.example.", dns.TypeA))
	if len(m.Answer) != 1 {
		t.Errorf("with the first upstream unreachable: %v", m)
	}
}

func TestCacheTTLs(t *testing.T) {
	f := newFixture(t, forwardXML, nil)
	noSOA := newUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		w.WriteMsg(m)
	})
	up := newUpstream(t, nil)
	f.route("192.0.2.1", up)

	asks := func(name string, qtype uint16) *dns.Msg { return f.ask(fwdClient, false, newQuery(name, qtype)) }
	m := asks("www.example.", dns.TypeA)
	m2 := asks("WWW.Example.", dns.TypeA)
	if n := len(up.queries()); n != 1 {
		t.Fatalf("upstream asked %d times, want 1 (then the cache)", n)
	}
	if m2.Question[0].Name != "WWW.Example." || m2.Answer[0].Header().Ttl != 300 {
		t.Errorf("cached answer: %v", m2)
	}
	f.advance(100 * time.Second)
	if m := asks("www.example.", dns.TypeA); m.Answer[0].Header().Ttl != 200 {
		t.Errorf("TTL after 100 s: %d, want 200", m.Answer[0].Header().Ttl)
	}
	f.advance(201 * time.Second)
	asks("www.example.", dns.TypeA)
	if n := len(up.queries()); n != 2 {
		t.Errorf("expired entry: upstream asked %d times, want 2", n)
	}
	_ = m

	// Negative answers live for the SOA's minimum (60 s here, below its
	// TTL), and say so.
	m = asks("www.example.", dns.TypeAAAA)
	if m.Rcode != dns.RcodeNameError || len(m.Ns) != 1 || m.Ns[0].Header().Ttl != 60 {
		t.Fatalf("negative answer: %v", m)
	}
	f.advance(30 * time.Second)
	m = asks("www.example.", dns.TypeAAAA)
	if n := len(up.queries()); n != 3 || m.Ns[0].Header().Ttl != 30 {
		t.Errorf("negative answer not cached (%d upstream queries) or TTL %d not 30", n, m.Ns[0].Header().Ttl)
	}
	f.advance(31 * time.Second)
	asks("www.example.", dns.TypeAAAA)
	if n := len(up.queries()); n != 4 {
		t.Errorf("expired negative entry: upstream asked %d times, want 4", n)
	}

	// Without an SOA a negative answer is not cached (RFC 2308 §5).
	f.route("192.0.2.1", noSOA)
	asks("nosoa.example.", dns.TypeA)
	asks("nosoa.example.", dns.TypeA)
	if n := len(noSOA.queries()); n != 2 {
		t.Errorf("NXDOMAIN without SOA: upstream asked %d times, want 2", n)
	}
	st := f.s.Stats()
	if st.CacheHits != 3 || st.Forwarded != 6 {
		t.Errorf("cache hits %d, forwarded %d; want 3, 6", st.CacheHits, st.Forwarded)
	}
	if st.UpstreamAnswers != 6 || st.UpstreamLatency <= 0 {
		t.Errorf("upstream latency: %v over %d", st.UpstreamLatency, st.UpstreamAnswers)
	}
	var bucketed uint64
	for _, n := range st.UpstreamLatencyBuckets {
		bucketed += n
	}
	if bucketed != st.UpstreamAnswers {
		t.Errorf("latency buckets %v hold %d answers, want %d", st.UpstreamLatencyBuckets, bucketed, st.UpstreamAnswers)
	}
}

func TestCacheIsBounded(t *testing.T) {
	c := newCache()
	for i := range cacheEntries + 3000 {
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("n%d.example.", i), dns.TypeA)
		m.Response = true
		rr, _ := dns.NewRR(fmt.Sprintf("n%d.example. 300 IN A 198.18.0.1", i))
		m.Answer = []dns.RR{rr}
		c.put(fmt.Sprintf("key%d", i), m, t0)
	}
	if n := c.len(); n > cacheEntries || n < cacheEntries*3/4 {
		t.Errorf("%d entries, want at most %d and not much fewer", n, cacheEntries)
	}
	if c.get([]byte("key0"), t0) != nil {
		t.Error("the oldest entry was not evicted")
	}
	if c.get([]byte(fmt.Sprintf("key%d", cacheEntries+2999)), t0) == nil {
		t.Error("the newest entry is missing")
	}
	big := new(dns.Msg)
	big.SetQuestion("big.example.", dns.TypeTXT)
	for range 40 {
		rr, _ := dns.NewRR(`big.example. 300 IN TXT "` + string(make([]byte, 250)) + `"`)
		big.Answer = append(big.Answer, rr)
	}
	c.put("big", big, t0)
	if c.get([]byte("big"), t0) != nil {
		t.Error("an answer over maxCacheEntry was cached")
	}
}

func TestForwardSharesIdenticalQuestions(t *testing.T) {
	f := newFixture(t, forwardXML, nil)
	up := newUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		time.Sleep(200 * time.Millisecond)
		defaultUpstream(w, r)
	})
	f.route("192.0.2.1", up)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := f.ask(fwdClient, false, newQuery("shared.example.", dns.TypeA))
			if len(m.Answer) != 1 {
				t.Errorf("answer %v", m)
			}
		}()
	}
	wg.Wait()
	if n := len(up.queries()); n != 1 {
		t.Errorf("upstream asked %d times, want 1", n)
	}
}

func TestResolvConfFollowed(t *testing.T) {
	f := newFixture(t, testXML, nil)
	a, b := newUpstream(t, nil), newUpstream(t, nil)
	f.route("198.51.100.1", a)
	f.route("198.51.100.2", b)
	if m := f.ask(guest4, false, newQuery("one.example.org.", dns.TypeA)); len(m.Answer) != 1 || len(a.queries()) != 1 {
		t.Fatalf("first upstream: %v", m)
	}
	write := func(content string, mtime time.Time) {
		if err := os.WriteFile(f.resolv, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(f.resolv, mtime, mtime)
	}
	write("nameserver 198.51.100.2\nnameserver 192.168.122.1\n", time.Now().Add(time.Minute))
	f.advance(2 * resolvPoll)
	if m := f.ask(guest4, false, newQuery("two.example.org.", dns.TypeA)); len(m.Answer) != 1 || len(b.queries()) != 1 {
		t.Errorf("after the change: %v, %d queries upstream", m, len(b.queries()))
	}
	// A missing resolv.conf means no upstream: REFUSED, as dnsmasq answers.
	os.Remove(f.resolv)
	f.advance(2 * resolvPoll)
	if m := f.ask(guest4, false, newQuery("three.example.org.", dns.TypeA)); m.Rcode != dns.RcodeRefused {
		t.Errorf("without resolv.conf: %s", dns.RcodeToString[m.Rcode])
	}
	// Our own address in resolv.conf is skipped, not asked.
	write("nameserver 192.168.122.1\n", time.Now().Add(2*time.Minute))
	f.advance(2 * resolvPoll)
	if m := f.ask(guest4, false, newQuery("four.example.org.", dns.TypeA)); m.Rcode != dns.RcodeRefused {
		t.Errorf("with only ourselves in resolv.conf: %s", dns.RcodeToString[m.Rcode])
	}
}

func TestParseResolvConf(t *testing.T) {
	got := parseResolvConf([]byte("# comment\nsearch example.com\nnameserver 10.0.0.1\nnameserver  fe80::1%eth0 \nnameserver bogus\noptions ndots:2\nnameserver ::ffff:10.0.0.2\n"))
	want := []string{"10.0.0.1:53", "[fe80::1%eth0]:53", "10.0.0.2:53"}
	var gotS []string
	for _, a := range got {
		gotS = append(gotS, a.String())
	}
	if diff := cmp.Diff(want, gotS); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
