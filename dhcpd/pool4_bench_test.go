package dhcpd

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// poolNet4 is an isolated network 10.200.0.1/bits whose one range is the
// whole subnet but its first two and last two addresses.
func poolNet4(bits int) string {
	last := netip.PrefixFrom(netip.MustParseAddr("10.200.0.0"), bits)
	end := u2a4(a2u4(last.Addr()) | (1<<(32-bits) - 1) - 1)
	return fmt.Sprintf(`<network><name>p4</name><bridge name='virbr9'/>
<ip address='10.200.0.1' prefix='%d'><dhcp><range start='10.200.0.2' end='%s'/></dhcp></ip></network>`, bits, end)
}

// benchMAC4 is the MAC of client i: 2^32 distinct ones.
func benchMAC4(mac net.HardwareAddr, i uint32) {
	mac[0], mac[1] = 0x52, 0x54
	mac[2], mac[3], mac[4], mac[5] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
}

// offerPool4 makes h offer n addresses of its range, picked at random, to
// clients 0..n-1 (each asks for its address, so filling costs O(n)).
func offerPool4(tb testing.TB, h *Handler4, n int) {
	tb.Helper()
	total := h.pool.cfg.total
	perm := rand.New(rand.NewPCG(1, 2)).Perm(total)
	d, err := dhcpv4.NewDiscovery(make(net.HardwareAddr, 6), xid4())
	if err != nil {
		tb.Fatal(err)
	}
	req := requestFrom4(d)
	mac := make(net.HardwareAddr, 6)
	req.chaddr = mac
	for i := 0; i < n; i++ {
		benchMAC4(mac, uint32(i))
		want := h.pool.cfg.nth(perm[i]).As4()
		req.opts.reqIP = want[:]
		dec, err := h.decide(&req, t04)
		if err != nil || dec.ans.mt != dhcpv4.MessageTypeOffer || dec.ans.yiaddr != netip.AddrFrom4(want) {
			tb.Fatalf("client %d: no offer of %v (%v)", i, netip.AddrFrom4(want), err)
		}
	}
}

// BenchmarkDiscoverPool4 is the cost of a DISCOVER from a new client when
// the pool is fully offered (no address: PoolExhausted) and when half of it
// is (the offer is then withdrawn, as when the client picks another
// server's, to keep the pool half full):
//
//	go test -run '^$' -bench DiscoverPool4 -benchmem -cpu 1 ./dhcpd
func BenchmarkDiscoverPool4(b *testing.B) {
	for _, bits := range []int{24, 20, 16} {
		for _, fill := range []string{"full", "half"} {
			b.Run(fmt.Sprintf("/%d/%s", bits, fill), func(b *testing.B) {
				h, err := NewHandler4(netXML4(b, poolNet4(bits)), nil)
				if err != nil {
					b.Fatal(err)
				}
				total := h.pool.cfg.total
				n := total
				if fill == "half" {
					n = total / 2
				}
				offerPool4(b, h, n)
				d, err := dhcpv4.NewDiscovery(make(net.HardwareAddr, 6), xid4())
				if err != nil {
					b.Fatal(err)
				}
				req := requestFrom4(d)
				mac := make(net.HardwareAddr, 6)
				req.chaddr = mac
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					benchMAC4(mac, uint32(n+i))
					dec, err := h.decide(&req, t04)
					if err != nil {
						b.Fatal(err)
					}
					if fill == "full" {
						if dec.ans.mt != 0 {
							b.Fatalf("offer from a full pool: %v", dec.ans.yiaddr)
						}
						continue
					}
					if dec.ans.mt != dhcpv4.MessageTypeOffer {
						b.Fatal("no offer from a half-full pool")
					}
					h.pool.dropOffer(hexKey4("hw:", mac))
				}
			})
		}
	}
}
