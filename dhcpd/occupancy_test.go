package dhcpd

import (
	"strings"
	"testing"
	"time"
)

func TestPoolSize4(t *testing.T) {
	for _, tc := range []struct {
		name, dhcp string
		want       int
	}{
		{"one range", defaultRange4, 253},
		{"two ranges", `<range start='192.168.122.2' end='192.168.122.10'/><range start='192.168.122.20' end='192.168.122.29'/>`, 19},
		{"hosts inside and outside the range", `<range start='192.168.122.2' end='192.168.122.10'/>
			<host mac='52:54:00:00:00:01' ip='192.168.122.5'/>
			<host mac='52:54:00:00:00:02' ip='192.168.122.100'/>
			<host name='again' ip='192.168.122.100'/>
			<host name='other' ip='192.168.122.101'/>`, 11},
		{"static only", `<host mac='52:54:00:00:00:01' ip='192.168.122.7'/><host mac='52:54:00:00:00:02' ip='192.168.122.8'/>`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig4(t, natNet4(tc.dhcp))
			if got := r.h.PoolSize(); got != tc.want {
				t.Errorf("pool size %d, want %d", got, tc.want)
			}
		})
	}
}

func TestBound4(t *testing.T) {
	r := newRig4(t, natNet4(defaultRange4))
	r.dora(macA_4)
	r.dora(macB_4)
	// An offer is not a lease.
	if off := r.do(discover4(macC_4)); off.resp == nil {
		t.Fatal("no offer")
	}
	if got := r.h.Bound(r.now); got != 2 {
		t.Errorf("bound %d, want 2", got)
	}
	if got := r.h.Bound(r.now.Add(2 * time.Hour)); got != 0 {
		t.Errorf("bound after the leases ran out: %d, want 0", got)
	}
}

func TestPoolSize6(t *testing.T) {
	outside := strings.Replace(net6XML, "</dhcp>\n  </ip>\n</network>",
		"<host name='far' ip='2001:db8:ac10:fd01::2:1'/><host name='farther' ip='2001:db8:ac10:fd01::2:1'/></dhcp>\n  </ip>\n</network>", 1)
	for _, tc := range []struct {
		name, xml string
		want      int
	}{
		// ::1:10 - ::1:ff, and every reservation inside it
		{"reservations inside the range", net6XML, 240},
		{"a reserved address outside, twice", outside, 241},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := NewHandler6(parseNet6(t, tc.xml, nil), serverID6)
			if err != nil {
				t.Fatal(err)
			}
			if got := h.PoolSize(); got != tc.want {
				t.Errorf("pool size %d, want %d", got, tc.want)
			}
		})
	}
}
