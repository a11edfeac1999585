package dnsd

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// The fast path answers the common query (one question, at most an OPT
// record without surprises) straight from bytes: no decoding into
// dns.Msg, no allocation. Anything else goes to the slow path, which
// decodes with miekg/dns and applies every rule; the two must agree, which
// FuzzServeDNS checks.

const (
	headerLen = 12
	maxName   = 255 // wire length of a domain name, root label included
	// keyLen bounds a lookup key: name, type, class and a flags byte.
	keyLen = maxName + 5
	// ednsSize is the UDP payload size this server advertises and asks
	// upstreams for (the DNS flag day 2020 value dnsmasq also uses).
	ednsSize = 1232
	typeOPT  = 41

	// Header flag bits, in bytes 2 and 3.
	flagQR = 0x80
	flagAA = 0x04
	flagTC = 0x02
	flagRD = 0x01
	flagRA = 0x80
	flagAD = 0x20
	flagCD = 0x10
)

// query is what the fast path knows of a request.
type query struct {
	id      uint16
	rd      byte   // the RD bit, in place in header byte 2
	cd, ad  byte   // the CD and AD bits, in place in header byte 3
	qname   []byte // the name as sent (its case is echoed), within the packet
	qtype   uint16
	qclass  uint16
	edns    bool
	do      bool
	udpSize uint16
	// key is the lowercase wire name followed by qtype, qclass and
	// cacheFlags: key[:nameLen] names, key[:nameLen+2] finds a fast
	// answer, key[:nameLen+5] a cache entry.
	key     [keyLen]byte
	nameLen int
}

func (q *query) nameKey() []byte  { return q.key[:q.nameLen] }
func (q *query) fastKey() []byte  { return q.key[:q.nameLen+2] }
func (q *query) cacheKey() []byte { return q.key[:q.nameLen+5] }

// cacheFlags are the request bits that change an upstream's answer: DNSSEC
// records (DO), validation (CD) and the AD bit a client may ask for.
func (q *query) cacheFlags() byte {
	var f byte
	if q.do {
		f |= 1
	}
	if q.cd != 0 {
		f |= 2
	}
	if q.ad != 0 {
		f |= 4
	}
	return f
}

// maxUDP is the largest UDP answer the client accepts, but no more than
// this server advertises (RFC 6891 §6.2.5; dnsmasq's edns-packet-max): a
// claim of 64 KiB must not turn one small query into a burst of fragments.
func (q *query) maxUDP() int {
	if q.edns && q.udpSize > dns.MinMsgSize {
		return min(int(q.udpSize), ednsSize)
	}
	return dns.MinMsgSize
}

