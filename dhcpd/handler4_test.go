package dhcpd

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vnetd/vnetd/leases"
)

const (
	macA_4 = "52:54:00:00:00:0a"
	macB_4 = "52:54:00:00:00:0b"
	macC_4 = "52:54:00:00:00:0c"
	macD_4 = "52:54:00:00:00:0d"
)

func TestDORA4(t *testing.T) {
	r := newRig4(t, natNet4(defaultRange4))
	off := r.do(discover4(macA_4, hostname4("guest-a.example.org")))
	if off.resp == nil || off.resp.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("want OFFER, got %s", typeOf4(off.resp))
	}
	if off.commit != nil || off.release != nil {
		t.Fatal("an OFFER must not touch the store")
	}
	a := addr4(off.resp.YourIPAddr)
	if !netip.MustParsePrefix("192.168.122.0/24").Contains(a) || a == netip.MustParseAddr("192.168.122.1") {
		t.Fatalf("offered %s", a)
	}
	checkCommonOptions4(t, off.resp)
	if xid := off.resp.TransactionID; xid != (dhcpv4.TransactionID{1, 2, 3, 4}) {
		t.Errorf("transaction id %v", xid)
	}

	ack := r.do(select4(macA_4, off.resp, hostname4("guest-a.example.org")))
	if ack.resp == nil || ack.resp.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("want ACK, got %s", typeOf4(ack.resp))
	}
	checkCommonOptions4(t, ack.resp)
	if got := addr4(ack.resp.YourIPAddr); got != a {
		t.Fatalf("ACK for %s, offered %s", got, a)
	}
	want := leases.Lease{Network: "t4", Kind: leases.V4, IP: a, Prefix: 24, MAC: mac4(macA_4),
		Hostname: "guest-a", Expiry: t04.Add(time.Hour)}
	if c := ack.commit; c == nil || c.Network != want.Network || c.Kind != want.Kind || c.IP != want.IP ||
		c.Prefix != want.Prefix || !bytes.Equal(c.MAC, want.MAC) || c.Hostname != want.Hostname ||
		!c.Expiry.Equal(want.Expiry) || c.ClientID != "" {
		t.Fatalf("commit %+v, want %+v", ack.commit, want)
	}
	s := r.h.Stats()
	if s.Discover != 1 || s.Offer != 1 || s.Request != 1 || s.Ack != 1 || s.Nak != 0 || s.Dropped != 0 {
		t.Errorf("stats %+v", s)
	}
}

// checkCommonOptions4 checks what every OFFER/ACK of natNet4 carries.
func checkCommonOptions4(t *testing.T, m *dhcpv4.DHCPv4) {
	t.Helper()
	server := net.IP{192, 168, 122, 1}
	if got := m.ServerIdentifier(); !got.Equal(server) {
		t.Errorf("server identifier %v", got)
	}
	if got := m.SubnetMask(); !bytes.Equal(got, net.CIDRMask(24, 32)) {
		t.Errorf("subnet mask %v", got)
	}
	if got := m.Router(); len(got) != 1 || !got[0].Equal(server) {
		t.Errorf("router %v", got)
	}
	if got := m.DNS(); len(got) != 1 || !got[0].Equal(server) {
		t.Errorf("dns %v", got)
	}
	if got := m.BroadcastAddress(); !got.Equal(net.IP{192, 168, 122, 255}) {
		t.Errorf("broadcast %v", got)
	}
	lt, _ := optU32of4(m, dhcpv4.OptionIPAddressLeaseTime)
	t1, _ := optU32of4(m, dhcpv4.OptionRenewTimeValue)
	t2, _ := optU32of4(m, dhcpv4.OptionRebindingTimeValue)
	if lt != 3600 || t1 != 1800 || t2 != 3150 {
		t.Errorf("lease/T1/T2 = %d/%d/%d, want 3600/1800/3150", lt, t1, t2)
	}
	if m.BootFileName != "" || !m.ServerIPAddr.Equal(net.IPv4zero) {
		t.Errorf("file %q siaddr %v without <bootp>/<tftp>", m.BootFileName, m.ServerIPAddr)
	}
	if m.OpCode != dhcpv4.OpcodeBootReply {
		t.Errorf("opcode %v", m.OpCode)
	}
}

func TestRenewRebind4(t *testing.T) {
	r := newRig4(t, natNet4(defaultRange4))
	ack, _ := r.dora(macA_4, hostname4("a1"))
	a := ack.YourIPAddr.String()
	for _, tc := range []struct {
		name      string
		after     time.Duration
		broadcast bool
	}{
		{"renew at T1", 30 * time.Minute, false},
		{"rebind at T2", 53 * time.Minute, true},
		{"renew after expiry", 2 * time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.advance(tc.after)
			res := r.do(renew4(macA_4, a, tc.broadcast))
			if typeOf4(res.resp) != "ACK" || res.resp.YourIPAddr.String() != a {
				t.Fatalf("got %s %v %s", typeOf4(res.resp), res.resp, msg4(res.resp))
			}
			if !res.resp.ClientIPAddr.Equal(ip4s(a)) {
				t.Errorf("ciaddr %v in ACK", res.resp.ClientIPAddr)
			}
			if res.commit == nil || !res.commit.Expiry.Equal(r.now.Add(time.Hour)) {
				t.Fatalf("commit %+v: want the lease extended to now+1h", res.commit)
			}
			if res.commit.Hostname != "a1" {
				t.Errorf("hostname %q lost on renewal", res.commit.Hostname)
			}
			if res.release != nil {
				t.Errorf("renewal released %v", *res.release)
			}
		})
	}
}

