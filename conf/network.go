// Package conf is vnetd's model of libvirt's network XML: typed structs for every
// element and attribute of network.rng and networkport.rng, a strict parser, the
// validation rules of libvirt's network driver, define-time defaults, a formatter
// that reproduces libvirt's canonical output byte for byte, net-update on the model
// and a crash-safe store of persistent definitions.
//
// Everything here is pure: no sockets, no netlink. Every other vnetd package
// consumes a *Network.
package conf

import (
	"net"
	"net/netip"

	"github.com/google/uuid"
)

// DnsmasqNamespace is the XML namespace of libvirt's <dnsmasq:options> extension.
const DnsmasqNamespace = "http://libvirt.org/schemas/network/dnsmasq/1.0"

// Network is one <network> definition.
type Network struct {
	Name        string
	UUID        uuid.UUID
	Title       string // empty: absent
	Description string // empty: absent
	Metadata    *Metadata

	// Connections counts the ports plugged into a running network. It is status
	// only: formatted in the live view, never in the inactive one.
	Connections uint

	// IPv6 ('ipv6=yes') lets guests talk IPv6 to each other even when the
	// bridge has no IPv6 address.
	IPv6                bool
	TrustGuestRxFilters Tristate

	Forward Forward
	Bridge  Bridge
	MTU     uint16 // 0: unset
	MAC     net.HardwareAddr
	Domain  *Domain
	DNS     DNS
	VLAN    *VLAN
	// Bandwidth limits the whole network (the bridge).
	Bandwidth *Bandwidth
	// PortIsolated is the default of <port isolated> for ports of this network.
	PortIsolated Tristate
	IPs          []IP
	Routes       []Route
	VirtualPort  *VirtualPort
	PortGroups   []PortGroup

	// DnsmasqOptions are the raw dnsmasq lines of <dnsmasq:options>. vnetd has no
	// dnsmasq: HonouredDnsmasqOptions says which ones it implements, and a
	// network with any other refuses to start.
	DnsmasqOptions []string
}

// Forward is the <forward> element. Mode ForwardNone means no <forward>
// element at all: an isolated network.
type Forward struct {
	Mode ForwardMode
	// Managed is hostdev's managed='yes': vnetd detaches the VF from its host
	// driver itself.
	Managed bool
	Driver  *HostdevDriver
	// Interfaces is the pool of host interfaces. <forward dev='X'> is the same
	// as a first <interface dev='X'/>, which is how libvirt keeps it too.
	Interfaces []ForwardInterface
	Addresses  []ForwardAddress // PCI virtual functions (hostdev pools)
	PF         string           // <pf dev>: the physical function whose VFs make the pool
	NAT        *NAT
}

// Dev is the forward device: the first pool interface, as libvirt formats it.
func (f *Forward) Dev() string {
	if len(f.Interfaces) == 0 {
		return ""
	}
	return f.Interfaces[0].Dev
}

// ForwardInterface is one <forward><interface dev>.
type ForwardInterface struct {
	Dev         string
	Connections uint // status only
}

// ForwardAddress is one <forward><address type='pci'>.
type ForwardAddress struct {
	PCI         PCIAddress
	Connections uint // status only
}

// PCIAddress is a PCI domain:bus:slot.function.
type PCIAddress struct {
	Domain   uint32
	Bus      uint8
	Slot     uint8
	Function uint8
}

// HostdevDriver is <driver name model> of a hostdev pool.
type HostdevDriver struct {
	Name  HostdevDriverName
	Model string
}

// NAT is <forward><nat>.
type NAT struct {
	IPv6 Tristate
	// AddressStart/End is the SNAT range; invalid (zero) means masquerade.
	AddressStart netip.Addr
	AddressEnd   netip.Addr
	// PortStart/End restrict the source ports of masquerade/SNAT; zero means
	// libvirt's default 1024-65535.
	PortStart uint16
	PortEnd   uint16
}

// Bridge is the <bridge> element.
type Bridge struct {
	Name string
	Zone string
	// STP defaults to on; only TristateNo turns it off.
	STP Tristate
	// Delay is the forward delay in seconds.
	Delay           uint64
	MACTableManager MACTableManager
}

// STPEnabled reports whether spanning tree is on (the default).
func (b *Bridge) STPEnabled() bool { return b.STP != TristateNo }

// Domain is <domain name localOnly register>.
type Domain struct {
	Name      string
	LocalOnly Tristate
	Register  Tristate
}

// DNS is the <dns> element.
type DNS struct {
	Enable            Tristate
	ForwardPlainNames Tristate
	Forwarders        []DNSForwarder
	TXTs              []DNSTXT
	SRVs              []DNSSRV
	Hosts             []DNSHost
}

