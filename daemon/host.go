package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/dataplane"
	"github.com/vnetd/vnetd/dataplane/firewall"
	"github.com/vnetd/vnetd/dataplane/ovs"
	"github.com/vnetd/vnetd/shaping"
)

// NewHost opens the link layer and the firewall of the network namespace
// vnetd runs in, probing that the kernel offers what they need.
func NewHost(log *slog.Logger) (Host, Firewall, func(), error) {
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("netlink: %w", err)
	}
	conn, err := nftables.New()
	if err != nil {
		nl.Close()
		return nil, nil, nil, fmt.Errorf("nftables: %w", err)
	}
	if _, err := conn.ListTables(); err != nil {
		nl.Close()
		return nil, nil, nil, fmt.Errorf("nftables is not usable in this kernel (needed for forwarding and NAT rules): %w", err)
	}
	host := dataplane.New(nl, dataplane.Sysctl{Root: "/proc/sys"}, log)
	fw := &nftFirewall{fw: firewall.New(conn)}
	return host, fw, func() { nl.Close(); conn.CloseLasting() }, nil
}

// nftFirewall plans a network's rules and keeps them in the kernel.
type nftFirewall struct {
	fw *firewall.Firewall
}

func (f *nftFirewall) Apply(n *conf.Network, ifindex int) error {
	p, err := firewall.Build(n)
	if err != nil {
		return err
	}
	return f.fw.Apply(p, ifindex)
}

func (f *nftFirewall) Remove(n *conf.Network) error {
	return f.fw.Remove(n.Bridge.Name)
}

func (f *nftFirewall) Check(n *conf.Network, ifindex int) (bool, error) {
	p, err := firewall.Build(n)
	if err != nil {
		return false, err
	}
	return f.fw.Check(p, ifindex)
}

func (f *nftFirewall) Watch(ctx context.Context, changed func()) error {
	return f.fw.Watch(ctx, changed)
}

// lazyOVS dials the OVSDB server when a port first needs it (most hosts have
// no Open vSwitch at all) and again after a failed call.
type lazyOVS struct {
	socket string
	mu     sync.Mutex
	c      *ovs.Client
}

func (l *lazyOVS) client(ctx context.Context) (*ovs.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		return l.c, nil
	}
	c, err := ovs.Dial(ctx, l.socket)
	if err != nil {
		return nil, fmt.Errorf("open vswitch database at %s: %w", l.socket, err)
	}
	l.c = c
	return c, nil
}

func (l *lazyOVS) forget(c *ovs.Client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == c {
		c.Close()
		l.c = nil
	}
}

func (l *lazyOVS) AddPort(ctx context.Context, p ovs.PortSpec) error {
	c, err := l.client(ctx)
	if err != nil {
		return err
	}
	if err := c.AddPort(ctx, p); err != nil {
		l.forget(c)
		return err
	}
	return nil
}

func (l *lazyOVS) DelPort(ctx context.Context, bridge, name string) error {
	c, err := l.client(ctx)
	if err != nil {
		return err
	}
	if err := c.DelPort(ctx, bridge, name); err != nil {
		l.forget(c)
		return err
	}
	return nil
}

// openShaper opens tc for the namespace vnetd runs in and removes the IFBs a
// previous vnetd left behind for devices that are gone. Without tc vnetd
// still runs; networks and ports that ask for bandwidth are then refused.
func openShaper(ctx context.Context, log *slog.Logger) (Shaper, func()) {
	s, err := shaping.New(-1, log)
	if err != nil {
		log.Warn("traffic shaping unavailable: networks and ports with <bandwidth> will be refused", "err", err)
		return nil, func() {}
	}
	if _, err := s.Probe(ctx); err != nil {
		log.Warn("traffic shaping unavailable: networks and ports with <bandwidth> will be refused", "err", err)
		s.Close()
		return nil, func() {}
	}
	if err := s.Sweep(ctx); err != nil {
		log.Warn("removing stale IFB devices", "err", err)
	}
	return s, func() { s.Close() }
}
