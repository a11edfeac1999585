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

// frameHeadersLen4 is what precedes the DHCP message in a reply frame.
const frameHeadersLen4 = ethHeaderLen4 + ipHeaderLen4 + udpHeaderLen4

// appendFrame4 appends the frame of reply a, from the server (srcMAC, src
// port 67) to the client (dstMAC, dst port 68), to b: a is encoded in
// place. Its checksums are computed here: a reply must reach guests
// finished (guests behind vhost-net drop offloaded, unfinished ones, which
// is why libvirt needs a checksum-fill rule for dnsmasq's replies).
func appendFrame4(b []byte, dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, a *answer4) []byte {
	start := len(b)
	b = append(b, make([]byte, frameHeadersLen4)...)
	b = a.appendTo(b)
	fillFrame4(b[start:], dstMAC, srcMAC, src, dst, serverPort4, clientPort4)
	return b
}

// fillFrame4 writes the headers of frame b, whose UDP payload is in place
// after them.
func fillFrame4(b []byte, dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16) {
	udpLen := len(b) - ethHeaderLen4 - ipHeaderLen4
	copy(b[0:6], dstMAC)
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:14], etherTypeIPv4)

	ip := b[ethHeaderLen4 : ethHeaderLen4+ipHeaderLen4]
	ip[0] = 0x45 // version 4, 5 words
	ip[1] = 0xc0 // DSCP CS6 (network control), as DHCP servers commonly send
	binary.BigEndian.PutUint16(ip[2:4], uint16(ipHeaderLen4+udpLen))
	clear(ip[4:8]) // identification, flags, fragment offset
	ip[8] = 64     // TTL
	ip[9] = protoUDP4
	clear(ip[10:12])
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:12], ^fold4(sum4(0, ip)))

	udp := b[ethHeaderLen4+ipHeaderLen4:]
	binary.BigEndian.PutUint16(udp[0:2], sport)
	binary.BigEndian.PutUint16(udp[2:4], dport)
	binary.BigEndian.PutUint16(udp[4:6], uint16(udpLen))
	clear(udp[6:8])
	binary.BigEndian.PutUint16(udp[6:8], udpChecksum4(src, dst, udp))
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

// sum4 adds b as big-endian 16-bit words (odd tail padded) to s. It adds
// 32-bit words into 64 bits, which is the same one's-complement sum once
// folded (2^16 is 1 modulo 2^16-1), in half the steps.
func sum4(s uint32, b []byte) uint32 {
	acc := uint64(s)
	for len(b) >= 8 {
		acc += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		acc += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	// Fold to 32 bits without changing the sum modulo 2^16-1.
	for acc>>32 != 0 {
		acc = acc&0xffffffff + acc>>32
	}
	return uint32(acc)
}

// fold4 folds a 32-bit one's-complement sum to 16 bits.
func fold4(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
