package firewalld

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/internal/fakedbus"
)

func network(t *testing.T, forward, bridge string) *conf.Network {
	t.Helper()
	xml := "<network><name>net1</name>" + forward + bridge +
		"<ip address='192.168.100.1' prefix='24'/></network>"
	n, err := conf.Parse([]byte(xml))
	if err != nil {
		t.Fatalf("%s: %v", xml, err)
	}
	return n
}

func TestChooseZone(t *testing.T) {
	all := Inventory{Zones: []string{"public", "trusted", ZoneLibvirt, ZoneLibvirtRouted}, Policies: []string{"libvirt-routed-in", PolicyLibvirtRoutedOut}}
	noRoutedPolicy := Inventory{Zones: all.Zones}
	plain := Inventory{Zones: []string{"public", ZoneLibvirt}}
	bare := Inventory{Zones: []string{"public", "trusted"}}
	tests := []struct {
		name    string
		forward string
		bridge  string
		inv     Inventory
		want    string
		wantErr string
	}{
		{name: "nat gets libvirt", forward: "<forward mode='nat'/>", bridge: "<bridge name='virbr5'/>", inv: all, want: ZoneLibvirt},
		{name: "isolated gets libvirt", bridge: "<bridge name='virbr5'/>", inv: all, want: ZoneLibvirt},
		{name: "route gets libvirt-routed", forward: "<forward mode='route'/>", bridge: "<bridge name='virbr5'/>", inv: all, want: ZoneLibvirtRouted},
		{name: "route without the routed policy gets libvirt", forward: "<forward mode='route'/>", bridge: "<bridge name='virbr5'/>", inv: noRoutedPolicy, want: ZoneLibvirt},
		{name: "route without the routed zone gets libvirt", forward: "<forward mode='route'/>", bridge: "<bridge name='virbr5'/>", inv: plain, want: ZoneLibvirt},
		{name: "nat never gets libvirt-routed", forward: "<forward mode='nat'/>", bridge: "<bridge name='virbr5'/>", inv: all, want: ZoneLibvirt},
		{name: "open gets none", forward: "<forward mode='open'/>", bridge: "<bridge name='virbr5'/>", inv: all, want: ""},
		{name: "open without libvirt zone is fine", forward: "<forward mode='open'/>", bridge: "<bridge name='virbr5'/>", inv: bare, want: ""},
		{name: "open honours an explicit zone", forward: "<forward mode='open'/>", bridge: "<bridge name='virbr5' zone='trusted'/>", inv: all, want: "trusted"},
		{name: "explicit zone wins", forward: "<forward mode='route'/>", bridge: "<bridge name='virbr5' zone='trusted'/>", inv: all, want: "trusted"},
		{name: "explicit zone without libvirt zone", forward: "<forward mode='nat'/>", bridge: "<bridge name='virbr5' zone='trusted'/>", inv: bare, want: "trusted"},
		{name: "explicit zone missing", forward: "<forward mode='nat'/>", bridge: "<bridge name='virbr5' zone='dmz'/>", inv: all,
			wantErr: `network "net1": <bridge zone='dmz'>: firewalld has no zone "dmz"`},
		{name: "libvirt zone missing", forward: "<forward mode='nat'/>", bridge: "<bridge name='virbr5'/>", inv: bare,
			wantErr: `network "net1": firewalld has no "libvirt" zone`},
		{name: "route with nothing", forward: "<forward mode='route'/>", bridge: "<bridge name='virbr5'/>", inv: Inventory{},
			wantErr: `firewalld has no "libvirt" zone`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := network(t, tt.forward, tt.bridge)
			got, err := ChooseZone(n, tt.inv)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ChooseZone = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ChooseZone = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestChooseZoneDevicePools(t *testing.T) {
	n, err := conf.Parse([]byte("<network><name>pool</name><forward mode='bridge'/><bridge name='br0'/></network>"))
	if err != nil {
		t.Fatal(err)
	}
	if Applies(n) {
		t.Error("a host bridge vnetd does not own gets a zone")
	}
	if z, err := ChooseZone(n, Inventory{}); z != "" || err != nil {
		t.Errorf("ChooseZone = %q, %v; want none", z, err)
	}
}

func dial(t *testing.T, addr string) *Client {
	t.Helper()
	return New(fakedbus.Connect(t, addr))
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClientAgainstFakeFirewalld(t *testing.T) {
	addr := fakedbus.StartBus(t)
	c := dial(t, addr)
	ctx := ctx(t)
	if c.Running(ctx) {
		t.Fatal("Running before firewalld is on the bus")
	}
	fw := fakedbus.NewFirewalld("trusted", ZoneLibvirt, ZoneLibvirtRouted)
	fw.SetPolicies(PolicyLibvirtRoutedOut)
	fw.Serve(t, addr)
	if !c.Running(ctx) {
		t.Fatal("not Running with firewalld on the bus")
	}

	inv, err := c.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := Inventory{Zones: []string{ZoneLibvirt, ZoneLibvirtRouted, "public", "trusted"}, Policies: []string{PolicyLibvirtRoutedOut}}
	if diff := cmp.Diff(want, inv); diff != "" {
		t.Errorf("Inventory (-want +got):\n%s", diff)
	}
	if ok, err := c.ZoneExists(ctx, "trusted"); !ok || err != nil {
		t.Errorf("ZoneExists(trusted) = %v, %v", ok, err)
	}
	if ok, err := c.ZoneExists(ctx, "dmz"); ok || err != nil {
		t.Errorf("ZoneExists(dmz) = %v, %v", ok, err)
	}

	// NetworkManager got there first: the bridge sits in the default zone.
	fw.Bind("virbr5", "public")
	if err := c.AddInterface(ctx, ZoneLibvirt, "virbr5"); err != nil {
		t.Fatal(err)
	}
	// Again, as after a vnetd restart.
	if err := c.AddInterface(ctx, ZoneLibvirt, "virbr5"); err != nil {
		t.Fatalf("AddInterface is not idempotent: %v", err)
	}
	if z, err := c.ZoneOfInterface(ctx, "virbr5"); z != ZoneLibvirt || err != nil {
		t.Errorf("ZoneOfInterface = %q, %v", z, err)
	}
	if err := c.AddInterface(ctx, "dmz", "virbr5"); Code(err) != "INVALID_ZONE" || !strings.Contains(err.Error(), `putting virbr5 in zone "dmz"`) {
		t.Errorf("AddInterface to a missing zone: %v (code %q)", err, Code(err))
	}
	if err := c.RemoveInterface(ctx, "", "virbr5"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveInterface(ctx, "", "virbr5"); err != nil {
		t.Fatalf("RemoveInterface of an unbound interface: %v", err)
	}
	if z, _ := c.ZoneOfInterface(ctx, "virbr5"); z != "" {
		t.Errorf("still in zone %q", z)
	}

	fw.FailNext("removeInterface", "COMMAND_FAILED")
	fw.Bind("virbr6", "trusted")
	if err := c.RemoveInterface(ctx, "", "virbr6"); Code(err) != "COMMAND_FAILED" {
		t.Errorf("RemoveInterface failure not reported: %v", err)
	}

	wantCalls := []string{
		"getZones", "getPolicies", "getZones", "getZones",
		"changeZoneOfInterface libvirt virbr5", "changeZoneOfInterface libvirt virbr5",
		"getZoneOfInterface virbr5", "changeZoneOfInterface dmz virbr5",
		"removeInterface  virbr5", "removeInterface  virbr5", "getZoneOfInterface virbr5",
		"removeInterface  virbr6",
	}
	if diff := cmp.Diff(wantCalls, fw.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}

	fw.Stop()
	if c.Running(ctx) {
		t.Error("Running after firewalld left the bus")
	}
	if _, err := c.Zones(ctx); err == nil {
		t.Error("Zones without firewalld succeeded")
	}
}

func TestPoliciesOfOldFirewalld(t *testing.T) {
	addr := fakedbus.StartBus(t)
	fw := fakedbus.NewFirewalld(ZoneLibvirt)
	fw.WithoutPolicies() // firewalld before 0.9
	fw.Serve(t, addr)
	c := dial(t, addr)
	if p, err := c.Policies(ctx(t)); err != nil || len(p) != 0 {
		t.Errorf("Policies = %v, %v; want none", p, err)
	}
	inv, err := c.Inventory(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	n := network(t, "<forward mode='route'/>", "<bridge name='virbr5'/>")
	if z, err := ChooseZone(n, inv); z != ZoneLibvirt || err != nil {
		t.Errorf("ChooseZone = %q, %v", z, err)
	}
}

func TestCode(t *testing.T) {
	if Code(nil) != "" {
		t.Error("code of nil")
	}
}

// BenchmarkZoneOnStart is what a network start adds with firewalld
// running: the inventory and the binding (against the fake, so the bus's
// cost, not firewalld's rule rewrite).
func BenchmarkZoneOnStart(b *testing.B) {
	addr := fakedbus.StartBus(b)
	fw := fakedbus.NewFirewalld(ZoneLibvirt)
	fw.Serve(b, addr)
	c := New(fakedbus.Connect(b, addr))
	ctx := context.Background()
	for b.Loop() {
		inv, err := c.Inventory(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ChooseZone(&conf.Network{Name: "n", Bridge: conf.Bridge{Name: "virbr5"}}, inv); err != nil {
			b.Fatal(err)
		}
		if err := c.AddInterface(ctx, ZoneLibvirt, "virbr5"); err != nil {
			b.Fatal(err)
		}
	}
}
