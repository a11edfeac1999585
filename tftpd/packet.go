package tftpd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Opcodes (RFC 1350, RFC 2347).
const (
	opRRQ   uint16 = 1
	opWRQ   uint16 = 2
	opDATA  uint16 = 3
	opACK   uint16 = 4
	opERROR uint16 = 5
	opOACK  uint16 = 6
)

// Error codes (RFC 1350, RFC 2347).
const (
	errUndefined  uint16 = 0
	errNotFound   uint16 = 1
	errAccess     uint16 = 2
	errIllegalOp  uint16 = 4
	errUnknownTID uint16 = 5
)

// Block size limits (RFC 1350, RFC 2348).
const (
	defaultBlksize = 512
	minBlksize     = 8
	maxBlksize     = 65464
)

// Request limits. RFC 2347 caps a request at 512 octets; maxRequest allows
// what one unfragmented Ethernet frame carries (1500 - 20 - 8), as one UDP
// segment, so that a client with a long path still boots. Real clients send
// at most a handful of options (blksize, tsize, timeout, windowsize), so
// maxOptions leaves room for all the defined ones and bounds the duplicate
// check to a few comparisons per option.
const (
	maxRequest = 1472
	maxOptions = 16
)

// request is a parsed RRQ or WRQ.
type request struct {
	op       uint16
	filename string
	mode     string // lower case
	// options holds the options in the order given, names lower-cased; a
	// repeated option keeps its first value.
	options []option
}

type option struct {
	name, value string
}

func (r *request) option(name string) (string, bool) {
	for _, o := range r.options {
		if o.name == name {
			return o.value, true
		}
	}
	return "", false
}

// parseRequest parses an RRQ or WRQ packet:
//
//	opcode(2) filename 0 mode 0 [option 0 value 0]...
func parseRequest(b []byte) (*request, error) {
	if len(b) < 2 {
		return nil, errors.New("short packet")
	}
	r := &request{op: binary.BigEndian.Uint16(b)}
	if r.op != opRRQ && r.op != opWRQ {
		return nil, fmt.Errorf("opcode %d is not a request", r.op)
	}
	if len(b) > maxRequest {
		return nil, fmt.Errorf("request of %d bytes, over %d", len(b), maxRequest)
	}
	// Each string ends in a NUL: counting them refuses a request with too
	// many options before any is copied.
	if n := bytes.Count(b[2:], []byte{0}); n > 2+2*maxOptions {
		return nil, fmt.Errorf("%d strings, over the %d of a request with %d options", n, 2+2*maxOptions, maxOptions)
	}
	fields, err := splitStrings(b[2:])
	if err != nil {
		return nil, err
	}
	if len(fields) < 2 {
		return nil, errors.New("request lacks filename or mode")
	}
	if len(fields)%2 != 0 {
		return nil, errors.New("option without value")
	}
	if n := (len(fields) - 2) / 2; n > maxOptions {
		return nil, fmt.Errorf("%d options, over %d", n, maxOptions)
	}
	r.filename = fields[0]
	r.mode = strings.ToLower(fields[1])
	if r.filename == "" {
		return nil, errors.New("empty filename")
	}
	if r.mode == "" {
		return nil, errors.New("empty mode")
	}
	for i := 2; i < len(fields); i += 2 {
		name := strings.ToLower(fields[i])
		if name == "" {
			return nil, errors.New("empty option name")
		}
		if _, dup := r.option(name); dup {
			continue
		}
		r.options = append(r.options, option{name: name, value: fields[i+1]})
	}
	return r, nil
}

// splitStrings splits a sequence of NUL-terminated strings.
func splitStrings(b []byte) ([]string, error) {
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return nil, errors.New("string not NUL-terminated")
		}
		out = append(out, string(b[:i]))
		b = b[i+1:]
	}
	return out, nil
}

// appendData appends a DATA packet header for block n to b.
func appendData(b []byte, block uint16) []byte {
	b = binary.BigEndian.AppendUint16(b, opDATA)
	return binary.BigEndian.AppendUint16(b, block)
}

func errorPacket(code uint16, msg string) []byte {
	b := make([]byte, 0, 5+len(msg))
	b = binary.BigEndian.AppendUint16(b, opERROR)
	b = binary.BigEndian.AppendUint16(b, code)
	b = append(b, msg...)
	return append(b, 0)
}

func oackPacket(opts []option) []byte {
	b := binary.BigEndian.AppendUint16(nil, opOACK)
	for _, o := range opts {
		b = append(b, o.name...)
		b = append(b, 0)
		b = append(b, o.value...)
		b = append(b, 0)
	}
	return b
}
