package tftpd

import (
	"encoding/binary"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// requestPacket builds an RRQ or WRQ; opts are name, value pairs.
func requestPacket(op uint16, filename, mode string, opts ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, op)
	for _, s := range append([]string{filename, mode}, opts...) {
		b = append(b, s...)
		b = append(b, 0)
	}
	return b
}

// distinctOptions returns n distinct options with empty values, as name,
// value pairs.
func distinctOptions(n int) []string {
	var opts []string
	for i := range n {
		opts = append(opts, strconv.FormatInt(int64(i), 36), "")
	}
	return opts
}

// packedRequest is an RRQ of at most size bytes filled with distinct empty
// options: the costliest request for a parser that looks each option up in
// the ones before it.
func packedRequest(size int) []byte {
	var opts []string
	n := len(requestPacket(opRRQ, "f", "octet"))
	for i := 0; ; i++ {
		name := strconv.FormatInt(int64(i), 36)
		if n+len(name)+2 > size {
			return requestPacket(opRRQ, "f", "octet", opts...)
		}
		n += len(name) + 2
		opts = append(opts, name, "")
	}
}

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pkt     []byte
		want    *request
		wantErr bool
	}{
		{
			name: "rrq",
			pkt:  requestPacket(opRRQ, "pxelinux.0", "octet"),
			want: &request{op: opRRQ, filename: "pxelinux.0", mode: "octet"},
		},
		{
			name: "wrq mode case",
			pkt:  requestPacket(opWRQ, "up", "OCTET"),
			want: &request{op: opWRQ, filename: "up", mode: "octet"},
		},
		{
			name: "options",
			pkt:  requestPacket(opRRQ, "a/b", "octet", "BLKSIZE", "1428", "tsize", "0", "blksize", "512", "x-ignored", ""),
			want: &request{op: opRRQ, filename: "a/b", mode: "octet", options: []option{
				{"blksize", "1428"}, {"tsize", "0"}, {"x-ignored", ""},
			}},
		},
		{name: "empty", pkt: nil, wantErr: true},
		{name: "one byte", pkt: []byte{0}, wantErr: true},
		{name: "data opcode", pkt: requestPacket(opDATA, "f", "octet"), wantErr: true},
		{name: "no mode", pkt: []byte("\x00\x01f\x00"), wantErr: true},
		{name: "missing final NUL", pkt: []byte("\x00\x01f\x00octet"), wantErr: true},
		{name: "empty filename", pkt: requestPacket(opRRQ, "", "octet"), wantErr: true},
		{name: "empty mode", pkt: requestPacket(opRRQ, "f", ""), wantErr: true},
		{name: "option without value", pkt: requestPacket(opRRQ, "f", "octet", "blksize"), wantErr: true},
		{name: "empty option name", pkt: requestPacket(opRRQ, "f", "octet", "", "1"), wantErr: true},
		{
			name: "longest request",
			pkt:  requestPacket(opRRQ, strings.Repeat("d/", maxRequest)[:maxRequest-9], "octet"),
			want: &request{op: opRRQ, filename: strings.Repeat("d/", maxRequest)[:maxRequest-9], mode: "octet"},
		},
		{name: "one byte too long", pkt: requestPacket(opRRQ, strings.Repeat("d", maxRequest-8), "octet"), wantErr: true},
		{name: "64 KiB of options", pkt: packedRequest(65507), wantErr: true},
		{
			name: "most options",
			pkt:  requestPacket(opRRQ, "f", "octet", distinctOptions(maxOptions)...),
			want: &request{op: opRRQ, filename: "f", mode: "octet", options: func() []option {
				var o []option
				for i := range maxOptions {
					o = append(o, option{strconv.FormatInt(int64(i), 36), ""})
				}
				return o
			}()},
		},
		{name: "one option too many", pkt: requestPacket(opRRQ, "f", "octet", distinctOptions(maxOptions+1)...), wantErr: true},
		{
			name:    "too many options even if repeated",
			pkt:     requestPacket(opRRQ, "f", "octet", strings.Split(strings.Repeat("blksize,512,", maxOptions+1), ",")[:2*(maxOptions+1)]...),
			wantErr: true,
		},
		{name: "full segment of options", pkt: packedRequest(maxRequest), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRequest(tc.pkt)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseRequest(%d bytes) = %d options, want error", len(tc.pkt), len(got.options))
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRequest(%q): %v", tc.pkt, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseRequest(%q)\n got %+v\nwant %+v", tc.pkt, got, tc.want)
			}
		})
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, seed := range [][]byte{
		requestPacket(opRRQ, "pxelinux.0", "octet"),
		requestPacket(opRRQ, "undionly.kpxe", "octet", "tsize", "0", "blksize", "1432"),
		requestPacket(opRRQ, `boot\x64\wdsnbp.com`, "octet", "blksize", "1456", "windowsize", "8"),
		requestPacket(opRRQ, "../etc/passwd", "netascii"),
		requestPacket(opWRQ, "upload", "octet", "tsize", "4096"),
		requestPacket(opRRQ, "f", "octet", distinctOptions(maxOptions)...),
		requestPacket(opRRQ, "f", "octet", distinctOptions(maxOptions+1)...),
		packedRequest(maxRequest + 1),
		{0, 1, 'f', 0},
		{0, 5, 0, 1, 'x', 0},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		r, err := parseRequest(pkt)
		if err != nil {
			return
		}
		if r.op != opRRQ && r.op != opWRQ {
			t.Fatalf("opcode %d accepted", r.op)
		}
		if r.filename == "" || r.mode == "" || r.mode != strings.ToLower(r.mode) {
			t.Fatalf("bad request %+v", r)
		}
		if len(pkt) > maxRequest {
			t.Fatalf("request of %d bytes accepted, limit %d", len(pkt), maxRequest)
		}
		if len(r.options) > maxOptions {
			t.Fatalf("%d options accepted, limit %d", len(r.options), maxOptions)
		}
		seen := map[string]bool{}
		for _, o := range r.options {
			if seen[o.name] || o.name != strings.ToLower(o.name) {
				t.Fatalf("option %q repeated or not lower case in %+v", o.name, r)
			}
			seen[o.name] = true
		}
		// Re-encoding and parsing again gives the same request.
		var opts []string
		for _, o := range r.options {
			opts = append(opts, o.name, o.value)
		}
		again, err := parseRequest(requestPacket(r.op, r.filename, r.mode, opts...))
		if err != nil {
			t.Fatalf("re-encoded %+v: %v", r, err)
		}
		if !reflect.DeepEqual(r, again) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, r)
		}
	})
}

// BenchmarkParseRequest times the costliest requests a client can send: a
// whole UDP datagram (65507 bytes) of distinct options, which took ~0.3 s
// each when every option was looked up in all the ones before; a segment
// (maxRequest bytes) of them; and the largest request accepted.
func BenchmarkParseRequest(b *testing.B) {
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"datagram-of-options", packedRequest(65507)},
		{"segment-of-options", packedRequest(maxRequest)},
		{"most-options", requestPacket(opRRQ, "pxelinux.0", "octet", distinctOptions(maxOptions)...)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.pkt)))
			b.ReportAllocs()
			for b.Loop() {
				parseRequest(bc.pkt)
			}
		})
	}
}
