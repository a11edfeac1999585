package fakedbus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// The fakes must refuse what the real services refuse, or tests against
// them prove nothing.
func TestFakesRefuseWrongCalls(t *testing.T) {
	addr := StartBus(t)
	res := NewResolved()
	res.Serve(t, addr)
	fw := NewFirewalld("libvirt")
	fw.Serve(t, addr)
	conn := Connect(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	mgr := conn.Object(ResolvedName, resolvedPath)
	type wrongFamily struct {
		Family  uint32
		Address []byte
	}
	for name, call := range map[string]*dbus.Call{
		"ifindex as uint32":    mgr.CallWithContext(ctx, resolvedManager+".SetLinkDNS", 0, uint32(3), []dnsServer{}),
		"family as uint32":     mgr.CallWithContext(ctx, resolvedManager+".SetLinkDNS", 0, int32(3), []wrongFamily{{2, []byte{10, 0, 0, 1}}}),
		"v4 bytes as AF_INET6": mgr.CallWithContext(ctx, resolvedManager+".SetLinkDNS", 0, int32(3), []dnsServer{{10, []byte{10, 0, 0, 1}}}),
		"domain with ~":        mgr.CallWithContext(ctx, resolvedManager+".SetLinkDomains", 0, int32(3), []linkDomain{{"~lab", true}}),
	} {
		if call.Err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, ok := res.Link(3); ok {
		t.Error("a refused call configured link 3")
	}

	zone := conn.Object(FirewalldName, firewalldPath)
	var got string
	err := zone.CallWithContext(ctx, firewalldZone+".addInterface", 0, "dmz", "virbr0").Store(&got)
	if de, ok := err.(dbus.Error); !ok || de.Name != FirewalldError || !strings.HasPrefix(de.Error(), "INVALID_ZONE") {
		t.Errorf("addInterface to a missing zone: %#v", err)
	}
	if err := zone.CallWithContext(ctx, firewalldZone+".addInterface", 0, "libvirt", "virbr0").Store(&got); err != nil || got != "libvirt" {
		t.Fatalf("addInterface: %q %v", got, err)
	}
	err = zone.CallWithContext(ctx, firewalldZone+".addInterface", 0, "public", "virbr0").Store(&got)
	if err == nil || !strings.HasPrefix(err.Error(), "ZONE_CONFLICT") {
		t.Errorf("addInterface of a bound interface: %v", err)
	}
	err = zone.CallWithContext(ctx, firewalldZone+".removeInterface", 0, "public", "virbr0").Store(&got)
	if err == nil || !strings.HasPrefix(err.Error(), "ZONE_CONFLICT") {
		t.Errorf("removeInterface from the wrong zone: %v", err)
	}
	if fw.ZoneOf("virbr0") != "libvirt" {
		t.Error("binding changed by refused calls")
	}
}
