package dataplane

import (
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vnetd/vnetd/conf"
)

var guestMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x4a, 0x1b, 0x2c}

func TestHostTapMAC(t *testing.T) {
	got := HostTapMAC(guestMAC)
	if got.String() != "fe:54:00:4a:1b:2c" {
		t.Errorf("HostTapMAC = %s", got)
	}
	if guestMAC[0] != 0x52 {
		t.Errorf("HostTapMAC changed its argument")
	}
	if HostTapMAC(net.HardwareAddr{1, 2, 3}) != nil || HostTapMAC(nil) != nil {
		t.Errorf("HostTapMAC of a non-Ethernet address is not nil")
	}
}

func TestCheckLinkName(t *testing.T) {
	for _, ok := range []string{"vnet0", "virbr0", "eth0.100", "a", "123456789012345", "macvtap-x_1"} {
		if err := CheckLinkName("device", ok); err != nil {
			t.Errorf("CheckLinkName(%q) = %v", ok, err)
		}
	}
	for name, text := range map[string]string{
		"":                 "no device name",
		"1234567890123456": "longer than 15",
		".":                "not a valid device name",
		"..":               "not a valid device name",
		"a/b":              "contains",
		"a:b":              "contains",
		"vnet%d":           "contains",
		"a b":              "contains",
		"a\nb":             "contains",
	} {
		if err := CheckLinkName("device", name); err == nil || !strings.Contains(err.Error(), text) {
			t.Errorf("CheckLinkName(%q) = %v, want %q", name, err, text)
		}
	}
}

func TestPortLinkCheck(t *testing.T) {
	good := PortLink{Bridge: "virbr0", Name: "vnet0", MAC: guestMAC, MTU: 9000, Isolated: true, MACTableLibvirt: true}
	if err := good.check(); err != nil {
		t.Errorf("check(%+v) = %v", good, err)
	}
	noMAC := PortLink{Bridge: "virbr0", Name: "vnet0"}
	if err := noMAC.check(); err != nil {
		t.Errorf("a port without macTableManager needs no MAC: %v", err)
	}
	for _, tc := range []struct {
		mod  func(*PortLink)
		text string
	}{
		{func(p *PortLink) { p.Bridge = "" }, "port vnet0: no bridge name"},
		{func(p *PortLink) { p.Name = "" }, "port  on bridge virbr0: no port device name"},
		{func(p *PortLink) { p.Name = "virbr0" }, "a bridge cannot be its own port"},
		{func(p *PortLink) { p.MTU = -1 }, "port vnet0 on bridge virbr0: MTU -1 out of range"},
		{func(p *PortLink) { p.MAC = nil }, "macTableManager='libvirt' needs the guest's MAC"},
		{func(p *PortLink) { p.MAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1} }, "multicast"},
	} {
		pl := good
		tc.mod(&pl)
		if err := pl.check(); err == nil || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("check(%+v) = %v, want %q", pl, err, tc.text)
		}
	}
}

func TestTapOptionsCheck(t *testing.T) {
	for _, o := range []TapOptions{{Owner: -1}, {Owner: 0}, {Owner: 1000, MultiQueue: true, VnetHdr: true, MAC: HostTapMAC(guestMAC)}} {
		if err := o.check(); err != nil {
			t.Errorf("check(%+v) = %v", o, err)
		}
	}
	for _, o := range []TapOptions{{Owner: -2}, {Owner: 1 << 32}, {Owner: 1<<32 - 1}, {Owner: -1, MAC: net.HardwareAddr{1, 0, 0, 0, 0, 0}}} {
		if err := o.check(); err == nil {
			t.Errorf("check(%+v) accepted", o)
		}
	}
}

func TestMacvlanMode(t *testing.T) {
	for m, want := range map[conf.MacvtapMode]netlink.MacvlanMode{
		conf.MacvtapVEPA:        netlink.MACVLAN_MODE_VEPA,
		conf.MacvtapPrivate:     netlink.MACVLAN_MODE_PRIVATE,
		conf.MacvtapBridge:      netlink.MACVLAN_MODE_BRIDGE,
		conf.MacvtapPassthrough: netlink.MACVLAN_MODE_PASSTHRU,
	} {
		if got, err := macvlanMode(m); err != nil || got != want {
			t.Errorf("macvlanMode(%s) = %v, %v; want %v", m, got, err, want)
		}
	}
	if _, err := macvlanMode(conf.MacvtapMode(0)); err == nil {
		t.Errorf("the invalid mode was accepted")
	}
}
