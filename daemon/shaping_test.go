package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/ports"
	"github.com/vnetd/vnetd/shaping"
)

// fakeShaper keeps what tc would hold: rates per device and floor classes
// per bridge.
type fakeShaper struct {
	networks map[string]uint64            // bridge -> floor sum it was last given
	devices  map[string]*conf.Bandwidth   // device -> rates
	floors   map[string]map[uint16]uint64 // bridge -> class id -> floor
	fail     map[string]error             // method -> error to return
	calls    []string
}

func newFakeShaper() *fakeShaper {
	return &fakeShaper{networks: map[string]uint64{}, devices: map[string]*conf.Bandwidth{}, floors: map[string]map[uint16]uint64{}, fail: map[string]error{}}
}

func (f *fakeShaper) call(name string) error {
	f.calls = append(f.calls, name)
	return f.fail[name]
}

func (f *fakeShaper) ApplyNetwork(_ context.Context, bridge string, _ *conf.Bandwidth, floorSum uint64) error {
	if err := f.call("ApplyNetwork"); err != nil {
		return err
	}
	f.networks[bridge] = floorSum
	return nil
}

func (f *fakeShaper) ClearNetwork(_ context.Context, bridge string) error {
	f.call("ClearNetwork")
	delete(f.networks, bridge)
	delete(f.floors, bridge)
	return nil
}

func (f *fakeShaper) ApplyPort(_ context.Context, dev string, bw *conf.Bandwidth) error {
	if err := f.call("ApplyPort"); err != nil {
		return err
	}
	f.devices[dev] = bw
	return nil
}

func (f *fakeShaper) ClearPort(_ context.Context, dev string) error {
	f.call("ClearPort")
	delete(f.devices, dev)
	return nil
}

func (f *fakeShaper) PlugFloor(_ context.Context, bridge string, n *conf.Network, p *conf.Port, others uint64, ids *shaping.ClassIDs) (uint16, error) {
	if err := f.call("PlugFloor"); err != nil {
		return 0, err
	}
	if err := ports.CheckFloor(n, p, others); err != nil {
		return 0, err
	}
	id, err := ids.Allocate()
	if err != nil {
		return 0, err
	}
	if f.floors[bridge] == nil {
		f.floors[bridge] = map[uint16]uint64{}
	}
	f.floors[bridge][id] = ports.InboundFloor(p)
	return id, nil
}

func (f *fakeShaper) UnplugFloor(_ context.Context, bridge string, _ *conf.Network, classID uint16, _ uint64, ids *shaping.ClassIDs) error {
	f.call("UnplugFloor")
	ids.Release(classID)
	delete(f.floors[bridge], classID)
	return nil
}

func (f *fakeShaper) UpdateFloor(ctx context.Context, bridge string, n *conf.Network, p *conf.Port, others uint64, ids *shaping.ClassIDs) (uint16, error) {
	if err := f.call("UpdateFloor"); err != nil {
		return 0, err
	}
	if err := ports.CheckFloor(n, p, others); err != nil {
		return 0, err
	}
	cur := uint16(p.Bandwidth.ClassID)
	floor := ports.InboundFloor(p)
	switch {
	case cur == 0 && floor == 0:
		return 0, nil
	case cur == 0:
		return f.PlugFloor(ctx, bridge, n, p, others, ids)
	case floor == 0:
		return 0, f.UnplugFloor(ctx, bridge, n, cur, others, ids)
	}
	if !ids.InUse(cur) {
		ids.Reserve(cur)
	}
	if f.floors[bridge] == nil {
		f.floors[bridge] = map[uint16]uint64{}
	}
	f.floors[bridge][cur] = floor
	return cur, nil
}

func (f *fakeShaper) Stats(context.Context, string) ([]shaping.ClassStats, error) { return nil, nil }

const shapedNATXML = `<network>
  <name>shaped</name>
  <forward mode='nat'/>
  <bridge name='virbr7'/>
  <bandwidth><inbound average='1000' peak='2000'/><outbound average='500'/></bandwidth>
  <ip address='192.168.170.1' netmask='255.255.255.0'/>
</network>`

