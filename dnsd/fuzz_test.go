package dnsd

import (
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// fuzzSeeds are real queries, packed by miekg/dns: every path of the
// server (fast, cached, slow, refused, malformed) starts from one of them.
func fuzzSeeds(t testing.TB) [][]byte {
	var out [][]byte
	add := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	for _, name := range []string{"myhost.", "MyHost.Example.COM.", "guest1.example.com.", "_ldap._tcp.corp.test.",
		"5.122.168.192.in-addr.arpa.", "www.example.org.", "x.quiet.test.", "example."} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypePTR, dns.TypeSRV, dns.TypeTXT, dns.TypeANY} {
			add(newQuery(name, qt))
		}
	}
	edns := newQuery("myhost.example.com.", dns.TypeA)
	edns.SetEdns0(4096, true)
	edns.IsEdns0().Option = append(edns.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	add(edns)
	two := newQuery("myhost.", dns.TypeA)
	two.Question = append(two.Question, dns.Question{Name: "guest1.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	add(two)
	notify := newQuery("example.com.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	add(notify)
	v1 := newQuery("myhost.", dns.TypeA)
	v1.SetEdns0(1232, false)
	v1.IsEdns0().SetVersion(1)
	add(v1)
	out = append(out, []byte{}, make([]byte, 12), []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1})
	return out
}

// FuzzServeDNS feeds packets to a UDP reader of the test network. No packet
// may panic it; every answer must decode and carry the query's ID; and an
// answer from the fast path must be the one the slow path gives.
func FuzzServeDNS(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	fx := newFixture(f, testXML, testLeases())
	// Upstreams are unreachable: forwarded queries get SERVFAIL at once.
	w, sk, wg := fx.worker(f)
	from := netip.AddrPortFrom(guest4, 40000)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		w.handle(pkt, from)
		if w.st.panics.Load() != 0 {
			t.Fatal("handling the packet panicked (see the log)")
		}
		wg.Wait()
		sent := sk.take()
		if len(sent) > 1 {
			t.Fatalf("%d answers to one packet", len(sent))
		}
		var q query
		fast := parseQuery(pkt, &q) && w.fast(fx.s.h.zone.Load(), &q, nil) != nil
		for _, b := range sent {
			m := new(dns.Msg)
			if err := m.Unpack(b); err != nil {
				t.Fatalf("answer does not decode: %v", err)
			}
			if len(pkt) >= 2 && m.Id != uint16(pkt[0])<<8|uint16(pkt[1]) {
				t.Fatalf("answer ID %d, query ID %d", m.Id, uint16(pkt[0])<<8|uint16(pkt[1]))
			}
			if !fast {
				continue
			}
			r := new(dns.Msg)
			if err := r.Unpack(pkt); err != nil {
				t.Fatalf("fast path answered a packet the slow path cannot decode: %v", err)
			}
			rec := &recorder{remote: net.UDPAddrFromAddrPort(from)}
			fx.s.h.ServeDNS(rec, r)
			if len(rec.raw) != 1 {
				t.Fatalf("slow path: %d answers", len(rec.raw))
			}
			if a, b := normalize(t, rec.raw[0]), normalize(t, b); a != b {
				t.Fatalf("fast and slow answers differ:\n%s\n%s", a, b)
			}
		}
	})
}
