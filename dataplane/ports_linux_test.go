package dataplane

import (
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestTapFlags(t *testing.T) {
	base := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_TUN_EXCL)
	for _, tc := range []struct {
		o    TapOptions
		want uint16
	}{
		{TapOptions{Owner: -1}, base},
		{TapOptions{VnetHdr: true}, base | unix.IFF_VNET_HDR},
		{TapOptions{MultiQueue: true}, base | unix.IFF_MULTI_QUEUE},
		{TapOptions{MultiQueue: true, VnetHdr: true}, base | unix.IFF_MULTI_QUEUE | unix.IFF_VNET_HDR},
	} {
		if got := tapFlags(tc.o); got != tc.want {
			t.Errorf("tapFlags(%+v) = %#x, want %#x", tc.o, got, tc.want)
		}
	}
}

// The entry `bridge fdb add MAC dev PORT master static` sends.
func TestFDBEntry(t *testing.T) {
	n := fdbEntry(7, guestMAC)
	if n.LinkIndex != 7 || n.Family != unix.AF_BRIDGE || n.State != netlink.NUD_NOARP ||
		n.Flags != netlink.NTF_MASTER || n.HardwareAddr.String() != guestMAC.String() || n.IP != nil {
		t.Errorf("fdbEntry = %+v", n)
	}
}
