package dhcpd

import (
	"bytes"
	"encoding/binary"
	"hash/fnv"
	"testing"
)

// TestFNV64a6: the start of the search for a free address is hash/fnv's,
// as it was, so that a client gets the same address back across versions.
func TestFNV64a6(t *testing.T) {
	for _, k := range []iaKey6{{}, {duid: "\x00\x03\x00\x01RT\x00\x00\x00\x0a", iaid: 1}, {duid: "x", iaid: 0xdeadbeef}} {
		h := fnv.New64a()
		h.Write([]byte(k.duid))
		binary.Write(h, binary.BigEndian, k.iaid)
		if got, want := fnv64a6(k), h.Sum64(); got != want {
			t.Errorf("fnv64a6(%q, %d) = %x, want %x", k.duid, k.iaid, got, want)
		}
	}
}

// TestSlab6: pieces never overlap, whatever their sizes.
func TestSlab6(t *testing.T) {
	var s slab6
	var pieces [][]byte
	want := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 1+i*37%(3*slabSize6/2)) }
	for i := range 200 {
		if i%2 == 0 {
			pieces = append(pieces, s.copy(want(i)))
			continue
		}
		b := append(s.room(), want(i)...)
		b = s.keep(b)
		pieces = append(pieces, append(b, 0xff)[:len(b)]) // appending must not reach the next piece
	}
	for i, p := range pieces {
		if !bytes.Equal(p, want(i)) {
			t.Fatalf("piece %d changed", i)
		}
	}
	if s.keep(s.room()) != nil {
		t.Error("an empty piece kept")
	}
}
