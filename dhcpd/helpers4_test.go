package dhcpd

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/leases"
)

// memStore4 is an in-memory LeaseStore.
type memStore4 struct {
	mu      sync.Mutex
	m       map[string]map[netip.Addr]leases.Lease
	putErr  error
	putGate chan struct{} // when set, Put waits for a value
	puts    int
	deletes int
	jobs    chan func() // Apply's writes, run in order by one goroutine
}

func newMemStore4(ls ...leases.Lease) *memStore4 {
	s := &memStore4{m: map[string]map[netip.Addr]leases.Lease{}, jobs: make(chan func(), 4096)}
	go func() {
		for job := range s.jobs {
			job()
		}
	}()
	for _, l := range ls {
		s.Put(context.Background(), l)
	}
	return s
}

// Apply runs the writes in submission order, like the real store.
func (s *memStore4) Apply(c leases.Changes, done func(error)) {
	s.jobs <- func() {
		for _, k := range c.Delete {
			s.Delete(context.Background(), k.Network, k.IP)
		}
		for _, l := range c.Put {
			if err := s.Put(context.Background(), l); err != nil {
				done(err)
				return
			}
		}
		done(nil)
	}
}

func (s *memStore4) Put(ctx context.Context, l leases.Lease) error {
	s.mu.Lock()
	gate := s.putGate
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.putErr != nil {
		return s.putErr
	}
	if s.m[l.Network] == nil {
		s.m[l.Network] = map[netip.Addr]leases.Lease{}
	}
	s.m[l.Network][l.IP] = l
	s.puts++
	return nil
}

func (s *memStore4) Delete(ctx context.Context, network string, ip netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m[network], ip)
	s.deletes++
	return nil
}

func (s *memStore4) List(network string) ([]leases.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []leases.Lease
	for _, l := range s.m[network] {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b leases.Lease) int { return a.IP.Compare(b.IP) })
	return out, nil
}

func (s *memStore4) get(network string, ip netip.Addr) (leases.Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.m[network][ip]
	return l, ok
}

var errStoreDown4 = errors.New("store down")

// netXML4 parses a network definition, failing the test on error.
func netXML4(t testing.TB, xml string) *conf.Network {
	t.Helper()
	n, err := conf.Parse([]byte(xml))
	if err != nil {
		t.Fatalf("parse network: %v\n%s", err, xml)
	}
	return n
}

// natNet4 is a NAT network 192.168.122.0/24 with the given <dhcp> content.
func natNet4(dhcp string) string {
	return `<network><name>t4</name><forward mode='nat'/><bridge name='virbr9'/>
<ip address='192.168.122.1' netmask='255.255.255.0'><dhcp>` + dhcp + `</dhcp></ip></network>`
}

const defaultRange4 = `<range start='192.168.122.2' end='192.168.122.254'/>`

var t04 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// rig4 drives a Handler4 with a fake clock, settling releases at once as
// the server does after deleting them from the store.
type rig4 struct {
	t   *testing.T
	h   *Handler4
	now time.Time
}

func newRig4(t *testing.T, xml string, stored ...leases.Lease) *rig4 {
	t.Helper()
	h, err := NewHandler4(netXML4(t, xml), stored)
	if err != nil {
		t.Fatal(err)
	}
	return &rig4{t: t, h: h, now: t04}
}

func (r *rig4) advance(d time.Duration) { r.now = r.now.Add(d) }

type result4 struct {
	resp    *dhcpv4.DHCPv4
	commit  *leases.Lease
	release *netip.Addr
	err     error
}

func (r *rig4) do(req *dhcpv4.DHCPv4) result4 {
	r.t.Helper()
	// Go through the wire format, as the server does.
	parsed, err := dhcpv4.FromBytes(req.ToBytes())
	if err != nil {
		r.t.Fatalf("request does not round-trip: %v", err)
	}
	var res result4
	res.resp, res.commit, res.release, res.err = r.h.Handle(parsed, r.now)
	if res.release != nil {
		r.h.Settle(*res.release)
	}
	if res.resp != nil {
		if _, err := dhcpv4.FromBytes(res.resp.ToBytes()); err != nil {
			r.t.Fatalf("reply does not parse: %v", err)
		}
	}
	return res
}

