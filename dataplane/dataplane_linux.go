package dataplane

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/vnetd/vnetd/conf"
)

// Dataplane builds and tears down the bridges of managed networks. Its methods
// may be called concurrently for different networks; the caller serialises
// calls for one network.
//
// All calls must run on a thread inside the network namespace the handle is
// bound to (the daemon runs entirely inside it; tests lock the OS thread and
// switch it): /proc/sys/net, and the bridge options netlink.Handle cannot set,
// follow the calling thread's namespace.
type Dataplane struct {
	nl  *netlink.Handle
	sys Sysctl
	log *slog.Logger

	// fail, when set (by tests), runs before each step of Start after the
	// bridge exists; an error from it fails Start there, which is how the
	// rollback of every step is exercised.
	fail func(step string) error
}

// New returns a Dataplane over h. A nil h means the calling thread's namespace
// with a short-lived socket per request (netlink's package-level behaviour); a
// nil log discards the warnings Start reports for routes it could not add.
func New(h *netlink.Handle, sys Sysctl, log *slog.Logger) *Dataplane {
	if h == nil {
		h = &netlink.Handle{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dataplane{nl: h, sys: sys, log: log.With("component", "dataplane")}
}

// step names, in Start's order.
const (
	stepMTU        = "mtu"
	stepSTP        = "stp"
	stepSysctl     = "sysctl"
	stepAddrs      = "addrs"
	stepMACTable   = "mactable"
	stepUp         = "up"
	stepRoutes     = "routes"
	stepForwarding = "forwarding"
)

func (d *Dataplane) step(name string) error {
	if d.fail == nil {
		return nil
	}
	return d.fail(name)
}

// LinkExists reports whether a link of that name exists, for bridge-name
// allocation (libvirt skips names of existing host devices).
func (d *Dataplane) LinkExists(name string) (bool, error) {
	_, err := d.nl.LinkByName(name)
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("look up link %s: %w", name, err)
}

// isNotFound reports whether err means the link does not exist.
func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// CheckCollisions fails with a *CollisionError (wrapped) when the host already
// routes the network of one of n's <ip>s, or the destination of one of its
// <route>s, through another interface (libvirt's networkCheckRouteCollision,
// extended to IPv6).
func (d *Dataplane) CheckCollisions(n *conf.Network) error {
	if n == nil {
		return errors.New("no network")
	}
	routes, err := d.mainRoutes(netlink.FAMILY_ALL, nil, collisionCandidates(n))
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	return collision(n, routes)
}

// Start creates and configures the bridge of n, a network in one of the managed
// modes, and returns its ifindex. The steps follow libvirt
// (networkStartNetworkVirtual): collision check, bridge with MAC, MTU, forward
// delay and STP, IPv6 sysctls of the bridge, addresses, macTableManager, link
// up, static routes, global forwarding. Firewall rules and the DHCP/DNS/RA
// services are the caller's.
//
// On any failure after the bridge exists, the bridge is deleted (its addresses,
// routes and sysctls go with it) and the error returned. Global forwarding and
// the accept_ra of uplinks are left as set: other networks may rely on them,
// and libvirt never reverts them either.
func (d *Dataplane) Start(n *conf.Network) (ifindex int, err error) {
	p, err := planFor(n)
	if err != nil {
		return 0, err
	}
	if err := d.CheckCollisions(n); err != nil {
		return 0, err
	}
	wrap := func(what string, err error) error {
		return fmt.Errorf("network %q: bridge %s: %s: %w", n.Name, p.Bridge, what, err)
	}

	attrs := netlink.NewLinkAttrs()
	attrs.Name = p.Bridge
	// The MAC is given at creation: the kernel then marks it as set by the
	// user, so the bridge keeps it instead of taking its ports' lowest MAC.
	attrs.HardwareAddr = p.MAC
	if err := d.nl.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		// Nothing of ours exists yet: an EEXIST bridge is somebody else's (or
		// one to Adopt), never one to delete.
		return 0, wrap("create", err)
	}
	link, err := d.nl.LinkByName(p.Bridge)
	if err != nil {
		// Best effort: the bridge was just created under this name, so
		// deleting by name removes ours unless the lookup keeps failing.
		if derr := d.nl.LinkDel(&netlink.Bridge{LinkAttrs: attrs}); derr != nil && !isNotFound(derr) {
			err = errors.Join(err, fmt.Errorf("roll back: %w", derr))
		}
		return 0, wrap("look up after create", err)
	}
	defer func() {
		if err == nil {
			return
		}
		if derr := d.nl.LinkDel(link); derr != nil && !isNotFound(derr) {
			err = errors.Join(err, wrap("roll back: delete", derr))
		}
	}()
	if err := d.configure(n, p, link); err != nil {
		return 0, err
	}
	return link.Attrs().Index, nil
}

// configure runs Start's steps on the freshly created bridge.
func (d *Dataplane) configure(n *conf.Network, p plan, link netlink.Link) error {
	wrap := func(what string, err error) error {
		return fmt.Errorf("network %q: bridge %s: %s: %w", n.Name, p.Bridge, what, err)
	}
	if err := d.step(stepMTU); err != nil {
		return wrap(stepMTU, err)
	}
	// Set after creation rather than as a creation attribute: only a change
	// through the bridge's own MTU handler marks it as set by the user, which
	// stops the kernel from lowering it to the smallest port MTU later.
	if p.MTU > 0 {
		if err := d.nl.LinkSetMTU(link, p.MTU); err != nil {
			return wrap(fmt.Sprintf("set mtu %d", p.MTU), err)
		}
	}

	if err := d.step(stepSTP); err != nil {
		return wrap(stepSTP, err)
	}
	// Delay before STP, as libvirt does: the kernel refuses forward delays
	// outside 2-30 s while STP runs, and clamps the delay into that range when
	// STP starts; a new bridge has STP off, so the delay is always accepted.
	if err := setBridgeOptions(p.Bridge, nl.NewRtAttr(nl.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(p.Delay))); err != nil {
		return wrap(fmt.Sprintf("set forward delay %d", p.Delay), err)
	}
	stp := uint32(0)
	if p.STP {
		stp = 1
	}
	if err := setBridgeOptions(p.Bridge, nl.NewRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(stp))); err != nil {
		return wrap(fmt.Sprintf("set stp_state %d", stp), err)
	}

	if err := d.step(stepSysctl); err != nil {
		return wrap(stepSysctl, err)
	}
	if err := d.bridgeSysctls(p); err != nil {
		return wrap("sysctl", err)
	}

	if err := d.step(stepAddrs); err != nil {
		return wrap(stepAddrs, err)
	}
	for _, a := range p.Addrs {
		if err := d.nl.AddrAdd(link, nlAddr(a)); err != nil {
			return wrap("add address "+a.String(), err)
		}
	}

	if err := d.step(stepMACTable); err != nil {
		return wrap(stepMACTable, err)
	}
	if p.VLANFiltering {
		// libvirt fails the network when this fails. vnetd only warns when the
		// kernel lacks CONFIG_BRIDGE_VLAN_FILTERING: vlan_filtering only lets the
		// kernel take the bridge's ports out of promiscuous mode, while what
		// macTableManager='libvirt' is for (no learning, no unknown-unicast
		// flooding, FDB entries from the guests' MACs) is done per port.
		err := setBridgeOptions(p.Bridge, nl.NewRtAttr(nl.IFLA_BR_VLAN_FILTERING, []byte{1}))
		if errors.Is(err, unix.EOPNOTSUPP) {
			d.log.Warn("kernel has no bridge VLAN filtering: macTableManager='libvirt' works without it, but the bridge keeps its ports promiscuous",
				"network", n.Name, "bridge", p.Bridge)
		} else if err != nil {
			return wrap("set vlan_filtering for macTableManager='libvirt'", err)
		}
	}

	if err := d.step(stepUp); err != nil {
		return wrap(stepUp, err)
	}
	if err := d.nl.LinkSetUp(link); err != nil {
		return wrap("set up", err)
	}

	if err := d.step(stepRoutes); err != nil {
		return wrap(stepRoutes, err)
	}
	d.addRoutes(n, link, p.Routes)

	if err := d.step(stepForwarding); err != nil {
		return wrap(stepForwarding, err)
	}
	return d.enableForwarding(n, p)
}

