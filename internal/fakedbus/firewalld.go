package fakedbus

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/godbus/dbus/v5"
)

// firewalld's bus name, object, interfaces and error name.
const (
	FirewalldName   = "org.fedoraproject.FirewallD1"
	firewalldPath   = "/org/fedoraproject/FirewallD1"
	firewalldZone   = FirewalldName + ".zone"
	firewalldPolicy = FirewalldName + ".policy"
	// FirewalldError is the name of every error firewalld returns; the
	// message starts with firewalld's error code (INVALID_ZONE: ...).
	FirewalldError = FirewalldName + ".Exception"
)

// Firewalld is a stand-in for firewalld's runtime zone interface: zones,
// policies and the binding of interfaces to zones.
type Firewalld struct {
	mu          sync.Mutex
	zones       []string
	policies    []string
	defaultZone string
	bindings    map[string]string // interface -> zone
	calls       []string
	fail        map[string]string // D-Bus member -> error code of its next call
	noPolicies  bool
	stop        func()
}

// NewFirewalld returns a firewalld with the given zones and no policies;
// "public" is the default zone, whether listed or not.
func NewFirewalld(zones ...string) *Firewalld {
	f := &Firewalld{defaultZone: "public", bindings: map[string]string{}, fail: map[string]string{}}
	f.SetZones(zones...)
	return f
}

// Serve puts the firewalld on the bus at addr under its real name until
// the test ends or Stop.
func (f *Firewalld) Serve(t testing.TB, addr string) {
	t.Helper()
	exports := []export{{&fwZone{f}, map[string]string{
		"GetZones":              "getZones",
		"GetZoneOfInterface":    "getZoneOfInterface",
		"AddInterface":          "addInterface",
		"ChangeZoneOfInterface": "changeZoneOfInterface",
		"RemoveInterface":       "removeInterface",
	}, firewalldPath, firewalldZone}}
	if !f.noPolicies {
		exports = append(exports, export{&fwPolicy{f}, map[string]string{"GetPolicies": "getPolicies"}, firewalldPath, firewalldPolicy})
	}
	f.stop = serve(t, addr, FirewalldName, exports)
}

// WithoutPolicies leaves out the policy interface, as firewalld before
// 0.9; call it before Serve.
func (f *Firewalld) WithoutPolicies() { f.noPolicies = true }

// Stop takes firewalld off the bus, as when the service stops.
func (f *Firewalld) Stop() {
	if f.stop != nil {
		f.stop()
	}
}

// SetZones replaces the zones firewalld knows.
func (f *Firewalld) SetZones(zones ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.zones = append([]string(nil), zones...)
	if !slices.Contains(f.zones, f.defaultZone) {
		f.zones = append(f.zones, f.defaultZone)
	}
	sort.Strings(f.zones)
}

// SetPolicies replaces the policies firewalld knows.
func (f *Firewalld) SetPolicies(policies ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policies = append([]string(nil), policies...)
}

// Bind puts an interface in a zone, as another program would have.
func (f *Firewalld) Bind(iface, zone string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bindings[iface] = zone
}

// ZoneOf is the zone an interface is bound to, "" if none.
func (f *Firewalld) ZoneOf(iface string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bindings[iface]
}

// Calls are the calls that changed or queried bindings, as
// "member arg...", in order.
func (f *Firewalld) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// FailNext makes the next call of a D-Bus member (e.g.
// "changeZoneOfInterface") fail with a firewalld error code.
func (f *Firewalld) FailNext(member, code string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[member] = code
}

// begin records a call and returns the error it was told to fail with.
// f.mu is held.
func (f *Firewalld) begin(member string, args ...string) *dbus.Error {
	f.calls = append(f.calls, strings.Join(append([]string{member}, args...), " "))
	if code, ok := f.fail[member]; ok {
		delete(f.fail, member)
		return fwError(code, "injected failure")
	}
	return nil
}

func fwError(code, format string, args ...any) *dbus.Error {
	return dbus.NewError(FirewalldError, []any{code + ": " + fmt.Sprintf(format, args...)})
}

// zone resolves "" to the default zone and checks the zone exists, like
// firewalld's check_zone. f.mu is held.
func (f *Firewalld) zone(z string) (string, *dbus.Error) {
	if z == "" {
		z = f.defaultZone
	}
	if !slices.Contains(f.zones, z) {
		return "", fwError("INVALID_ZONE", "%s", z)
	}
	return z, nil
}

// fwZone is the org.fedoraproject.FirewallD1.zone interface.
type fwZone struct{ f *Firewalld }

func (z *fwZone) GetZones() ([]string, *dbus.Error) {
	f := z.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin("getZones"); err != nil {
		return nil, err
	}
	return append([]string(nil), f.zones...), nil
}

func (z *fwZone) GetZoneOfInterface(iface string) (string, *dbus.Error) {
	f := z.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin("getZoneOfInterface", iface); err != nil {
		return "", err
	}
	return f.bindings[iface], nil
}

func (z *fwZone) AddInterface(zone, iface string) (string, *dbus.Error) {
	f := z.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin("addInterface", zone, iface); err != nil {
		return "", err
	}
	return f.add(zone, iface)
}

// add is firewalld's add_interface. f.mu is held.
func (f *Firewalld) add(zone, iface string) (string, *dbus.Error) {
	z, err := f.zone(zone)
	if err != nil {
		return "", err
	}
	switch cur, ok := f.bindings[iface]; {
	case ok && cur == z:
		return "", fwError("ZONE_ALREADY_SET", "'%s' already bound to '%s'", iface, z)
	case ok:
		return "", fwError("ZONE_CONFLICT", "'%s' already bound to a zone", iface)
	}
	f.bindings[iface] = z
	return z, nil
}

func (z *fwZone) ChangeZoneOfInterface(zone, iface string) (string, *dbus.Error) {
	f := z.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin("changeZoneOfInterface", zone, iface); err != nil {
		return "", err
	}
	nz, err := f.zone(zone)
	if err != nil {
		return "", err
	}
	if f.bindings[iface] == nz {
		return nz, nil
	}
	delete(f.bindings, iface)
	return f.add(zone, iface)
}

func (z *fwZone) RemoveInterface(zone, iface string) (string, *dbus.Error) {
	f := z.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin("removeInterface", zone, iface); err != nil {
		return "", err
	}
	cur, ok := f.bindings[iface]
	if !ok {
		return "", fwError("UNKNOWN_INTERFACE", "'%s' is not in any zone", iface)
	}
	if zone != "" {
		z, err := f.zone(zone)
		if err != nil {
			return "", err
		}
		if z != cur {
			return "", fwError("ZONE_CONFLICT", "remove_interface(%s, %s): zoi='%s'", zone, iface, cur)
		}
	}
	delete(f.bindings, iface)
	return cur, nil
}

// fwPolicy is the org.fedoraproject.FirewallD1.policy interface.
type fwPolicy struct{ f *Firewalld }

func (p *fwPolicy) GetPolicies() ([]string, *dbus.Error) {
	f := p.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin("getPolicies"); err != nil {
		return nil, err
	}
	return append([]string(nil), f.policies...), nil
}
