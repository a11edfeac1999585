// Package firewalld puts a network's bridge into a firewalld zone over
// D-Bus, as libvirt does when firewalld runs: without it, firewalld's
// default zone (with its nftables backend) drops the guests' DHCP, DNS and
// forwarded traffic before vnetd's own rules see it.
//
// ChooseZone is the pure rule of which zone a network gets; Client is the
// thin D-Bus shell over firewalld's runtime zone interface.
package firewalld

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/godbus/dbus/v5"
	"github.com/vnetd/vnetd/conf"
)

// firewalld's bus name, object and interfaces (firewalld.dbus(5)).
const (
	Name            = "org.fedoraproject.FirewallD1"
	path            = "/org/fedoraproject/FirewallD1"
	zoneInterface   = Name + ".zone"
	policyInterface = Name + ".policy"
	// errorName is the D-Bus name of every firewalld error; the message
	// starts with firewalld's code, e.g. "UNKNOWN_INTERFACE: ...".
	errorName = Name + ".Exception"
)

// The zones and policy libvirt installs with its firewalld integration.
const (
	ZoneLibvirt       = "libvirt"
	ZoneLibvirtRouted = "libvirt-routed"
	// PolicyLibvirtRoutedOut comes with the libvirt-routed zone; probing
	// it also proves firewalld has policies at all (0.9 and later).
	PolicyLibvirtRoutedOut = "libvirt-routed-out"
)

// ErrNotRunning is the error for a network that needs a zone on a host
// without firewalld.
var ErrNotRunning = errors.New("firewalld is not running")

// Inventory is what firewalld has that the choice of a zone depends on.
type Inventory struct {
	Zones    []string
	Policies []string
}

// Applies reports whether a network's bridge goes into a zone when
// firewalld runs: every network with a bridge of vnetd's except mode
// 'open', which gets one only when <bridge zone> names it.
func Applies(n *conf.Network) bool {
	if !n.Forward.Mode.Managed() {
		return false
	}
	return n.Forward.Mode != conf.ForwardOpen || n.Bridge.Zone != ""
}

// ChooseZone picks the zone for a network's bridge as libvirt does: the
// zone <bridge zone> names; else for mode 'route' 'libvirt-routed' when
// firewalld has that zone and its policy; else 'libvirt'. It returns ""
// when no zone applies (see Applies). A zone firewalld lacks is an error:
// the bridge would otherwise stay in the default zone, which blocks the
// guests.
func ChooseZone(n *conf.Network, inv Inventory) (string, error) {
	if !Applies(n) {
		return "", nil
	}
	if z := n.Bridge.Zone; z != "" {
		if !slices.Contains(inv.Zones, z) {
			return "", fmt.Errorf("network %q: <bridge zone='%s'>: firewalld has no zone %q", n.Name, z, z)
		}
		return z, nil
	}
	if n.Forward.Mode == conf.ForwardRoute && slices.Contains(inv.Zones, ZoneLibvirtRouted) &&
		slices.Contains(inv.Policies, PolicyLibvirtRoutedOut) {
		return ZoneLibvirtRouted, nil
	}
	if slices.Contains(inv.Zones, ZoneLibvirt) {
		return ZoneLibvirt, nil
	}
	return "", fmt.Errorf("network %q: firewalld has no %q zone, without which it blocks the guests' DHCP, DNS and forwarding "+
		"(install the zone libvirt ships, /usr/lib/firewalld/zones/libvirt.xml, or name an existing zone with <bridge zone=...>)",
		n.Name, ZoneLibvirt)
}

// Client talks to firewalld over a D-Bus connection.
type Client struct {
	conn *dbus.Conn
}

// New talks to the service over conn, which stays the caller's (vnetd
// shares one system bus connection between firewalld and resolved).
func New(conn *dbus.Conn) *Client { return &Client{conn: conn} }

func (c *Client) object() dbus.BusObject { return c.conn.Object(Name, path) }

// Running reports whether firewalld holds its name on the bus.
func (c *Client) Running(ctx context.Context) bool {
	var has bool
	err := c.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, Name).Store(&has)
	return err == nil && has
}