func TestNak4(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  func(r *rig4, aAddr string) *dhcpv4.DHCPv4
		want string // NAK message, "" for no reply
	}{
		{"init-reboot for another client's address", func(r *rig4, a string) *dhcpv4.DHCPv4 { return initReboot4(macB_4, a) }, "address not available"},
		{"renew of another client's address", func(r *rig4, a string) *dhcpv4.DHCPv4 { return renew4(macB_4, a, false) }, "address not available"},
		{"address outside the subnet", func(r *rig4, a string) *dhcpv4.DHCPv4 { return initReboot4(macB_4, "10.0.0.5") }, "address 10.0.0.5 is not in subnet 192.168.122.0/24"},
		{"renew from another network", func(r *rig4, a string) *dhcpv4.DHCPv4 { return renew4(macB_4, "172.16.0.9", false) }, "address 172.16.0.9 is not in subnet 192.168.122.0/24"},
		{"the server's own address", func(r *rig4, a string) *dhcpv4.DHCPv4 { return initReboot4(macB_4, "192.168.122.1") }, "address not available"},
		{"the broadcast address", func(r *rig4, a string) *dhcpv4.DHCPv4 { return initReboot4(macB_4, "192.168.122.255") }, "address not available"},
		{"selecting another server's offer", func(r *rig4, a string) *dhcpv4.DHCPv4 {
			return initReboot4(macB_4, "192.168.122.77", dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip4s("192.168.122.254"))))
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig4(t, natNet4(`<range start='192.168.122.2' end='192.168.122.100'/>`))
			ack, _ := r.dora(macA_4)
			res := r.do(tc.req(r, ack.YourIPAddr.String()))
			if tc.want == "" {
				if res.resp != nil || res.commit != nil {
					t.Fatalf("want no reply, got %s", typeOf4(res.resp))
				}
				return
			}
			if typeOf4(res.resp) != "NAK" || res.commit != nil {
				t.Fatalf("want NAK, got %s", typeOf4(res.resp))
			}
			if got := res.resp.Message(); got != tc.want {
				t.Errorf("NAK message %q, want %q", got, tc.want)
			}
			if !res.resp.YourIPAddr.Equal(net.IPv4zero) || res.resp.ServerIdentifier() == nil {
				t.Errorf("NAK yiaddr %v server id %v", res.resp.YourIPAddr, res.resp.ServerIdentifier())
			}
			if r.h.Stats().Nak != 1 {
				t.Errorf("stats %+v", r.h.Stats())
			}
		})
	}
}

func TestInitRebootFreeAddress4(t *testing.T) {
	// Authoritative: a client we know nothing about gets a free address it
	// asks for (e.g. after the lease store was lost).
	r := newRig4(t, natNet4(defaultRange4))
	res := r.do(initReboot4(macA_4, "192.168.122.50"))
	if typeOf4(res.resp) != "ACK" || addr4(res.resp.YourIPAddr) != netip.MustParseAddr("192.168.122.50") || res.commit == nil {
		t.Fatalf("got %s %s", typeOf4(res.resp), msg4(res.resp))
	}
	// An address outside every range is not handed out.
	res = r.do(initReboot4(macB_4, "192.168.122.255"))
	if typeOf4(res.resp) != "NAK" {
		t.Fatalf("got %s", typeOf4(res.resp))
	}
}

func TestStability4(t *testing.T) {
	r := newRig4(t, natNet4(defaultRange4))
	ackA, _ := r.dora(macA_4)
	ackB, _ := r.dora(macB_4)
	if ackA.YourIPAddr.Equal(ackB.YourIPAddr) {
		t.Fatalf("two clients got %v", ackA.YourIPAddr)
	}
	// A DISCOVER from a bound client offers its address again.
	if off := r.do(discover4(macA_4)); !off.resp.YourIPAddr.Equal(ackA.YourIPAddr) {
		t.Fatalf("rediscover offered %v, bound to %v", off.resp.YourIPAddr, ackA.YourIPAddr)
	}
	// After a release, and after expiry, the client gets it back.
	r.do(release4(macA_4, ackA.YourIPAddr.String()))
	if off := r.do(discover4(macA_4)); !off.resp.YourIPAddr.Equal(ackA.YourIPAddr) {
		t.Fatalf("after release offered %v, had %v", off.resp.YourIPAddr, ackA.YourIPAddr)
	}
	r.advance(3 * time.Hour)
	if gone := r.expire(); len(gone) != 1 || gone[0] != addr4(ackB.YourIPAddr) {
		t.Fatalf("expired %v", gone)
	}
	if off := r.do(discover4(macB_4)); !off.resp.YourIPAddr.Equal(ackB.YourIPAddr) {
		t.Fatalf("after expiry offered %v, had %v", off.resp.YourIPAddr, ackB.YourIPAddr)
	}
	// Identity is the client identifier when there is one, whatever the MAC.
	r2 := newRig4(t, natNet4(defaultRange4))
	ack1, l1 := r2.dora(macC_4, clientID4(0xff, 1, 2, 3))
	if l1.ClientID != "ff:01:02:03" {
		t.Errorf("client id stored as %q", l1.ClientID)
	}
	if off := r2.do(discover4(macD_4, clientID4(0xff, 1, 2, 3))); !off.resp.YourIPAddr.Equal(ack1.YourIPAddr) {
		t.Fatalf("same client id, other MAC: offered %v, bound %v", off.resp.YourIPAddr, ack1.YourIPAddr)
	}
	if !bytes.Equal(r2.do(discover4(macD_4, clientID4(0xff, 1, 2, 3))).resp.Options.Get(dhcpv4.OptionClientIdentifier), []byte{0xff, 1, 2, 3}) {
		t.Error("client identifier not echoed (RFC 6842)")
	}
}

