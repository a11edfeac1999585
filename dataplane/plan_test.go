package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/conf"
)

func addr(s string) netip.Addr      { return netip.MustParseAddr(s) }
func pfx(s string) netip.Prefix     { return netip.MustParsePrefix(s) }
func ip4(a string, p uint8) conf.IP { return conf.IP{Address: addr(a), Prefix: p} }
func ip6(a string, p uint8) conf.IP { return conf.IP{Family: "ipv6", Address: addr(a), Prefix: p} }

func route(dst string, prefix uint8, gw string, metric uint32) conf.Route {
	r := conf.Route{Address: addr(dst), Prefix: prefix, HasPrefix: true, Gateway: addr(gw), Metric: metric}
	if r.Address.Is6() {
		r.Family = "ipv6"
	}
	return r
}

// natNet is the usual default network with an IPv6 <ip> added.
func natNet() *conf.Network {
	return &conf.Network{
		Name:    "default",
		Forward: conf.Forward{Mode: conf.ForwardNAT},
		Bridge:  conf.Bridge{Name: "virbr0"},
		MAC:     net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56},
		IPs:     []conf.IP{ip4("192.168.122.1", 24), ip6("fd00:122::1", 64)},
	}
}

func TestPlanFor(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(n *conf.Network)
		check   func(t *testing.T, p plan)
		wantErr string
	}{
		{
			name: "nat with both families",
			check: func(t *testing.T, p plan) {
				want := plan{
					Bridge: "virbr0",
					MAC:    net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56},
					STP:    true,
					IPv6:   true,
					Sysctls: []setting{
						{"net/ipv6/conf/virbr0/disable_ipv6", "0"},
						{"net/ipv6/conf/virbr0/accept_ra", "0"},
						{"net/ipv6/conf/virbr0/autoconf", "0"},
					},
					Addrs:          []netip.Prefix{pfx("192.168.122.1/24"), pfx("fd00:122::1/64")},
					IPv4Forwarding: true,
					IPv6Forwarding: true,
				}
				if !reflect.DeepEqual(p, want) {
					t.Errorf("plan =\n%+v\nwant\n%+v", p, want)
				}
			},
		},
		{
			name: "isolated: no forwarding, IPv6 disabled, stp off, delay, mtu, libvirt mac table",
			mod: func(n *conf.Network) {
				n.Forward.Mode = conf.ForwardNone
				n.IPs = n.IPs[:1]
				n.Bridge.STP = conf.TristateNo
				n.Bridge.Delay = 5
				n.Bridge.MACTableManager = conf.MACTableLibvirt
				n.MTU = 9000
			},
			check: func(t *testing.T, p plan) {
				if p.IPv4Forwarding || p.IPv6Forwarding {
					t.Errorf("isolated network turns forwarding on: %+v", p)
				}
				if p.STP || p.Delay != 500 || p.MTU != 9000 || !p.VLANFiltering || p.IPv6 {
					t.Errorf("plan = %+v", p)
				}
				if p.Sysctls[0] != (setting{"net/ipv6/conf/virbr0/disable_ipv6", "1"}) {
					t.Errorf("disable_ipv6 = %v, want 1", p.Sysctls[0])
				}
			},
		},
		{
			name: "ipv6='yes' keeps IPv6 on the bridge but forwards only IPv4",
			mod: func(n *conf.Network) {
				n.IPs = n.IPs[:1]
				n.IPv6 = true
			},
			check: func(t *testing.T, p plan) {
				if !p.IPv6 || p.Sysctls[0].Value != "0" {
					t.Errorf("ipv6='yes': IPv6=%v disable_ipv6=%s", p.IPv6, p.Sysctls[0].Value)
				}
				if !p.IPv4Forwarding || p.IPv6Forwarding {
					t.Errorf("forwarding v4=%v v6=%v, want only v4", p.IPv4Forwarding, p.IPv6Forwarding)
				}
			},
		},
		{
			name: "IPv6-only route network forwards only IPv6",
			mod: func(n *conf.Network) {
				n.Forward.Mode = conf.ForwardRoute
				n.IPs = n.IPs[1:]
			},
			check: func(t *testing.T, p plan) {
				if p.IPv4Forwarding || !p.IPv6Forwarding {
					t.Errorf("forwarding v4=%v v6=%v, want only v6", p.IPv4Forwarding, p.IPv6Forwarding)
				}
			},
		},
		{
			name: "routes get libvirt's default metric",
			mod: func(n *conf.Network) {
				n.Routes = []conf.Route{route("10.0.0.0", 8, "192.168.122.2", 0), route("fd01::", 64, "fd00:122::2", 7)}
			},
			check: func(t *testing.T, p plan) {
				want := []routeSpec{
					{pfx("10.0.0.0/8"), addr("192.168.122.2"), 1},
					{pfx("fd01::/64"), addr("fd00:122::2"), 7},
				}
				if !reflect.DeepEqual(p.Routes, want) {
					t.Errorf("routes = %v, want %v", p.Routes, want)
				}
			},
		},
		{
			name:    "bridge mode is a pool mode",
			mod:     func(n *conf.Network) { n.Forward.Mode = conf.ForwardBridge },
			wantErr: "pool modes are not started",
		},
		{
			name:    "no bridge name",
			mod:     func(n *conf.Network) { n.Bridge.Name = "" },
			wantErr: `network "default": no bridge name`,
		},
		{
			name:    "bridge name too long",
			mod:     func(n *conf.Network) { n.Bridge.Name = "averyveryverylongname" },
			wantErr: "longer than 15",
		},
		{
			name:    "class D address without prefix",
			mod:     func(n *conf.Network) { n.IPs = []conf.IP{{Address: addr("224.0.0.1")}} },
			wantErr: "ip[1] 224.0.0.1",
		},
		{
			name:    "forward delay overflow",
			mod:     func(n *conf.Network) { n.Bridge.Delay = 1 << 40 },
			wantErr: "too large",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := natNet()
			if tt.mod != nil {
				tt.mod(n)
			}
			p, err := planFor(n)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("planFor error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("planFor: %v", err)
			}
			tt.check(t, p)
		})
	}
	if _, err := planFor(&conf.Network{Name: "x", Forward: conf.Forward{Mode: conf.ForwardHostdev}}); !errors.Is(err, ErrUnsupportedMode) {
		t.Errorf("hostdev: error %v is not ErrUnsupportedMode", err)
	}
}

