package dnsd

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestArrivalIndex(t *testing.T) {
	v4 := unix.PktInfo4(&unix.Inet4Pktinfo{Ifindex: 7, Addr: [4]byte{10, 0, 0, 1}})
	v6 := unix.PktInfo6(&unix.Inet6Pktinfo{Ifindex: 9, Addr: [16]byte{0xfd, 15: 1}})
	other := unix.UnixRights(3) // some other control message first
	for _, tc := range []struct {
		name string
		ctrl []byte
		want int
		ok   bool
	}{
		{"IP_PKTINFO", v4, 7, true},
		{"IPV6_PKTINFO", v6, 9, true},
		{"after another message", append(append([]byte{}, other...), v6...), 9, true},
		{"none", nil, 0, false},
		{"only another message", other, 0, false},
		{"truncated", v4[:len(v4)-8], 0, false},
		{"length past the end", append([]byte{0xff, 0xff}, v4[2:]...), 0, false},
		{"zero length", make([]byte, 32), 0, false},
	} {
		got, ok := arrivalIndex(tc.ctrl)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %d %v, want %d %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// BenchmarkArrivalIndex is what the interface check adds per datagram in
// user space.
func BenchmarkArrivalIndex(b *testing.B) {
	ctrl := unix.PktInfo6(&unix.Inet6Pktinfo{Ifindex: 9})
	for b.Loop() {
		if _, ok := arrivalIndex(ctrl); !ok {
			b.Fatal("no index")
		}
	}
}
