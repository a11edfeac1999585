package dhcpd

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/vnetd/vnetd/leases"
)

// benchNet6 is bench/dhcp.sh's IPv6 network: fd00:200::1/64, a range of
// 65536 addresses (more than the 60000 clients), leases of an hour, DNS on.
const benchNet6 = `<network><name>b6</name><bridge name='virbr9'/>
<ip family='ipv6' address='fd00:200::1' prefix='64'><dhcp>
<range start='fd00:200::1:0' end='fd00:200::1:ffff'><lease expiry='1' unit='hours'/></range>
</dhcp></ip></network>`

const benchClients6 = 60000

// benchPeer6 is perfdhcp's link-local address: all its clients send from it.
var benchPeer6 = netip.MustParseAddr("fe80::5054:ff:fe12:3456")

// instantStore6 is a LeaseStore whose writes are durable at once.
type instantStore6 struct{}

func (instantStore6) Apply(_ leases.Changes, done func(error)) { done(nil) }
func (instantStore6) List(string) ([]leases.Lease, error)      { return nil, nil }

// benchPackets6 is perfdhcp -6's exchange for n clients: a Solicit with a
// DUID-LLT, Elapsed Time, an ORO and an empty IA_NA, then a Request with
// the Server ID and the IA_NA of the Advertise a fresh server sends when
// the clients come in this order.
func benchPackets6(tb testing.TB, n int) (sol, req [][]byte) {
	tb.Helper()
	h, err := NewHandler6(parseNet6(tb, benchNet6, nil), serverID6)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	for i := range n {
		duid := &dhcpv6.DUIDLLT{HWType: iana.HWTypeEthernet, Time: 0x2f0a1b2c,
			LinkLayerAddr: net.HardwareAddr{0x0a, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}}
		xid := dhcpv6.TransactionID{byte(i >> 16), byte(i >> 8), byte(i)}
		s := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeSolicit, TransactionID: xid}
		s.AddOption(dhcpv6.OptElapsedTime(0))
		s.AddOption(dhcpv6.OptClientID(duid))
		s.AddOption(dhcpv6.OptRequestedOption(dhcpv6.OptionDNSRecursiveNameServer, dhcpv6.OptionDomainSearchList))
		s.AddOption(&dhcpv6.OptIANA{IaId: [4]byte{0, 0, 0, 1}})
		sb := s.ToBytes()
		m, _ := dhcpv6.MessageFromBytes(sb)
		adv, _, _, err := h.Handle(m, benchPeer6, now)
		if err != nil || adv == nil || adv.MessageType != dhcpv6.MessageTypeAdvertise {
			tb.Fatalf("client %d: no advertise (%v)", i, err)
		}
		r := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeRequest, TransactionID: dhcpv6.TransactionID{xid[0], xid[1], xid[2] ^ 0x80}}
		r.AddOption(dhcpv6.OptElapsedTime(0))
		r.AddOption(dhcpv6.OptClientID(duid))
		r.AddOption(adv.GetOneOption(dhcpv6.OptionServerID))
		r.AddOption(dhcpv6.OptRequestedOption(dhcpv6.OptionDNSRecursiveNameServer, dhcpv6.OptionDomainSearchList))
		r.AddOption(adv.Options.OneIANA())
		rb := r.ToBytes()
		m, _ = dhcpv6.MessageFromBytes(rb)
		if rep, c, _, err := h.Handle(m, benchPeer6, now); err != nil || rep == nil || len(c) != 1 {
			tb.Fatalf("client %d: no reply (%v)", i, err)
		}
		sol, req = append(sol, sb), append(req, rb)
	}
	return sol, req
}

var benchPkts6 struct{ sol, req [][]byte }

func benchLog6(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: level}))
}

func benchExchange6(b *testing.B, level slog.Level) {
	if benchPkts6.sol == nil {
		benchPkts6.sol, benchPkts6.req = benchPackets6(b, benchClients6)
	}
	r := newBenchRig6(b, level)
	r.sol, r.req = benchPkts6.sol, benchPkts6.req
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c := i % len(r.sol)
		r.packet(r.sol[c])
		r.packet(r.req[c])
	}
	r.work()
	b.StopTimer()
	if st := r.s.Stats(); st.Advertises != uint64(b.N) || st.Replies != uint64(b.N) || st.Commits != uint64(b.N) || r.sent != 2*b.N {
		b.Fatalf("%d exchanges: %d sent, stats %+v", b.N, r.sent, st)
	}
}

// BenchmarkServeExchange6 is the CPU cost of one Solicit-Advertise,
// Request-Reply exchange in the server, store and sockets aside, logging at
// bench/dhcp.sh's level (warn).
func BenchmarkServeExchange6(b *testing.B) { benchExchange6(b, slog.LevelWarn) }

// BenchmarkServeExchange6Info is the same at the daemon's default level,
// which logs every lease.
func BenchmarkServeExchange6Info(b *testing.B) { benchExchange6(b, slog.LevelInfo) }

// benchRig6 drives a Server6 as its serving loop and the replier do,
// without sockets: datagrams are copied as the loop copies them, served in
// rounds of readBatch6, and the completions answered as the replier does
// (without the pacer's sleeps). Answers are dropped.
type benchRig6 struct {
	s        *Server6
	sol, req [][]byte
	w        *worker6
	slab     slab6
	batch    []packet6
	done     []completion6
	sent     int
}

func newBenchRig6(b *testing.B, level slog.Level) *benchRig6 {
	s, err := New6(Config6{Network: parseNet6(b, benchNet6, nil), Bridge: "virbr9", ServerDUID: serverID6, Store: instantStore6{}, Log: benchLog6(level)})
	if err != nil {
		b.Fatal(err)
	}
	if s.h, err = NewHandler6(s.network, serverID6); err != nil {
		b.Fatal(err)
	}
	r := &benchRig6{s: s}
	errs := make([]error, paceChunk)
	send := func(outs []out6) []error {
		r.sent += len(outs)
		return errs[:len(outs)]
	}
	s.newSender = func() func([]out6) []error { return send }
	s.setup()
	r.w = &worker6{batch: batch6{send: s.sender()}}
	return r
}

// packet receives p as the serving loop does and serves it with its read.
func (r *benchRig6) packet(p []byte) {
	r.s.st.received.Add(1)
	r.batch = append(r.batch, packet6{data: r.slab.copy(p), peer: benchPeer6})
	if len(r.batch) == readBatch6 {
		r.work()
	}
}

// work is the serving loop's round and the replier's.
func (r *benchRig6) work() {
	ctx := context.Background()
	r.s.round(ctx, r.w, r.batch)
	clear(r.batch)
	r.batch = r.batch[:0]
	q := &r.s.done
	q.mu.Lock()
	cs := q.q
	q.q = r.done[:0]
	q.mu.Unlock()
	for lo := 0; lo < len(cs); lo += paceChunk {
		for i := lo; i < min(lo+paceChunk, len(cs)); i++ {
			if c := &cs[i]; r.s.settled(c) {
				r.s.queueAnswer(&r.s.replies, c)
			}
		}
		r.s.flush(&r.s.replies)
	}
	clear(cs)
	r.done = cs[:0]
}