func TestAddrsFor(t *testing.T) {
	tests := []struct {
		name string
		ips  []conf.IP
		want []netip.Prefix
	}{
		{"none", nil, nil},
		{"prefix keeps host bits", []conf.IP{ip4("192.168.122.1", 24)}, []netip.Prefix{pfx("192.168.122.1/24")}},
		{"netmask", []conf.IP{{Address: addr("10.1.2.3"), Netmask: addr("255.255.0.0")}}, []netip.Prefix{pfx("10.1.2.3/16")}},
		{"classful default A", []conf.IP{{Address: addr("10.0.0.1")}}, []netip.Prefix{pfx("10.0.0.1/8")}},
		{"classful default C", []conf.IP{{Address: addr("192.168.1.1")}}, []netip.Prefix{pfx("192.168.1.1/24")}},
		{"IPv6 default /64", []conf.IP{{Family: "ipv6", Address: addr("2001:db8::1")}}, []netip.Prefix{pfx("2001:db8::1/64")}},
		{"order kept", []conf.IP{ip6("fd00::1", 64), ip4("10.0.0.1", 8)}, []netip.Prefix{pfx("fd00::1/64"), pfx("10.0.0.1/8")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := addrsFor(&conf.Network{Name: "n", IPs: tt.ips})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("addrsFor = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestForwardDelay(t *testing.T) {
	tests := []struct {
		sec     uint64
		want    uint32
		wantErr bool
	}{
		{0, 0, false},
		{2, 200, false},
		{30, 3000, false},
		{42949672, 4294967200, false},
		{42949673, 0, true},
	}
	for _, tt := range tests {
		got, err := forwardDelay(tt.sec)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("forwardDelay(%d) = %d, %v; want %d, error %v", tt.sec, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCollision(t *testing.T) {
	withRoute := func(n *conf.Network) *conf.Network {
		n.Routes = []conf.Route{route("10.20.0.0", 16, "192.168.122.2", 0)}
		return n
	}
	tests := []struct {
		name   string
		n      *conf.Network
		routes []routeInfo
		want   *CollisionError // nil: no collision
		msg    string
	}{
		{
			name: "empty table",
			n:    natNet(),
		},
		{
			name:   "same IPv4 network on another interface",
			n:      natNet(),
			routes: []routeInfo{{Dst: pfx("0.0.0.0/0"), Gw: addr("10.0.0.1"), Link: "eth0"}, {Dst: pfx("192.168.122.0/24"), Link: "eth1"}},
			want:   &CollisionError{Prefix: pfx("192.168.122.0/24"), Interface: "eth1"},
			msg:    `network "default": network 192.168.122.0/24 is already in use by interface eth1`,
		},
		{
			name:   "same network through a gateway",
			n:      natNet(),
			routes: []routeInfo{{Dst: pfx("192.168.122.0/24"), Gw: addr("10.0.0.1"), Link: "eth0"}},
			want:   &CollisionError{Prefix: pfx("192.168.122.0/24"), Interface: "eth0"},
		},
		{
			name:   "a blackhole has no interface",
			n:      natNet(),
			routes: []routeInfo{{Dst: pfx("192.168.122.0/24")}},
			want:   &CollisionError{Prefix: pfx("192.168.122.0/24")},
			msg:    "is already in use by a route with no interface",
		},
		{
			name:   "different length is no collision (libvirt compares for equality)",
			n:      natNet(),
			routes: []routeInfo{{Dst: pfx("192.168.0.0/16"), Link: "eth0"}, {Dst: pfx("192.168.122.0/25"), Link: "eth0"}},
		},
		{
			name:   "own bridge is skipped",
			n:      natNet(),
			routes: []routeInfo{{Dst: pfx("192.168.122.0/24"), Link: "virbr0"}, {Dst: pfx("fd00:122::/64"), Link: "virbr0"}},
		},
		{
			name:   "IPv6 subnet",
			n:      natNet(),
			routes: []routeInfo{{Dst: pfx("fd00:122::/64"), Link: "wg0"}},
			want:   &CollisionError{Prefix: pfx("fd00:122::/64"), Interface: "wg0"},
		},
		{
			name: "link-local IPv6 subnet is everywhere, not a collision",
			n: func() *conf.Network {
				n := natNet()
				n.IPs = []conf.IP{ip6("fe80::1", 64)}
				return n
			}(),
			routes: []routeInfo{{Dst: pfx("fe80::/64"), Link: "eth0"}},
		},
		{
			name:   "static route destination",
			n:      withRoute(natNet()),
			routes: []routeInfo{{Dst: pfx("10.20.0.0/16"), Gw: addr("10.0.0.1"), Link: "eth0"}},
			want:   &CollisionError{Prefix: pfx("10.20.0.0/16"), Interface: "eth0", Route: true},
			msg:    "static route to 10.20.0.0/16 conflicts with an existing route on interface eth0",
		},
		{
			name:   "unrelated routes",
			n:      withRoute(natNet()),
			routes: []routeInfo{{Dst: pfx("10.21.0.0/16"), Link: "eth0"}, {Dst: pfx("fd00:123::/64"), Link: "eth0"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := collision(tt.n, tt.routes)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("collision = %v, want none", err)
				}
				return
			}
			var ce *CollisionError
			if !errors.As(err, &ce) {
				t.Fatalf("collision = %v, want a *CollisionError", err)
			}
			if *ce != *tt.want {
				t.Errorf("collision = %+v, want %+v", *ce, *tt.want)
			}
			if tt.msg != "" && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q does not contain %q", err, tt.msg)
			}
		})
	}
}

func TestRALinks(t *testing.T) {
	routes := []routeInfo{
		{Dst: pfx("::/0"), Gw: addr("fe80::1"), Link: "eth1", Protocol: rtprotRA},
		{Dst: pfx("::/0"), Gw: addr("fe80::2"), Link: "eth0", Protocol: rtprotRA},
		{Dst: pfx("2001:db8::/64"), Link: "eth0", Protocol: rtprotRA},
		{Dst: pfx("::/0"), Gw: addr("fe80::3"), Link: "eth2", Protocol: 4},              // static
		{Dst: pfx("0.0.0.0/0"), Gw: addr("10.0.0.1"), Link: "eth3", Protocol: rtprotRA}, // not IPv6
		{Dst: pfx("::/0"), Gw: addr("fe80::4"), Link: "virbr0", Protocol: rtprotRA},
		{Dst: pfx("::/0"), Protocol: rtprotRA},
	}
	got := raLinks(routes, "virbr0")
	want := []string{"eth0", "eth1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("raLinks = %v, want %v", got, want)
	}
	if got := raLinks(nil, "virbr0"); got != nil {
		t.Errorf("raLinks(nil) = %v", got)
	}
}

func TestMissing(t *testing.T) {
	want := []netip.Prefix{pfx("192.168.122.1/24"), pfx("fd00::1/64"), pfx("10.0.0.1/8")}
	have := []netip.Prefix{pfx("fd00::1/64"), pfx("10.0.0.1/16"), pfx("fe80::1/64")}
	if got, exp := missingAddrs(want, have), []netip.Prefix{pfx("192.168.122.1/24"), pfx("10.0.0.1/8")}; !reflect.DeepEqual(got, exp) {
		t.Errorf("missingAddrs = %v, want %v", got, exp)
	}

	wantR := []routeSpec{
		{pfx("10.0.0.0/8"), addr("192.168.122.2"), 1},
		{pfx("10.1.0.0/16"), addr("192.168.122.2"), 1},
		{pfx("10.2.0.0/16"), addr("192.168.122.2"), 5},
	}
	haveR := []routeInfo{
		{Dst: pfx("10.0.0.0/8"), Gw: addr("192.168.122.2"), Metric: 1},
		{Dst: pfx("10.1.0.0/16"), Gw: addr("192.168.122.3"), Metric: 1},
		{Dst: pfx("10.2.0.0/16"), Gw: addr("192.168.122.2"), Metric: 6},
	}
	got := missingRoutes(wantR, haveR)
	if exp := wantR[1:]; !reflect.DeepEqual(got, exp) {
		t.Errorf("missingRoutes = %v, want %v", got, exp)
	}
}

func TestCollisionErrorIs(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &CollisionError{Prefix: pfx("10.0.0.0/8"), Interface: "eth0"})
	var ce *CollisionError
	if !errors.As(err, &ce) || ce.Interface != "eth0" {
		t.Errorf("errors.As through wrapping failed: %v", err)
	}
}
