package dhcpd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/vnetd/vnetd/leases"
)

// countLog4 is a slog.Handler that counts the records of each message.
type countLog4 struct {
	mu *sync.Mutex
	n  map[string]int
}

func (c countLog4) Enabled(context.Context, slog.Level) bool { return true }
func (c countLog4) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	c.n[r.Message]++
	c.mu.Unlock()
	return nil
}
func (c countLog4) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c countLog4) WithGroup(string) slog.Handler      { return c }

func (c countLog4) count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[msg]
}

// failStore4 is a LeaseStore whose writes are durable at once, or fail
// while down is set (a full disk).
type failStore4 struct{ down atomic.Bool }

func (s *failStore4) Apply(_ leases.Changes, done func(error)) {
	if s.down.Load() {
		done(errStoreDown4)
		return
	}
	done(nil)
}
func (s *failStore4) List(string) ([]leases.Lease, error) { return nil, nil }

// TestPerPacketLogsLimited4: a guest flooding requests into a full pool,
// or while the disk is full or the bridge gone, gets a bounded number of
// log lines of each kind, not one a request.
func TestPerPacketLogsLimited4(t *testing.T) {
	const flood = 1000
	logs := countLog4{mu: &sync.Mutex{}, n: map[string]int{}}
	store := &failStore4{}
	s, err := New4(Config4{Network: netXML4(t, natNet4(`<range start='192.168.122.2' end='192.168.122.3'/>`)),
		Bridge: "virbr9", Store: store, Log: slog.New(logs), Now: func() time.Time { return t04 }})
	if err != nil {
		t.Fatal(err)
	}
	var sendErr atomic.Pointer[error]
	s.srcMAC = mac4(macD_4)
	s.out = func([]byte, net.HardwareAddr) error {
		if p := sendErr.Load(); p != nil {
			return *p
		}
		return nil
	}
	ctx := context.Background()
	r := &rig4{t: t, h: s.h, now: t04}
	_, l := r.dora(macA_4) // the handler's DORA, stored by hand below
	r.dora(macB_4)
	mac := func(i int) string { return net.HardwareAddr{0x52, 0x54, 0, 9, byte(i >> 8), byte(i)}.String() }

	for i := range flood {
		s.serveSync(ctx, discover4(mac(i)).ToBytes())
	}
	for i := range flood {
		s.serveSync(ctx, initReboot4(mac(i), "192.168.122.2").ToBytes())
	}
	store.down.Store(true)
	for range flood / 2 {
		s.serveSync(ctx, renew4(macA_4, l.IP.String(), false).ToBytes())
		s.serveSync(ctx, release4(macA_4, l.IP.String()).ToBytes())
	}
	store.down.Store(false)
	e := errors.New("network is down")
	sendErr.Store(&e)
	for i := range flood {
		s.serveSync(ctx, newMsg4(mac(i), dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(ip4s("192.168.122.50"))).ToBytes())
	}

	st := s.Stats()
	if st.PoolExhausted < flood || st.Nak < flood || st.StoreErrors < flood || st.SendErrors < flood {
		t.Fatalf("the flood did not do what it should: %+v", st)
	}
	for _, msg := range []string{
		"DHCPv4 no address available",
		"DHCPNAK",
		"DHCPv4 lease not stored: no ACK sent",
		"DHCPv4 lease not deleted",
		"DHCPv4 reply not sent",
	} {
		// One line, and one more should the run outlast the limiter's
		// interval.
		if n := logs.count(msg); n < 1 || n > 2 {
			t.Errorf("%q logged %d times for %d requests", msg, n, flood)
		}
	}
}

// TestPerPacketLogsLimited6: the same for DHCPv6 requests while the disk is
// full.
func TestPerPacketLogsLimited6(t *testing.T) {
	const flood = 200 // within the pool: each is a lease to store
	logs := countLog4{mu: &sync.Mutex{}, n: map[string]int{}}
	store := &failStore4{}
	store.down.Store(true)
	s := newTestServer6(t, func(c *Config6) { c.Store, c.Log = store, slog.New(logs) })
	e := &env6{t: t, h: s.h, now: t06}
	for i := range flood {
		c := tcl6{duid: &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 9, byte(i >> 8), byte(i)}}, iaid: 1}
		s.serve6(e.msg(c, dhcpv6.MessageTypeRequest, c.ia()).ToBytes())
	}
	if st := s.Stats(); st.StoreErrors < flood {
		t.Fatalf("the flood did not do what it should: %+v", st)
	}
	msg := "storing DHCPv6 leases failed, not replying"
	if n := logs.count(msg); n < 1 || n > 2 {
		t.Errorf("%q logged %d times for %d requests", msg, n, flood)
	}
}
