// Package dhcpd is vnetd's DHCP service for a network's bridge: a DHCPv4
// server (Server4) and a DHCPv6 server (Server6) that behave like the
// dnsmasq libvirt runs (libvirt-behavior.md §3) and keep their leases in the
// lease store (package leases), which the DNS server and net-dhcp-leases
// read.
//
// Each server is a thin socket shell around a pure handler that takes a
// parsed request and the current time and decides the reply and what to
// persist; the shell submits the write to the store and replies from its
// completion, so that a client is never acknowledged a lease that is not
// durable, and no goroutine waits for the disk.
package dhcpd

import (
	"github.com/vnetd/vnetd/leases"
)

// LeaseStore is what the DHCP servers need of the lease store; *leases.Store
// implements it.
type LeaseStore interface {
	// Apply submits c and calls done once it is durable (or failed).
	// Writes are committed in the order Apply is called; done must not
	// block.
	Apply(c leases.Changes, done func(error))
	// List returns every lease of network, expired ones included.
	List(network string) ([]leases.Lease, error)
}

var _ LeaseStore = (*leases.Store)(nil)
