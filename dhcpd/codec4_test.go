package dhcpd

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vnetd/vnetd/conf"
)

// seeds4 are requests of every kind the handler serves, and broken ones.
func seeds4() [][]byte {
	disc := discover4(macA_4, hostname4("fuzz"), clientID4(1, 0x52, 0x54, 0, 0, 0, 0x0a))
	offer := newMsg4(macA_4, dhcpv4.MessageTypeOffer, dhcpv4.WithYourIP(ip4s("192.168.122.5")),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip4s("192.168.122.1"))))
	return [][]byte{
		disc.ToBytes(),
		select4(macA_4, offer).ToBytes(),
		initReboot4(macB_4, "192.168.122.10").ToBytes(),
		renew4(macA_4, "192.168.122.5", true).ToBytes(),
		release4(macA_4, "192.168.122.5").ToBytes(),
		decline4(macA_4, "192.168.122.5").ToBytes(),
		newMsg4(macA_4, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(ip4s("192.168.122.9"))).ToBytes(),
		discover4("00:16:3e:77:e2:ed", leaseOpt4(0xffffffff), dhcpv4.WithRequestedOptions(dhcpv4.OptionHostName)).ToBytes(),
		discover4(macB_4, hostname4("a"), dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionParameterRequestList, nil))).ToBytes(),
		append(disc.ToBytes()[:240], 53, 1, 1, 61, 2, 1, 2, 61, 0, 61, 3, 3, 4, 5, 55, 0, 12, 1, 'x', 12, 1, 'y', 255),
		append(disc.ToBytes()[:240], 0, 0, 53, 1, 1, 12),
		append(disc.ToBytes()[:240], 53, 1, 1, 255, 7),
		{},
		make([]byte, 240),
		disc.ToBytes()[:241],
		disc.ToBytes()[:240], // no options: accepted, unlike a lone Pad
	}
}

// FuzzParseRequest4: parseRequest4 accepts what dhcpv4.FromBytes accepts,
// with its error, and reads what the handler reads as requestFrom4 reads
// it from FromBytes's message.
func FuzzParseRequest4(f *testing.F) {
	for _, s := range seeds4() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		var r request4
		err := parseRequest4(b, &r)
		m, merr := dhcpv4.FromBytes(b)
		if (err == nil) != (merr == nil) || err != nil && err.Error() != merr.Error() {
			t.Fatalf("parseRequest4: %v; FromBytes: %v", err, merr)
		}
		if !bytes.Equal(b, orig) {
			t.Fatal("parsing changed the datagram")
		}
		if err != nil {
			return
		}
		want := requestFrom4(m)
		want.ciaddrRaw = m.ClientIPAddr
		if !sameRequest4(&r, &want) {
			t.Fatalf("parsed\n%+v\nwant\n%+v", r, want)
		}
		if r.messageType() != m.MessageType() || r.isBroadcast() != m.IsBroadcast() || r.hostName() != m.HostName() {
			t.Fatal("message type, flags or host name")
		}
		for c := range 256 {
			if r.requested(dhcpv4.GenericOptionCode(c)) != m.IsOptionRequested(dhcpv4.GenericOptionCode(c)) {
				t.Fatalf("option %d requested", c)
			}
		}
		if !reflect.DeepEqual(logIP4(r.opts.reqIP), m.RequestedIPAddress()) || !reflect.DeepEqual(logIP4(r.opts.serverID), m.ServerIdentifier()) {
			t.Fatal("logged addresses")
		}
	})
}

// sameRequest4 compares byte for byte, telling nil from empty.
func sameRequest4(a, b *request4) bool {
	eq := func(x, y []byte) bool { return bytes.Equal(x, y) && (x == nil) == (y == nil) }
	return a.op == b.op && a.htype == b.htype && a.xid == b.xid && a.flags == b.flags &&
		eq(a.chaddr, b.chaddr) && a.ciaddr == b.ciaddr && eq(a.ciaddrRaw, b.ciaddrRaw) && a.relayed == b.relayed &&
		eq(a.opts.msgType, b.opts.msgType) && eq(a.opts.clientID, b.opts.clientID) && eq(a.opts.hostname, b.opts.hostname) &&
		eq(a.opts.reqIP, b.opts.reqIP) && eq(a.opts.serverID, b.opts.serverID) && eq(a.opts.lease, b.opts.lease) &&
		eq(a.opts.prl, b.opts.prl)
}

