package dhcpd

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// TestAppendPacket6 checks the IPv6 and UDP headers of appendPacket6, its
// checksum against RFC 1071 written plainly, and that it appends.
func TestAppendPacket6(t *testing.T) {
	src, dst := netip.MustParseAddr("fe80::1"), netip.MustParseAddr("2001:db8:99::5")
	for _, payload := range [][]byte{nil, {1}, []byte("advertise"), bytes.Repeat([]byte{0xff, 0xfe, 0x01}, 101)} {
		b := appendPacket6([]byte("head"), src, dst, serverPort6, clientPort6, payload)
		if string(b[:4]) != "head" {
			t.Fatalf("prefix overwritten: %q", b[:4])
		}
		p := b[4:]
		if len(p) != ipHeaderLen6+udpHeaderLen6+len(payload) || !bytes.Equal(p[ipHeaderLen6+udpHeaderLen6:], payload) {
			t.Fatalf("packet of %d bytes for a payload of %d", len(p), len(payload))
		}
		ip, udp := p[:ipHeaderLen6], p[ipHeaderLen6:]
		if ip[0]>>4 != 6 || int(binary.BigEndian.Uint16(ip[4:6])) != len(udp) || ip[6] != protoUDP6 || ip[7] != hopLimit6 {
			t.Errorf("IPv6 header % x", ip[:8])
		}
		if netip.AddrFrom16([16]byte(ip[8:24])) != src || netip.AddrFrom16([16]byte(ip[24:40])) != dst {
			t.Errorf("addresses % x", ip[8:40])
		}
		if binary.BigEndian.Uint16(udp[0:2]) != serverPort6 || binary.BigEndian.Uint16(udp[2:4]) != clientPort6 || int(binary.BigEndian.Uint16(udp[4:6])) != len(udp) {
			t.Errorf("UDP header % x", udp[:8])
		}
		pseudo := append(append([]byte{}, ip[8:40]...), 0, 0, byte(len(udp)>>8), byte(len(udp)), 0, 0, 0, protoUDP6)
		if c := naiveChecksum4(append(pseudo, udp...)); c != 0 {
			t.Errorf("payload %d bytes: checksum %#04x does not verify (%#04x)", len(payload), binary.BigEndian.Uint16(udp[6:8]), c)
		}
	}
}

func TestSolicitedNodeMAC6(t *testing.T) {
	if got, want := solicitedNodeMAC6(netip.MustParseAddr("2001:db8::12:3456:789a")), [6]byte{0x33, 0x33, 0xff, 0x56, 0x78, 0x9a}; got != want {
		t.Errorf("got % x, want % x", got, want)
	}
}
