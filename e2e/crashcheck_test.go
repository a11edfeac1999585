package e2e

import (
	"encoding/binary"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/vnetd/vnetd/api"
)

// The capture's parsers and the crash tests' bookkeeping, without root.

func udpFrame(v6 bool, sport, dport uint16, payload []byte) []byte {
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	udp = append(udp, payload...)
	eth := make([]byte, 14)
	var ip []byte
	if v6 {
		binary.BigEndian.PutUint16(eth[12:], 0x86dd)
		ip = make([]byte, 40)
		ip[0] = 6 << 4
		binary.BigEndian.PutUint16(ip[4:], uint16(len(udp)))
		ip[6] = 17
	} else {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip = make([]byte, 20)
		ip[0] = 4<<4 | 5
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
		ip[9] = 17
	}
	frame := append(eth, ip...)
	frame = append(frame, udp...)
	// Ethernet pads short frames; the parsers go by the IP lengths.
	return append(frame, 0, 0, 0, 0)
}

func dhcp4(t *testing.T, mt dhcpv4.MessageType, yiaddr string) []byte {
	t.Helper()
	mac, _ := net.ParseMAC("52:54:00:00:00:01")
	m, err := dhcpv4.New(dhcpv4.WithMessageType(mt), dhcpv4.WithHwAddr(mac), dhcpv4.WithYourIP(net.ParseIP(yiaddr)))
	if err != nil {
		t.Fatal(err)
	}
	m.OpCode = dhcpv4.OpcodeBootReply
	return m.ToBytes()
}

func TestParseAck4(t *testing.T) {
	ack := dhcp4(t, dhcpv4.MessageTypeAck, "10.201.1.7")
	for _, tc := range []struct {
		name  string
		frame []byte
		want  ack4
		ok    bool
	}{
		{"ack", udpFrame(false, 67, 68, ack), ack4{"52:54:00:00:00:01", netip.MustParseAddr("10.201.1.7")}, true},
		{"offer", udpFrame(false, 67, 68, dhcp4(t, dhcpv4.MessageTypeOffer, "10.201.1.7")), ack4{}, false},
		{"ack to an inform", udpFrame(false, 67, 68, dhcp4(t, dhcpv4.MessageTypeAck, "0.0.0.0")), ack4{}, false},
		{"other ports", udpFrame(false, 68, 67, ack), ack4{}, false},
		{"over IPv6", udpFrame(true, 67, 68, ack), ack4{}, false},
		{"truncated", udpFrame(false, 67, 68, ack)[:40], ack4{}, false},
		{"not IP", []byte{1, 2, 3}, ack4{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseAck4(tc.frame)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("parseAck4 = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func reply6Msg(t *testing.T, mt dhcpv6.MessageType, status iana.StatusCode, valid time.Duration) []byte {
	t.Helper()
	m, err := dhcpv6.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	m.MessageType = mt
	m.AddOption(dhcpv6.OptClientID(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}}))
	ia := &dhcpv6.OptIANA{IaId: [4]byte{0, 0, 0, 9}}
	ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP("fd00:201::1:5"), PreferredLifetime: valid, ValidLifetime: valid})
	if status != 0 {
		ia.Options.Add(&dhcpv6.OptStatusCode{StatusCode: status})
	}
	m.AddOption(ia)
	return m.ToBytes()
}

func TestParseReply6(t *testing.T) {
	want := []reply6{{DUID: "00:03:00:01:52:54:00:00:00:02", IAID: 9, IP: netip.MustParseAddr("fd00:201::1:5")}}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  []reply6
	}{
		{"reply", udpFrame(true, 547, 546, reply6Msg(t, dhcpv6.MessageTypeReply, 0, time.Hour)), want},
		{"advertise", udpFrame(true, 547, 546, reply6Msg(t, dhcpv6.MessageTypeAdvertise, 0, time.Hour)), nil},
		{"no addresses available", udpFrame(true, 547, 546, reply6Msg(t, dhcpv6.MessageTypeReply, iana.StatusNoAddrsAvail, time.Hour)), nil},
		{"released (lifetime 0)", udpFrame(true, 547, 546, reply6Msg(t, dhcpv6.MessageTypeReply, 0, 0)), nil},
		{"over IPv4", udpFrame(false, 547, 546, reply6Msg(t, dhcpv6.MessageTypeReply, 0, time.Hour)), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseReply6(tc.frame)
			if ok != (tc.want != nil) || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseReply6 = %+v, %v; want %+v", got, ok, tc.want)
			}
		})
	}
}

