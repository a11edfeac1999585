package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/dataplane/firewalld"
	"github.com/vnetd/vnetd/dataplane/resolved"
	"github.com/vnetd/vnetd/internal/fakedbus"
)

// fakeZones is firewalld's zone bindings.
type fakeZones struct {
	mu      sync.Mutex
	inv     firewalld.Inventory
	bound   map[string]string // iface -> zone
	failAdd error
	calls   []string
}

func newFakeZones(zones ...string) *fakeZones {
	return &fakeZones{inv: firewalld.Inventory{Zones: zones}, bound: map[string]string{}}
}

func (f *fakeZones) Inventory(context.Context) (firewalld.Inventory, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inv, nil
}

func (f *fakeZones) AddInterface(_ context.Context, zone, iface string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "add "+zone+" "+iface)
	if f.failAdd != nil {
		return f.failAdd
	}
	f.bound[iface] = zone
	return nil
}

func (f *fakeZones) RemoveInterface(_ context.Context, zone, iface string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("remove %q %s", zone, iface))
	delete(f.bound, iface)
	return nil
}

func (f *fakeZones) zoneOf(iface string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bound[iface]
}

// fakeDNSReg is systemd-resolved's per-link registrations.
type fakeDNSReg struct {
	mu      sync.Mutex
	links   map[int32]resolved.Registration
	fail    error
	reverts []int32
}

func newFakeDNSReg() *fakeDNSReg { return &fakeDNSReg{links: map[int32]resolved.Registration{}} }

func (f *fakeDNSReg) Register(_ context.Context, ifindex int32, r resolved.Registration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.links[ifindex] = r
	return nil
}

func (f *fakeDNSReg) RevertLink(_ context.Context, ifindex int32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reverts = append(f.reverts, ifindex)
	delete(f.links, ifindex)
	return nil
}

func (f *fakeDNSReg) link(ifindex int) (resolved.Registration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.links[int32(ifindex)]
	return r, ok
}

// hostBusEnv is a Manager with firewalld and resolved fakes; a nil fake
// stands for a service that is not running.
type hostBusEnv struct {
	*testEnv
	zones *fakeZones
	dns   *fakeDNSReg
	svcs  *fakeServices
}

func newHostBusEnv(t *testing.T, zones *fakeZones, dns *fakeDNSReg) *hostBusEnv {
	t.Helper()
	e := &hostBusEnv{testEnv: &testEnv{dir: t.TempDir(), host: newFakeHost(), fw: newFakeFirewall()},
		zones: zones, dns: dns, svcs: &fakeServices{running: map[string]*fakeService{}}}
	e.reopen(t)
	return e
}

func (e *hostBusEnv) reopen(t *testing.T) {
	t.Helper()
	cfg := Config{ConfigDir: filepath.Join(e.dir, "etc"), StateDir: filepath.Join(e.dir, "state"),
		Host: e.host, Firewall: e.fw, Services: e.svcs}
	// Typed nil pointers would make non-nil interfaces.
	if e.zones != nil {
		cfg.Firewalld = e.zones
	}
	if e.dns != nil {
		cfg.Resolved = e.dns
	}
	m, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	t.Cleanup(func() { m.Close() })
}

// assertNothingLeft checks a failed start left no bridge, rules, zone,
// servers or live state.
func (e *hostBusEnv) assertNothingLeft(t *testing.T, bridge string) {
	t.Helper()
	e.m.awaitReaped(bridge)
	if len(e.host.bridges) != 0 || len(e.fw.applied) != 0 {
		t.Errorf("left behind: bridges %v rules %v", e.host.bridges, e.fw.applied)
	}
	if e.zones != nil && e.zones.zoneOf(bridge) != "" {
		t.Errorf("%s left in zone %q", bridge, e.zones.zoneOf(bridge))
	}
	if len(e.svcs.running) != 0 {
		t.Errorf("servers left running: %v", e.svcs.running)
	}
	if recs, _ := e.m.state.all(); len(recs) != 0 {
		t.Errorf("live state left: %v", recs)
	}
}

