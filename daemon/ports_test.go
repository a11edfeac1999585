package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/dataplane/ovs"
)

const portXML = `<networkport>
  <uuid>5d744f21-ba4a-4d6e-bdb2-30a35ff3207d</uuid>
  <owner><name>vm</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner>
  <mac address='52:54:00:7b:35:93'/>
</networkport>`

const portID = "5d744f21-ba4a-4d6e-bdb2-30a35ff3207d"

func TestPortLifecycleAndReclaim(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(natXML))
	e.m.Start("default")
	e.host.links["vnet0"] = true
	p, err := e.m.CreatePort("default", []byte(portXML), PortOptions{Attach: "vnet0", TapOwner: -1})
	if err != nil {
		t.Fatal(err)
	}
	if p.Plug.Bridge != "virbr0" || len(e.host.attached) != 1 {
		t.Fatalf("plug %+v attached %v", p.Plug, e.host.attached)
	}
	if _, err := e.m.CreatePort("default", []byte(portXML), PortOptions{TapOwner: -1}); code(err) != api.CodeConflict {
		t.Fatalf("duplicate port: %v", err)
	}
	live, _ := e.m.XML("default", false)
	if !strings.Contains(string(live), "<network connections='1'>") {
		t.Fatalf("live XML:\n%s", live)
	}
	if inactive, _ := e.m.XML("default", true); strings.Contains(string(inactive), "connections") {
		t.Fatalf("inactive XML shows status counters:\n%s", inactive)
	}

	e.m.Close()
	e.open(t)
	list, err := e.m.ListPorts("default")
	if err != nil || len(list) != 1 || list[0].Device != "vnet0" {
		t.Fatalf("ports after restart: %+v %v", list, err)
	}
	if live, _ := e.m.XML("default", false); !strings.Contains(string(live), "<network connections='1'>") {
		t.Fatalf("counted twice after restart:\n%s", live)
	}
	if err := e.m.DeletePort("default", portID); err != nil {
		t.Fatal(err)
	}
	if len(e.host.attached) != 0 {
		t.Fatalf("still attached: %v", e.host.attached)
	}
	if live, _ := e.m.XML("default", false); strings.Contains(string(live), "connections") {
		t.Fatalf("counter not released:\n%s", live)
	}
	if err := e.m.DeletePort("default", portID); code(err) != api.CodeNotFound {
		t.Fatalf("second delete: %v", err)
	}
}

func TestTapPortRemovedWithNetwork(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(natXML))
	e.m.Start("default")
	if _, err := e.m.CreatePort("default", []byte(portXML), PortOptions{Tap: "vtap9", TapOwner: -1}); err != nil {
		t.Fatal(err)
	}
	if !e.host.links["vtap9"] {
		t.Fatal("tap not created")
	}
	if err := e.m.Destroy("default"); err != nil {
		t.Fatal(err)
	}
	if e.host.links["vtap9"] {
		t.Fatal("tap left after destroy")
	}
	recs, _ := e.m.state.ports()
	if len(recs) != 0 {
		t.Fatalf("port records left: %v", recs)
	}
}

func TestPortNeedsRunningNetwork(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(natXML))
	if _, err := e.m.CreatePort("default", []byte(portXML), PortOptions{TapOwner: -1}); code(err) != api.CodeNotActive {
		t.Fatalf("port on inactive network: %v", err)
	}
}

func TestPoolNetworks(t *testing.T) {
	e := newEnv(t)
	host := `<network><name>hb</name><forward mode='bridge'/><bridge name='br0'/></network>`
	e.m.Define([]byte(host))
	if err := e.m.Start("hb"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("host bridge missing: %v", err)
	}
	e.host.links["br0"] = true
	if err := e.m.Start("hb"); err != nil {
		t.Fatal(err)
	}
	if len(e.host.bridges) != 0 || len(e.fw.applied) != 0 {
		t.Fatal("vnetd touched a host bridge network")
	}
	direct := `<network><name>dn</name><forward mode='vepa'><interface dev='eth1'/><interface dev='eth2'/></forward></network>`
	e.m.Define([]byte(direct))
	e.m.Start("dn")
	p, err := e.m.CreatePort("dn", []byte(portXML), PortOptions{TapOwner: -1})
	if err != nil || p.Plug.Dev != "eth1" || !e.host.links["macvtap0"] {
		t.Fatalf("direct port: %+v %v links %v", p, err, e.host.links)
	}
}

type fakeOVS struct{ ports map[string]ovs.PortSpec }

func (f *fakeOVS) AddPort(_ context.Context, p ovs.PortSpec) error {
	f.ports[p.Bridge+"/"+p.Name] = p
	return nil
}

func (f *fakeOVS) DelPort(_ context.Context, bridge, name string) error {
	delete(f.ports, bridge+"/"+name)
	return nil
}

