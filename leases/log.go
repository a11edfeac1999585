package leases

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"time"
)

// The lease file is a log, as Kea's memfile and dnsmasq's lease file are:
// a header, then records appended in commit order, each framed as
//
//	length uint32 | crc32c(payload) uint32 | payload
//
// (big-endian). A payload is an operation byte and its operands: put (a
// lease), delete (network, address) or drop (every lease of a network).
// Replaying the records in order gives the leases. A commit appends its
// records with one write and one fdatasync, so durability costs one
// append per batch of leases, where the B+tree it replaces rewrote pages
// and synced twice per commit. The file is rewritten, as a snapshot of the
// live leases, once dead records make up more than half of it.
const (
	logMagic     = "VNLEASE1"
	frameHeader  = 8
	maxRecordLen = 1 << 16 // far above any lease; a larger length is damage
)

const (
	opPut  byte = 1
	opDel  byte = 2
	opDrop byte = 3
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// beginFrame reserves a record's frame header at the end of dst; the
// payload is appended next, then endFrame(dst, start) fills the header in.
func beginFrame(dst []byte) (out []byte, start int) {
	start = len(dst)
	return append(dst, 0, 0, 0, 0, 0, 0, 0, 0), start
}

func endFrame(dst []byte, start int) []byte {
	payload := dst[start+frameHeader:]
	binary.BigEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, castagnoli))
	return dst
}

