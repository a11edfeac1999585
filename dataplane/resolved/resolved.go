// Package resolved registers a network's DNS server with systemd-resolved
// over D-Bus (<domain register='yes'>), so the host resolves the guests'
// names: resolved sends queries for the network's domain to vnetd's DNS
// server on the bridge, and only those (a routing-only "~domain").
//
// Build is the pure registration of a network; Client is the thin D-Bus
// shell over org.freedesktop.resolve1.Manager.
package resolved

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/godbus/dbus/v5"
	"github.com/vnetd/vnetd/conf"
)

// systemd-resolved's bus name, object and interface
// (org.freedesktop.resolve1(5)).
const (
	Name    = "org.freedesktop.resolve1"
	path    = "/org/freedesktop/resolve1"
	manager = Name + ".Manager"
)

// Address families as resolved takes them (Linux AF_INET, AF_INET6).
const (
	afInet  = 2
	afInet6 = 10
)

// ErrNotRunning is the error for a network to register on a host without
// systemd-resolved.
var ErrNotRunning = errors.New("systemd-resolved is not running")

// Address is one DNS server of SetLinkDNS, D-Bus (iay).
type Address struct {
	Family  int32
	Address []byte
}

// Domain is one domain of SetLinkDomains, D-Bus (sb): the name without
// resolvectl's "~", and whether it only routes queries (true) or is also a
// search domain.
type Domain struct {
	Domain      string
	RoutingOnly bool
}

// Registration is what a network tells resolved about its bridge.
type Registration struct {
	DNS     []Address
	Domains []Domain
}

// Wants reports whether a network is registered with resolved.
func Wants(n *conf.Network) bool {
	return n.Forward.Mode.Managed() && n.Domain != nil && n.Domain.Register == conf.TristateYes
}

// Build is a network's registration, as libvirt makes it: the addresses
// vnetd serves DNS on (every <ip>), and the domain as routing-only, so the
// host sends the guests' names there without searching the domain for
// every short name. A network with nothing to register is an error: DNS
// off or no <ip> leaves resolved no server to ask.
func Build(n *conf.Network) (Registration, error) {
	if !Wants(n) {
		return Registration{}, fmt.Errorf("network %q: no <domain register='yes'>", n.Name)
	}
	if !n.DNS.Enabled() {
		return Registration{}, fmt.Errorf("network %q: <domain register='yes'>: DNS is disabled (<dns enable='no'>), so there is no server to register", n.Name)
	}
	var r Registration
	var seen []netip.Addr
	for i := range n.IPs {
		a := n.IPs[i].Address.Unmap()
		if !a.IsValid() || slices.Contains(seen, a) {
			continue
		}
		seen = append(seen, a)
		fam := int32(afInet6)
		if a.Is4() {
			fam = afInet
		}
		r.DNS = append(r.DNS, Address{Family: fam, Address: a.AsSlice()})
	}
	if len(r.DNS) == 0 {
		return Registration{}, fmt.Errorf("network %q: <domain register='yes'>: the network has no <ip> to serve DNS on", n.Name)
	}
	r.Domains = []Domain{{Domain: n.Domain.Name, RoutingOnly: true}}
	return r, nil
}

// Client talks to systemd-resolved over a D-Bus connection.
type Client struct {
	conn *dbus.Conn
}

// New talks to the service over conn, which stays the caller's (vnetd
// shares one system bus connection between firewalld and resolved).
func New(conn *dbus.Conn) *Client { return &Client{conn: conn} }

func (c *Client) object() dbus.BusObject { return c.conn.Object(Name, path) }

// Running reports whether resolved holds its name on the bus.
func (c *Client) Running(ctx context.Context) bool {
	var has bool
	err := c.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, Name).Store(&has)
	return err == nil && has
}

// SetLinkDNS sets the DNS servers of a link.
func (c *Client) SetLinkDNS(ctx context.Context, ifindex int32, addrs []Address) error {
	if addrs == nil {
		addrs = []Address{} // an empty array, not a missing argument
	}
	if err := c.object().CallWithContext(ctx, manager+".SetLinkDNS", 0, ifindex, addrs).Err; err != nil {
		return fmt.Errorf("systemd-resolved: setting the DNS servers of link %d: %w", ifindex, err)
	}
	return nil
}

// SetLinkDomains sets the search and routing domains of a link.
func (c *Client) SetLinkDomains(ctx context.Context, ifindex int32, domains []Domain) error {
	if domains == nil {
		domains = []Domain{}
	}
	if err := c.object().CallWithContext(ctx, manager+".SetLinkDomains", 0, ifindex, domains).Err; err != nil {
		return fmt.Errorf("systemd-resolved: setting the domains of link %d: %w", ifindex, err)
	}
	return nil
}

// RevertLink drops everything set on a link.
func (c *Client) RevertLink(ctx context.Context, ifindex int32) error {
	if err := c.object().CallWithContext(ctx, manager+".RevertLink", 0, ifindex).Err; err != nil {
		return fmt.Errorf("systemd-resolved: reverting link %d: %w", ifindex, err)
	}
	return nil
}

// Register sets a link's DNS servers, then its domains: in that order
// resolved never routes the domain to a link without a server. Both calls
// replace what was set, so registering again is harmless.
func (c *Client) Register(ctx context.Context, ifindex int32, r Registration) error {
	if err := c.SetLinkDNS(ctx, ifindex, r.DNS); err != nil {
		return err
	}
	return c.SetLinkDomains(ctx, ifindex, r.Domains)
}
