package dataplane

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"

	"github.com/vnetd/vnetd/conf"
)

// This file is the pure half of the package: what a network's bridge should
// look like, and the decisions taken over route lists, as plain functions of
// values. The kernel side (dataplane_linux.go) only executes them.

// ErrUnsupportedMode is returned for networks whose forward mode uses a pool of
// host devices (bridge, private, vepa, passthrough, hostdev): the dataplane
// only builds the bridges of libvirt's managed modes so far.
var ErrUnsupportedMode = errors.New("pool modes are not started by the dataplane yet")

// ErrBridgeGone is returned by Adopt when the network's bridge no longer exists.
var ErrBridgeGone = errors.New("bridge is gone")

// ErrBridgeReplaced is returned by Adopt when a link with the bridge's name
// exists but is not the one the network was started with.
var ErrBridgeReplaced = errors.New("bridge was replaced")

// rtprotRA is RTPROT_RA: the kernel's marker for routes it learned from
// router advertisements.
const rtprotRA = 9

// userHZ is the kernel's clock_t tick rate (USER_HZ), the unit of the bridge
// forward delay in netlink and sysfs.
const userHZ = 100

// defaultRouteMetric is libvirt's metric for a <route> without one
// (virNetDevIPRouteGetMetric).
const defaultRouteMetric = 1

// routeInfo is one route of the kernel's main table, reduced to what the
// checks need. A multipath route is one routeInfo per next hop.
type routeInfo struct {
	Dst      netip.Prefix
	Gw       netip.Addr // invalid: directly connected
	Link     string     // "": a route with no device (blackhole, unreachable)
	Protocol int
	Metric   int
}

// routeSpec is a static <route> as the kernel gets it.
type routeSpec struct {
	Dst    netip.Prefix
	Gw     netip.Addr
	Metric uint32
}

func (r routeSpec) String() string {
	return fmt.Sprintf("%s via %s metric %d", r.Dst, r.Gw, r.Metric)
}

// setting is one sysctl write, key in slash form.
type setting struct{ Key, Value string }

// plan is the bridge of a managed network, derived from its definition before
// anything is created, so a definition the kernel cannot take fails early.
type plan struct {
	Bridge string
	MAC    net.HardwareAddr // nil: the kernel picks one
	MTU    int              // 0: the kernel default
	STP    bool
	// Delay is the forward delay in clock_t (centiseconds).
	Delay uint32
	// IPv6 is whether the bridge has IPv6 at all; it decides disable_ipv6.
	IPv6    bool
	Sysctls []setting // on the bridge, in order
	Addrs   []netip.Prefix
	// VLANFiltering is macTableManager='libvirt': libvirt turns vlan_filtering
	// on at the bridge so that, once ports stop learning and flooding, the
	// bridge forwards only to the MACs libvirt programmed into its FDB.
	VLANFiltering  bool
	Routes         []routeSpec
	IPv4Forwarding bool
	IPv6Forwarding bool
}

// planFor derives the bridge of n. It fails for networks the dataplane does not
// build and for definitions the kernel could not take.
func planFor(n *conf.Network) (plan, error) {
	if n == nil {
		return plan{}, errors.New("no network")
	}
	if !n.Forward.Mode.Managed() {
		return plan{}, fmt.Errorf("network %q: mode='%s': %w", n.Name, n.Forward.Mode, ErrUnsupportedMode)
	}
	br := n.Bridge.Name
	if br == "" {
		// libvirt fails the same way: the name is allocated at define time,
		// so only a hand-edited definition can lack it.
		return plan{}, fmt.Errorf("network %q: no bridge name", n.Name)
	}
	if len(br) > 15 {
		return plan{}, fmt.Errorf("network %q: bridge name %q is longer than 15 characters", n.Name, br)
	}
	delay, err := forwardDelay(n.Bridge.Delay)
	if err != nil {
		return plan{}, fmt.Errorf("network %q: bridge %s: %w", n.Name, br, err)
	}
	addrs, err := addrsFor(n)
	if err != nil {
		return plan{}, err
	}
	routes, err := routesFor(n)
	if err != nil {
		return plan{}, err
	}
	v4, v6 := families(addrs)
	p := plan{
		Bridge:        br,
		MAC:           n.MAC,
		MTU:           int(n.MTU),
		STP:           n.Bridge.STPEnabled(),
		Delay:         delay,
		IPv6:          v6 || n.IPv6,
		Addrs:         addrs,
		VLANFiltering: n.Bridge.MACTableManager == conf.MACTableLibvirt,
		Routes:        routes,
	}
	p.Sysctls = bridgeSysctls(br, p.IPv6)
	// libvirt turns forwarding on per family, and only for the families the
	// network has addresses in (networkEnableIPForwarding).
	if n.Forward.Mode != conf.ForwardNone {
		p.IPv4Forwarding = v4
		p.IPv6Forwarding = v6
	}
	return p, nil
}