func TestRequestedAddressPreferred4(t *testing.T) {
	r := newRig4(t, natNet4(defaultRange4))
	want := "192.168.122.123"
	off := r.do(discover4(macA_4, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip4s(want)))))
	if off.resp.YourIPAddr.String() != want {
		t.Fatalf("offered %v, asked for %s", off.resp.YourIPAddr, want)
	}
	r.do(select4(macA_4, off.resp))
	// Taken: another client asking for it gets something else.
	off = r.do(discover4(macB_4, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip4s(want)))))
	if off.resp.YourIPAddr.String() == want {
		t.Fatal("offered an address leased to another client")
	}
	// Outside the ranges: ignored.
	off = r.do(discover4(macC_4, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip4s("10.1.1.1")))))
	if typeOf4(off.resp) != "OFFER" || off.resp.YourIPAddr.String() == "10.1.1.1" {
		t.Fatalf("got %s %v", typeOf4(off.resp), off.resp)
	}
}

func TestOfferReserved4(t *testing.T) {
	r := newRig4(t, natNet4(`<range start='192.168.122.2' end='192.168.122.3'/>`))
	offA := r.do(discover4(macA_4))
	offB := r.do(discover4(macB_4))
	if offA.resp.YourIPAddr.Equal(offB.resp.YourIPAddr) {
		t.Fatal("the same address offered to two clients")
	}
	if res := r.do(initReboot4(macB_4, offA.resp.YourIPAddr.String())); typeOf4(res.resp) != "NAK" {
		t.Fatalf("B took A's offered address: %s", typeOf4(res.resp))
	}
	// Offers lapse.
	r.advance(2 * offerHold4)
	r.expire()
	if res := r.do(initReboot4(macB_4, offA.resp.YourIPAddr.String())); typeOf4(res.resp) != "ACK" {
		t.Fatalf("lapsed offer still reserved: %s", typeOf4(res.resp))
	}
}

func TestStaticHosts4(t *testing.T) {
	xml := natNet4(defaultRange4 + `
<host mac='00:16:3e:77:e2:ed' name='a.example.com' ip='192.168.122.10'/>
<host mac='00:16:3e:3e:a9:1a' ip='192.168.122.200'><lease expiry='2' unit='hours'/></host>
<host name='paul' ip='192.168.122.21'/>
<host name='out' ip='192.168.122.1'/>`)
	for _, tc := range []struct {
		name     string
		mac      string
		mods     []dhcpv4.Modifier
		want     string
		hostname string
		lease    uint32
	}{
		{"by MAC", "00:16:3e:77:e2:ed", nil, "192.168.122.10", "a", 3600},
		{"by MAC, own host name ignored", "00:16:3e:77:e2:ed", []dhcpv4.Modifier{hostname4("zzz")}, "192.168.122.10", "a", 3600},
		{"by MAC with host lease", "00:16:3e:3e:a9:1a", []dhcpv4.Modifier{hostname4("bee")}, "192.168.122.200", "bee", 7200},
		{"by name", macC_4, []dhcpv4.Modifier{hostname4("paul")}, "192.168.122.21", "paul", 3600},
		{"by name, case and domain ignored", macC_4, []dhcpv4.Modifier{hostname4("Paul.example.com")}, "192.168.122.21", "paul", 3600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig4(t, xml)
			ack, l := r.dora(tc.mac, tc.mods...)
			if ack.YourIPAddr.String() != tc.want {
				t.Fatalf("got %v, want %s", ack.YourIPAddr, tc.want)
			}
			if l.Hostname != tc.hostname {
				t.Errorf("hostname %q, want %q", l.Hostname, tc.hostname)
			}
			if lt, _ := optU32of4(ack, dhcpv4.OptionIPAddressLeaseTime); lt != tc.lease {
				t.Errorf("lease %d, want %d", lt, tc.lease)
			}
		})
	}

	r := newRig4(t, xml)
	// Reserved addresses are not handed to others, even when asked for.
	if res := r.do(initReboot4(macA_4, "192.168.122.10")); typeOf4(res.resp) != "NAK" {
		t.Fatalf("another client got a reserved address: %s", typeOf4(res.resp))
	}
	if off := r.do(discover4(macA_4, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip4s("192.168.122.21"))))); off.resp.YourIPAddr.String() == "192.168.122.21" {
		t.Fatal("offered a reserved address")
	}
	// A host asking for another address is offered its own...
	off0 := r.do(discover4("00:16:3e:77:e2:ed", dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip4s("192.168.122.99")))))
	if off0.resp.YourIPAddr.String() != "192.168.122.10" {
		t.Fatalf("host offered %v", off0.resp.YourIPAddr)
	}
	// ...and NAKed, to come back for its own.
	res := r.do(initReboot4("00:16:3e:77:e2:ed", "192.168.122.50"))
	if typeOf4(res.resp) != "NAK" || msg4(res.resp) != "static lease available" {
		t.Fatalf("got %s %q", typeOf4(res.resp), msg4(res.resp))
	}
	// The host name is sent when asked for.
	off := r.do(discover4("00:16:3e:77:e2:ed", dhcpv4.WithRequestedOptions(dhcpv4.OptionHostName)))
	if got := off.resp.HostName(); got != "a" {
		t.Errorf("host name option %q", got)
	}
}