func TestLostLeases(t *testing.T) {
	a := func(mac, ip string) ack4 { return ack4{mac, netip.MustParseAddr(ip)} }
	l4 := func(mac, ip string) api.Lease { return api.Lease{Type: "ipv4", MAC: mac, IP: ip} }
	acks := []ack4{a("52:54:00:00:00:01", "10.0.0.1"), a("52:54:00:00:00:02", "10.0.0.2"),
		a("52:54:00:00:00:02", "10.0.0.3"), a("52:54:00:00:00:0a", "10.0.0.4")}
	for _, tc := range []struct {
		name  string
		list  []api.Lease
		lost  []ack4
		moved int
	}{
		{"all there", []api.Lease{l4("52:54:00:00:00:01", "10.0.0.1"), l4("52:54:00:00:00:02", "10.0.0.3"), l4("52:54:00:00:00:0a", "10.0.0.4")}, nil, 1},
		{"MACs compared without case", []api.Lease{l4("52:54:00:00:00:01", "10.0.0.1"), l4("52:54:00:00:00:02", "10.0.0.3"), l4("52:54:00:00:00:0A", "10.0.0.4")}, nil, 1},
		{"only the last address counts", []api.Lease{l4("52:54:00:00:00:01", "10.0.0.1"), l4("52:54:00:00:00:02", "10.0.0.2"), l4("52:54:00:00:00:0a", "10.0.0.4")},
			[]ack4{a("52:54:00:00:00:02", "10.0.0.3")}, 1},
		{"another client's address", []api.Lease{l4("52:54:00:00:00:09", "10.0.0.1"), l4("52:54:00:00:00:02", "10.0.0.3"), l4("52:54:00:00:00:0a", "10.0.0.4")},
			[]ack4{a("52:54:00:00:00:01", "10.0.0.1")}, 1},
		{"nothing listed", nil, []ack4{a("52:54:00:00:00:01", "10.0.0.1"), a("52:54:00:00:00:02", "10.0.0.3"), a("52:54:00:00:00:0a", "10.0.0.4")}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clients, lost, moved := lostLeases4(acks, tc.list)
			if clients != 3 || !reflect.DeepEqual(lost, tc.lost) || moved != tc.moved {
				t.Fatalf("lostLeases4 = %d, %v, %d; want 3, %v, %d", clients, lost, moved, tc.lost, tc.moved)
			}
		})
	}

	r := func(duid string, iaid uint32, ip string) reply6 { return reply6{duid, iaid, netip.MustParseAddr(ip)} }
	l6 := func(duid string, iaid uint32, ip string) api.Lease {
		return api.Lease{Type: "ipv6", ClientID: duid, IAID: iaid, IP: ip}
	}
	replies := []reply6{r("0a:01", 1, "fd00::1"), r("0a:01", 2, "fd00::2")}
	for _, tc := range []struct {
		name string
		list []api.Lease
		lost []reply6
	}{
		{"all there", []api.Lease{l6("0a:01", 1, "fd00::1"), l6("0a:01", 2, "fd00::2")}, nil},
		{"DUIDs compared without case", []api.Lease{l6("0A:01", 1, "fd00::1"), l6("0a:01", 2, "FD00::2")}, nil},
		{"IAID matters", []api.Lease{l6("0a:01", 1, "fd00::1"), l6("0a:01", 3, "fd00::2")}, []reply6{r("0a:01", 2, "fd00::2")}},
		{"an IPv4 lease is no IPv6 lease", []api.Lease{l6("0a:01", 1, "fd00::1"), {Type: "ipv4", ClientID: "0a:01", IAID: 2, IP: "fd00::2"}}, []reply6{r("0a:01", 2, "fd00::2")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clients, lost, moved := lostLeases6(replies, tc.list)
			if clients != 2 || !reflect.DeepEqual(lost, tc.lost) || moved != 0 {
				t.Fatalf("lostLeases6 = %d, %v, %d; want 2, %v, 0", clients, lost, moved, tc.lost)
			}
		})
	}
}