func (r *rig4) expire() []netip.Addr {
	gone := r.h.Expire(r.now)
	for _, a := range gone {
		r.h.Settle(a)
	}
	return gone
}

// dora runs DISCOVER, REQUEST for the offered address, and returns the ACK.
func (r *rig4) dora(mac string, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, *leases.Lease) {
	r.t.Helper()
	off := r.do(discover4(mac, mods...))
	if off.err != nil || off.resp == nil || off.resp.MessageType() != dhcpv4.MessageTypeOffer {
		r.t.Fatalf("%s: DISCOVER: want OFFER, got %v (err %v)", mac, typeOf4(off.resp), off.err)
	}
	if off.commit != nil {
		r.t.Fatalf("an OFFER must not write to the store")
	}
	ack := r.do(select4(mac, off.resp, mods...))
	if ack.err != nil || ack.resp == nil || ack.resp.MessageType() != dhcpv4.MessageTypeAck {
		r.t.Fatalf("%s: REQUEST: want ACK, got %v (err %v) %s", mac, typeOf4(ack.resp), ack.err, msg4(ack.resp))
	}
	if ack.commit == nil || ack.commit.IP != addr4(ack.resp.YourIPAddr) {
		r.t.Fatalf("ACK without the matching lease to commit: %+v", ack.commit)
	}
	return ack.resp, ack.commit
}

func typeOf4(m *dhcpv4.DHCPv4) string {
	if m == nil {
		return "no reply"
	}
	return m.MessageType().String()
}

func msg4(m *dhcpv4.DHCPv4) string {
	if m == nil {
		return ""
	}
	return m.Message()
}

func mac4(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func ip4s(s string) net.IP { return net.IP(netip.MustParseAddr(s).AsSlice()) }

func addr4(ip net.IP) netip.Addr { return ip4(ip) }

func xid4() dhcpv4.Modifier {
	return dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4})
}

func discover4(mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d, err := dhcpv4.NewDiscovery(mac4(mac), append([]dhcpv4.Modifier{xid4()}, mods...)...)
	if err != nil {
		panic(err)
	}
	return d
}

// select4 is the SELECTING-state REQUEST for an offer.
func select4(mac string, offer *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		panic(err)
	}
	m.ClientHWAddr = mac4(mac)
	return m
}

func newMsg4(mac string, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{xid4(), dhcpv4.WithHwAddr(mac4(mac)), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		panic(err)
	}
	return m
}

// initReboot4 is a REQUEST with option 50 and neither ciaddr nor server id.
func initReboot4(mac, ip string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	return newMsg4(mac, dhcpv4.MessageTypeRequest, append([]dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip4s(ip)))}, mods...)...)
}

// renew4 is a RENEWING (unicast) or REBINDING (broadcast) REQUEST: ciaddr,
// no option 50, no server id.
func renew4(mac, ciaddr string, broadcast bool, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	return newMsg4(mac, dhcpv4.MessageTypeRequest, append([]dhcpv4.Modifier{dhcpv4.WithClientIP(ip4s(ciaddr)), dhcpv4.WithBroadcast(broadcast)}, mods...)...)
}

func release4(mac, ciaddr string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	return newMsg4(mac, dhcpv4.MessageTypeRelease, append([]dhcpv4.Modifier{dhcpv4.WithClientIP(ip4s(ciaddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip4s("192.168.122.1")))}, mods...)...)
}

func decline4(mac, ip string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	return newMsg4(mac, dhcpv4.MessageTypeDecline, append([]dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip4s(ip))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip4s("192.168.122.1")))}, mods...)...)
}

func hostname4(name string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptHostName(name))
}

func clientID4(b ...byte) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClientIdentifier(b))
}

func leaseOpt4(secs uint32) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionIPAddressLeaseTime, u32opt4(secs)))
}

// optU32of4 reads a 4-byte option; ok false when absent.
func optU32of4(m *dhcpv4.DHCPv4, code dhcpv4.OptionCode) (uint32, bool) {
	v := m.Options.Get(code)
	if len(v) != 4 {
		return 0, false
	}
	return uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3]), true
}