func floorPortXML(uuid, mac string, floor int) string {
	bw := ""
	if floor > 0 {
		bw = "<bandwidth><inbound average='100' floor='" + strconv.Itoa(floor) + "'/></bandwidth>"
	}
	return `<networkport><uuid>` + uuid + `</uuid><owner><name>vm</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner>
<mac address='` + mac + `'/>` + bw + `</networkport>`
}

func newShapedEnv(t *testing.T) (*testEnv, *fakeShaper) {
	t.Helper()
	e := &testEnv{dir: t.TempDir(), host: newFakeHost(), fw: newFakeFirewall()}
	fs := newFakeShaper()
	open := func() {
		m, err := Open(Config{ConfigDir: filepath.Join(e.dir, "etc"), StateDir: filepath.Join(e.dir, "state"), Host: e.host, Firewall: e.fw, Shaper: fs})
		if err != nil {
			t.Fatal(err)
		}
		e.m = m
		t.Cleanup(func() { m.Close() })
	}
	open()
	return e, fs
}

const (
	portA = "11111111-1111-4111-8111-111111111111"
	portB = "22222222-2222-4222-8222-222222222222"
)

func TestNetworkAndPortShaping(t *testing.T) {
	e, fs := newShapedEnv(t)
	if _, err := e.m.Define([]byte(shapedNATXML)); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start("shaped"); err != nil {
		t.Fatal(err)
	}
	if _, ok := fs.networks["virbr7"]; !ok {
		t.Fatal("network bandwidth not applied at start")
	}
	e.host.links["vnet1"] = true
	p, err := e.m.CreatePort("shaped", []byte(floorPortXML(portA, "52:54:00:00:00:01", 600)), PortOptions{Attach: "vnet1", TapOwner: -1})
	if err != nil {
		t.Fatal(err)
	}
	if p.Bandwidth.ClassID != 3 || fs.floors["virbr7"][3] != 600 || fs.devices["vnet1"] == nil {
		t.Fatalf("port A: class %d floors %v devices %v", p.Bandwidth.ClassID, fs.floors, fs.devices)
	}
	if x, _ := e.m.PortXML("shaped", portA); !strings.Contains(string(x), "3") {
		t.Fatalf("class id not in the port XML:\n%s", x)
	}
	// 600 + 1500 > peak 2000: refused, nothing plugged.
	if _, err := e.m.CreatePort("shaped", []byte(floorPortXML(portB, "52:54:00:00:00:02", 1500)), PortOptions{TapOwner: -1}); code(err) != api.CodeConflict {
		t.Fatalf("overcommitting floor: %v", err)
	}
	if len(fs.floors["virbr7"]) != 1 {
		t.Fatalf("floors after refusal: %v", fs.floors)
	}
	// A floor without a device (the hypervisor plugs it) still gets its class.
	if _, err := e.m.CreatePort("shaped", []byte(floorPortXML(portB, "52:54:00:00:00:02", 300)), PortOptions{TapOwner: -1}); err != nil {
		t.Fatal(err)
	}
	if fs.floors["virbr7"][4] != 300 {
		t.Fatalf("port B floor: %v", fs.floors)
	}

	// Restart: class ids come back from the port records and tc is
	// reapplied with the floors' sum.
	e.m.Close()
	m, err := Open(Config{ConfigDir: filepath.Join(e.dir, "etc"), StateDir: filepath.Join(e.dir, "state"), Host: e.host, Firewall: e.fw, Shaper: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	e.m = m
	r := m.active["shaped"]
	if !r.classIDs.InUse(3) || !r.classIDs.InUse(4) || fs.networks["virbr7"] != 900 {
		t.Fatalf("after restart: ids %v floor sum %d", r.classIDs, fs.networks["virbr7"])
	}

	// Live change: A's floor to 1000 (900-600+1000 = 1300 <= 2000) in place.
	bw := &conf.Bandwidth{Inbound: &conf.Rate{Average: 200, Floor: 1000}}
	if err := m.SetPortBandwidth("shaped", portA, bw); err != nil {
		t.Fatal(err)
	}
	if fs.floors["virbr7"][3] != 1000 || fs.devices["vnet1"].Inbound.Average != 200 {
		t.Fatalf("after set-bandwidth: floors %v device %+v", fs.floors, fs.devices["vnet1"])
	}
	// Too much: refused, old rates kept.
	if err := m.SetPortBandwidth("shaped", portA, &conf.Bandwidth{Inbound: &conf.Rate{Average: 200, Floor: 1800}}); code(err) != api.CodeConflict {
		t.Fatalf("overcommit on update: %v", err)
	}
	// A failing tc change restores the old rates and keeps the record.
	fs.fail["UpdateFloor"] = errors.New("tc broke")
	if err := m.SetPortBandwidth("shaped", portA, &conf.Bandwidth{Inbound: &conf.Rate{Average: 300, Floor: 500}}); err == nil {
		t.Fatal("tc failure not reported")
	}
	delete(fs.fail, "UpdateFloor")
	if x, _ := m.PortXML("shaped", portA); !strings.Contains(string(x), "floor='1000'") {
		t.Fatalf("port changed by a failed update:\n%s", x)
	}
	// Rates removed: floor unplugged, device cleared, id free.
	if err := m.SetPortBandwidth("shaped", portA, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := fs.floors["virbr7"][3]; ok || fs.devices["vnet1"] != nil || r.classIDs.InUse(3) {
		t.Fatalf("after removing rates: floors %v devices %v ids %v", fs.floors, fs.devices, r.classIDs)
	}

	if err := m.DeletePort("shaped", portB); err != nil {
		t.Fatal(err)
	}
	if len(fs.floors["virbr7"]) != 0 || r.classIDs.InUse(4) {
		t.Fatalf("after delete: floors %v ids %v", fs.floors, r.classIDs)
	}
	if err := m.Destroy("shaped"); err != nil {
		t.Fatal(err)
	}
	m.awaitReaped("virbr7")
	m.reapers.Wait()
	if _, ok := fs.networks["virbr7"]; ok {
		t.Fatal("network bandwidth left after destroy")
	}
}

func TestShapingFailureRollsBack(t *testing.T) {
	e, fs := newShapedEnv(t)
	e.m.Define([]byte(shapedNATXML))
	fs.fail["ApplyNetwork"] = errors.New("no HTB")
	err := e.m.Start("shaped")
	if err == nil || !strings.Contains(err.Error(), "no HTB") || !strings.Contains(err.Error(), "bandwidth") {
		t.Fatalf("start with failing tc: %v", err)
	}
	if len(e.host.bridges) != 0 || len(e.fw.applied) != 0 || e.m.active["shaped"] != nil {
		t.Fatalf("left behind: bridges %v rules %v", e.host.bridges, e.fw.applied)
	}
	delete(fs.fail, "ApplyNetwork")
	if err := e.m.Start("shaped"); err != nil {
		t.Fatal(err)
	}
	e.host.links["vnet1"] = true
	fs.fail["PlugFloor"] = errors.New("class add failed")
	if _, err := e.m.CreatePort("shaped", []byte(floorPortXML(portA, "52:54:00:00:00:01", 100)), PortOptions{Attach: "vnet1", TapOwner: -1}); err == nil {
		t.Fatal("port created although its floor failed")
	}
	if fs.devices["vnet1"] != nil || len(e.host.attached) != 0 || len(e.m.active["shaped"].ports) != 0 {
		t.Fatalf("port left behind: devices %v attached %v", fs.devices, e.host.attached)
	}
	if live, _ := e.m.XML("shaped", false); strings.Contains(string(live), "connections") {
		t.Fatalf("counted a failed port:\n%s", live)
	}
}

func TestBandwidthWithoutShaperRefused(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(shapedNATXML))
	err := e.m.Start("shaped")
	if err == nil || !strings.Contains(err.Error(), "<bandwidth> needs traffic control") {
		t.Fatalf("start without tc: %v", err)
	}
	if len(e.host.bridges) != 0 {
		t.Fatalf("bridge left: %v", e.host.bridges)
	}
	// Networks and ports without rates do not need it.
	e.m.Define([]byte(natXML))
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.CreatePort("default", []byte(floorPortXML(portA, "52:54:00:00:00:01", 0)), PortOptions{TapOwner: -1}); err != nil {
		t.Fatal(err)
	}
}