func netXML(forward, bridge, extra string) string {
	return "<network><name>lab</name>" + forward + bridge + extra +
		"<ip address='192.168.150.1' prefix='24'/></network>"
}

const registerDomain = "<domain name='lab.example' localOnly='yes' register='yes'/>"

func TestStartPutsBridgeInZone(t *testing.T) {
	libvirtZones := []string{"public", "trusted", firewalld.ZoneLibvirt, firewalld.ZoneLibvirtRouted}
	tests := []struct {
		name     string
		xml      string
		zones    []string
		policies []string
		want     string // zone after start; "" none
	}{
		{name: "nat", xml: netXML("<forward mode='nat'/>", "<bridge name='virbr7'/>", ""), zones: libvirtZones, want: "libvirt"},
		{name: "isolated", xml: netXML("", "<bridge name='virbr7'/>", ""), zones: libvirtZones, want: "libvirt"},
		{name: "route", xml: netXML("<forward mode='route'/>", "<bridge name='virbr7'/>", ""), zones: libvirtZones,
			policies: []string{firewalld.PolicyLibvirtRoutedOut}, want: "libvirt-routed"},
		{name: "route on firewalld without policies", xml: netXML("<forward mode='route'/>", "<bridge name='virbr7'/>", ""),
			zones: libvirtZones, want: "libvirt"},
		{name: "open", xml: netXML("<forward mode='open'/>", "<bridge name='virbr7'/>", ""), zones: libvirtZones, want: ""},
		{name: "open with a zone", xml: netXML("<forward mode='open'/>", "<bridge name='virbr7' zone='trusted'/>", ""),
			zones: libvirtZones, want: "trusted"},
		{name: "explicit zone", xml: netXML("<forward mode='nat'/>", "<bridge name='virbr7' zone='trusted'/>", ""),
			zones: []string{"public", "trusted"}, want: "trusted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			zones := newFakeZones(tt.zones...)
			zones.inv.Policies = tt.policies
			e := newHostBusEnv(t, zones, nil)
			if _, err := e.m.Create([]byte(tt.xml)); err != nil {
				t.Fatal(err)
			}
			if got := zones.zoneOf("virbr7"); got != tt.want {
				t.Errorf("zone %q, want %q", got, tt.want)
			}
			if err := e.m.Destroy("lab"); err != nil {
				t.Fatal(err)
			}
			if got := zones.zoneOf("virbr7"); got != "" {
				t.Errorf("still in zone %q after destroy", got)
			}
			if tt.want == "" && len(zones.calls) != 0 {
				t.Errorf("firewalld called for a network without a zone: %v", zones.calls)
			}
		})
	}
}

func TestZoneFailuresRollBack(t *testing.T) {
	tests := []struct {
		name    string
		zones   *fakeZones // nil: firewalld not running
		failAdd error
		xml     string
		wantErr string
	}{
		{name: "zone without firewalld", xml: netXML("<forward mode='nat'/>", "<bridge name='virbr7' zone='trusted'/>", ""),
			wantErr: `network "lab": <bridge zone='trusted'>: firewalld is not running`},
		{name: "missing zone", zones: newFakeZones("public"), xml: netXML("<forward mode='nat'/>", "<bridge name='virbr7' zone='trusted'/>", ""),
			wantErr: `firewalld has no zone "trusted"`},
		{name: "no libvirt zone", zones: newFakeZones("public"), xml: netXML("<forward mode='nat'/>", "<bridge name='virbr7'/>", ""),
			wantErr: `firewalld has no "libvirt" zone`},
		{name: "firewalld refuses", zones: newFakeZones("libvirt"), failAdd: errors.New("firewalld: putting virbr7 in zone \"libvirt\": COMMAND_FAILED"),
			xml: netXML("<forward mode='nat'/>", "<bridge name='virbr7'/>", ""), wantErr: `network "lab": firewalld: putting virbr7`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.zones != nil {
				tt.zones.failAdd = tt.failAdd
			}
			e := newHostBusEnv(t, tt.zones, nil)
			_, err := e.m.Create([]byte(tt.xml))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Create: %v; want error containing %q", err, tt.wantErr)
			}
			if code(err) != api.CodeOperationFailed {
				t.Errorf("code %q", code(err))
			}
			e.assertNothingLeft(t, "virbr7")
		})
	}
}