func TestStaticHostAddressTaken4(t *testing.T) {
	// A live dynamic lease of a host's address (made before the host was
	// defined) is not taken away: the host is served from the range
	// meanwhile. At its next renewal the holder is NAKed and moves, and
	// then the host gets its address at its own next renewal.
	stored := leases.Lease{Network: "t4", Kind: leases.V4, IP: netip.MustParseAddr("192.168.122.10"),
		MAC: mac4(macA_4), Expiry: t04.Add(time.Hour)}
	r := newRig4(t, natNet4(defaultRange4+`<host mac='`+macB_4+`' ip='192.168.122.10'/>`), stored)
	ackB, _ := r.dora(macB_4)
	if ackB.YourIPAddr.String() == "192.168.122.10" {
		t.Fatal("took the address from its holder")
	}
	res := r.do(renew4(macA_4, "192.168.122.10", false))
	if typeOf4(res.resp) != "NAK" || msg4(res.resp) != "address reserved" || res.release == nil {
		t.Fatalf("holder's renewal: %s %q", typeOf4(res.resp), msg4(res.resp))
	}
	if ack, _ := r.dora(macA_4); ack.YourIPAddr.String() == "192.168.122.10" {
		t.Fatal("holder got the reserved address again")
	}
	res = r.do(renew4(macB_4, ackB.YourIPAddr.String(), false))
	if typeOf4(res.resp) != "NAK" || msg4(res.resp) != "static lease available" {
		t.Fatalf("host's renewal: %s %q", typeOf4(res.resp), msg4(res.resp))
	}
	if ack, _ := r.dora(macB_4); ack.YourIPAddr.String() != "192.168.122.10" {
		t.Fatalf("host got %v", ack.YourIPAddr)
	}
}

func TestStaticOnly4(t *testing.T) {
	r := newRig4(t, natNet4(`<host mac='`+macA_4+`' name='vm1' ip='192.168.122.10'/><host name='byname' ip='192.168.122.11'/>`))
	if res := r.do(discover4(macB_4)); res.resp != nil {
		t.Fatalf("unknown client got %s", typeOf4(res.resp))
	}
	if res := r.do(initReboot4(macB_4, "192.168.122.12")); typeOf4(res.resp) != "NAK" {
		t.Fatalf("unknown client's REQUEST: %s", typeOf4(res.resp))
	}
	if ack, _ := r.dora(macA_4); ack.YourIPAddr.String() != "192.168.122.10" {
		t.Fatalf("host got %v", ack.YourIPAddr)
	}
	if ack, _ := r.dora(macC_4, hostname4("byname")); ack.YourIPAddr.String() != "192.168.122.11" {
		t.Fatalf("host by name got %v", ack.YourIPAddr)
	}
	if s := r.h.Stats(); s.PoolExhausted != 0 {
		t.Errorf("unknown client on a static-only network counted as exhaustion: %+v", s)
	}
}

func TestLeaseTimes4(t *testing.T) {
	for _, tc := range []struct {
		name  string
		dhcp  string
		mac   string
		mods  []dhcpv4.Modifier
		lease uint32 // infiniteLease4: infinite
	}{
		{"default", defaultRange4, macA_4, nil, 3600},
		{"range seconds", `<range start='192.168.122.2' end='192.168.122.254'><lease expiry='200' unit='seconds'/></range>`, macA_4, nil, 200},
		{"range minutes (default unit)", `<range start='192.168.122.2' end='192.168.122.254'><lease expiry='10'/></range>`, macA_4, nil, 600},
		{"range hours", `<range start='192.168.122.2' end='192.168.122.254'><lease expiry='1' unit='hours'/></range>`, macA_4, nil, 3600},
		{"range infinite", `<range start='192.168.122.2' end='192.168.122.254'><lease expiry='0'/></range>`, macA_4, nil, infiniteLease4},
		{"host over range", `<range start='192.168.122.2' end='192.168.122.254'><lease expiry='10'/></range><host mac='` + macA_4 + `' ip='192.168.122.10'><lease expiry='3' unit='hours'/></host>`, macA_4, nil, 10800},
		{"host infinite", defaultRange4 + `<host mac='` + macA_4 + `' ip='192.168.122.10'><lease expiry='0'/></host>`, macA_4, nil, infiniteLease4},
		{"host without lease takes the range's", `<range start='192.168.122.2' end='192.168.122.254'><lease expiry='20'/></range><host mac='` + macA_4 + `' ip='192.168.122.10'/>`, macA_4, nil, 1200},
		{"host outside ranges: default", `<range start='192.168.122.2' end='192.168.122.100'><lease expiry='20'/></range><host mac='` + macA_4 + `' ip='192.168.122.200'/>`, macA_4, nil, 3600},
		{"client asks for less", defaultRange4, macA_4, []dhcpv4.Modifier{leaseOpt4(600)}, 600},
		{"client asks for more", defaultRange4, macA_4, []dhcpv4.Modifier{leaseOpt4(7200)}, 3600},
		{"client asks for too little", defaultRange4, macA_4, []dhcpv4.Modifier{leaseOpt4(5)}, 120},
		{"client asks for a time on an infinite range", `<range start='192.168.122.2' end='192.168.122.254'><lease expiry='0'/></range>`, macA_4, []dhcpv4.Modifier{leaseOpt4(900)}, 900},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig4(t, natNet4(tc.dhcp))
			ack, l := r.dora(tc.mac, tc.mods...)
			lt, ok := optU32of4(ack, dhcpv4.OptionIPAddressLeaseTime)
			if !ok || lt != tc.lease {
				t.Fatalf("lease time %d (present %v), want %d", lt, ok, tc.lease)
			}
			t1, ok1 := optU32of4(ack, dhcpv4.OptionRenewTimeValue)
			t2, ok2 := optU32of4(ack, dhcpv4.OptionRebindingTimeValue)
			if tc.lease == infiniteLease4 {
				if ok1 || ok2 {
					t.Errorf("T1/T2 sent with an infinite lease")
				}
				if !l.Expiry.IsZero() {
					t.Errorf("infinite lease stored with expiry %v", l.Expiry)
				}
				r.advance(1000 * time.Hour)
				if gone := r.expire(); len(gone) != 0 {
					t.Errorf("infinite lease expired")
				}
				return
			}
			if t1 != tc.lease/2 || t2 != uint32(uint64(tc.lease)*7/8) {
				t.Errorf("T1 %d T2 %d for lease %d", t1, t2, tc.lease)
			}
			if want := t04.Add(time.Duration(tc.lease) * time.Second); !l.Expiry.Equal(want) {
				t.Errorf("expiry %v, want %v", l.Expiry, want)
			}
		})
	}
}