// bridgeSysctls applies the IPv6 settings of the bridge. A kernel without IPv6
// has no net/ipv6/conf/BR: that is fine for a network without IPv6 (libvirt
// skips it too) and an error for one with it.
func (d *Dataplane) bridgeSysctls(p plan) error {
	for i, s := range p.Sysctls {
		err := d.sys.Set(s.Key, s.Value)
		if i == 0 && !p.IPv6 && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// addRoutes adds the static routes. A route that fails is logged and skipped,
// as libvirt does: the network still starts, just without that route.
func (d *Dataplane) addRoutes(n *conf.Network, link netlink.Link, routes []routeSpec) {
	for _, r := range routes {
		if err := d.nl.RouteAdd(nlRoute(link.Attrs().Index, r)); err != nil && !errors.Is(err, unix.EEXIST) {
			d.log.Warn("static route not added", "network", n.Name, "bridge", link.Attrs().Name, "route", r.String(), "err", err)
		}
	}
}

// enableForwarding turns on global forwarding for the families the network
// routes. Before IPv6 forwarding goes on, every uplink that learned routes from
// router advertisements and has accept_ra=1 gets accept_ra=2, so that it keeps
// its default route once the host is a router (see raLinks). libvirt refuses
// to start in that situation and leaves the fix to the administrator; vnetd
// applies the fix and says so.
func (d *Dataplane) enableForwarding(n *conf.Network, p plan) error {
	if p.IPv4Forwarding {
		if err := d.ensureSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return fmt.Errorf("network %q: enable IPv4 forwarding: %w", n.Name, err)
		}
	}
	if !p.IPv6Forwarding {
		return nil
	}
	routes, err := d.mainRoutes(netlink.FAMILY_V6, nil, func(r routeInfo) bool { return r.Protocol == rtprotRA })
	if err != nil {
		return fmt.Errorf("network %q: enable IPv6 forwarding: %w", n.Name, err)
	}
	for _, link := range raLinks(routes, p.Bridge) {
		key := "net/ipv6/conf/" + link + "/accept_ra"
		v, err := d.sys.Get(key)
		if err != nil {
			return fmt.Errorf("network %q: enable IPv6 forwarding: %w", n.Name, err)
		}
		if v != "1" {
			continue
		}
		if err := d.sys.Set(key, "2"); err != nil {
			return fmt.Errorf("network %q: enable IPv6 forwarding: keep router advertisements on %s: %w", n.Name, link, err)
		}
		d.log.Info("accepting router advertisements while forwarding, to keep the RA-learned routes", "network", n.Name, "interface", link, "sysctl", key, "value", "2")
	}
	if err := d.ensureSysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
		return fmt.Errorf("network %q: enable IPv6 forwarding: %w", n.Name, err)
	}
	return nil
}

