package dhcpd

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vnetd/vnetd/leases"
)

// benchNet4 is bench/dhcp.sh's network: isolated, 10.200.0.1/16, a pool
// larger than the 60000 clients.
const benchNet4 = `<network><name>b4</name><bridge name='virbr9'/><domain name='bench.test'/>
<ip address='10.200.0.1' prefix='16'><dhcp><range start='10.200.1.0' end='10.200.255.250'/></dhcp></ip></network>`

const benchClients4 = 60000

// instantStore4 is a LeaseStore whose writes are durable at once.
type instantStore4 struct{}

func (instantStore4) Apply(_ leases.Changes, done func(error)) { done(nil) }
func (instantStore4) List(string) ([]leases.Lease, error)      { return nil, nil }

// benchRig4 drives a Server4 as its reader, a worker and the replier do,
// without sockets: packets are copied as read copies them, served in
// worker batches, and the completions answered as the replier does
// (without the pacer's sleeps). Sent frames are dropped.
type benchRig4 struct {
	s         *Server4
	rb        *replyBatch
	disc, req [][]byte
	batch     [][]byte
	slab      slab4
	done      []completion4
	sent      int
}

// benchPackets4 is perfdhcp's DORA of n clients as rewritten by
// bench/dhcp.sh: broadcast DISCOVERs and SELECTING REQUESTs with a
// parameter request list. The REQUESTs ask for the address a fresh server
// offers when the clients come in this order.
func benchPackets4(tb testing.TB, n int) (disc, req [][]byte) {
	tb.Helper()
	h, err := NewHandler4(netXML4(tb, benchNet4), nil)
	if err != nil {
		tb.Fatal(err)
	}
	prl := dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionBroadcastAddress, dhcpv4.OptionTimeOffset,
		dhcpv4.OptionRouter, dhcpv4.OptionDomainName, dhcpv4.OptionDomainNameServer, dhcpv4.OptionHostName)
	for i := range n {
		mac := net.HardwareAddr{0x52, 0x54, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		xid := dhcpv4.WithTransactionID(dhcpv4.TransactionID{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
		d, err := dhcpv4.NewDiscovery(mac, xid, prl, dhcpv4.WithBroadcast(true))
		if err != nil {
			tb.Fatal(err)
		}
		off, _, _, err := h.Handle(d, t04)
		if err != nil || off == nil {
			tb.Fatalf("client %d: no offer (%v)", i, err)
		}
		r, err := dhcpv4.NewRequestFromOffer(off, prl, dhcpv4.WithBroadcast(true))
		if err != nil {
			tb.Fatal(err)
		}
		r.ClientHWAddr = mac
		if ack, _, _, err := h.Handle(r, t04); err != nil || ack.MessageType() != dhcpv4.MessageTypeAck {
			tb.Fatalf("client %d: no ACK (%v)", i, err)
		}
		disc, req = append(disc, d.ToBytes()), append(req, r.ToBytes())
	}
	return disc, req
}

var benchPkts4 struct{ disc, req [][]byte }

func newBenchRig4(b *testing.B, level slog.Level) *benchRig4 {
	if benchPkts4.disc == nil {
		benchPkts4.disc, benchPkts4.req = benchPackets4(b, benchClients4)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: level}))
	s, err := New4(Config4{Network: netXML4(b, benchNet4), Bridge: "virbr9", Store: instantStore4{}, Log: log,
		Now: func() time.Time { return t04 }})
	if err != nil {
		b.Fatal(err)
	}
	r := &benchRig4{s: s, disc: benchPkts4.disc, req: benchPkts4.req}
	errs := make([]error, paceChunk)
	send := func(frames [][]byte, _ []net.HardwareAddr) []error {
		r.sent += len(frames)
		return errs[:len(frames)]
	}
	s.srcMAC = mac4(macD_4)
	s.out = func([]byte, net.HardwareAddr) error { r.sent++; return nil }
	s.newSender = func() func([][]byte, []net.HardwareAddr) []error { return send }
	s.replies = replyBatch{send: s.newSender()}
	s.done4.wake = make(chan struct{}, 1)
	r.rb = &replyBatch{send: s.newSender()}
	return r
}

// packet receives p as read does, then serves it with its batch.
func (r *benchRig4) packet(p []byte) {
	r.batch = append(r.batch, r.slab.copy(p))
	if len(r.batch) == 64 {
		r.work()
	}
}

// work is a worker's round and the replier's.
func (r *benchRig4) work() {
	ctx := context.Background()
	for _, b := range r.batch {
		r.s.serve(ctx, b, r.rb)
	}
	r.s.flush(r.rb)
	clear(r.batch)
	r.batch = r.batch[:0]
	q := &r.s.done4
	q.mu.Lock()
	cs := q.q
	q.q = r.done[:0]
	q.mu.Unlock()
	for lo := 0; lo < len(cs); lo += paceChunk {
		r.s.completeChunk(cs[lo:min(lo+paceChunk, len(cs))])
	}
	clear(cs)
	r.done = cs[:0]
}

func benchDORA4(b *testing.B, level slog.Level) {
	r := newBenchRig4(b, level)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c := i % len(r.disc)
		r.packet(r.disc[c])
		r.packet(r.req[c])
	}
	r.work()
	b.StopTimer()
	if st := r.s.Stats(); st.Ack != uint64(b.N) || st.Offer != uint64(b.N) || r.sent != 2*b.N {
		b.Fatalf("%d DORAs: %d sent, stats %+v", b.N, r.sent, st)
	}
}

// BenchmarkServeDORA4 is the CPU cost of one DORA (DISCOVER, OFFER,
// REQUEST, ACK) in the server, store and sockets aside, logging at
// bench/dhcp.sh's level (warn). The first 60000 DORAs are new clients, the
// next ones renew: compare runs of the same -benchtime (60000x: all new),
//
//	go test -run '^$' -bench ServeDORA4 -benchmem -cpu 1 -benchtime 300000x ./dhcpd
func BenchmarkServeDORA4(b *testing.B) { benchDORA4(b, slog.LevelWarn) }

// BenchmarkServeDORA4Info is the same with the daemon's default level,
// which logs every ACK.
func BenchmarkServeDORA4Info(b *testing.B) { benchDORA4(b, slog.LevelInfo) }