// Zones lists firewalld's zones.
func (c *Client) Zones(ctx context.Context) ([]string, error) {
	var zones []string
	if err := c.object().CallWithContext(ctx, zoneInterface+".getZones", 0).Store(&zones); err != nil {
		return nil, fmt.Errorf("firewalld: listing zones: %w", err)
	}
	return zones, nil
}

// ZoneExists reports whether firewalld has a zone.
func (c *Client) ZoneExists(ctx context.Context, zone string) (bool, error) {
	zones, err := c.Zones(ctx)
	if err != nil {
		return false, err
	}
	return slices.Contains(zones, zone), nil
}

// Policies lists firewalld's policies; a firewalld older than 0.9 has none
// (nor the interface to ask).
func (c *Client) Policies(ctx context.Context) ([]string, error) {
	var policies []string
	err := c.object().CallWithContext(ctx, policyInterface+".getPolicies", 0).Store(&policies)
	var de dbus.Error
	if errors.As(err, &de) && (de.Name == "org.freedesktop.DBus.Error.UnknownMethod" || de.Name == "org.freedesktop.DBus.Error.UnknownInterface") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("firewalld: listing policies: %w", err)
	}
	return policies, nil
}

// Inventory reads the zones and policies ChooseZone needs.
func (c *Client) Inventory(ctx context.Context) (Inventory, error) {
	zones, err := c.Zones(ctx)
	if err != nil {
		return Inventory{}, err
	}
	policies, err := c.Policies(ctx)
	if err != nil {
		return Inventory{}, err
	}
	return Inventory{Zones: zones, Policies: policies}, nil
}

// AddInterface binds an interface to a zone in firewalld's runtime
// configuration, moving it out of any other zone. It uses
// changeZoneOfInterface, as libvirt does, rather than addInterface, which
// fails for an interface already bound (ZONE_ALREADY_SET, or ZONE_CONFLICT
// when NetworkManager put the new bridge in the default zone first): that
// makes it idempotent, for re-applying after a vnetd restart.
func (c *Client) AddInterface(ctx context.Context, zone, iface string) error {
	var got string
	if err := c.object().CallWithContext(ctx, zoneInterface+".changeZoneOfInterface", 0, zone, iface).Store(&got); err != nil {
		return fmt.Errorf("firewalld: putting %s in zone %q: %w", iface, zone, err)
	}
	return nil
}

// RemoveInterface unbinds an interface from a zone ("" for whichever zone
// it is in). An interface in no zone is not an error. firewalld keeps the
// binding of a deleted interface, so a bridge that goes must be unbound,
// or a later bridge of the same name lands in the old zone.
func (c *Client) RemoveInterface(ctx context.Context, zone, iface string) error {
	var got string
	err := c.object().CallWithContext(ctx, zoneInterface+".removeInterface", 0, zone, iface).Store(&got)
	if err != nil && Code(err) != "UNKNOWN_INTERFACE" {
		return fmt.Errorf("firewalld: removing %s from zone %q: %w", iface, zone, err)
	}
	return nil
}

// ZoneOfInterface is the zone an interface is bound to, "" if none.
func (c *Client) ZoneOfInterface(ctx context.Context, iface string) (string, error) {
	var zone string
	if err := c.object().CallWithContext(ctx, zoneInterface+".getZoneOfInterface", 0, iface).Store(&zone); err != nil {
		return "", fmt.Errorf("firewalld: zone of %s: %w", iface, err)
	}
	return zone, nil
}

// Code is firewalld's error code of an error it returned (INVALID_ZONE,
// UNKNOWN_INTERFACE, ...), "" for any other error.
func Code(err error) string {
	var de dbus.Error
	if !errors.As(err, &de) {
		var pe *dbus.Error
		if !errors.As(err, &pe) || pe == nil {
			return ""
		}
		de = *pe
	}
	if de.Name != errorName || len(de.Body) == 0 {
		return ""
	}
	msg, _ := de.Body[0].(string)
	code, _, _ := strings.Cut(msg, ":")
	return strings.TrimSpace(code)
}
