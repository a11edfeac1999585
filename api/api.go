// Package api holds the wire types of vnetd's control API (HTTP + JSON on a
// unix socket, documented in docs/api.md), shared by the daemon and its Go
// client.
package api

import (
	"fmt"
	"time"
)

// Version is the API path prefix.
const Version = "v1"

// NetworkInfo is what net-list and net-info show.
type NetworkInfo struct {
	Name       string `json:"name"`
	UUID       string `json:"uuid"`
	Active     bool   `json:"active"`
	Persistent bool   `json:"persistent"`
	Autostart  bool   `json:"autostart"`
	Bridge     string `json:"bridge,omitempty"`
	Mode       string `json:"mode"`
}

// PortInfo is a line of net-port-list.
type PortInfo struct {
	UUID   string `json:"uuid"`
	MAC    string `json:"mac"`
	Owner  string `json:"owner,omitempty"`
	Group  string `json:"group,omitempty"`
	Plug   string `json:"plug"`             // network, bridge, direct, hostdev-pci or none
	Target string `json:"target,omitempty"` // bridge, parent device or PCI address
	Device string `json:"device,omitempty"` // the host link carrying the port, when vnetd plugged it
}

// Rate is one direction of a port's bandwidth (kilobytes/s; burst in KiB).
type Rate struct {
	Average uint64 `json:"average,omitempty"`
	Peak    uint64 `json:"peak,omitempty"`
	Burst   uint64 `json:"burst,omitempty"`
	Floor   uint64 `json:"floor,omitempty"`
}

// BandwidthRequest sets a port's rates (net-port-set-bandwidth); a nil
// direction removes that limit.
type BandwidthRequest struct {
	Inbound  *Rate `json:"inbound,omitempty"`
	Outbound *Rate `json:"outbound,omitempty"`
}

// Lease is a line of net-dhcp-leases.
type Lease struct {
	Expiry   int64  `json:"expiryTime,omitempty"` // Unix seconds; absent: infinite
	Type     string `json:"type"`                 // ipv4 or ipv6
	IP       string `json:"ipaddr"`
	Prefix   int    `json:"prefix"`
	MAC      string `json:"mac,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	ClientID string `json:"clientid,omitempty"` // DHCPv4 client id, or the DHCPv6 DUID
	IAID     uint32 `json:"iaid,omitempty"`
	Bridge   string `json:"iface"`
}

// UpdateRequest is a net-update.
type UpdateRequest struct {
	Command     string `json:"command"` // modify, delete, add-first, add-last (add)
	Section     string `json:"section"` // ip-dhcp-host, ip-dhcp-range, forward-interface, portgroup, dns-host, dns-txt, dns-srv
	ParentIndex int    `json:"parentIndex"`
	XML         string `json:"xml"`
	Live        bool   `json:"live"`   // the running network
	Config      bool   `json:"config"` // the persistent definition; neither: live if active, else config
}

// UpdateResult says what an update changed.
type UpdateResult struct {
	Live   bool `json:"live"`
	Config bool `json:"config"`
}

// AutostartRequest sets a network's autostart flag.
type AutostartRequest struct {
	Autostart bool `json:"autostart"`
}

// Error codes: stable, for programs; the message is for people.
const (
	CodeInvalidRequest    = "invalid_request"    // malformed request body or parameters
	CodeInvalidDefinition = "invalid_definition" // the network XML fails to parse or validate
	CodeNotFound          = "not_found"          // no such network
	CodeConflict          = "conflict"           // duplicate name/uuid, bridge in use, already active
	CodeNotActive         = "not_active"         // the operation needs a running network
	CodeUnsupported       = "unsupported"        // a section or command vnetd (like libvirt) cannot update
	CodeOperationFailed   = "operation_failed"   // the host refused (netlink, nftables, filesystem)
)

// Error is the body of every failed request.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Network string `json:"network,omitempty"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}

// ErrorBody wraps Error in responses: {"error": {...}}.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// Event is one line of GET /v1/events (net-event): something that happened
// to a network, in the order the daemon did it.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"` // one of the Event* constants
	Network string    `json:"network,omitempty"`
	Port    string    `json:"port,omitempty"` // port events: the port's UUID
	// Lease events: the lease's address and holder.
	IP       string `json:"ip,omitempty"`
	MAC      string `json:"mac,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Detail   string `json:"detail,omitempty"` // overflow: what was lost
}

// Event types. The lifecycle ones are libvirt's network lifecycle events
// (plus updated); ports and leases are vnetd's own.
const (
	EventDefined      = "defined"
	EventUndefined    = "undefined"
	EventStarted      = "started"
	EventStopped      = "stopped"
	EventUpdated      = "updated" // a net-update, live or persistent
	EventPortCreated  = "port-created"
	EventPortDeleted  = "port-deleted"
	EventLeaseAdded   = "lease-added"   // a new lease, or an address that changed hands
	EventLeaseRemoved = "lease-removed" // released, expired or taken back
	// EventOverflow is the last event of a stream whose reader fell too far
	// behind: the daemon dropped it rather than wait. Re-read the state and
	// subscribe again.
	EventOverflow = "overflow"
)