func TestDecline4(t *testing.T) {
	r := newRig4(t, natNet4(`<range start='192.168.122.2' end='192.168.122.4'/>`))
	ack, _ := r.dora(macA_4)
	bad := ack.YourIPAddr.String()
	res := r.do(decline4(macA_4, bad))
	if res.resp != nil || res.release == nil || res.release.String() != bad {
		t.Fatalf("DECLINE: reply %s release %v", typeOf4(res.resp), res.release)
	}
	for _, mac := range []string{macA_4, macB_4, macC_4} {
		off := r.do(discover4(mac, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip4s(bad)))))
		if off.resp != nil && off.resp.YourIPAddr.String() == bad {
			t.Fatalf("declined address offered to %s", mac)
		}
	}
	if res := r.do(initReboot4(macD_4, bad)); typeOf4(res.resp) != "NAK" {
		t.Fatalf("declined address acked: %s", typeOf4(res.resp))
	}
	r.advance(declineHold4 + time.Second)
	r.expire()
	if res := r.do(initReboot4(macD_4, bad)); typeOf4(res.resp) != "ACK" {
		t.Fatalf("after the quarantine: %s", typeOf4(res.resp))
	}
	// A DECLINE for an address that is not the client's is ignored.
	r2 := newRig4(t, natNet4(defaultRange4))
	ackA, _ := r2.dora(macA_4)
	if res := r2.do(decline4(macB_4, ackA.YourIPAddr.String())); res.release != nil {
		t.Fatal("another client's DECLINE released the lease")
	}
	if res := r2.do(renew4(macA_4, ackA.YourIPAddr.String(), false)); typeOf4(res.resp) != "ACK" {
		t.Fatalf("lease lost to a foreign DECLINE: %s", typeOf4(res.resp))
	}
	if s := r.h.Stats(); s.Decline != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestRelease4(t *testing.T) {
	r := newRig4(t, natNet4(`<range start='192.168.122.2' end='192.168.122.2'/>`))
	ack, _ := r.dora(macA_4)
	a := ack.YourIPAddr.String()
	if res := r.do(discover4(macB_4)); res.resp != nil {
		t.Fatal("single-address pool offered twice")
	}
	// Foreign RELEASE: ignored.
	if res := r.do(release4(macB_4, a)); res.release != nil {
		t.Fatal("another client released the lease")
	}
	res := r.do(release4(macA_4, a))
	if res.resp != nil || res.release == nil || res.release.String() != a {
		t.Fatalf("RELEASE: reply %s release %v", typeOf4(res.resp), res.release)
	}
	if ack, _ := r.dora(macB_4); ack.YourIPAddr.String() != a {
		t.Fatalf("released address not reused: %v", ack.YourIPAddr)
	}
}

func TestReleasePendingUntilSettled4(t *testing.T) {
	// The address of a release is not handed out before the store deleted
	// the old lease (else a late Delete would remove the new lease).
	h, err := NewHandler4(netXML4(t, natNet4(`<range start='192.168.122.2' end='192.168.122.2'/>`)), nil)
	if err != nil {
		t.Fatal(err)
	}
	off, _, _, _ := h.Handle(discover4(macA_4), t04)
	h.Handle(select4(macA_4, off), t04)
	_, _, rel, _ := h.Handle(release4(macA_4, "192.168.122.2"), t04)
	if rel == nil {
		t.Fatal("no release")
	}
	if resp, _, _, _ := h.Handle(discover4(macB_4), t04); resp != nil {
		t.Fatal("address offered while its deletion is in flight")
	}
	h.Settle(*rel)
	if resp, _, _, _ := h.Handle(discover4(macB_4), t04); resp == nil {
		t.Fatal("address not offered once settled")
	}
}

func TestExpiry4(t *testing.T) {
	r := newRig4(t, natNet4(`<range start='192.168.122.2' end='192.168.122.2'><lease expiry='2'/></range>`))
	ack, _ := r.dora(macA_4)
	if res := r.do(discover4(macB_4)); res.resp != nil {
		t.Fatal("offered a leased address")
	}
	r.advance(2*time.Minute - time.Second)
	if gone := r.expire(); len(gone) != 0 {
		t.Fatalf("expired early: %v", gone)
	}
	r.advance(2 * time.Second)
	// Before the sweep an expired lease is already free...
	off := r.do(discover4(macB_4))
	if off.resp == nil || !off.resp.YourIPAddr.Equal(ack.YourIPAddr) {
		t.Fatalf("expired address not offered: %s", typeOf4(off.resp))
	}
	// ...and the old holder cannot renew over the new holder.
	if res := r.do(select4(macB_4, off.resp)); typeOf4(res.resp) != "ACK" {
		t.Fatalf("%s", typeOf4(res.resp))
	}
	if res := r.do(renew4(macA_4, ack.YourIPAddr.String(), false)); typeOf4(res.resp) != "NAK" {
		t.Fatalf("old holder renewed: %s", typeOf4(res.resp))
	}
	if gone := r.expire(); len(gone) != 0 {
		t.Fatalf("the new lease was swept: %v", gone)
	}
}