// fuzzNets4 are configurations that make every option and header field a
// reply can carry.
var fuzzNets4 = []string{
	natNet4(`<range start='192.168.122.2' end='192.168.122.6'><lease expiry='0'/></range>
<host mac='00:16:3e:77:e2:ed' name='a.example.org' ip='192.168.122.10'/><host name='fuzz' ip='192.168.122.11'><lease expiry='5' unit='minutes'/></host>`),
	`<network><name>t4</name><bridge name='virbr9'/><domain name='` + strings.Repeat("d", 60) + `.` + strings.Repeat("e", 60) +
		`.test'/><mtu size='9000'/>
<ip address='10.0.0.1' prefix='28'><tftp root='/srv'/><dhcp><range start='10.0.0.2' end='10.0.0.9'/>
<host mac='52:54:00:00:00:0b' name='gamma' ip='10.0.0.10'/><host name='fuzz' ip='10.0.0.11'/>
<bootp file='` + strings.Repeat("f", 140) + `' server='10.0.0.14'/></dhcp></ip></network>`,
	`<network><name>t4</name><forward mode='route'/><bridge name='virbr9'/><dns enable='no'/>
<ip address='172.16.0.1' prefix='24'><dhcp><range start='172.16.0.100' end='172.16.0.200'><lease expiry='2' unit='hours'/></range>
<host name='eps' ip='172.16.0.21'/></dhcp></ip></network>`,
}

// FuzzServeBytes4: the server's path (parseRequest4, decide, the reply
// encoded into its frame) gives the bytes, lease and release that Handle's
// (dhcpv4.FromBytes, Handle, ToBytes, frame4) gives, on handlers in the
// same state.
func FuzzServeBytes4(f *testing.F) {
	for _, s := range seeds4() {
		for i := range fuzzNets4 {
			f.Add(uint8(i), s)
		}
	}
	nets := make([]*conf.Network, len(fuzzNets4))
	for i, xml := range fuzzNets4 {
		nets[i] = netXML4(f, xml)
	}
	f.Fuzz(func(t *testing.T, ni uint8, b []byte) {
		p := newPair4(t, nets[int(ni)%len(nets)])
		// Thrice, meeting the state the previous pass left.
		for range 3 {
			p.step(b)
			p.advance(time.Hour)
		}
	})
}

// pair4 is two handlers of one network, one driven as Handle's callers
// drive it, the other as the server does.
type pair4 struct {
	t      *testing.T
	handle *Handler4
	server *Handler4
	now    time.Time
	seen   map[string]bool // reply shapes met
}