// parseQuery reads a plain query into q. It reports false for anything the
// fast path does not handle; the slow path then decides.
func parseQuery(pkt []byte, q *query) bool {
	if len(pkt) < headerLen+5 {
		return false
	}
	if pkt[2]&0xf8 != 0 { // a response, or an opcode other than QUERY
		return false
	}
	qd := binary.BigEndian.Uint16(pkt[4:])
	an := binary.BigEndian.Uint16(pkt[6:])
	ns := binary.BigEndian.Uint16(pkt[8:])
	ar := binary.BigEndian.Uint16(pkt[10:])
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return false
	}
	q.id = binary.BigEndian.Uint16(pkt)
	q.rd = pkt[2] & flagRD
	q.cd = pkt[3] & flagCD
	q.ad = pkt[3] & flagAD
	off := headerLen
	n := 0
	for {
		if off >= len(pkt) {
			return false
		}
		l := int(pkt[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l > len(pkt) || n+1+l+1 > maxName {
			return false // compression pointer, bad label, too long
		}
		q.key[n] = byte(l)
		for i, c := range pkt[off+1 : off+1+l] {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			q.key[n+1+i] = c
		}
		n += 1 + l
		off += 1 + l
	}
	q.key[n] = 0
	n++
	q.nameLen = n
	q.qname = pkt[headerLen:off]
	if off+4 > len(pkt) {
		return false
	}
	q.qtype = binary.BigEndian.Uint16(pkt[off:])
	q.qclass = binary.BigEndian.Uint16(pkt[off+2:])
	off += 4
	if q.qclass != dns.ClassINET || !plainType(q.qtype) {
		return false
	}
	q.edns, q.do, q.udpSize = false, false, 0
	if ar == 1 {
		if off+11 > len(pkt) || pkt[off] != 0 || binary.BigEndian.Uint16(pkt[off+1:]) != typeOPT {
			return false
		}
		q.udpSize = binary.BigEndian.Uint16(pkt[off+3:])
		if pkt[off+6] != 0 { // EDNS version: BADVERS from the slow path
			return false
		}
		q.do = pkt[off+7]&0x80 != 0
		rdlen := int(binary.BigEndian.Uint16(pkt[off+9:]))
		off += 11
		if off+rdlen != len(pkt) {
			return false
		}
		// Options are ignored (a cookie or padding asks for nothing a
		// local answer must honour), but they must be well formed.
		for o := off; o < off+rdlen; {
			if o+4 > off+rdlen {
				return false
			}
			o += 4 + int(binary.BigEndian.Uint16(pkt[o+2:]))
			if o > off+rdlen {
				return false
			}
		}
		off += rdlen
		q.edns = true
	}
	if off != len(pkt) {
		return false
	}
	binary.BigEndian.PutUint16(q.key[n:], q.qtype)
	binary.BigEndian.PutUint16(q.key[n+2:], q.qclass)
	q.key[n+4] = q.cacheFlags()
	return true
}

// plainType reports whether t is an ordinary data type: meta types and
// zone transfers take the slow path, which refuses them.
func plainType(t uint16) bool {
	return t != 0 && t != typeOPT && (t < 128 || t >= 256)
}

// appendReply appends the answer to q from a packed template (ID 0, the
// question's name in lowercase, no OPT): the client's ID, RD and CD bits
// and its spelling of the name, and an OPT record if it sent one.
func appendReply(out, tmpl []byte, q *query) []byte {
	start := len(out)
	out = append(out, tmpl...)
	msg := out[start:]
	binary.BigEndian.PutUint16(msg, q.id)
	msg[2] = msg[2]&^flagRD | q.rd
	msg[3] = msg[3]&^flagCD | q.cd
	copy(msg[headerLen:], q.qname)
	if q.edns {
		out = appendOPT(out, start, q.do)
	}
	return out
}

// appendOPT adds this server's OPT record to the packed message that
// starts at out[start].
func appendOPT(out []byte, start int, do bool) []byte {
	ar := binary.BigEndian.Uint16(out[start+10:])
	binary.BigEndian.PutUint16(out[start+10:], ar+1)
	var flags byte
	if do {
		flags = 0x80
	}
	return append(out, 0, 0, typeOPT, ednsSize>>8, ednsSize&0xff, 0, 0, flags, 0, 0, 0)
}

// ttlOffsets returns the offsets of the TTL fields of every record of a
// packed message except OPT (whose "TTL" holds flags), or false if the
// message does not parse.
func ttlOffsets(msg []byte) ([]uint16, bool) {
	if len(msg) < headerLen {
		return nil, false
	}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	rrs := int(binary.BigEndian.Uint16(msg[6:])) + int(binary.BigEndian.Uint16(msg[8:])) + int(binary.BigEndian.Uint16(msg[10:]))
	off := headerLen
	var ok bool
	for range qd {
		if off, ok = skipName(msg, off); !ok || off+4 > len(msg) {
			return nil, false
		}
		off += 4
	}
	offs := make([]uint16, 0, rrs)
	for range rrs {
		if off, ok = skipName(msg, off); !ok || off+10 > len(msg) || off > 0xffff {
			return nil, false
		}
		if binary.BigEndian.Uint16(msg[off:]) != typeOPT {
			offs = append(offs, uint16(off+4))
		}
		off += 10 + int(binary.BigEndian.Uint16(msg[off+8:]))
		if off > len(msg) {
			return nil, false
		}
	}
	return offs, off == len(msg)
}

// skipName returns the offset just past the (possibly compressed) name at
// off.
func skipName(msg []byte, off int) (int, bool) {
	for {
		if off >= len(msg) {
			return 0, false
		}
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1, true
		case l&0xc0 == 0xc0:
			return off + 2, off+2 <= len(msg)
		case l > 63:
			return 0, false
		}
		off += 1 + l
	}
}
