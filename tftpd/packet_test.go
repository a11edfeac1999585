package tftpd

import (
	"encoding/binary"
	"reflect"
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRequest(tc.pkt)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseRequest(%q) = %+v, want error", tc.pkt, got)
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
