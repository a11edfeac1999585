package dnsd

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vnetd/vnetd/leases"
)

// Hostile packets and data (issue 10): each is dropped and counted, or
// answered with an error, and the server goes on answering.

func TestCompressionLoopsDropped(t *testing.T) {
	f := newFixture(t, testXML, nil)
	w, sk, wg := f.worker(t)
	from := netip.AddrPortFrom(guest4, 40000)
	// A query header (ID 7, RD, one question) followed by a question
	// whose name never ends.
	hdr := []byte{0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	q := func(name ...byte) []byte { return append(append(append([]byte{}, hdr...), name...), 0, 1, 0, 1) }
	loops := map[string][]byte{
		"pointer to itself":          q(0xc0, 12),
		"label then back to itself":  q(1, 'a', 0xc0, 12),
		"two pointers to each other": q(1, 'a', 0xc0, 16, 0xc0, 12),
		"pointer past the end":       q(0xc0, 0xff),
		"reserved label type 0x80":   q(0x80, 'a'),
	}
	// A loop in an additional record's name instead of the question.
	ok, _ := newQuery("myhost.", dns.TypeA).Pack()
	rr := append(append([]byte{}, ok...), 0xc0, byte(len(ok)), 0, 1, 0, 1, 0, 0, 0, 0, 0, 0)
	rr[11] = 1 // ARCOUNT
	loops["loop in an additional record"] = rr
	for name, pkt := range loops {
		t.Run(name, func(t *testing.T) {
			before := w.st.malformed.Load()
			w.handle(pkt, from)
			wg.Wait()
			if sent := sk.take(); len(sent) != 0 {
				t.Errorf("%d answers to a looping name", len(sent))
			}
			if got := w.st.malformed.Load() - before; got != 1 {
				t.Errorf("malformed counted %d times, want 1", got)
			}
		})
	}
	// The server still answers.
	w.handle(ok, from)
	wg.Wait()
	if sent := sk.take(); len(sent) != 1 || !strings.Contains(normalize(t, sent[0]), "192.168.122.5") {
		t.Fatalf("a good query after the loops: %q", sent)
	}
	if p := w.st.panics.Load(); p != 0 {
		t.Fatalf("%d panics", p)
	}
}

// bigNet is a network whose name "many" has n A records: its answer is
// far bigger than a UDP answer may be.
func bigNet(n int) string {
	var b strings.Builder
	b.WriteString("<network><name>big</name><forward mode='nat'/><bridge name='virbr9'/><ip address='10.0.0.1' prefix='8'/><dns>")
	for i := range n {
		fmt.Fprintf(&b, "<host ip='10.9.%d.%d'><hostname>many</hostname></host>", i>>8, i&255)
	}
	b.WriteString("</dns></network>")
	return b.String()
}

func TestOversizedEDNS(t *testing.T) {
	f := newFixture(t, bigNet(300), nil)
	w, sk, wg := f.worker(t)
	src := netip.MustParseAddr("10.1.1.1")
	from := netip.AddrPortFrom(src, 40000)
	udp := func(t *testing.T, m *dns.Msg) *dns.Msg {
		t.Helper()
		pkt, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		w.handle(pkt, from)
		wg.Wait()
		sent := sk.take()
		if len(sent) != 1 {
			t.Fatalf("%d answers", len(sent))
		}
		r := new(dns.Msg)
		if err := r.Unpack(sent[0]); err != nil {
			t.Fatal(err)
		}
		if len(sent[0]) > ednsSize {
			t.Errorf("UDP answer of %d bytes, more than the %d this server advertises", len(sent[0]), ednsSize)
		}
		return r
	}
	edns := func(size uint16) *dns.Msg {
		q := newQuery("many.", dns.TypeA)
		q.SetEdns0(size, false)
		return q
	}

	t.Run("a 64 KiB UDP size is capped at what the server advertises", func(t *testing.T) {
		for _, size := range []uint16{4096, 65535} {
			r := udp(t, edns(size))
			if !r.Truncated || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				t.Errorf("size %d: tc %v rcode %s, %d answers; want a truncated answer", size, r.Truncated, dns.RcodeToString[r.Rcode], len(r.Answer))
			}
			// The slow path (ServeDNS, as for TCP and the tests) agrees.
			if m, raw := askRaw(t, f, src, false, edns(size)); !m.Truncated || len(raw) > ednsSize {
				t.Errorf("size %d, slow path: tc %v, %d bytes", size, m.Truncated, len(raw))
			}
		}
	})
	t.Run("a size under 512 means 512", func(t *testing.T) {
		pkt, _ := edns(1).Pack()
		w.handle(pkt, from)
		wg.Wait()
		sent := sk.take()
		if len(sent) != 1 || len(sent[0]) > dns.MinMsgSize || sent[0][2]&flagTC == 0 {
			t.Errorf("answers %q; want one truncated to 512 bytes", sent)
		}
	})
	t.Run("big options are ignored, not echoed", func(t *testing.T) {
		q := newQuery("many.", dns.TypeA)
		q.SetEdns0(1232, false)
		q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_PADDING{Padding: make([]byte, 3800)},
			&dns.EDNS0_LOCAL{Code: 65001, Data: make([]byte, 200)})
		r := udp(t, q)
		opt := r.IsEdns0()
		if opt == nil || len(opt.Option) != 0 || opt.UDPSize() != ednsSize || r.Rcode != dns.RcodeSuccess {
			t.Errorf("OPT %v rcode %s", opt, dns.RcodeToString[r.Rcode])
		}
	})
	t.Run("two OPT records are a format error", func(t *testing.T) {
		q := edns(1232)
		q.Extra = append(q.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 4096}})
		if r := udp(t, q); r.Rcode != dns.RcodeFormatError || len(r.Answer) != 0 {
			t.Errorf("rcode %s, %d answers; want FORMERR", dns.RcodeToString[r.Rcode], len(r.Answer))
		}
	})
	t.Run("an option running past the record is malformed", func(t *testing.T) {
		pkt, _ := edns(1232).Pack()
		// RDLENGTH 4: an option header whose length says 0xffff.
		pkt = append(pkt[:len(pkt)-2], 0, 4, 0, 12, 0xff, 0xff)
		before := w.st.malformed.Load()
		w.handle(pkt, from)
		wg.Wait()
		if sent := sk.take(); len(sent) != 0 || w.st.malformed.Load() != before+1 {
			t.Errorf("%d answers, malformed +%d", len(sent), w.st.malformed.Load()-before)
		}
	})
}

