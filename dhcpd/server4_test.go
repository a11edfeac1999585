package dhcpd

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vnetd/vnetd/leases"
)

func netipMust4(s string) netip.Addr { return netip.MustParseAddr(s) }

// naiveChecksum4 is RFC 1071 written plainly, to check frame4 against.
func naiveChecksum4(data []byte) uint16 {
	var sum uint64
	for i := 0; i < len(data); i += 2 {
		w := uint64(data[i]) << 8
		if i+1 < len(data) {
			w |= uint64(data[i+1])
		}
		sum += w
	}
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	return ^uint16(sum)
}

func TestFrame4(t *testing.T) {
	for _, size := range []int{0, 1, 300, 301, 547} {
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(i*7 + 3)
		}
		src, dst := netipMust4("192.168.122.1"), netipMust4("192.168.122.77")
		f := frame4(mac4(macA_4), mac4(macB_4), src, dst, 67, 68, payload)
		if !bytes.Equal(f[0:6], mac4(macA_4)) || !bytes.Equal(f[6:12], mac4(macB_4)) || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
			t.Fatalf("ethernet header % x", f[:14])
		}
		ip := f[14:34]
		if ip[0] != 0x45 || ip[9] != 17 || int(binary.BigEndian.Uint16(ip[2:4])) != 28+size {
			t.Fatalf("ip header % x", ip)
		}
		if naiveChecksum4(ip) != 0 {
			t.Errorf("size %d: IP header checksum does not verify", size)
		}
		udp := f[34:]
		if binary.BigEndian.Uint16(udp[0:2]) != 67 || binary.BigEndian.Uint16(udp[2:4]) != 68 || int(binary.BigEndian.Uint16(udp[4:6])) != 8+size {
			t.Fatalf("udp header % x", udp[:8])
		}
		if !bytes.Equal(udp[8:], payload) {
			t.Fatal("payload")
		}
		pseudo := append(append(append([]byte{}, ip[12:20]...), 0, 17), byte(len(udp)>>8), byte(len(udp)))
		if c := naiveChecksum4(append(pseudo, udp...)); c != 0 && binary.BigEndian.Uint16(udp[6:8]) != 0xffff {
			t.Errorf("size %d: UDP checksum does not verify (%#x)", size, c)
		}
		if binary.BigEndian.Uint16(udp[6:8]) == 0 {
			t.Errorf("UDP checksum left zero")
		}
	}
}

