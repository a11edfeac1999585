package dnsd

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// benchPacket is a query as dnsperf sends it.
func benchPacket(b *testing.B, name string) []byte {
	pkt, err := newQuery(name, dns.TypeA).Pack()
	if err != nil {
		b.Fatal(err)
	}
	return pkt
}

func benchWorker(b *testing.B) (*fixture, *worker) {
	f := newFixture(b, testXML, testLeases())
	f.s.h.log = discardLogger()
	f.route("198.51.100.1", newUpstream(b, nil))
	w, _, _ := f.worker(b)
	w.send = func([]byte, netip.AddrPort) error { return nil }
	return f, w
}

// BenchmarkFastLocal is the reader's work for a local name, without the
// socket.
func BenchmarkFastLocal(b *testing.B) {
	_, w := benchWorker(b)
	pkt := benchPacket(b, "myhost.example.com.")
	from := netip.AddrPortFrom(guest4, 40000)
	b.ReportAllocs()
	for b.Loop() {
		w.handle(pkt, from)
	}
}

// BenchmarkFastCached is the reader's work for a forwarded name in the
// cache.
func BenchmarkFastCached(b *testing.B) {
	f, w := benchWorker(b)
	f.ask(guest4, false, newQuery("www.example.org.", dns.TypeA))
	pkt := benchPacket(b, "www.example.org.")
	from := netip.AddrPortFrom(guest4, 40000)
	b.ReportAllocs()
	for b.Loop() {
		w.handle(pkt, from)
	}
}

// BenchmarkSlowLocal is a local name through miekg/dns (TCP, unusual
// queries).
func BenchmarkSlowLocal(b *testing.B) {
	f, _ := benchWorker(b)
	q := newQuery("myhost.example.com.", dns.TypeANY)
	b.ReportAllocs()
	for b.Loop() {
		f.ask(guest4, false, q)
	}
}
