package radvd

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/mdlayher/ndp"
)

var (
	guestLL  = netip.MustParseAddr("fe80::5054:ff:fe00:1")
	guestMAC = []byte{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}
)

func marshalRS(t testing.TB, opts ...ndp.Option) []byte {
	t.Helper()
	b, err := ndp.MarshalMessage(&ndp.RouterSolicitation{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRS(t *testing.T) {
	slla := &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: guestMAC}
	plain := marshalRS(t)
	withSLLA := marshalRS(t, slla)
	edit := func(b []byte, f func([]byte) []byte) []byte { return f(append([]byte(nil), b...)) }
	// An option the RFC says to skip, too long for ndp.ParseMessage.
	big := append(append([]byte(nil), plain...), 200, 40)
	big = append(big, make([]byte, 40*8-2)...)
	tests := []struct {
		name string
		b    []byte
		hop  int
		src  netip.Addr
		ok   bool
		slla bool
	}{
		{"plain", plain, 255, guestLL, true, false},
		// Captured from the wire (also seeds of FuzzRouterSolicitation).
		{"rdisc6", []byte{0x85, 0, 0xdc, 0x23, 0, 0, 0, 0}, 255, guestLL, true, false},
		{"Linux 6.18", []byte{0x85, 0, 0x37, 0x07, 0, 0, 0, 0, 1, 1, 0x56, 0x50, 0x72, 0x8b, 0xdb, 0x37}, 255, guestLL, true, false},
		{"with source link-layer address", withSLLA, 255, guestLL, true, true},
		{"from the unspecified address", plain, 255, netip.IPv6Unspecified(), true, false},
		{"no source at all", plain, 255, netip.Addr{}, true, false},
		{"nonce option", marshalRS(t, slla, ndp.NewNonce()), 255, guestLL, true, true},
		{"long unknown option", big, 255, guestLL, true, false},
		{"reserved bits set", edit(plain, func(b []byte) []byte { b[4] = 0xff; return b }), 255, guestLL, true, false},
		{"unspecified source with link-layer address", withSLLA, 255, netip.IPv6Unspecified(), false, false},
		{"hop limit 64 (routed from elsewhere)", plain, 64, guestLL, false, false},
		{"hop limit unknown", plain, -1, guestLL, false, false},
		{"code 1", edit(plain, func(b []byte) []byte { b[1] = 1; return b }), 255, guestLL, false, false},
		{"router advertisement", edit(plain, func(b []byte) []byte { b[0] = 134; return b }), 255, guestLL, false, false},
		{"7 octets", plain[:7], 255, guestLL, false, false},
		{"empty", nil, 255, guestLL, false, false},
		{"option of length 0", edit(withSLLA, func(b []byte) []byte { b[9] = 0; return b }), 255, guestLL, false, false},
		{"option beyond the end", edit(withSLLA, func(b []byte) []byte { b[9] = 2; return b }), 255, guestLL, false, false},
		{"one trailing octet", append(append([]byte(nil), withSLLA...), 1), 255, guestLL, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := parseRS(tc.b, tc.hop, tc.src)
			if !tc.ok {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("accepted (%v), want errMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got bool
			for _, o := range rs.Options {
				if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Source {
					got = bytes.Equal(l.Addr, guestMAC)
				}
			}
			if got != tc.slla {
				t.Errorf("source link-layer address found %v, want %v (%v)", got, tc.slla, rs.Options)
			}
		})
	}
}

// FuzzRouterSolicitation: parseRS never panics, accepts only what
// RFC 4861 §6.1.1 allows, and what it accepts encodes back to the same
// options.
func FuzzRouterSolicitation(f *testing.F) {
	slla := &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: guestMAC}
	for _, b := range [][]byte{
		marshalRS(f),
		marshalRS(f, slla),
		marshalRS(f, slla, ndp.NewNonce()),
		marshalRS(f, &ndp.RawOption{Type: 200, Length: 2, Value: make([]byte, 14)}),
		{133, 0, 0, 0, 0, 0, 0, 0, 1, 0},
		{133, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0},
		{133},
	} {
		f.Add(b, uint8(255), false)
		f.Add(b, uint8(255), true)
	}
	f.Add(marshalRS(f), uint8(64), false)
	// testdata/fuzz/FuzzRouterSolicitation holds solicitations captured
	// from Linux and rdisc6.
	f.Fuzz(func(t *testing.T, b []byte, hop uint8, unspecified bool) {
		src := guestLL
		if unspecified {
			src = netip.IPv6Unspecified()
		}
		rs, err := parseRS(b, int(hop), src)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v does not wrap errMalformed", err)
			}
			return
		}
		if hop != 255 || len(b) < 8 || b[0] != 133 || b[1] != 0 {
			t.Fatalf("accepted hop limit %d, header % x", hop, b[:min(len(b), 8)])
		}
		var long bool
		for _, o := range rs.Options {
			if l, ok := o.(*ndp.LinkLayerAddress); ok && unspecified && l.Direction == ndp.Source {
				t.Fatal("accepted a source link-layer address from the unspecified address")
			}
			if r, ok := o.(*ndp.RawOption); ok && r.Length >= 32 {
				long = true // ndp cannot encode those
			}
		}
		if long {
			return
		}
		out, err := ndp.MarshalMessage(rs)
		if err != nil {
			t.Fatalf("accepted %x, cannot encode it again: %v", b, err)
		}
		if !bytes.Equal(out[8:], b[8:]) {
			t.Fatalf("options changed:\n in % x\nout % x", b[8:], out[8:])
		}
	})
}