func TestNoFirewalldNoZone(t *testing.T) {
	e := newHostBusEnv(t, nil, nil)
	if _, err := e.m.Create([]byte(netXML("<forward mode='nat'/>", "<bridge name='virbr7'/>", ""))); err != nil {
		t.Fatalf("a network without <bridge zone> needs no firewalld: %v", err)
	}
}

func TestRegisterWithResolved(t *testing.T) {
	zones := newFakeZones("libvirt")
	dns := newFakeDNSReg()
	e := newHostBusEnv(t, zones, dns)
	xml := strings.Replace(netXML("<forward mode='nat'/>", "<bridge name='virbr7'/>", registerDomain),
		"</network>", "<ip family='ipv6' address='fd00:150::1' prefix='64'/></network>", 1)
	if _, err := e.m.Create([]byte(xml)); err != nil {
		t.Fatal(err)
	}
	ifindex := e.host.bridges["virbr7"]
	got, ok := dns.link(ifindex)
	want := resolved.Registration{
		DNS: []resolved.Address{
			{Family: 2, Address: netip.MustParseAddr("192.168.150.1").AsSlice()},
			{Family: 10, Address: netip.MustParseAddr("fd00:150::1").AsSlice()},
		},
		Domains: []resolved.Domain{{Domain: "lab.example", RoutingOnly: true}},
	}
	if diff := cmp.Diff(want, got); !ok || diff != "" {
		t.Errorf("registration of link %d (-want +got):\n%s", ifindex, diff)
	}
	if err := e.m.Destroy("lab"); err != nil {
		t.Fatal(err)
	}
	if _, ok := dns.link(ifindex); ok || len(dns.reverts) != 1 {
		t.Errorf("not reverted on destroy: reverts %v", dns.reverts)
	}
}

func TestResolvedFailuresRollBack(t *testing.T) {
	xml := netXML("<forward mode='nat'/>", "<bridge name='virbr7'/>", registerDomain)
	tests := []struct {
		name    string
		dns     *fakeDNSReg // nil: resolved not running
		fail    error
		xml     string
		wantErr string
	}{
		{name: "resolved not running", xml: xml,
			wantErr: `network "lab": <domain register='yes'>: systemd-resolved is not running`},
		{name: "resolved refuses", dns: newFakeDNSReg(), fail: errors.New("systemd-resolved: setting the DNS servers of link 11: access denied"), xml: xml,
			wantErr: `network "lab": <domain register='yes'>: systemd-resolved: setting the DNS servers`},
		{name: "nothing to register", dns: newFakeDNSReg(), xml: strings.Replace(xml, "<ip ", "<dns enable='no'/><ip ", 1),
			wantErr: `DNS is disabled`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.dns != nil {
				tt.dns.fail = tt.fail
			}
			e := newHostBusEnv(t, newFakeZones("libvirt"), tt.dns)
			_, err := e.m.Create([]byte(tt.xml))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Create: %v; want error containing %q", err, tt.wantErr)
			}
			e.assertNothingLeft(t, "virbr7")
		})
	}
}