// addrsFor are the addresses of the bridge: every <ip> with its effective
// prefix length (netmask, prefix or libvirt's classful default), host bits
// kept.
func addrsFor(n *conf.Network) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i := range n.IPs {
		ip := &n.IPs[i]
		bits, err := ip.PrefixLen()
		if err != nil {
			return nil, fmt.Errorf("network %q: ip[%d] %s: %w", n.Name, i+1, ip.Address, err)
		}
		addr := ip.Address
		if addr.Is4In6() && ip.Family != "ipv6" {
			addr = addr.Unmap()
		}
		p := netip.PrefixFrom(addr, bits)
		if !p.IsValid() {
			return nil, fmt.Errorf("network %q: ip[%d]: %s/%d is not a valid address and prefix", n.Name, i+1, addr, bits)
		}
		out = append(out, p)
	}
	return out, nil
}

// families reports which address families the prefixes cover.
func families(ps []netip.Prefix) (v4, v6 bool) {
	for _, p := range ps {
		if p.Addr().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v4, v6
}

// routesFor are the static routes, with libvirt's default metric.
func routesFor(n *conf.Network) ([]routeSpec, error) {
	var out []routeSpec
	for i := range n.Routes {
		r := &n.Routes[i]
		dst, err := r.RoutePrefix()
		if err != nil {
			return nil, fmt.Errorf("network %q: route[%d] %s: %w", n.Name, i+1, r.Address, err)
		}
		if !r.Gateway.IsValid() || r.Gateway.BitLen() != dst.Addr().BitLen() {
			return nil, fmt.Errorf("network %q: route[%d] to %s: gateway %s is not of the destination's family", n.Name, i+1, dst, r.Gateway)
		}
		metric := r.Metric
		if metric == 0 {
			metric = defaultRouteMetric
		}
		out = append(out, routeSpec{Dst: dst.Masked(), Gw: r.Gateway, Metric: metric})
	}
	return out, nil
}

// bridgeSysctls are libvirt's IPv6 settings for the bridge
// (networkSetIPv6Sysctls). disable_ipv6 is written both ways because its
// default is the host's, not known; accept_ra=0 keeps guests from rewriting the
// host's routes with their own router advertisements, and autoconf=0 because a
// router (which the bridge is) must not configure itself from them.
func bridgeSysctls(br string, ipv6 bool) []setting {
	disable := "1"
	if ipv6 {
		disable = "0"
	}
	conf := "net/ipv6/conf/" + br + "/"
	return []setting{
		{conf + "disable_ipv6", disable},
		{conf + "accept_ra", "0"},
		{conf + "autoconf", "0"},
	}
}

// forwardDelay converts <bridge delay> (seconds) to the kernel's clock_t.
func forwardDelay(seconds uint64) (uint32, error) {
	if seconds > math.MaxUint32/userHZ {
		return 0, fmt.Errorf("forward delay of %d seconds is too large for the kernel", seconds)
	}
	return uint32(seconds * userHZ), nil
}

// CollisionError is a network's subnet or static route that the host already
// routes elsewhere: starting the network would break the host's own traffic
// to that network (libvirt's networkCheckRouteCollision).
type CollisionError struct {
	Prefix netip.Prefix
	// Interface is the device of the existing route; "" for a route with no
	// device (blackhole, unreachable, prohibit).
	Interface string
	// Route is set when Prefix is a <route> destination, not an <ip> subnet.
	Route bool
}

func (e *CollisionError) Error() string {
	by := "interface " + e.Interface
	if e.Interface == "" {
		by = "a route with no interface"
	}
	if e.Route {
		return fmt.Sprintf("static route to %s conflicts with an existing route on %s", e.Prefix, by)
	}
	return fmt.Sprintf("network %s is already in use by %s", e.Prefix, by)
}

// collision is libvirt's route-collision check over the main table: a route to
// exactly the network of an <ip> (or the destination of a <route>) already
// exists. Like libvirt it compares network and prefix length for equality, not
// overlap: a host route to 10.0.0.0/8 does not stop a network on
// 10.1.0.0/16, which the host then reaches through the bridge. libvirt only
// reads /proc/net/route (IPv4); IPv6 is compared the same way, except for
// link-local subnets, which every interface routes. Routes on the network's
// own bridge are skipped so the check can be repeated on a running network.
func collision(n *conf.Network, routes []routeInfo) error {
	addrs, err := addrsFor(n)
	if err != nil {
		return err
	}
	statics, err := routesFor(n)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Link != "" && r.Link == n.Bridge.Name {
			continue
		}
		dst := r.Dst.Masked()
		for _, a := range addrs {
			if a.Addr().IsLinkLocalUnicast() {
				continue
			}
			if a.Masked() == dst {
				return fmt.Errorf("network %q: %w", n.Name, &CollisionError{Prefix: dst, Interface: r.Link})
			}
		}
		for _, s := range statics {
			if s.Dst == dst {
				return fmt.Errorf("network %q: %w", n.Name, &CollisionError{Prefix: dst, Interface: r.Link, Route: true})
			}
		}
	}
	return nil
}

