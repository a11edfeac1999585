package conf

import "fmt"

// Tristate is an optional yes/no (or on/off) attribute: absent is a value of
// its own because libvirt formats only what was set.
type Tristate uint8

const (
	TristateAbsent Tristate = iota
	TristateYes
	TristateNo
)

// YesNo is the attribute spelling of t ("" when absent).
func (t Tristate) YesNo() string {
	switch t {
	case TristateYes:
		return "yes"
	case TristateNo:
		return "no"
	}
	return ""
}

// IsYes reports t == TristateYes.
func (t Tristate) IsYes() bool { return t == TristateYes }

func parseYesNo(s string) (Tristate, error) {
	switch s {
	case "yes":
		return TristateYes, nil
	case "no":
		return TristateNo, nil
	}
	return TristateAbsent, fmt.Errorf("%q is not yes or no", s)
}

func parseOnOff(s string) (Tristate, error) {
	switch s {
	case "on":
		return TristateYes, nil
	case "off":
		return TristateNo, nil
	}
	return TristateAbsent, fmt.Errorf("%q is not on or off", s)
}

// ForwardMode is <forward mode>. The zero value is invalid: an isolated
// network (no <forward>) is ForwardNone.
type ForwardMode uint8

const (
	forwardInvalid ForwardMode = iota
	ForwardNone                // isolated: no <forward> element
	ForwardNAT
	ForwardRoute
	ForwardOpen
	ForwardBridge
	ForwardPrivate
	ForwardVEPA
	ForwardPassthrough
	ForwardHostdev
)

var forwardModeNames = [...]string{"", "none", "nat", "route", "open", "bridge", "private", "vepa", "passthrough", "hostdev"}

func (m ForwardMode) String() string {
	if int(m) < len(forwardModeNames) && m != forwardInvalid {
		return forwardModeNames[m]
	}
	return fmt.Sprintf("ForwardMode(%d)", m)
}

// Valid reports whether m is one of the defined modes.
func (m ForwardMode) Valid() bool { return m > forwardInvalid && int(m) < len(forwardModeNames) }

// Managed reports whether vnetd owns a bridge with addresses, DHCP, DNS and
// firewall for this mode (libvirt's none/nat/route/open).
func (m ForwardMode) Managed() bool {
	return m == ForwardNone || m == ForwardNAT || m == ForwardRoute || m == ForwardOpen
}

// ParseForwardMode parses a <forward mode> value ("none" is not accepted: it
// is spelled by leaving <forward> out).
func ParseForwardMode(s string) (ForwardMode, error) {
	for i, n := range forwardModeNames {
		if i > int(ForwardNone) && n == s {
			return ForwardMode(i), nil
		}
	}
	return forwardInvalid, fmt.Errorf("unknown forwarding type %q", s)
}

// MACTableManager is <bridge macTableManager>; zero means absent (the kernel
// manages the table).
type MACTableManager uint8

const (
	MACTableDefault MACTableManager = iota
	MACTableKernel
	MACTableLibvirt
)

func (m MACTableManager) String() string {
	switch m {
	case MACTableKernel:
		return "kernel"
	case MACTableLibvirt:
		return "libvirt"
	}
	return ""
}

func parseMACTableManager(s string) (MACTableManager, error) {
	switch s {
	case "kernel":
		return MACTableKernel, nil
	case "libvirt":
		return MACTableLibvirt, nil
	}
	return MACTableDefault, fmt.Errorf("%q is not kernel or libvirt", s)
}

// LeaseUnit is <lease unit>. The zero value is invalid; the XML default is
// minutes.
type LeaseUnit uint8

const (
	leaseUnitInvalid LeaseUnit = iota
	LeaseSeconds
	LeaseMinutes
	LeaseHours
)

func (u LeaseUnit) String() string {
	switch u {
	case LeaseSeconds:
		return "seconds"
	case LeaseMinutes:
		return "minutes"
	case LeaseHours:
		return "hours"
	}
	return fmt.Sprintf("LeaseUnit(%d)", u)
}

// Seconds is the number of seconds in one unit.
func (u LeaseUnit) Seconds() uint64 {
	switch u {
	case LeaseSeconds:
		return 1
	case LeaseMinutes:
		return 60
	case LeaseHours:
		return 3600
	}
	return 0
}

func parseLeaseUnit(s string) (LeaseUnit, error) {
	switch s {
	case "seconds":
		return LeaseSeconds, nil
	case "minutes":
		return LeaseMinutes, nil
	case "hours":
		return LeaseHours, nil
	}
	return leaseUnitInvalid, fmt.Errorf("%q is not seconds, minutes or hours", s)
}

// NativeMode is <tag nativeMode>; zero means the tag is not the native VLAN.
type NativeMode uint8

const (
	NativeNone NativeMode = iota
	NativeTagged
	NativeUntagged
)

func (m NativeMode) String() string {
	switch m {
	case NativeTagged:
		return "tagged"
	case NativeUntagged:
		return "untagged"
	}
	return ""
}

// VirtualPortType is <virtualport type>. The zero value is invalid; a
// <virtualport> without a type is VirtualPortUntyped.
type VirtualPortType uint8

const (
	virtualPortInvalid VirtualPortType = iota
	VirtualPortUntyped
	VirtualPort8021Qbg
	VirtualPort8021Qbh
	VirtualPortOpenvswitch
	VirtualPortMidonet
)

var virtualPortNames = [...]string{"", "", "802.1Qbg", "802.1Qbh", "openvswitch", "midonet"}

func (t VirtualPortType) String() string {
	if t == VirtualPortUntyped {
		return "(untyped)"
	}
	if t > VirtualPortUntyped && int(t) < len(virtualPortNames) {
		return virtualPortNames[t]
	}
	return fmt.Sprintf("VirtualPortType(%d)", t)
}

func parseVirtualPortType(s string) (VirtualPortType, error) {
	for i, n := range virtualPortNames {
		if i > int(VirtualPortUntyped) && n == s {
			return VirtualPortType(i), nil
		}
	}
	return virtualPortInvalid, fmt.Errorf("unknown virtualport type %q", s)
}

// HostdevDriverName is <driver name>; zero means absent.
type HostdevDriverName uint8

const (
	HostdevDriverDefault HostdevDriverName = iota
	HostdevDriverKVM
	HostdevDriverVFIO
	HostdevDriverXen
)

func (d HostdevDriverName) String() string {
	switch d {
	case HostdevDriverKVM:
		return "kvm"
	case HostdevDriverVFIO:
		return "vfio"
	case HostdevDriverXen:
		return "xen"
	}
	return ""
}

func parseHostdevDriverName(s string) (HostdevDriverName, error) {
	switch s {
	case "kvm":
		return HostdevDriverKVM, nil
	case "vfio":
		return HostdevDriverVFIO, nil
	case "xen":
		return HostdevDriverXen, nil
	}
	return HostdevDriverDefault, fmt.Errorf("%q is not kvm, vfio or xen", s)
}