func TestOpenvswitchPorts(t *testing.T) {
	e := &testEnv{dir: t.TempDir(), host: newFakeHost(), fw: newFakeFirewall()}
	fo := &fakeOVS{ports: map[string]ovs.PortSpec{}}
	m, err := Open(Config{ConfigDir: filepath.Join(e.dir, "etc"), StateDir: filepath.Join(e.dir, "state"), Host: e.host, Firewall: e.fw, OVS: fo})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e.host.links["ovsbr0"] = true
	e.host.links["vnet3"] = true
	m.Define([]byte(`<network><name>ovs</name><forward mode='bridge'/><bridge name='ovsbr0'/>
  <virtualport type='openvswitch'/>
  <portgroup name='web' default='yes'><vlan><tag id='42'/></vlan></portgroup></network>`))
	if err := m.Start("ovs"); err != nil {
		t.Fatal(err)
	}
	p, err := m.CreatePort("ovs", []byte(portXML), PortOptions{Attach: "vnet3", TapOwner: -1})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := fo.ports["ovsbr0/vnet3"]
	if !ok || got.VLAN == nil || got.VLAN.Tags[0].ID != 42 || got.InterfaceID == "" || got.VMID != p.OwnerUUID.String() {
		t.Fatalf("ovs port %+v (ok %v)", got, ok)
	}
	if len(e.host.attached) != 0 {
		t.Fatal("an OVS port was also enslaved as a Linux bridge port")
	}
	if err := m.DeletePort("ovs", portID); err != nil || len(fo.ports) != 0 {
		t.Fatalf("delete: %v, left %v", err, fo.ports)
	}
}

// fakeSysfs is a PF eth2 (0000:03:00.0) with two VFs, as sysfs shows it.
func fakeSysfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dev := filepath.Join(root, "bus", "pci", "devices")
	for _, d := range []string{"0000:03:00.0/net/eth2", "0000:03:00.1", "0000:03:00.2", "../../../class/net"} {
		if err := os.MkdirAll(filepath.Join(dev, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for l, target := range map[string]string{
		"bus/pci/devices/0000:03:00.0/virtfn0": "../0000:03:00.1",
		"bus/pci/devices/0000:03:00.0/virtfn1": "../0000:03:00.2",
		"bus/pci/devices/0000:03:00.1/physfn":  "../0000:03:00.0",
		"bus/pci/devices/0000:03:00.2/physfn":  "../0000:03:00.0",
	} {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(root, "class", "net", "eth2"), 0o755)
	if err := os.Symlink("../../../bus/pci/devices/0000:03:00.0", filepath.Join(root, "class", "net", "eth2", "device")); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestHostdevPoolFromPF(t *testing.T) {
	e := &testEnv{dir: t.TempDir(), host: newFakeHost(), fw: newFakeFirewall()}
	m, err := Open(Config{ConfigDir: filepath.Join(e.dir, "etc"), StateDir: filepath.Join(e.dir, "state"), Host: e.host, Firewall: e.fw, SysfsRoot: fakeSysfs(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.Define([]byte(`<network><name>hd</name><forward mode='hostdev' managed='no'><pf dev='eth2'/></forward>
  <portgroup name='v' default='yes'><vlan><tag id='7'/></vlan></portgroup></network>`))
	if err := m.Start("hd"); err != nil {
		t.Fatal(err)
	}
	p, err := m.CreatePort("hd", []byte(portXML), PortOptions{TapOwner: -1})
	if err != nil {
		t.Fatal(err)
	}
	if p.Plug.PCI.String() != "0000:03:00.1" || len(e.host.vfs) != 1 || e.host.vfs[0] != "eth2/0 mac=52:54:00:7b:35:93 vlan=7" {
		t.Fatalf("plug %s, VF calls %v", p.Plug.PCI, e.host.vfs)
	}
	live, _ := m.XML("hd", false)
	if !strings.Contains(string(live), "<address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x1' connections='1'/>") {
		t.Fatalf("live XML lacks the expanded pool:\n%s", live)
	}
	if inactive, _ := m.XML("hd", true); strings.Contains(string(inactive), "<address") {
		t.Fatalf("inactive XML shows the expanded VFs:\n%s", inactive)
	}
	if err := m.DeletePort("hd", portID); err != nil {
		t.Fatal(err)
	}
	if got := e.host.vfs[len(e.host.vfs)-1]; got != "eth2/0 mac= vlan=0" {
		t.Fatalf("VF not cleared on delete: %v", e.host.vfs)
	}
}

func TestPortDeviceNamesChecked(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(natXML))
	e.m.Start("default")
	links := len(e.host.links)
	for _, opt := range []PortOptions{
		{Tap: "../x", TapOwner: -1},
		{Tap: "a-name-longer-than-15", TapOwner: -1},
		{Attach: "vnet 0", TapOwner: -1},
		{Attach: "%d", TapOwner: -1},
	} {
		_, err := e.m.CreatePort("default", []byte(portXML), opt)
		if code(err) != api.CodeInvalidRequest || !strings.Contains(err.Error(), "name") {
			t.Errorf("%+v: %v", opt, err)
		}
	}
	if len(e.host.links) != links || len(e.host.attached) != 0 {
		t.Fatalf("a refused port touched the host: links %v attached %v", e.host.links, e.host.attached)
	}
}