func TestAdoptionReappliesZoneAndRegistration(t *testing.T) {
	zones := newFakeZones("libvirt")
	dns := newFakeDNSReg()
	e := newHostBusEnv(t, zones, dns)
	if _, err := e.m.Create([]byte(netXML("<forward mode='nat'/>", "<bridge name='virbr7'/>", registerDomain))); err != nil {
		t.Fatal(err)
	}
	ifindex := e.host.bridges["virbr7"]
	e.m.Close()
	// firewalld and resolved restarted while vnetd was away: both forgot.
	zones.bound = map[string]string{}
	dns.links = map[int32]resolved.Registration{}
	e.reopen(t)
	if got := zones.zoneOf("virbr7"); got != "libvirt" {
		t.Errorf("adopted bridge in zone %q", got)
	}
	if _, ok := dns.link(ifindex); !ok {
		t.Error("adopted network not registered again")
	}
	// An adopted network whose zone cannot be set keeps running.
	e.m.Close()
	zones.failAdd = errors.New("COMMAND_FAILED")
	e.reopen(t)
	if info, err := e.m.Info("lab"); err != nil || !info.Active {
		t.Errorf("adoption failed with firewalld failing: %+v %v", info, err)
	}
}

// TestHostServicesOverDBus runs the real clients against the fake services
// on a private bus: what Run connects to, and a network's whole life.
func TestHostServicesOverDBus(t *testing.T) {
	addr := fakedbus.StartBus(t)
	log := slog.New(slog.DiscardHandler)

	if fw, res, closeBus := connectHostServices(addr, log); fw != nil || res != nil {
		closeBus()
		t.Fatalf("services found on an empty bus: %v %v", fw, res)
	}

	fwd := fakedbus.NewFirewalld(firewalld.ZoneLibvirt)
	fwd.Serve(t, addr)
	fw, res, closeBus := connectHostServices(addr, log)
	if fw == nil || res != nil {
		t.Fatalf("with firewalld only: firewalld %v resolved %v", fw, res)
	}
	closeBus()

	rsd := fakedbus.NewResolved()
	rsd.Serve(t, addr)
	fw, res, closeBus = connectHostServices(addr, log)
	defer closeBus()
	if fw == nil || res == nil {
		t.Fatalf("with both: firewalld %v resolved %v", fw, res)
	}

	e := &hostBusEnv{testEnv: &testEnv{dir: t.TempDir(), host: newFakeHost(), fw: newFakeFirewall()},
		svcs: &fakeServices{running: map[string]*fakeService{}}}
	m, err := Open(Config{ConfigDir: filepath.Join(e.dir, "etc"), StateDir: filepath.Join(e.dir, "state"),
		Host: e.host, Firewall: e.fw, Services: e.svcs, Firewalld: fw, Resolved: res})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fwd.Bind("virbr7", "public") // as NetworkManager does with a new bridge
	if _, err := m.Create([]byte(netXML("<forward mode='nat'/>", "<bridge name='virbr7'/>", registerDomain))); err != nil {
		t.Fatal(err)
	}
	ifindex := int32(e.host.bridges["virbr7"])
	if z := fwd.ZoneOf("virbr7"); z != firewalld.ZoneLibvirt {
		t.Errorf("bridge in zone %q", z)
	}
	if l, ok := rsd.Link(ifindex); !ok || fmt.Sprint(l.DNS) != "[192.168.150.1]" || fmt.Sprint(l.Domains) != "[~lab.example]" {
		t.Errorf("link %d: %+v %v", ifindex, l, ok)
	}
	if err := m.Destroy("lab"); err != nil {
		t.Fatal(err)
	}
	if z := fwd.ZoneOf("virbr7"); z != "" {
		t.Errorf("bridge still in zone %q", z)
	}
	if _, ok := rsd.Link(ifindex); ok {
		t.Error("link still registered")
	}
	want := []string{"getZones", "getPolicies", "changeZoneOfInterface libvirt virbr7", "removeInterface  virbr7"}
	if diff := cmp.Diff(want, fwd.Calls()); diff != "" {
		t.Errorf("firewalld calls (-want +got):\n%s", diff)
	}
}