// Enabled reports whether the network serves DNS (the default).
func (d *DNS) Enabled() bool { return d.Enable != TristateNo }

// DNSForwarder is <forwarder addr domain>: at least one of the two is set.
type DNSForwarder struct {
	Addr   netip.Addr
	Domain string
}

// DNSTXT is <txt name value>.
type DNSTXT struct {
	Name  string
	Value string
}

// DNSSRV is <srv>. Port, Priority and Weight are zero when absent, which is
// also how libvirt formats them.
type DNSSRV struct {
	Service  string
	Protocol string
	Domain   string
	Target   string
	Port     uint16
	Priority uint16
	Weight   uint16
}

// DNSHost is <host ip><hostname>…</host>.
type DNSHost struct {
	IP        netip.Addr
	Hostnames []string
}

// IP is one <ip> element. Netmask and Prefix are kept as written (at most one
// of them): Subnet gives the effective prefix with libvirt's defaults.
type IP struct {
	Family   string // "", "ipv4" or "ipv6", as written
	Address  netip.Addr
	Netmask  netip.Addr
	Prefix   uint8 // 0: absent
	LocalPTR Tristate
	TFTPRoot string
	DHCP     *DHCP
}

// DHCP is <ip><dhcp>.
type DHCP struct {
	Ranges []DHCPRange
	Hosts  []DHCPHost
	BootP  *BootP
}

// DHCPRange is <range start end> with an optional lease time.
type DHCPRange struct {
	Start netip.Addr
	End   netip.Addr
	Lease *Lease
}

// DHCPHost is a static <host>. IPv4 hosts are matched by MAC or name, IPv6
// hosts by DUID (ID) or name.
type DHCPHost struct {
	MAC   net.HardwareAddr
	ID    string // DHCPv6 DUID, hex digits and ':'
	Name  string
	IP    netip.Addr
	Lease *Lease
}

// Lease is <lease expiry unit>. Expiry 0 means an infinite lease.
type Lease struct {
	Expiry uint64
	Unit   LeaseUnit
}

// BootP is <bootp file server>.
type BootP struct {
	File   string
	Server netip.Addr // invalid: this host
}

// Route is a static <route>.
type Route struct {
	Family    string // "", "ipv4" or "ipv6", as written
	Address   netip.Addr
	Netmask   netip.Addr
	Prefix    uint8
	HasPrefix bool
	Gateway   netip.Addr
	Metric    uint32 // 0: unset
}

// VLAN is <vlan trunk><tag id nativeMode/>…</vlan>.
type VLAN struct {
	Trunk bool
	Tags  []VLANTag
}

// VLANTag is one <tag>; at most one tag of a VLAN has a NativeMode.
type VLANTag struct {
	ID         uint16
	NativeMode NativeMode
}

// Bandwidth is <bandwidth>; a nil rate means that direction is unlimited.
type Bandwidth struct {
	// ClassID is the tc class a port's floor lives in (ports only, status).
	ClassID  uint
	Inbound  *Rate
	Outbound *Rate
}

// Rate is <inbound>/<outbound>. Average, Peak and Floor are in kilobytes per
// second (1000 bytes), Burst in kibibytes; zero means unset.
type Rate struct {
	Average uint64
	Peak    uint64
	Floor   uint64
	Burst   uint64
}

// VirtualPort is <virtualport type><parameters …/></virtualport>. Nil pointer
// parameters were not given.
type VirtualPort struct {
	Type          VirtualPortType
	ManagerID     *uint8
	TypeID        *uint32 // 24 bits
	TypeIDVersion *uint8
	InstanceID    *uuid.UUID
	ProfileID     string // at most 39 characters
	InterfaceID   *uuid.UUID
}

// PortGroup is <portgroup>.
type PortGroup struct {
	Name                string
	Default             bool
	TrustGuestRxFilters Tristate
	VLAN                *VLAN
	VirtualPort         *VirtualPort
	Bandwidth           *Bandwidth
}

// Metadata is the application-defined content of <metadata>, kept verbatim:
// one element per namespace.
type Metadata struct {
	Elements []*RawElement
}

// RawElement is an XML element kept as written. Names carry the prefix as
// written in Space; Attrs include namespace declarations.
type RawElement struct {
	Name     RawName
	Attrs    []RawAttr
	Children []RawNode
}

// RawName is a prefixed XML name as written.
type RawName struct {
	Prefix string
	Local  string
}

// RawAttr is an attribute as written.
type RawAttr struct {
	Name  RawName
	Value string
}

// RawNode is either an element or a run of text.
type RawNode struct {
	Elem *RawElement
	Text string
}