// ensureSysctl writes value unless key already has it: rewriting
// ip_forward or all/forwarding with the same value is harmless, but skipping it
// keeps a started network from touching global state it does not change.
func (d *Dataplane) ensureSysctl(key, value string) error {
	if v, err := d.sys.Get(key); err == nil && v == value {
		return nil
	}
	return d.sys.Set(key, value)
}

// Stop takes the bridge of n down and deletes it; its addresses and routes go
// with it. A bridge that is already gone is not an error. A link of that name
// that is not a bridge is left alone.
func (d *Dataplane) Stop(n *conf.Network) error {
	if n == nil {
		return errors.New("no network")
	}
	br := n.Bridge.Name
	if br == "" {
		return fmt.Errorf("network %q: no bridge name", n.Name)
	}
	wrap := func(what string, err error) error {
		return fmt.Errorf("network %q: bridge %s: %s: %w", n.Name, br, what, err)
	}
	link, err := d.nl.LinkByName(br)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return wrap("look up", err)
	}
	if t := link.Type(); t != "bridge" {
		return wrap("delete", fmt.Errorf("link is a %s, not a bridge: not deleting it", t))
	}
	// Down first, as libvirt does, so the stack sees the usual down
	// notification before the device goes away.
	if err := d.nl.LinkSetDown(link); err != nil && !isNotFound(err) {
		return wrap("set down", err)
	}
	if err := d.nl.LinkDel(link); err != nil && !isNotFound(err) {
		return wrap("delete", err)
	}
	return nil
}