func TestPoolExhausted4(t *testing.T) {
	r := newRig4(t, natNet4(`<range start='192.168.122.2' end='192.168.122.3'/><range start='192.168.122.100' end='192.168.122.100'/>`))
	got := map[string]bool{}
	for _, mac := range []string{macA_4, macB_4, macC_4} {
		ack, _ := r.dora(mac)
		got[ack.YourIPAddr.String()] = true
	}
	if !got["192.168.122.2"] || !got["192.168.122.3"] || !got["192.168.122.100"] {
		t.Fatalf("multiple ranges: got %v", got)
	}
	if res := r.do(discover4(macD_4)); res.resp != nil {
		t.Fatalf("offered %v from an exhausted pool", res.resp.YourIPAddr)
	}
	if s := r.h.Stats(); s.PoolExhausted != 1 || s.Offer != 3 {
		t.Errorf("stats %+v", s)
	}
}

func TestLeaseMax4(t *testing.T) {
	// dhcp-lease-max = Σ range sizes = 3: a host's lease outside the range
	// counts, so the third dynamic client is refused with an address free.
	r := newRig4(t, natNet4(`<range start='192.168.122.2' end='192.168.122.4'/><host mac='`+macA_4+`' ip='192.168.122.100'/>`))
	r.dora(macA_4)
	r.dora(macB_4)
	r.dora(macC_4)
	if res := r.do(discover4(macD_4)); res.resp != nil {
		t.Fatalf("lease-max exceeded: offered %v", res.resp.YourIPAddr)
	}
	if res := r.do(initReboot4(macD_4, "192.168.122.4")); typeOf4(res.resp) != "NAK" {
		t.Fatalf("lease-max exceeded by REQUEST: %s", typeOf4(res.resp))
	}
	if s := r.h.Stats(); s.PoolExhausted != 1 {
		t.Errorf("stats %+v", s)
	}
	// Bound clients still renew.
	if res := r.do(discover4(macB_4)); res.resp == nil {
		t.Fatal("bound client refused at lease-max")
	}
}