// framePut appends the framed put record of l.
func framePut(dst []byte, l *Lease) []byte {
	dst, start := beginFrame(dst)
	return endFrame(appendPut(dst, l), start)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendAddr(dst []byte, ip netip.Addr) []byte {
	a := ip.As16()
	return append(dst, a[:]...)
}

// appendPut appends the payload of a put of l (normalised).
func appendPut(dst []byte, l *Lease) []byte {
	dst = append(dst, opPut)
	dst = appendString(dst, l.Network)
	dst = append(dst, byte(l.Kind))
	dst = appendAddr(dst, l.IP)
	dst = binary.AppendUvarint(dst, uint64(l.Prefix))
	dst = binary.AppendUvarint(dst, uint64(len(l.MAC)))
	dst = append(dst, l.MAC...)
	dst = appendString(dst, l.ClientID)
	dst = appendString(dst, l.DUID)
	dst = binary.AppendUvarint(dst, uint64(l.IAID))
	dst = appendString(dst, l.Hostname)
	if l.Expiry.IsZero() {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	return binary.AppendVarint(dst, l.Expiry.UnixNano())
}

func appendDel(dst []byte, network string, ip netip.Addr) []byte {
	dst = append(dst, opDel)
	dst = appendString(dst, network)
	return appendAddr(dst, ip)
}

func appendDrop(dst []byte, network string) []byte {
	dst = append(dst, opDrop)
	return appendString(dst, network)
}

// record is one decoded log record.
type record struct {
	op      byte
	lease   Lease  // opPut
	network string // opDel, opDrop
	ip      netip.Addr
	size    int64 // framed, in the log
}

var errShort = errors.New("record cut short")

// reader decodes a payload; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.err = errShort
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil || uint64(len(r.b)) < n {
		r.err = errShort
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes(r.uvarint())) }

func (r *reader) addr() netip.Addr {
	b := r.bytes(16)
	if r.err != nil {
		return netip.Addr{}
	}
	return netip.AddrFrom16([16]byte(b)).Unmap()
}

// decodeRecord decodes a payload. The lease of a put is validated as Apply
// validates it, so that replay never yields what a write could not.
func decodeRecord(p []byte) (record, error) {
	r := reader{b: p}
	rec := record{op: r.byte()}
	switch rec.op {
	case opPut:
		l := &rec.lease
		l.Network = r.string()
		l.Kind = Kind(r.byte())
		l.IP = r.addr()
		l.Prefix = int(r.uvarint())
		if m := r.bytes(r.uvarint()); len(m) > 0 {
			l.MAC = net.HardwareAddr(append([]byte(nil), m...))
		}
		l.ClientID = r.string()
		l.DUID = r.string()
		iaid := r.uvarint()
		l.Hostname = r.string()
		if r.byte() == 1 {
			v, n := binary.Varint(r.b)
			if n <= 0 && r.err == nil {
				r.err = errors.New("bad expiry")
			} else if r.err == nil {
				r.b = r.b[n:]
				l.Expiry = time.Unix(0, v).UTC()
			}
		}
		if r.err == nil && iaid > 0xffffffff {
			r.err = fmt.Errorf("IAID %d out of range", iaid)
		}
		l.IAID = uint32(iaid)
		if r.err == nil {
			var err error
			if *l, err = normalize(*l); err != nil {
				r.err = err
			}
		}
	case opDel:
		rec.network = r.string()
		rec.ip = r.addr()
		if r.err == nil {
			r.err = checkNetwork(rec.network)
		}
	case opDrop:
		rec.network = r.string()
		if r.err == nil {
			r.err = checkNetwork(rec.network)
		}
	default:
		if r.err == nil {
			r.err = fmt.Errorf("unknown operation %d", rec.op)
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return rec, r.err
}

// frameAt decodes the record framed at off in data and returns it with its
// framed size, or why no valid record starts there.
func frameAt(data []byte, off int) (record, int, error) {
	rest := data[off:]
	if len(rest) < frameHeader {
		return record{}, 0, fmt.Errorf("%d bytes of a record header at offset %d", len(rest), off)
	}
	n := binary.BigEndian.Uint32(rest)
	if n == 0 || n > maxRecordLen {
		return record{}, 0, fmt.Errorf("record length %d at offset %d", n, off)
	}
	if uint64(len(rest)-frameHeader) < uint64(n) {
		return record{}, 0, fmt.Errorf("record at offset %d cut short (%d of %d bytes)", off, len(rest)-frameHeader, n)
	}
	payload := rest[frameHeader : frameHeader+int(n)]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(rest[4:]) {
		return record{}, 0, fmt.Errorf("record at offset %d fails its checksum", off)
	}
	rec, err := decodeRecord(payload)
	if err != nil {
		return record{}, 0, fmt.Errorf("record at offset %d: %w", off, err)
	}
	size := frameHeader + int(n)
	rec.size = int64(size)
	return rec, size, nil
}

// stretch is a part of the log, [off, end), in which no valid record
// starts where the one before it ended.
type stretch struct {
	off, end int
	why      error // what was wrong at off
}

// records is how many records the stretch held: the frames' lengths are
// followed from its start, and if they land exactly on its end, that is
// the count; otherwise a length itself was damaged and the count is
// unknown, so it is 1, the least it can be.
func (s stretch) records(data []byte) int {
	hops := 0
	p := s.off
	for p+frameHeader <= s.end {
		n := binary.BigEndian.Uint32(data[p:])
		if n == 0 || n > maxRecordLen {
			break
		}
		p += frameHeader + int(n)
		hops++
	}
	if p == s.end && hops > 0 {
		return hops
	}
	return 1
}

// scanLog replays the records of data, from offset start (after the
// header), into apply. Where no valid record starts, it resynchronises on
// the next offset at which one does (its length in range, its CRC32C and
// its payload valid) and goes on from there, so one damaged record costs
// that record alone, not every record after it. It returns the damaged
// stretches in order; one that runs to the end of data, with no valid
// record after it, is a torn tail.
//
// A false resynchronisation inside a damaged stretch would need a whole
// frame with a matching CRC32C inside it. Guests cannot plant one: the
// only bytes of a record they choose freely are a 6-byte MAC, shorter than
// the smallest frame (11 bytes), and hostnames, which the DHCP servers
// keep to DNS label characters, never the zero bytes of a frame's length.
func scanLog(data []byte, start int, apply func(*record)) []stretch {
	var damage []stretch
	for off := start; off < len(data); {
		rec, n, err := frameAt(data, off)
		if err == nil {
			apply(&rec)
			off += n
			continue
		}
		next := resync(data, off+1)
		damage = append(damage, stretch{off: off, end: next, why: err})
		off = next
	}
	return damage
}

// resync returns the first offset from from on at which a valid record
// starts, or len(data) if there is none.
func resync(data []byte, from int) int {
	for p := from; p+frameHeader < len(data); p++ {
		// Most offsets fail on the length alone, before any checksum.
		if n := binary.BigEndian.Uint32(data[p:]); n == 0 || n > maxRecordLen || uint64(n) > uint64(len(data)-p-frameHeader) {
			continue
		}
		if _, _, err := frameAt(data, p); err == nil {
			return p
		}
	}
	return len(data)
}
