// Package dhcpd is vnetd's DHCP service for a network's bridge: a DHCPv4
// server (Server4) and a DHCPv6 server (Server6) that behave like the
// dnsmasq libvirt runs (libvirt-behavior.md §3) and keep their leases in the
// lease store (package leases), which the DNS server and net-dhcp-leases
// read.
//
// Each server is a thin socket shell around a pure handler that takes a
// parsed request and the current time and decides the reply and what to
// persist; the shell persists first and replies after, so that a client is
// never acknowledged a lease that is not durable.
package dhcpd

import (
	"context"
	"net/netip"

	"github.com/vnetd/vnetd/leases"
)

// LeaseStore is what the DHCP servers need of the lease store; *leases.Store
// implements it.
type LeaseStore interface {
	// Put stores l, replacing the lease of the same network and address,
	// and returns once it is durable.
	Put(ctx context.Context, l leases.Lease) error
	// Delete removes the lease of network for ip, if any.
	Delete(ctx context.Context, network string, ip netip.Addr) error
	// List returns every lease of network, expired ones included.
	List(network string) ([]leases.Lease, error)
}

var _ LeaseStore = (*leases.Store)(nil)
