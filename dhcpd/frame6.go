package dhcpd

import (
	"encoding/binary"
	"net/netip"
)

const (
	ipHeaderLen6  = 40
	udpHeaderLen6 = 8
	protoUDP6     = 17
	// hopLimit6 is the kernel's default for unicast.
	hopLimit6 = 64
)

// appendPacket6 appends to b the IPv6 packet carrying payload in a UDP
// datagram from src:sport to dst:dport, checksum computed (it is
// mandatory in IPv6, and a guest behind vhost-net drops an unfinished one).
func appendPacket6(b []byte, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	start := len(b)
	udpLen := udpHeaderLen6 + len(payload)
	b = append(b, make([]byte, ipHeaderLen6+udpHeaderLen6)...)
	b = append(b, payload...)
	ip := b[start : start+ipHeaderLen6]
	binary.BigEndian.PutUint32(ip[0:4], 6<<28) // version; traffic class and flow label 0
	binary.BigEndian.PutUint16(ip[4:6], uint16(udpLen))
	ip[6] = protoUDP6
	ip[7] = hopLimit6
	s16, d16 := src.As16(), dst.As16()
	copy(ip[8:24], s16[:])
	copy(ip[24:40], d16[:])

	udp := b[start+ipHeaderLen6:]
	binary.BigEndian.PutUint16(udp[0:2], sport)
	binary.BigEndian.PutUint16(udp[2:4], dport)
	binary.BigEndian.PutUint16(udp[4:6], uint16(udpLen))
	// The pseudo-header (RFC 8200 §8.1): addresses, length, next header.
	s := sum4(0, ip[8:40])
	s += uint32(udpLen) + protoUDP6
	c := ^fold4(sum4(s, udp))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:8], c)
	return b
}

// solicitedNodeMAC6 is the Ethernet address of ip's solicited-node
// multicast group (RFC 4291 §2.7.1, RFC 2464 §7): every host joins the group
// of each of its addresses for neighbour discovery, so a frame sent there
// reaches the owner of ip without resolving its address, and the NICs of
// the other guests filter it out.
func solicitedNodeMAC6(ip netip.Addr) [6]byte {
	a := ip.As16()
	return [6]byte{0x33, 0x33, 0xff, a[13], a[14], a[15]}
}