func TestOptions4(t *testing.T) {
	for _, tc := range []struct {
		name  string
		xml   string
		check func(t *testing.T, m *dhcpv4.DHCPv4)
	}{
		{"isolated: no router option", `<network><name>t4</name><bridge name='virbr9'/><ip address='10.9.0.1' prefix='16'><dhcp><range start='10.9.0.10' end='10.9.0.20'/></dhcp></ip></network>`,
			func(t *testing.T, m *dhcpv4.DHCPv4) {
				if m.Options.Has(dhcpv4.OptionRouter) {
					t.Errorf("router option %v on an isolated network", m.Router())
				}
				if !bytes.Equal(m.SubnetMask(), net.CIDRMask(16, 32)) || !m.BroadcastAddress().Equal(net.IP{10, 9, 255, 255}) {
					t.Errorf("mask %v broadcast %v", m.SubnetMask(), m.BroadcastAddress())
				}
				if dns := m.DNS(); len(dns) != 1 || !dns[0].Equal(net.IP{10, 9, 0, 1}) {
					t.Errorf("dns %v", dns)
				}
			}},
		{"route: router", `<network><name>t4</name><forward mode='route'/><bridge name='virbr9'/><ip address='10.9.0.1' prefix='24'><dhcp><range start='10.9.0.10' end='10.9.0.20'/></dhcp></ip></network>`,
			func(t *testing.T, m *dhcpv4.DHCPv4) {
				if r := m.Router(); len(r) != 1 || !r[0].Equal(net.IP{10, 9, 0, 1}) {
					t.Errorf("router %v", r)
				}
			}},
		{"dns disabled: no DNS option", `<network><name>t4</name><forward mode='nat'/><bridge name='virbr9'/><dns enable='no'/><ip address='192.168.122.1' prefix='24'><dhcp>` + defaultRange4 + `</dhcp></ip></network>`,
			func(t *testing.T, m *dhcpv4.DHCPv4) {
				if m.Options.Has(dhcpv4.OptionDomainNameServer) {
					t.Errorf("DNS option %v with <dns enable='no'>", m.DNS())
				}
				if m.Options.Has(dhcpv4.OptionDomainName) || m.Options.Has(dhcpv4.OptionInterfaceMTU) {
					t.Error("domain/MTU sent without <domain>/<mtu>")
				}
			}},
		{"domain and mtu", `<network><name>t4</name><forward mode='nat'/><bridge name='virbr9'/><mtu size='7000'/><domain name='example.com'/><ip address='192.168.122.1' prefix='24'><dhcp>` + defaultRange4 + `</dhcp></ip></network>`,
			func(t *testing.T, m *dhcpv4.DHCPv4) {
				if d := m.DomainName(); d != "example.com" {
					t.Errorf("domain %q", d)
				}
				if v := m.Options.Get(dhcpv4.OptionInterfaceMTU); !bytes.Equal(v, []byte{0x1b, 0x58}) {
					t.Errorf("mtu option %x", v)
				}
			}},
		{"bootp file: next-server is the bridge", natNet4(defaultRange4 + `<bootp file='pxeboot.img'/>`),
			func(t *testing.T, m *dhcpv4.DHCPv4) {
				if m.BootFileName != "pxeboot.img" || !m.ServerIPAddr.Equal(net.IP{192, 168, 122, 1}) {
					t.Errorf("file %q siaddr %v", m.BootFileName, m.ServerIPAddr)
				}
				if m.Options.Has(dhcpv4.OptionBootfileName) || m.Options.Has(dhcpv4.OptionTFTPServerName) {
					t.Error("boot file/server sent as options (dhcp-no-override)")
				}
			}},
		{"bootp file and server", natNet4(defaultRange4 + `<bootp file='pxeboot.img' server='10.20.30.40'/>`),
			func(t *testing.T, m *dhcpv4.DHCPv4) {
				if m.BootFileName != "pxeboot.img" || !m.ServerIPAddr.Equal(net.IP{10, 20, 30, 40}) {
					t.Errorf("file %q siaddr %v", m.BootFileName, m.ServerIPAddr)
				}
			}},
		{"tftp root: next-server", `<network><name>t4</name><forward mode='nat'/><bridge name='virbr9'/><ip address='192.168.122.1' prefix='24'><tftp root='/srv/tftp'/><dhcp>` + defaultRange4 + `</dhcp></ip></network>`,
			func(t *testing.T, m *dhcpv4.DHCPv4) {
				if m.BootFileName != "" || !m.ServerIPAddr.Equal(net.IP{192, 168, 122, 1}) {
					t.Errorf("file %q siaddr %v", m.BootFileName, m.ServerIPAddr)
				}
			}},
		{"ipv6 ip ignored", `<network><name>t4</name><forward mode='nat'/><bridge name='virbr9'/>
<ip family='ipv6' address='2001:db8::1' prefix='64'><dhcp><range start='2001:db8::10' end='2001:db8::20'/></dhcp></ip>
<ip address='192.168.122.1' prefix='24'><dhcp>` + defaultRange4 + `</dhcp></ip></network>`,
			func(t *testing.T, m *dhcpv4.DHCPv4) {
				if !m.ServerIdentifier().Equal(net.IP{192, 168, 122, 1}) {
					t.Errorf("server id %v", m.ServerIdentifier())
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig4(t, tc.xml)
			off := r.do(discover4(macA_4))
			if off.resp == nil {
				t.Fatal("no offer")
			}
			tc.check(t, off.resp)
			ack, _ := r.dora(macA_4)
			tc.check(t, ack)
		})
	}
}

func TestInform4(t *testing.T) {
	r := newRig4(t, natNet4(defaultRange4))
	res := r.do(newMsg4(macA_4, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(ip4s("192.168.122.77"))))
	if typeOf4(res.resp) != "ACK" || res.commit != nil || res.release != nil {
		t.Fatalf("INFORM: %s commit %v", typeOf4(res.resp), res.commit)
	}
	m := res.resp
	if !m.YourIPAddr.Equal(net.IPv4zero) || !m.ClientIPAddr.Equal(ip4s("192.168.122.77")) {
		t.Errorf("yiaddr %v ciaddr %v", m.YourIPAddr, m.ClientIPAddr)
	}
	if m.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || m.Options.Has(dhcpv4.OptionRenewTimeValue) {
		t.Error("lease time in an INFORM reply")
	}
	if len(m.DNS()) != 1 || len(m.Router()) != 1 {
		t.Errorf("INFORM reply lacks options: %v", m.Options)
	}
	if s := r.h.Stats(); s.Inform != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestMalformed4(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  func() *dhcpv4.DHCPv4
	}{
		{"boot reply", func() *dhcpv4.DHCPv4 { m := discover4(macA_4); m.OpCode = dhcpv4.OpcodeBootReply; return m }},
		{"no message type", func() *dhcpv4.DHCPv4 {
			m := discover4(macA_4)
			m.Options.Del(dhcpv4.OptionDHCPMessageType)
			return m
		}},
		{"server message", func() *dhcpv4.DHCPv4 { return newMsg4(macA_4, dhcpv4.MessageTypeOffer) }},
		{"relayed", func() *dhcpv4.DHCPv4 { return discover4(macA_4, dhcpv4.WithGatewayIP(ip4s("10.0.0.1"))) }},
		{"short hardware address", func() *dhcpv4.DHCPv4 { m := discover4(macA_4); m.ClientHWAddr = m.ClientHWAddr[:4]; return m }},
		{"multicast hardware address", func() *dhcpv4.DHCPv4 { return discover4("01:00:5e:00:00:01") }},
		{"zero hardware address", func() *dhcpv4.DHCPv4 { return discover4("00:00:00:00:00:00") }},
		{"request without address", func() *dhcpv4.DHCPv4 { return newMsg4(macA_4, dhcpv4.MessageTypeRequest) }},
		{"release without ciaddr", func() *dhcpv4.DHCPv4 { return newMsg4(macA_4, dhcpv4.MessageTypeRelease) }},
		{"decline without address", func() *dhcpv4.DHCPv4 { return newMsg4(macA_4, dhcpv4.MessageTypeDecline) }},
		{"inform from outside", func() *dhcpv4.DHCPv4 {
			return newMsg4(macA_4, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(ip4s("10.0.0.1")))
		}},
		{"requested address of 3 bytes", func() *dhcpv4.DHCPv4 {
			m := newMsg4(macA_4, dhcpv4.MessageTypeRequest)
			m.Options[dhcpv4.OptionRequestedIPAddress.Code()] = []byte{1, 2, 3}
			return m
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig4(t, natNet4(defaultRange4))
			res := r.do(tc.req())
			if res.err == nil || res.resp != nil || res.commit != nil {
				t.Fatalf("err %v resp %s commit %v", res.err, typeOf4(res.resp), res.commit)
			}
			if s := r.h.Stats(); s.Dropped != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
	h, _ := NewHandler4(netXML4(t, natNet4(defaultRange4)), nil)
	if _, _, _, err := h.Handle(nil, t04); err == nil {
		t.Error("nil request accepted")
	}
}

func TestUpdate4(t *testing.T) {
	r := newRig4(t, natNet4(`<range start='192.168.122.2' end='192.168.122.9'/>`))
	ackA, _ := r.dora(macA_4)
	ackB, _ := r.dora(macB_4)
	// New range without A's and B's addresses; B becomes a static host.
	n := netXML4(t, natNet4(`<range start='192.168.122.100' end='192.168.122.109'><lease expiry='5'/></range><host mac='`+macB_4+`' ip='192.168.122.50'/>`))
	if err := r.h.Update(n); err != nil {
		t.Fatal(err)
	}
	if got := len(r.h.Leases()); got != 2 {
		t.Fatalf("leases after update: %d", got)
	}
	res := r.do(renew4(macA_4, ackA.YourIPAddr.String(), false))
	if typeOf4(res.resp) != "NAK" || res.release == nil || *res.release != addr4(ackA.YourIPAddr) {
		t.Fatalf("renewal of an address out of range: %s release %v", typeOf4(res.resp), res.release)
	}
	res = r.do(renew4(macB_4, ackB.YourIPAddr.String(), false))
	if typeOf4(res.resp) != "NAK" || msg4(res.resp) != "static lease available" {
		t.Fatalf("renewal of a client now static: %s %q", typeOf4(res.resp), msg4(res.resp))
	}
	ack, l := r.dora(macA_4)
	if !netip.MustParsePrefix("192.168.122.96/27").Contains(addr4(ack.YourIPAddr)) || !l.Expiry.Equal(r.now.Add(5*time.Minute)) {
		t.Fatalf("after update: %v until %v", ack.YourIPAddr, l.Expiry)
	}
	if ack, _ := r.dora(macB_4); ack.YourIPAddr.String() != "192.168.122.50" {
		t.Fatalf("new host got %v", ack.YourIPAddr)
	}
	if err := r.h.Update(netXML4(t, `<network><name>t4</name><bridge name='virbr9'/><ip address='192.168.122.1' prefix='24'/></network>`)); err == nil {
		t.Error("update to a network without DHCP accepted")
	}
}

func TestStoredLeases4(t *testing.T) {
	a := netip.MustParseAddr("192.168.122.33")
	stored := []leases.Lease{
		{Network: "t4", Kind: leases.V4, IP: a, Prefix: 24, MAC: mac4(macA_4), Hostname: "old", Expiry: t04.Add(10 * time.Minute)},
		{Network: "t4", Kind: leases.V4, IP: netip.MustParseAddr("192.168.122.34"), MAC: mac4(macB_4), ClientID: "01:02", Expiry: t04.Add(-time.Minute)},
		{Network: "t4", Kind: leases.V6, IP: netip.MustParseAddr("2001:db8::5"), DUID: "00:01"},
	}
	r := newRig4(t, natNet4(defaultRange4), stored...)
	if off := r.do(discover4(macA_4)); off.resp.YourIPAddr.String() != a.String() {
		t.Fatalf("stored client offered %v", off.resp.YourIPAddr)
	}
	if res := r.do(initReboot4(macC_4, a.String())); typeOf4(res.resp) != "NAK" {
		t.Fatalf("stored lease given away: %s", typeOf4(res.resp))
	}
	res := r.do(renew4(macA_4, a.String(), false))
	if typeOf4(res.resp) != "ACK" || res.commit.Hostname != "old" {
		t.Fatalf("renewal of a stored lease: %s %+v", typeOf4(res.resp), res.commit)
	}
	if gone := r.expire(); len(gone) != 1 || gone[0].String() != "192.168.122.34" {
		t.Fatalf("expired %v", gone)
	}
	// The client identified by its client id gets its address back.
	if off := r.do(discover4(macD_4, clientID4(1, 2))); off.resp.YourIPAddr.String() != "192.168.122.34" {
		t.Fatalf("client id: offered %v", off.resp.YourIPAddr)
	}
}

func TestMoveReleasesOldAddress4(t *testing.T) {
	r := newRig4(t, natNet4(defaultRange4))
	ack, _ := r.dora(macA_4)
	res := r.do(initReboot4(macA_4, "192.168.122.200"))
	if typeOf4(res.resp) != "ACK" || res.release == nil || *res.release != addr4(ack.YourIPAddr) {
		t.Fatalf("move: %s release %v", typeOf4(res.resp), res.release)
	}
	if len(r.h.Leases()) != 1 {
		t.Fatalf("leases %v", r.h.Leases())
	}
}

func TestConfigErrors4(t *testing.T) {
	for _, xml := range []string{
		`<network><name>t4</name><bridge name='virbr9'/><ip address='192.168.122.1' prefix='24'/></network>`,
		`<network><name>t4</name><bridge name='virbr9'/><ip family='ipv6' address='2001:db8::1' prefix='64'><dhcp><range start='2001:db8::10' end='2001:db8::20'/></dhcp></ip></network>`,
	} {
		if _, err := NewHandler4(netXML4(t, xml), nil); err == nil {
			t.Errorf("accepted %s", xml)
		}
	}
	if _, err := NewHandler4(nil, nil); err == nil {
		t.Error("nil network accepted")
	}
}