// Deactivate takes a network's bridge down, so nothing crosses it any more.
// Deleting the bridge (Stop) then only frees the device; the kernel spends
// 30-50 ms of RCU grace periods on that, which the daemon waits out in the
// background.
func (d *Dataplane) Deactivate(n *conf.Network) error {
	link, err := d.nl.LinkByName(n.Bridge.Name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("network %q: bridge %s: look up: %w", n.Name, n.Bridge.Name, err)
	}
	if t := link.Type(); t != "bridge" {
		return fmt.Errorf("network %q: bridge %s: link is a %s, not a bridge", n.Name, n.Bridge.Name, t)
	}
	if err := d.nl.LinkSetDown(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("network %q: bridge %s: set down: %w", n.Name, n.Bridge.Name, err)
	}
	return nil
}

// Adopt takes over the bridge of a network that was running before the daemon
// restarted: the bridge named n.Bridge.Name must exist with the given ifindex
// (else ErrBridgeGone or ErrBridgeReplaced, wrapped). It re-applies the
// bridge's IPv6 sysctls, re-adds missing addresses, brings the bridge up and
// re-adds missing static routes (a failing route is logged, as in Start). It
// never deletes or recreates the bridge, so ports plugged into it stay.
func (d *Dataplane) Adopt(n *conf.Network, ifindex int) error {
	p, err := planFor(n)
	if err != nil {
		return err
	}
	wrap := func(what string, err error) error {
		return fmt.Errorf("network %q: bridge %s: %s: %w", n.Name, p.Bridge, what, err)
	}
	link, err := d.nl.LinkByName(p.Bridge)
	if isNotFound(err) {
		return fmt.Errorf("network %q: bridge %s: %w", n.Name, p.Bridge, ErrBridgeGone)
	}
	if err != nil {
		return wrap("look up", err)
	}
	if got := link.Attrs().Index; got != ifindex || link.Type() != "bridge" {
		return fmt.Errorf("network %q: bridge %s: %w (now ifindex %d, a %s; started as ifindex %d)",
			n.Name, p.Bridge, ErrBridgeReplaced, got, link.Type(), ifindex)
	}

	if err := d.bridgeSysctls(p); err != nil {
		return wrap("sysctl", err)
	}
	have, err := d.linkAddrs(link)
	if err != nil {
		return wrap("list addresses", err)
	}
	for _, a := range missingAddrs(p.Addrs, have) {
		if err := d.nl.AddrAdd(link, nlAddr(a)); err != nil && !errors.Is(err, unix.EEXIST) {
			return wrap("add address "+a.String(), err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := d.nl.LinkSetUp(link); err != nil {
			return wrap("set up", err)
		}
	}
	routes, err := d.mainRoutes(netlink.FAMILY_ALL, link, nil)
	if err != nil {
		return wrap("list routes", err)
	}
	d.addRoutes(n, link, missingRoutes(p.Routes, routes))
	return nil
}

// linkAddrs lists the addresses of link as prefixes.
func (d *Dataplane) linkAddrs(link netlink.Link) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		addrs, err := retryDump(func() ([]netlink.Addr, error) { return d.nl.AddrList(link, fam) })
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if p, ok := ipNetPrefix(a.IPNet, fam, false); ok {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// mainRoutes lists the main routing table (all links, or only link's), one
// routeInfo per next hop that want accepts (nil: all), with interface names
// resolved. Names are looked up only for the routes kept: a host with
// hundreds of networks and a thousand ports has far more links than a start
// cares about, and dumping them all on every start made starting N networks
// quadratic.
func (d *Dataplane) mainRoutes(family int, link netlink.Link, want func(routeInfo) bool) ([]routeInfo, error) {
	names := map[int]string{}
	if link != nil {
		names[link.Attrs().Index] = link.Attrs().Name
	}
	name := func(index int) string {
		if index == 0 {
			return ""
		}
		if n, ok := names[index]; ok {
			return n
		}
		n := ""
		if l, err := d.nl.LinkByIndex(index); err == nil {
			n = l.Attrs().Name
		}
		names[index] = n
		return n
	}
	routes, err := retryDump(func() ([]netlink.Route, error) { return d.nl.RouteList(link, family) })
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []routeInfo
	for _, r := range routes {
		if r.Table != unix.RT_TABLE_MAIN {
			continue
		}
		dst, ok := ipNetPrefix(r.Dst, r.Family, true)
		if !ok {
			continue // MPLS and other non-IP destinations
		}
		base := routeInfo{Dst: dst, Protocol: int(r.Protocol), Metric: r.Priority}
		if want != nil && !want(base) {
			continue
		}
		if len(r.MultiPath) == 0 {
			ri := base
			ri.Gw = netAddr(r.Gw, r.Family)
			ri.Link = name(r.LinkIndex)
			out = append(out, ri)
			continue
		}
		for _, nh := range r.MultiPath {
			ri := base
			ri.Gw = netAddr(nh.Gw, r.Family)
			ri.Link = name(nh.LinkIndex)
			out = append(out, ri)
		}
	}
	return out, nil
}

// retryDump repeats a netlink dump the kernel interrupted because the table
// changed under it; the partial result of an interrupted dump is not used.
func retryDump[T any](f func() ([]T, error)) ([]T, error) {
	const tries = 5
	var err error
	for range tries {
		var v []T
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return nil, err
}

// ipNetPrefix converts a netlink destination of the given family. A nil
// destination is the default route when dflt is set.
func ipNetPrefix(ipn *net.IPNet, family int, dflt bool) (netip.Prefix, bool) {
	if ipn == nil {
		if !dflt {
			return netip.Prefix{}, false
		}
		switch family {
		case netlink.FAMILY_V4:
			return netip.PrefixFrom(netip.IPv4Unspecified(), 0), true
		case netlink.FAMILY_V6:
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0), true
		}
		return netip.Prefix{}, false
	}
	a := netAddr(ipn.IP, family)
	if !a.IsValid() {
		return netip.Prefix{}, false
	}
	ones, _ := ipn.Mask.Size()
	p := netip.PrefixFrom(a, ones)
	return p, p.IsValid()
}

// netAddr converts an address of the given family; IPv4 may come in 16-byte
// form from net.IP.
func netAddr(ip net.IP, family int) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	if family == netlink.FAMILY_V4 {
		a = a.Unmap()
	}
	return a
}

// nlAddr is the netlink form of a bridge address. IPv6 addresses skip
// duplicate address detection so they are usable at once (dnsmasq-like
// services bind to them right after Start); the subnet is the network's own.
func nlAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// nlRoute is the netlink form of a static route via the bridge; proto static
// like libvirt's, so routing daemons treat it as administrator-made.
func nlRoute(ifindex int, r routeSpec) *netlink.Route {
	return &netlink.Route{
		LinkIndex: ifindex,
		Dst: &net.IPNet{
			IP:   net.IP(r.Dst.Addr().AsSlice()),
			Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen()),
		},
		Gw:       net.IP(r.Gw.AsSlice()),
		Priority: int(r.Metric),
		Protocol: unix.RTPROT_STATIC,
		Table:    unix.RT_TABLE_MAIN,
	}
}

// setBridgeOptions changes IFLA_BR_* options of an existing bridge, the
// equivalent of "ip link set BR type bridge ...". netlink.Handle has no way to
// send them (its Bridge type covers neither STP nor the forward delay), so the
// request goes out on a short-lived rtnetlink socket of the calling thread,
// whose namespace is the one the Dataplane must be used from. The bridge is
// named rather than indexed so that a thread in the wrong namespace gets
// ENODEV instead of changing another namespace's device.
func setBridgeOptions(bridge string, opts ...*nl.RtAttr) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(bridge)))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	for _, o := range opts {
		data.AddChild(o)
	}
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