func newPair4(t *testing.T, n *conf.Network) *pair4 {
	a, err := NewHandler4(n, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewHandler4(n, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &pair4{t: t, handle: a, server: b, now: t04, seen: map[string]bool{}}
}

func (p *pair4) advance(d time.Duration) {
	p.now = p.now.Add(d)
	ga, gb := p.handle.Expire(p.now), p.server.Expire(p.now)
	slices.SortFunc(ga, netip.Addr.Compare)
	slices.SortFunc(gb, netip.Addr.Compare)
	if !slices.Equal(ga, gb) {
		p.t.Fatalf("expired %v and %v", ga, gb)
	}
	for _, a := range ga {
		p.handle.Settle(a)
		p.server.Settle(a)
	}
}

// step serves b both ways, checks that they agree, and returns the reply.
func (p *pair4) step(b []byte) *dhcpv4.DHCPv4 {
	t := p.t
	t.Helper()
	m, merr := dhcpv4.FromBytes(b)
	var r request4
	if perr := parseRequest4(b, &r); (perr == nil) != (merr == nil) {
		t.Fatalf("parseRequest4: %v; FromBytes: %v", perr, merr)
	}
	if merr != nil {
		return nil
	}
	resp, commit, release, herr := p.handle.Handle(m, p.now)
	d, derr := p.server.decide(&r, p.now)
	switch {
	case (herr == nil) != (derr == nil) || herr != nil && herr.Error() != derr.Error():
		t.Fatalf("Handle: %v; decide: %v", herr, derr)
	case (commit != nil) != d.commit.IP.IsValid() || commit != nil && !reflect.DeepEqual(*commit, d.commit):
		t.Fatalf("commit %+v and %+v", commit, d.commit)
	case (release != nil) != d.release.IsValid() || release != nil && *release != d.release:
		t.Fatalf("release %v and %v", release, d.release)
	case (resp != nil) != d.ans.ok():
		t.Fatalf("reply %v and %v", resp, d.ans.mt)
	case p.handle.Stats() != p.server.Stats():
		t.Fatalf("stats %+v and %+v", p.handle.Stats(), p.server.Stats())
	}
	if release != nil {
		p.handle.Settle(*release)
		p.server.Settle(d.release)
	}
	if resp == nil {
		return nil
	}
	mac, ip := dest4(m, resp)
	if gmac, gip := destOf4(&r, &d.ans); !bytes.Equal(mac, gmac) || ip != gip {
		t.Fatalf("destination %v %v and %v %v", mac, ip, gmac, gip)
	}
	src, srcMAC := p.handle.serverAddr(), mac4(macD_4)
	want := frame4(mac, srcMAC, src, ip, serverPort4, clientPort4, resp.ToBytes())
	got := appendFrame4([]byte("arena"), mac, srcMAC, d.ans.cfg.server, ip, &d.ans)[len("arena"):]
	if !bytes.Equal(got, want) {
		t.Fatalf("frame\n% x\nwant\n% x", got, want)
	}
	p.seen[shape4(resp)] = true
	return resp
}

// shape4 names what a reply carries beyond the common options.
func shape4(m *dhcpv4.DHCPv4) string {
	s := m.MessageType().String()
	for _, c := range []dhcpv4.OptionCode{dhcpv4.OptionHostName, dhcpv4.OptionClientIdentifier, dhcpv4.OptionRenewTimeValue,
		dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionDomainName, dhcpv4.OptionInterfaceMTU, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer} {
		if m.Options.Has(c) {
			s += " " + c.String()
		}
	}
	if !m.ClientIPAddr.IsUnspecified() {
		s += " ciaddr"
	}
	if !m.ServerIPAddr.IsUnspecified() {
		s += " siaddr"
	}
	if m.BootFileName != "" {
		s += " file"
	}
	if m.IsBroadcast() {
		s += " broadcast"
	}
	if m.MessageType() == dhcpv4.MessageTypeNak {
		s += ": " + m.Message()
	}
	return s
}

// TestServeBytes4 drives both paths through every reply the handler makes
// (FuzzServeBytes4 on chosen requests), and checks that it met them.
func TestServeBytes4(t *testing.T) {
	seen := map[string]bool{}
	for i, xml := range fuzzNets4 {
		p := newPair4(t, netXML4(t, xml))
		n := p.handle.pool.cfg
		in := func(last byte) string {
			a := n.subnet.Addr().As4()
			a[3] = last
			return netip.AddrFrom4(a).String()
		}
		longID := make([]byte, 255)
		for j := range longID {
			longID[j] = byte(j)
		}
		mods := [][]dhcpv4.Modifier{
			nil,
			{hostname4("fuzz"), dhcpv4.WithRequestedOptions(dhcpv4.OptionHostName)},
			{hostname4("fuzz"), dhcpv4.WithRequestedOptions(dhcpv4.OptionRouter)},
			{hostname4("Fuzz.example.org"), dhcpv4.WithBroadcast(true), clientID4(1, 2, 3)},
			{clientID4(longID...), leaseOpt4(0xffffffff)},
			{leaseOpt4(30)},
		}
		for k, mod := range mods {
			mac := net.HardwareAddr{0x52, 0x54, 0, 0, byte(i), byte(k)}.String()
			if k == 1 {
				mac = "00:16:3e:77:e2:ed"
			}
			off := p.step(discover4(mac, mod...).ToBytes())
			if off == nil {
				t.Fatalf("net %d: no offer for %s", i, mac)
			}
			ack := p.step(select4(mac, off, mod...).ToBytes())
			if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("net %d: no ACK for %s", i, mac)
			}
			yi := ack.YourIPAddr.String()
			p.step(renew4(mac, yi, k%2 == 0, mod...).ToBytes())
			p.step(newMsg4(mac, dhcpv4.MessageTypeInform, append([]dhcpv4.Modifier{dhcpv4.WithClientIP(ip4s(yi))}, mod...)...).ToBytes())
			// NAKs: outside the subnet, taken, reserved, static lease.
			p.step(initReboot4(mac, "203.0.113.9", mod...).ToBytes())
			p.step(initReboot4(mac, in(10), mod...).ToBytes())
			p.step(initReboot4(mac, in(11), mod...).ToBytes())
			p.step(initReboot4(mac, in(21), mod...).ToBytes())
			p.step(initReboot4("52:54:00:99:99:99", yi, mod...).ToBytes())
			p.step(initReboot4(mac, yi, mod...).ToBytes())
			if k == 3 {
				p.step(decline4(mac, yi, mod...).ToBytes())
			}
			if k == 5 {
				p.step(release4(mac, yi, mod...).ToBytes())
			}
			p.advance(time.Minute)
		}
		for s := range p.seen {
			seen[s] = true
		}
	}
	for _, want := range []string{
		"OFFER Host Name Renew Time Value IP Addresses Lease Time Router Domain Name Server",
		"OFFER Host Name Renew Time Value IP Addresses Lease Time Domain Name Interface MTU Domain Name Server siaddr file",
		"OFFER Client identifier IP Addresses Lease Time Router Domain Name Server broadcast",
		"ACK Host Name Renew Time Value IP Addresses Lease Time Router Domain Name Server ciaddr",
		"ACK Client identifier Renew Time Value IP Addresses Lease Time Router ciaddr broadcast",
		"ACK Client identifier Domain Name Interface MTU Domain Name Server ciaddr siaddr file",
		"ACK Router ciaddr",
		"NAK: address 203.0.113.9 is not in subnet 192.168.122.0/24",
		"NAK: address not available",
		"NAK Client identifier broadcast: address reserved",
		"NAK: static lease available",
	} {
		if !seen[want] {
			var all []string
			for s := range seen {
				all = append(all, s)
			}
			slices.Sort(all)
			t.Errorf("no reply %q among\n%s", want, strings.Join(all, "\n"))
		}
	}
}

// FuzzSum4: the word-at-a-time one's-complement sum folds to RFC 1071's.
func FuzzSum4(f *testing.F) {
	f.Add(uint32(0), []byte{})
	f.Add(uint32(0xffff), []byte{0xff})
	f.Add(uint32(0xfffffff0), bytes.Repeat([]byte{0xff}, 1501))
	f.Fuzz(func(t *testing.T, s uint32, b []byte) {
		var want uint64 = uint64(s)
		for i := 0; i < len(b); i += 2 {
			w := uint64(b[i]) << 8
			if i+1 < len(b) {
				w |= uint64(b[i+1])
			}
			want += w
		}
		for want > 0xffff {
			want = want>>16 + want&0xffff
		}
		if got := fold4(sum4(s, b)); uint64(got) != want {
			t.Fatalf("sum %#x, want %#x", got, want)
		}
	})
}

func TestHexKey4(t *testing.T) {
	for _, b := range [][]byte{nil, {0}, {0x0a, 0xff, 0x10}, []byte(mac4(macA_4))} {
		var old []string
		for _, c := range b {
			old = append(old, hex.EncodeToString([]byte{c}))
		}
		if got, want := hexKey4("", b), strings.Join(old, ":"); got != want {
			t.Errorf("hexKey4(% x) = %q, want %q", b, got, want)
		}
		if got, want := hexKey4("hw:", b), "hw:"+net.HardwareAddr(b).String(); got != want {
			t.Errorf("hexKey4(% x) = %q, want %q", b, got, want)
		}
	}
}

func TestSlab4(t *testing.T) {
	var s slab4
	var got [][]byte
	var want [][]byte
	for i := range 200 {
		p := bytes.Repeat([]byte{byte(i)}, 1+i*37%600)
		if i == 100 {
			p = bytes.Repeat([]byte{0xee}, maxPacket4)
		}
		want = append(want, bytes.Clone(p))
		got = append(got, s.copy(p))
		p[0] ^= 0xff // the copy is not p
	}
	for i := range got {
		// Appending to one must not reach the next.
		_ = append(got[i], 0xaa)
		if !bytes.Equal(got[i], want[i]) || cap(got[i]) != len(got[i]) {
			t.Fatalf("datagram %d changed", i)
		}
	}
}