// collisionCandidates keeps the routes collision can object to: those to
// the network of one of n's addresses or to one of its static routes'
// destinations (a definition that cannot be planned keeps them all, and
// collision reports the error).
func collisionCandidates(n *conf.Network) func(routeInfo) bool {
	addrs, aerr := addrsFor(n)
	statics, serr := routesFor(n)
	if aerr != nil || serr != nil {
		return nil
	}
	dsts := map[netip.Prefix]bool{}
	for _, a := range addrs {
		dsts[a.Masked()] = true
	}
	for _, s := range statics {
		dsts[s.Dst] = true
	}
	return func(r routeInfo) bool { return dsts[r.Dst.Masked()] }
}

// raLinks are the interfaces (other than the network's bridge) that hold IPv6
// routes learned from router advertisements, sorted and without duplicates.
//
// They are why switching IPv6 forwarding on is dangerous: a host that forwards
// is a router, and with accept_ra=1 the kernel ignores router advertisements on
// a router and drops the default routes it learned from them, so the host
// loses its IPv6 uplink the moment the first network starts (libvirt's
// classic breakage; libvirt refuses to start, virNetDevIPCheckIPv6Forwarding).
// accept_ra=2 keeps accepting them while forwarding.
func raLinks(routes []routeInfo, bridge string) []string {
	var out []string
	for _, r := range routes {
		if r.Protocol != rtprotRA || !r.Dst.Addr().Is6() || r.Link == "" || r.Link == bridge {
			continue
		}
		if !slices.Contains(out, r.Link) {
			out = append(out, r.Link)
		}
	}
	slices.Sort(out)
	return out
}

// missingAddrs are the prefixes of want not in have (address and length both).
func missingAddrs(want, have []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

// missingRoutes are the static routes of want that have (the routes on the
// bridge) lacks: same destination, gateway and metric.
func missingRoutes(want []routeSpec, have []routeInfo) []routeSpec {
	var out []routeSpec
	for _, w := range want {
		found := slices.ContainsFunc(have, func(h routeInfo) bool {
			return h.Dst.Masked() == w.Dst && h.Gw == w.Gw && h.Metric == int(w.Metric)
		})
		if !found {
			out = append(out, w)
		}
	}
	return out
}
