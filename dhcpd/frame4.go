package dhcpd

import (
	"encoding/binary"
	"net"
	"net/netip"
)

const (
	ethHeaderLen4 = 14
	ipHeaderLen4  = 20
	udpHeaderLen4 = 8
	etherTypeIPv4 = 0x0800
	protoUDP4     = 17
	serverPort4   = 67
	clientPort4   = 68
)

// frame4 builds a complete Ethernet II / IPv4 / UDP frame around payload,
// with the IPv4 header checksum and the UDP checksum computed here: a reply
// must reach guests with a finished checksum (guests behind vhost-net drop
// offloaded, unfinished ones, which is why libvirt needs a checksum-fill
// rule for dnsmasq's replies).
func frame4(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	udpLen := udpHeaderLen4 + len(payload)
	b := make([]byte, ethHeaderLen4+ipHeaderLen4+udpLen)
	copy(b[0:6], dstMAC)
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:14], etherTypeIPv4)

	ip := b[ethHeaderLen4 : ethHeaderLen4+ipHeaderLen4]
	ip[0] = 0x45 // version 4, 5 words
	ip[1] = 0xc0 // DSCP CS6 (network control), as DHCP servers commonly send
	binary.BigEndian.PutUint16(ip[2:4], uint16(ipHeaderLen4+udpLen))
	ip[8] = 64 // TTL
	ip[9] = protoUDP4
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:12], ^fold4(sum4(0, ip)))

	udp := b[ethHeaderLen4+ipHeaderLen4:]
	binary.BigEndian.PutUint16(udp[0:2], sport)
	binary.BigEndian.PutUint16(udp[2:4], dport)
	binary.BigEndian.PutUint16(udp[4:6], uint16(udpLen))
	copy(udp[udpHeaderLen4:], payload)
	binary.BigEndian.PutUint16(udp[6:8], udpChecksum4(src, dst, udp))
	return b
}

// udpChecksum4 is the UDP checksum of segment (its checksum field zero)
// with the IPv4 pseudo-header; 0 is sent as 0xffff (RFC 768).
func udpChecksum4(src, dst netip.Addr, segment []byte) uint16 {
	s4, d4 := src.As4(), dst.As4()
	var s uint32
	s = sum4(s, s4[:])
	s = sum4(s, d4[:])
	s += protoUDP4
	s += uint32(len(segment))
	s = sum4(s, segment)
	c := ^fold4(s)
	if c == 0 {
		c = 0xffff
	}
	return c
}

// sum4 adds b as big-endian 16-bit words (odd tail padded) to s.
func sum4(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// fold4 folds a 32-bit one's-complement sum to 16 bits.
func fold4(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