func TestDest4(t *testing.T) {
	bcast := "ff:ff:ff:ff:ff:ff 255.255.255.255"
	yi := dhcpv4.WithYourIP(ip4s("192.168.122.9"))
	for _, tc := range []struct {
		name      string
		req, resp *dhcpv4.DHCPv4
		want      string
	}{
		{"offer unicast", discover4(macA_4), newMsg4(macA_4, dhcpv4.MessageTypeOffer, yi), macA_4 + " 192.168.122.9"},
		{"offer broadcast flag", discover4(macA_4, dhcpv4.WithBroadcast(true)), newMsg4(macA_4, dhcpv4.MessageTypeOffer, yi), bcast},
		{"renew to ciaddr", renew4(macA_4, "192.168.122.9", false), newMsg4(macA_4, dhcpv4.MessageTypeAck, yi), macA_4 + " 192.168.122.9"},
		{"rebind to ciaddr", renew4(macA_4, "192.168.122.9", true), newMsg4(macA_4, dhcpv4.MessageTypeAck, yi), macA_4 + " 192.168.122.9"},
		{"nak broadcast", initReboot4(macA_4, "192.168.122.9"), newMsg4(macA_4, dhcpv4.MessageTypeNak), bcast},
		{"nak to renewal broadcast", renew4(macA_4, "192.168.122.9", false), newMsg4(macA_4, dhcpv4.MessageTypeNak), bcast},
		{"no address", discover4(macA_4), newMsg4(macA_4, dhcpv4.MessageTypeAck), bcast},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mac, ip := dest4(tc.req, tc.resp)
			if got := mac.String() + " " + ip.String(); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// sent4 collects what a Server4 sends, for tests without sockets.
type sent4 struct {
	mu     sync.Mutex
	frames [][]byte
}

func newTestServer4(t *testing.T, xml string, store LeaseStore, now func() time.Time) (*Server4, *sent4) {
	t.Helper()
	s, err := New4(Config4{Network: netXML4(t, xml), Bridge: "virbr9", Store: store, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	out := &sent4{}
	s.srcMAC = mac4(macD_4)
	s.out = func(frame []byte, _ net.HardwareAddr) error {
		out.mu.Lock()
		out.frames = append(out.frames, frame)
		out.mu.Unlock()
		return nil
	}
	return s, out
}

// serveSync serves b and, as these tests run no replier, sends the reply
// of its store write itself.
func (s *Server4) serveSync(ctx context.Context, b []byte) {
	s.serve(ctx, b, nil)
	s.drainWrites()
}

// drainWrites waits for the store writes in flight and completes them.
func (s *Server4) drainWrites() {
	s.inflight.Wait()
	s.done4.mu.Lock()
	q := s.done4.q
	s.done4.q = nil
	s.done4.mu.Unlock()
	for i := range q {
		s.complete(&q[i])
	}
}

func (o *sent4) replies(t *testing.T) []*dhcpv4.DHCPv4 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*dhcpv4.DHCPv4
	for _, f := range o.frames {
		m, err := dhcpv4.FromBytes(f[42:])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestServeAckAfterPut4(t *testing.T) {
	store := newMemStore4()
	s, out := newTestServer4(t, natNet4(defaultRange4), store, func() time.Time { return t04 })
	ctx := context.Background()
	s.serveSync(ctx, discover4(macA_4).ToBytes())
	offers := out.replies(t)
	if len(offers) != 1 || typeOf4(offers[0]) != "OFFER" || store.puts != 0 {
		t.Fatalf("offers %d, puts %d", len(offers), store.puts)
	}
	gate := make(chan struct{})
	store.mu.Lock()
	store.putGate = gate
	store.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.serveSync(ctx, select4(macA_4, offers[0]).ToBytes())
		close(done)
	}()
	time.Sleep(50 * time.Millisecond)
	if n := len(out.replies(t)); n != 1 {
		t.Fatalf("ACK sent before the lease was stored (%d replies)", n)
	}
	close(gate)
	<-done
	replies := out.replies(t)
	if len(replies) != 2 || typeOf4(replies[1]) != "ACK" {
		t.Fatalf("replies %d", len(replies))
	}
	l, ok := store.get("t4", addr4(replies[1].YourIPAddr))
	if !ok || !bytes.Equal(l.MAC, mac4(macA_4)) {
		t.Fatalf("lease not in the store: %+v", l)
	}
	// Store failure: no ACK.
	store.mu.Lock()
	store.putGate, store.putErr = nil, errStoreDown4
	store.mu.Unlock()
	s.serveSync(ctx, renew4(macA_4, l.IP.String(), false).ToBytes())
	if n := len(out.replies(t)); n != 2 {
		t.Fatalf("ACK sent though the store failed")
	}
	if st := s.Stats(); st.StoreErrors != 1 || st.Bound != 1 || st.PoolSize != 253 {
		t.Errorf("stats %+v", st)
	}
	// Release deletes.
	store.mu.Lock()
	store.putErr = nil
	store.mu.Unlock()
	s.serveSync(ctx, release4(macA_4, l.IP.String()).ToBytes())
	if _, ok := store.get("t4", l.IP); ok {
		t.Fatal("released lease still stored")
	}
	// Garbage is counted.
	s.serveSync(ctx, []byte("garbage"))
	if st := s.Stats(); st.Dropped != 1 || st.Overflow != 0 || st.Release != 1 || st.Bound != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestServerLoadsAndSweeps4(t *testing.T) {
	a := netipMust4("192.168.122.40")
	store := newMemStore4(leases.Lease{Network: "t4", Kind: leases.V4, IP: a, MAC: mac4(macA_4), Expiry: t04.Add(time.Minute)},
		leases.Lease{Network: "other", Kind: leases.V4, IP: a, MAC: mac4(macB_4), Expiry: t04.Add(time.Minute)})
	now := t04
	s, out := newTestServer4(t, natNet4(defaultRange4), store, func() time.Time { return now })
	s.serveSync(context.Background(), discover4(macA_4).ToBytes())
	if r := out.replies(t); len(r) != 1 || addr4(r[0].YourIPAddr) != a {
		t.Fatalf("stored lease not honoured")
	}
	now = t04.Add(2 * time.Minute)
	s.sweep(context.Background())
	s.drainWrites()
	if _, ok := store.get("t4", a); ok {
		t.Fatal("expired lease not swept from the store")
	}
	if _, ok := store.get("other", a); !ok {
		t.Fatal("another network's lease swept")
	}
}

func TestStartErrors4(t *testing.T) {
	store := newMemStore4()
	s, err := New4(Config4{Network: netXML4(t, natNet4(defaultRange4)), Bridge: "nosuchbr0", Store: store})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "nosuchbr0") || !strings.Contains(err.Error(), "67") {
		t.Fatalf("Start: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config4{
		{Bridge: "b", Store: store},
		{Network: netXML4(t, natNet4(defaultRange4)), Store: store},
		{Network: netXML4(t, natNet4(defaultRange4)), Bridge: "b"},
		{Network: netXML4(t, `<network><name>t4</name><bridge name='virbr9'/><ip address='192.168.122.1' prefix='24'/></network>`), Bridge: "b", Store: store},
	} {
		if _, err := New4(cfg); err == nil {
			t.Errorf("New4(%+v) accepted", cfg)
		}
	}
}