// TestLeaseNameFlood: guests name their own leases, and a guest that takes
// thousands of leases under one name must not stall the rebuild of the zone
// (each lease change rebuilds it) or leave a name without an answer.
func TestLeaseNameFlood(t *testing.T) {
	const n = 10000
	ls := make([]leases.Lease, 0, n)
	for i := range n {
		ls = append(ls, leases.Lease{Network: "big", Kind: leases.V4, IP: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}),
			Hostname: "same", Expiry: t0.Add(time.Hour)})
	}
	// And the same records again: duplicates are dropped.
	ls = append(ls, ls[:100]...)
	began := time.Now()
	z, err := buildZone(parseNet(t, bigNet(0)), ls, t0)
	if err != nil {
		t.Fatal(err)
	}
	// Comparing every pair of records took 28 s for 20000 of one name.
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("building a zone of %d leases of one name took %v", n, took)
	}
	if got := len(z.nodes["same."].rrs[dns.TypeA]); got != n {
		t.Errorf("%d A records for same., want %d", got, n)
	}
	f := newFixture(t, bigNet(0), ls)
	src := netip.MustParseAddr("10.1.1.1")
	// Over TCP the answer is cut at the 64 KiB a TCP message can carry.
	m, raw := askRaw(t, f, src, true, newQuery("same.", dns.TypeA))
	if !m.Truncated || len(m.Answer) == 0 || len(raw) > dns.MaxMsgSize {
		t.Errorf("TCP: tc %v, %d answers, %d bytes", m.Truncated, len(m.Answer), len(raw))
	}
	if m, raw := askRaw(t, f, src, false, newQuery("same.", dns.TypeA)); !m.Truncated || len(raw) > dns.MinMsgSize {
		t.Errorf("UDP: tc %v, %d bytes", m.Truncated, len(raw))
	}
}

// askRaw is fixture.ask that also returns the answer as it was sent.
func askRaw(t *testing.T, f *fixture, src netip.Addr, tcp bool, q *dns.Msg) (*dns.Msg, []byte) {
	t.Helper()
	w := &recorder{remote: &net.UDPAddr{IP: src.AsSlice(), Port: 5353}}
	if tcp {
		w.remote = &net.TCPAddr{IP: src.AsSlice(), Port: 5353}
	}
	f.s.h.ServeDNS(w, q)
	if len(w.msgs) != 1 {
		t.Fatalf("%v: %d answers, want 1", q.Question, len(w.msgs))
	}
	return w.msgs[0], w.raw[0]
}
