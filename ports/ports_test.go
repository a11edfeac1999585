package ports

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/vnetd/vnetd/conf"
)

// ---- builders ---------------------------------------------------------------

const portUUID = "5d744f21-ba4a-4d6e-bdb2-30a35ff3207d"

func mustNet(t *testing.T, xml string) *conf.Network {
	t.Helper()
	n, err := conf.Parse([]byte(xml))
	if err != nil {
		t.Fatalf("parse network: %v\n%s", err, xml)
	}
	return n
}

// mustPort parses a <networkport> whose extra elements (group, virtualport,
// bandwidth, vlan, port, rxfilters, plug) are inner.
func mustPort(t *testing.T, inner string) *conf.Port {
	t.Helper()
	xml := `<networkport>
  <uuid>` + portUUID + `</uuid>
  <owner><name>vm1</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner>
  <mac address='52:54:00:7b:35:93'/>
  ` + inner + `
</networkport>`
	p, err := conf.ParsePort([]byte(xml))
	if err != nil {
		t.Fatalf("parse port: %v\n%s", err, xml)
	}
	return p
}

// Networks of every forward mode.
const (
	netIsolated = `<network><name>iso</name><bridge name='virbr9' macTableManager='libvirt'/></network>`
	netNAT      = `<network><name>nat</name><forward mode='nat'/><bridge name='virbr1'/>
  <ip address='192.168.100.1' netmask='255.255.255.0'/></network>`
	netRoute = `<network><name>route</name><forward mode='route'/><bridge name='virbr2'/>
  <ip address='192.168.101.1' netmask='255.255.255.0'/></network>`
	netOpen = `<network><name>open</name><forward mode='open'/><bridge name='virbr3'/>
  <ip address='192.168.102.1' netmask='255.255.255.0'/></network>`
	netHostBridge = `<network><name>hostbr</name><forward mode='bridge'/><bridge name='br0' macTableManager='kernel'/></network>`
	netHostdev    = `<network><name>hd</name>
  <forward mode='hostdev' managed='yes'>
    <driver name='vfio'/>
    <address type='pci' domain='0x0000' bus='0x02' slot='0x10' function='0x0'/>
    <address type='pci' domain='0x0000' bus='0x02' slot='0x10' function='0x1'/>
  </forward></network>`
	netHostdevUnmanaged = `<network><name>hd2</name>
  <forward mode='hostdev'>
    <address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x2'/>
  </forward></network>`
)

// netDirect is a macvtap network of mode with the interfaces, each "dev" or
// "dev:connections".
func netDirect(mode string, ifaces ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<network><name>%s</name><forward mode='%s'>", mode, mode)
	for _, i := range ifaces {
		dev, conns, _ := strings.Cut(i, ":")
		if conns != "" {
			fmt.Fprintf(&b, "<interface dev='%s' connections='%s'/>", dev, conns)
		} else {
			fmt.Fprintf(&b, "<interface dev='%s'/>", dev)
		}
	}
	b.WriteString("</forward></network>")
	return b.String()
}

// allocate runs Allocate and checks that it left its inputs alone.
func allocate(t *testing.T, n *conf.Network, p *conf.Port, floorSum uint64) (*conf.Network, *conf.Port, error) {
	t.Helper()
	nBefore, pBefore := n.Format(0), p.Format()
	c, q, err := Allocate(n, p, floorSum)
	if !bytes.Equal(n.Format(0), nBefore) {
		t.Errorf("Allocate modified the network:\n--- before\n%s\n--- after\n%s", nBefore, n.Format(0))
	}
	if !bytes.Equal(p.Format(), pBefore) {
		t.Errorf("Allocate modified the port:\n--- before\n%s\n--- after\n%s", pBefore, p.Format())
	}
	if err == nil && (c == nil || q == nil) {
		t.Fatalf("Allocate returned nil without an error")
	}
	if err != nil && (c != nil || q != nil) {
		t.Errorf("Allocate returned results with error %v", err)
	}
	return c, q, err
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func counts(n *conf.Network) string {
	var b strings.Builder
	fmt.Fprintf(&b, "net=%d", n.Connections)
	for _, i := range n.Forward.Interfaces {
		fmt.Fprintf(&b, " %s=%d", i.Dev, i.Connections)
	}
	for _, a := range n.Forward.Addresses {
		fmt.Fprintf(&b, " %s=%d", a.PCI, a.Connections)
	}
	return b.String()
}

func u8(v uint8) *uint8    { return &v }
func u32(v uint32) *uint32 { return &v }
func uid(s string) *uuid.UUID {
	u := uuid.MustParse(s)
	return &u
}

// ---- input checks -----------------------------------------------------------

func TestAllocateInput(t *testing.T) {
	n := mustNet(t, netNAT)
	_, _, err := allocate(t, n, mustPort(t, `<plug type='network' bridge='virbr1'/>`), 0)
	wantErr(t, err, "a new port must come without a <plug>")
	wantErr(t, err, `network "nat": port `+portUUID+":")

	p := mustPort(t, "")
	p.MAC = nil
	_, _, err = Allocate(n, p, 0)
	wantErr(t, err, "<mac>: missing or malformed MAC address")

	_, _, err = Allocate(nil, mustPort(t, ""), 0)
	wantErr(t, err, "no network definition")
	_, _, err = Allocate(n, nil, 0)
	wantErr(t, err, `network "nat": no port definition`)
}

// ---- portgroups -------------------------------------------------------------

const netPortGroups = `<network trustGuestRxFilters='no'>
  <name>pg</name>
  <forward mode='bridge'/>
  <bridge name='br0'/>
  <vlan><tag id='10'/></vlan>
  <port isolated='yes'/>
  <portgroup name='eng' default='yes' trustGuestRxFilters='yes'>
    <vlan><tag id='20'/></vlan>
    <bandwidth><inbound average='1000'/></bandwidth>
  </portgroup>
  <portgroup name='sales'>
    <bandwidth><outbound average='500' burst='64'/></bandwidth>
  </portgroup>
  <portgroup name='plain'/>
</network>`

func TestPortGroupMerge(t *testing.T) {
	type want struct {
		group             string
		in, out           uint64 // inbound / outbound average, 0: none
		vlan              uint16 // 0: none
		trust, isolated   conf.Tristate
		bandwidthFromPort bool
	}
	tests := []struct {
		name  string
		port  string
		want  want
		error string
	}{
		{name: "explicit group", port: `<group>sales</group>`,
			want: want{group: "sales", out: 500, vlan: 10, trust: conf.TristateNo, isolated: conf.TristateYes}},
		{name: "default group", port: ``,
			want: want{group: "", in: 1000, vlan: 20, trust: conf.TristateYes, isolated: conf.TristateYes}},
		{name: "explicit default group", port: `<group>eng</group>`,
			want: want{group: "eng", in: 1000, vlan: 20, trust: conf.TristateYes, isolated: conf.TristateYes}},
		{name: "empty group falls back to network", port: `<group>plain</group>`,
			want: want{group: "plain", vlan: 10, trust: conf.TristateNo, isolated: conf.TristateYes}},
		{name: "missing group", port: `<group>nope</group>`,
			error: "<group>: portgroup 'nope' not found in network 'pg'"},
		{name: "port overrides bandwidth", port: `<group>eng</group><bandwidth><outbound average='7'/></bandwidth>`,
			want: want{group: "eng", out: 7, vlan: 20, trust: conf.TristateYes, isolated: conf.TristateYes}},
		{name: "port overrides vlan", port: `<vlan><tag id='30'/></vlan>`,
			want: want{in: 1000, vlan: 30, trust: conf.TristateYes, isolated: conf.TristateYes}},
		{name: "port overrides trust", port: `<rxfilters trustGuest='no'/>`,
			want: want{in: 1000, vlan: 20, trust: conf.TristateNo, isolated: conf.TristateYes}},
		{name: "port overrides isolated", port: `<port isolated='no'/>`,
			want: want{in: 1000, vlan: 20, trust: conf.TristateYes, isolated: conf.TristateNo}},
		{name: "port overrides everything", port: `<group>sales</group><bandwidth><inbound average='3'/></bandwidth>
			<vlan><tag id='40'/></vlan><rxfilters trustGuest='yes'/><port isolated='no'/>`,
			want: want{group: "sales", in: 3, vlan: 40, trust: conf.TristateYes, isolated: conf.TristateNo}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := mustNet(t, netPortGroups)
			_, q, err := allocate(t, n, mustPort(t, tt.port), 0)
			wantErr(t, err, tt.error)
			if err != nil {
				return
			}
			var got want
			got.group = q.Group
			if b := q.Bandwidth; b != nil {
				if b.Inbound != nil {
					got.in = b.Inbound.Average
				}
				if b.Outbound != nil {
					got.out = b.Outbound.Average
				}
			}
			if q.VLAN != nil && len(q.VLAN.Tags) > 0 {
				got.vlan = q.VLAN.Tags[0].ID
			}
			got.trust, got.isolated = q.TrustGuestRxFilters, q.Isolated
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// The port's bandwidth and VLAN taken from the portgroup are copies: changing
// them does not change the network.
func TestPortGroupCopies(t *testing.T) {
	n := mustNet(t, netPortGroups)
	c, q, err := allocate(t, n, mustPort(t, ""), 0)
	wantErr(t, err, "")
	q.Bandwidth.Inbound.Average = 1
	q.VLAN.Tags[0].ID = 99
	for _, net := range []*conf.Network{n, c} {
		if net.PortGroups[0].Bandwidth.Inbound.Average != 1000 || net.PortGroups[0].VLAN.Tags[0].ID != 20 {
			t.Errorf("the port shares memory with the network's portgroup")
		}
	}
}

func TestVLANPrecedence(t *testing.T) {
	tests := []struct {
		network, portgroup, port string // tag ids, "" for none
		want                     string
	}{
		{"", "", "", ""},
		{"10", "", "", "10"},
		{"", "20", "", "20"},
		{"10", "20", "", "20"},
		{"10", "20", "30", "30"},
		{"10", "", "30", "30"},
		{"", "", "30", "30"},
	}
	vlan := func(id string) string {
		if id == "" {
			return ""
		}
		return "<vlan><tag id='" + id + "'/></vlan>"
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("net=%s,pg=%s,port=%s", tt.network, tt.portgroup, tt.port), func(t *testing.T) {
			n := mustNet(t, `<network><name>v</name><forward mode='passthrough'><interface dev='eth0'/></forward>`+
				vlan(tt.network)+`<portgroup name='g' default='yes'>`+vlan(tt.portgroup)+`</portgroup></network>`)
			_, q, err := allocate(t, n, mustPort(t, vlan(tt.port)), 0)
			wantErr(t, err, "")
			got := ""
			if q.VLAN != nil {
				got = fmt.Sprint(q.VLAN.Tags[0].ID)
			}
			if got != tt.want {
				t.Errorf("vlan %q, want %q", got, tt.want)
			}
		})
	}
}

// ---- virtualport merge ------------------------------------------------------

func TestMergeVirtualPorts(t *testing.T) {
	const (
		idA = "11111111-2222-3333-4444-555555555555"
		idB = "66666666-7777-8888-9999-000000000000"
	)
	vp := func(t conf.VirtualPortType) *conf.VirtualPort { return &conf.VirtualPort{Type: t} }
	with := func(v *conf.VirtualPort, f func(*conf.VirtualPort)) *conf.VirtualPort { f(v); return v }
	tests := []struct {
		name                     string
		port, network, portgroup *conf.VirtualPort
		want                     *conf.VirtualPort
		error                    string
	}{
		{name: "none"},
		{name: "untyped without parameters is none", port: vp(conf.VirtualPortUntyped), network: vp(conf.VirtualPortUntyped)},
		{name: "port only",
			port: with(vp(conf.VirtualPort8021Qbh), func(v *conf.VirtualPort) { v.ProfileID = "a" }),
			want: with(vp(conf.VirtualPort8021Qbh), func(v *conf.VirtualPort) { v.ProfileID = "a" })},
		{name: "untyped port takes the network's type",
			port:    with(vp(conf.VirtualPortUntyped), func(v *conf.VirtualPort) { v.ProfileID = "a" }),
			network: vp(conf.VirtualPort8021Qbh),
			want:    with(vp(conf.VirtualPort8021Qbh), func(v *conf.VirtualPort) { v.ProfileID = "a" })},
		{name: "portgroup gives the type",
			port:      with(vp(conf.VirtualPortUntyped), func(v *conf.VirtualPort) { v.InterfaceID = uid(idA) }),
			portgroup: vp(conf.VirtualPortOpenvswitch),
			want:      with(vp(conf.VirtualPortOpenvswitch), func(v *conf.VirtualPort) { v.InterfaceID = uid(idA) })},
		{name: "parameters from all three",
			port:      with(vp(conf.VirtualPort8021Qbg), func(v *conf.VirtualPort) { v.ManagerID = u8(1) }),
			network:   with(vp(conf.VirtualPort8021Qbg), func(v *conf.VirtualPort) { v.TypeID = u32(2) }),
			portgroup: with(vp(conf.VirtualPortUntyped), func(v *conf.VirtualPort) { v.TypeIDVersion = u8(3); v.InstanceID = uid(idA) }),
			want: with(vp(conf.VirtualPort8021Qbg), func(v *conf.VirtualPort) {
				v.ManagerID, v.TypeID, v.TypeIDVersion, v.InstanceID = u8(1), u32(2), u8(3), uid(idA)
			})},
		{name: "equal values agree",
			port:    with(vp(conf.VirtualPort8021Qbh), func(v *conf.VirtualPort) { v.ProfileID = "a" }),
			network: with(vp(conf.VirtualPort8021Qbh), func(v *conf.VirtualPort) { v.ProfileID = "a" }),
			want:    with(vp(conf.VirtualPort8021Qbh), func(v *conf.VirtualPort) { v.ProfileID = "a" })},
		{name: "untyped with parameters stays",
			port: with(vp(conf.VirtualPortUntyped), func(v *conf.VirtualPort) { v.ProfileID = "a" }),
			want: with(vp(conf.VirtualPortUntyped), func(v *conf.VirtualPort) { v.ProfileID = "a" })},
		{name: "parameters foreign to the type are dropped",
			port:    with(vp(conf.VirtualPort8021Qbh), func(v *conf.VirtualPort) { v.ProfileID = "a" }),
			network: with(vp(conf.VirtualPortUntyped), func(v *conf.VirtualPort) { v.ManagerID = u8(9) }),
			want:    with(vp(conf.VirtualPort8021Qbh), func(v *conf.VirtualPort) { v.ProfileID = "a" })},
		{name: "foreign parameters do not conflict",
			port:      vp(conf.VirtualPort8021Qbg),
			network:   with(vp(conf.VirtualPortUntyped), func(v *conf.VirtualPort) { v.ProfileID = "a" }),
			portgroup: with(vp(conf.VirtualPortUntyped), func(v *conf.VirtualPort) { v.ProfileID = "b" }),
			want:      vp(conf.VirtualPort8021Qbg)},
		{name: "type conflict port vs network",
			port: vp(conf.VirtualPort8021Qbg), network: vp(conf.VirtualPort8021Qbh),
			error: "conflicting virtualport types: '802.1Qbg' (port) vs '802.1Qbh' (network)"},
		{name: "type conflict network vs portgroup",
			network: vp(conf.VirtualPortOpenvswitch), portgroup: vp(conf.VirtualPortMidonet),
			error: "conflicting virtualport types: 'openvswitch' (network) vs 'midonet' (portgroup)"},
		{name: "profileid conflict",
			port:      with(vp(conf.VirtualPort8021Qbh), func(v *conf.VirtualPort) { v.ProfileID = "a" }),
			portgroup: with(vp(conf.VirtualPortUntyped), func(v *conf.VirtualPort) { v.ProfileID = "b" }),
			error:     "conflicting profileid in virtualport: 'a' (port) vs 'b' (portgroup)"},
		{name: "managerid conflict",
			network:   with(vp(conf.VirtualPort8021Qbg), func(v *conf.VirtualPort) { v.ManagerID = u8(1) }),
			portgroup: with(vp(conf.VirtualPort8021Qbg), func(v *conf.VirtualPort) { v.ManagerID = u8(2) }),
			error:     "conflicting managerid in virtualport: '1' (network) vs '2' (portgroup)"},
		{name: "typeid conflict",
			port:    with(vp(conf.VirtualPortUntyped), func(v *conf.VirtualPort) { v.TypeID = u32(5) }),
			network: with(vp(conf.VirtualPortUntyped), func(v *conf.VirtualPort) { v.TypeID = u32(6) }),
			error:   "conflicting typeid in virtualport: '5' (port) vs '6' (network)"},
		{name: "typeidversion conflict",
			port:    with(vp(conf.VirtualPort8021Qbg), func(v *conf.VirtualPort) { v.TypeIDVersion = u8(1) }),
			network: with(vp(conf.VirtualPort8021Qbg), func(v *conf.VirtualPort) { v.TypeIDVersion = u8(2) }),
			error:   "conflicting typeidversion in virtualport: '1' (port) vs '2' (network)"},
		{name: "instanceid conflict",
			port:    with(vp(conf.VirtualPort8021Qbg), func(v *conf.VirtualPort) { v.InstanceID = uid(idA) }),
			network: with(vp(conf.VirtualPort8021Qbg), func(v *conf.VirtualPort) { v.InstanceID = uid(idB) }),
			error:   "conflicting instanceid in virtualport: '" + idA + "' (port) vs '" + idB + "' (network)"},
		{name: "interfaceid conflict",
			port:      with(vp(conf.VirtualPortOpenvswitch), func(v *conf.VirtualPort) { v.InterfaceID = uid(idA) }),
			portgroup: with(vp(conf.VirtualPortOpenvswitch), func(v *conf.VirtualPort) { v.InterfaceID = uid(idB) }),
			error:     "conflicting interfaceid in virtualport: '" + idA + "' (port) vs '" + idB + "' (portgroup)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mergeVirtualPorts(tt.port, tt.network, tt.portgroup)
			wantErr(t, err, tt.error)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Virtualport types each kind of network takes, merged with the network's and
// portgroup's, and completed.
func TestVirtualPortByMode(t *testing.T) {
	const iface = "<virtualport type='openvswitch'><parameters interfaceid='09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f'/></virtualport>"
	tests := []struct {
		name, network, port string
		error               string
		check               func(t *testing.T, vp *conf.VirtualPort)
	}{
		{name: "managed: typed", network: netNAT,
			port:  `<virtualport type='802.1Qbh'><parameters profileid='p'/></virtualport>`,
			error: "<virtualport type='802.1Qbh'> not supported for network 'nat' which uses a bridge managed by vnetd"},
		{name: "managed: untyped without parameters", network: netNAT, port: `<virtualport/>`,
			check: func(t *testing.T, vp *conf.VirtualPort) {
				if vp != nil {
					t.Errorf("virtualport %+v, want none", vp)
				}
			}},
		{name: "managed: untyped with parameters", network: netIsolated,
			port:  `<virtualport><parameters profileid='p'/></virtualport>`,
			error: "<virtualport type='none'> not supported for network 'iso'"},
		{name: "host bridge: openvswitch gets an interfaceid", network: netHostBridge,
			port: `<virtualport type='openvswitch'/>`,
			check: func(t *testing.T, vp *conf.VirtualPort) {
				if vp == nil || vp.Type != conf.VirtualPortOpenvswitch || vp.InterfaceID == nil || *vp.InterfaceID == uuid.Nil {
					t.Errorf("virtualport %+v, want openvswitch with a generated interfaceid", vp)
				}
			}},
		{name: "host bridge: openvswitch keeps its interfaceid", network: netHostBridge, port: iface,
			check: func(t *testing.T, vp *conf.VirtualPort) {
				if vp.InterfaceID.String() != "09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f" {
					t.Errorf("interfaceid %s", vp.InterfaceID)
				}
			}},
		{name: "host bridge: untyped port, openvswitch network",
			network: `<network><name>ovs</name><forward mode='bridge'/><bridge name='ovsbr0'/><virtualport type='openvswitch'/></network>`,
			port:    `<virtualport><parameters profileid='web'/></virtualport>`,
			check: func(t *testing.T, vp *conf.VirtualPort) {
				if vp.Type != conf.VirtualPortOpenvswitch || vp.ProfileID != "web" || vp.InterfaceID == nil {
					t.Errorf("virtualport %+v", vp)
				}
			}},
		{name: "host bridge: midonet", network: netHostBridge,
			port:  `<virtualport type='midonet'><parameters interfaceid='09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f'/></virtualport>`,
			error: "<virtualport type='midonet'> not supported for network 'hostbr' which uses a bridge device"},
		{name: "host bridge: 802.1Qbg", network: netHostBridge,
			port:  `<virtualport type='802.1Qbg'/>`,
			error: "<virtualport type='802.1Qbg'> not supported for network 'hostbr' which uses a bridge device"},
		{name: "macvtap: 802.1Qbg gets an instanceid", network: netDirect("vepa", "eth0"),
			port: `<virtualport type='802.1Qbg'><parameters managerid='1' typeid='2' typeidversion='3'/></virtualport>`,
			check: func(t *testing.T, vp *conf.VirtualPort) {
				if vp.Type != conf.VirtualPort8021Qbg || *vp.ManagerID != 1 || *vp.TypeID != 2 || *vp.TypeIDVersion != 3 || vp.InstanceID == nil {
					t.Errorf("virtualport %+v", vp)
				}
			}},
		{name: "macvtap: 802.1Qbg incomplete", network: netDirect("vepa", "eth0"),
			port:  `<virtualport type='802.1Qbg'><parameters managerid='1' typeidversion='3'/></virtualport>`,
			error: "<virtualport>: missing typeid in <virtualport type='802.1Qbg'>"},
		{name: "macvtap: 802.1Qbh without profileid", network: netDirect("bridge", "eth0"),
			port:  `<virtualport type='802.1Qbh'/>`,
			error: "missing profileid in <virtualport type='802.1Qbh'>"},
		{name: "macvtap: openvswitch", network: netDirect("private", "eth0"), port: iface,
			error: "<virtualport type='openvswitch'> not supported for network 'private' which uses a macvtap device"},
		{name: "hostdev: 802.1Qbh", network: netHostdev,
			port: `<virtualport type='802.1Qbh'><parameters profileid='p'/></virtualport>`,
			check: func(t *testing.T, vp *conf.VirtualPort) {
				if vp.Type != conf.VirtualPort8021Qbh || vp.ProfileID != "p" {
					t.Errorf("virtualport %+v", vp)
				}
			}},
		{name: "hostdev: openvswitch", network: netHostdev, port: iface,
			error: "<virtualport type='openvswitch'> not supported for network 'hd' which uses an SR-IOV Virtual Function via PCI passthrough"},
		{name: "conflict with the network", network: `<network><name>qbh</name><forward mode='passthrough'><interface dev='eth0'/></forward>
			<virtualport type='802.1Qbh'><parameters profileid='net'/></virtualport></network>`,
			port:  `<virtualport type='802.1Qbh'><parameters profileid='mine'/></virtualport>`,
			error: "<virtualport>: conflicting profileid in virtualport: 'mine' (port) vs 'net' (network)"},
		{name: "conflict with the portgroup", network: `<network><name>qbh</name><forward mode='passthrough'><interface dev='eth0'/></forward>
			<portgroup name='g'><virtualport type='802.1Qbg'/></portgroup></network>`,
			port:  `<group>g</group><virtualport type='802.1Qbh'><parameters profileid='mine'/></virtualport>`,
			error: "conflicting virtualport types: '802.1Qbh' (port) vs '802.1Qbg' (portgroup)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, q, err := allocate(t, mustNet(t, tt.network), mustPort(t, tt.port), 0)
			wantErr(t, err, tt.error)
			if err == nil && tt.check != nil {
				tt.check(t, q.VirtualPort)
			}
		})
	}
}

// ---- plugs ------------------------------------------------------------------

func TestPlugByMode(t *testing.T) {
	vfio := &conf.HostdevDriver{Name: conf.HostdevDriverVFIO}
	tests := []struct {
		name, network string
		want          conf.Plug
		counts        string
	}{
		{"none", netIsolated, conf.Plug{Type: conf.PlugNetwork, Bridge: "virbr9", MACTableManager: conf.MACTableLibvirt}, "net=1"},
		{"nat", netNAT, conf.Plug{Type: conf.PlugNetwork, Bridge: "virbr1"}, "net=1"},
		{"route", netRoute, conf.Plug{Type: conf.PlugNetwork, Bridge: "virbr2"}, "net=1"},
		{"open", netOpen, conf.Plug{Type: conf.PlugNetwork, Bridge: "virbr3"}, "net=1"},
		{"bridge with a bridge name", netHostBridge, conf.Plug{Type: conf.PlugBridge, Bridge: "br0", MACTableManager: conf.MACTableKernel}, "net=1"},
		{"bridge (macvtap)", netDirect("bridge", "eth0", "eth1"), conf.Plug{Type: conf.PlugDirect, Dev: "eth0", MacvtapMode: conf.MacvtapBridge}, "net=1 eth0=1 eth1=0"},
		{"private", netDirect("private", "eth0"), conf.Plug{Type: conf.PlugDirect, Dev: "eth0", MacvtapMode: conf.MacvtapPrivate}, "net=1 eth0=1"},
		{"vepa", netDirect("vepa", "eth0"), conf.Plug{Type: conf.PlugDirect, Dev: "eth0", MacvtapMode: conf.MacvtapVEPA}, "net=1 eth0=1"},
		{"passthrough", netDirect("passthrough", "eth0"), conf.Plug{Type: conf.PlugDirect, Dev: "eth0", MacvtapMode: conf.MacvtapPassthrough}, "net=1 eth0=1"},
		{"hostdev managed", netHostdev,
			conf.Plug{Type: conf.PlugHostdevPCI, Managed: conf.TristateYes, Driver: vfio, PCI: conf.PCIAddress{Bus: 2, Slot: 0x10}},
			"net=1 0000:02:10.0=1 0000:02:10.1=0"},
		{"hostdev unmanaged", netHostdevUnmanaged,
			conf.Plug{Type: conf.PlugHostdevPCI, Managed: conf.TristateNo, PCI: conf.PCIAddress{Bus: 3, Function: 2}},
			"net=1 0000:03:00.2=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := mustNet(t, tt.network)
			c, q, err := allocate(t, n, mustPort(t, ""), 0)
			wantErr(t, err, "")
			if !reflect.DeepEqual(q.Plug, tt.want) {
				t.Errorf("plug %+v, want %+v", q.Plug, tt.want)
			}
			if got := counts(c); got != tt.counts {
				t.Errorf("counters %s, want %s", got, tt.counts)
			}
			// The completed port is a valid <networkport>: it survives the
			// daemon's store and reload.
			if _, err := conf.ParsePort(q.Format()); err != nil {
				t.Errorf("completed port does not parse: %v\n%s", err, q.Format())
			}
			if q.Plug.Driver != nil && q.Plug.Driver == n.Forward.Driver {
				t.Errorf("the plug shares the network's driver")
			}
		})
	}
}

func TestLeastConnections(t *testing.T) {
	tests := []struct {
		name, network string
		want          string
	}{
		{"all free: first", netDirect("vepa", "eth0", "eth1", "eth2"), "eth0"},
		{"least used", netDirect("vepa", "eth0:2", "eth1:1", "eth2:3"), "eth1"},
		{"tie: first", netDirect("bridge", "eth0:2", "eth1:1", "eth2:1"), "eth1"},
		{"all equal: first", netDirect("private", "eth0:4", "eth1:4"), "eth0"},
		{"private without 802.1Qbh shares", netDirect("private", "eth0:1", "eth1:1"), "eth0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, q, err := allocate(t, mustNet(t, tt.network), mustPort(t, ""), 0)
			wantErr(t, err, "")
			if q.Plug.Dev != tt.want {
				t.Errorf("dev %s, want %s", q.Plug.Dev, tt.want)
			}
		})
	}
}

// Successive allocations spread over the pool and come back round.
func TestLeastConnectionsSequence(t *testing.T) {
	n := mustNet(t, netDirect("vepa", "eth0", "eth1", "eth2"))
	var devs []string
	for range 5 {
		c, q, err := allocate(t, n, mustPort(t, ""), 0)
		wantErr(t, err, "")
		devs = append(devs, q.Plug.Dev)
		n = c
	}
	if got := strings.Join(devs, " "); got != "eth0 eth1 eth2 eth0 eth1" {
		t.Errorf("devices %s", got)
	}
	if got := counts(n); got != "net=5 eth0=2 eth1=2 eth2=1" {
		t.Errorf("counters %s", got)
	}
}

const qbh = `<virtualport type='802.1Qbh'><parameters profileid='p'/></virtualport>`

func TestExclusive(t *testing.T) {
	hostdev := func(c0, c1 int) string {
		return fmt.Sprintf(`<network><name>hd</name><forward mode='hostdev'>
			<address type='pci' domain='0' bus='2' slot='0x10' function='0' connections='%d'/>
			<address type='pci' domain='0' bus='2' slot='0x10' function='1' connections='%d'/></forward></network>`, c0, c1)
	}
	tests := []struct {
		name, network, port string
		want, error         string
	}{
		{name: "passthrough: first free", network: netDirect("passthrough", "eth0:1", "eth1", "eth2"), want: "eth1"},
		{name: "passthrough: none free", network: netDirect("passthrough", "eth0:1", "eth1:1"),
			error: "the network requires exclusive access to interfaces, but none are available"},
		{name: "private+802.1Qbh: first free", network: netDirect("private", "eth0:1", "eth1:3", "eth2"), port: qbh, want: "eth2"},
		{name: "private+802.1Qbh: none free", network: netDirect("private", "eth0:1", "eth1:1"), port: qbh,
			error: "requires exclusive access to interfaces, but none are available"},
		{name: "vepa+802.1Qbh shares", network: netDirect("vepa", "eth0:1", "eth1:1"), port: qbh, want: "eth0"},
		{name: "hostdev: first free", network: hostdev(1, 0), want: "0000:02:10.1"},
		{name: "hostdev: none free", network: hostdev(1, 1),
			error: "requires exclusive access to interfaces, but none are available (all 2 PCI devices are in use)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, q, err := allocate(t, mustNet(t, tt.network), mustPort(t, tt.port), 0)
			wantErr(t, err, tt.error)
			if err != nil {
				return
			}
			got := q.Plug.Dev
			if q.Plug.Type == conf.PlugHostdevPCI {
				got = q.Plug.PCI.String()
			}
			if got != tt.want {
				t.Errorf("device %s, want %s", got, tt.want)
			}
		})
	}
}

func TestNoPool(t *testing.T) {
	for _, mode := range []string{"bridge", "private", "vepa", "passthrough"} {
		t.Run(mode, func(t *testing.T) {
			_, _, err := allocate(t, mustNet(t, netDirect(mode)), mustPort(t, ""), 0)
			wantErr(t, err, "the network uses a direct mode, but has no forward dev and no interface pool")
		})
	}
	t.Run("unexpanded pf", func(t *testing.T) {
		n := mustNet(t, `<network><name>pf</name><forward mode='passthrough'><pf dev='enp1s0'/></forward></network>`)
		_, _, err := allocate(t, n, mustPort(t, ""), 0)
		wantErr(t, err, "uses a direct mode, but has no forward dev and no interface pool")
	})
	t.Run("hostdev", func(t *testing.T) {
		n := mustNet(t, `<network><name>pf</name><forward mode='hostdev'><pf dev='enp1s0'/></forward></network>`)
		_, _, err := allocate(t, n, mustPort(t, ""), 0)
		wantErr(t, err, "requires exclusive access to interfaces, but none are available (the PCI device pool is empty)")
	})
	t.Run("managed network without a bridge name", func(t *testing.T) {
		_, _, err := allocate(t, mustNet(t, `<network><name>nobr</name></network>`), mustPort(t, ""), 0)
		wantErr(t, err, "the network has no bridge name")
	})
}

// ---- floor ------------------------------------------------------------------

func TestFloor(t *testing.T) {
	natQoS := func(inbound string) string {
		return `<network><name>qos</name><forward mode='nat'/><bridge name='virbr4'/>
			<bandwidth>` + inbound + `</bandwidth><ip address='10.0.0.1' prefix='24'/></network>`
	}
	floor := func(f int) string {
		return fmt.Sprintf("<bandwidth><inbound floor='%d'/></bandwidth>", f)
	}
	avg1000 := natQoS(`<inbound average='1000'/>`)
	peak2000 := natQoS(`<inbound average='1000' peak='2000'/>`)
	tests := []struct {
		name, network, port string
		sum                 uint64
		error               string
	}{
		{name: "no floor, no QoS", network: netNAT},
		{name: "no floor on a macvtap network", network: netDirect("vepa", "eth0"), port: `<bandwidth><inbound average='10'/></bandwidth>`},
		{name: "exactly full (average)", network: avg1000, port: floor(400), sum: 600},
		{name: "one over (average)", network: avg1000, port: floor(401), sum: 600,
			error: "cannot plug port: the network's inbound bandwidth limit (1000 kB/s, its average) cannot take a floor of 401 kB/s (400 kB/s free)"},
		{name: "alone at the limit", network: avg1000, port: floor(1000)},
		{name: "alone over the limit", network: avg1000, port: floor(1001),
			error: "cannot take a floor of 1001 kB/s (1000 kB/s free)"},
		{name: "exactly full (peak)", network: peak2000, port: floor(1400), sum: 600},
		{name: "one over (peak)", network: peak2000, port: floor(1401), sum: 600,
			error: "limit (2000 kB/s, its peak) cannot take a floor of 1401 kB/s (1400 kB/s free)"},
		{name: "sum already over the limit", network: avg1000, port: floor(1), sum: 1500,
			error: "(0 kB/s free)"},
		{name: "no inbound QoS", network: netNAT, port: floor(10),
			error: "<bandwidth><inbound floor='10'>: the network has no inbound QoS set, required by a floor"},
		{name: "outbound QoS only", network: natQoS(`<outbound average='1000'/>`), port: floor(10),
			error: "has no inbound QoS set, required by a floor"},
		{name: "macvtap network", network: netDirect("vepa", "eth0"), port: floor(10),
			error: "floor is only supported for networks with forward mode nat, route, open or none, not mode 'vepa'"},
		{name: "host bridge", network: netHostBridge, port: floor(10),
			error: "floor is only supported for networks with forward mode nat, route, open or none"},
		{name: "hostdev", network: netHostdev, port: floor(10),
			error: "floor is only supported for networks with forward mode nat, route, open or none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := allocate(t, mustNet(t, tt.network), mustPort(t, tt.port), tt.sum)
			wantErr(t, err, tt.error)
			if err == nil && c.Connections != 1 {
				t.Errorf("connections %d", c.Connections)
			}
		})
	}
}

func TestFloorKeepsClassID(t *testing.T) {
	n := mustNet(t, `<network><name>qos</name><bridge name='virbr4'/><bandwidth><inbound average='100'/></bandwidth></network>`)
	_, q, err := allocate(t, n, mustPort(t, `<bandwidth classID='7'><inbound floor='50'/></bandwidth>`), 0)
	wantErr(t, err, "")
	if q.Bandwidth.ClassID != 7 || InboundFloor(q) != 50 {
		t.Errorf("bandwidth %+v", q.Bandwidth)
	}
}

func TestInboundFloor(t *testing.T) {
	tests := []struct {
		port string
		want uint64
	}{
		{"", 0},
		{`<bandwidth><outbound average='5'/></bandwidth>`, 0},
		{`<bandwidth><inbound average='5'/></bandwidth>`, 0},
		{`<bandwidth><inbound average='5' floor='3'/></bandwidth>`, 3},
	}
	for _, tt := range tests {
		if got := InboundFloor(mustPort(t, tt.port)); got != tt.want {
			t.Errorf("%s: floor %d, want %d", tt.port, got, tt.want)
		}
	}
	if InboundFloor(nil) != 0 {
		t.Errorf("nil port has a floor")
	}
}

// ---- release and reclaim ----------------------------------------------------

func TestReleaseRestores(t *testing.T) {
	for _, network := range []string{
		netIsolated, netNAT, netHostBridge, netHostdev,
		netDirect("vepa", "eth0:3", "eth1:1"),
		netDirect("passthrough", "eth0:1", "eth1"),
	} {
		n := mustNet(t, network)
		t.Run(n.Name, func(t *testing.T) {
			c, q, err := allocate(t, n, mustPort(t, ""), 0)
			wantErr(t, err, "")
			cBefore, qBefore := c.Format(0), q.Format()
			r, err := Release(c, q)
			wantErr(t, err, "")
			if !bytes.Equal(c.Format(0), cBefore) || !bytes.Equal(q.Format(), qBefore) {
				t.Errorf("Release modified its inputs")
			}
			if !bytes.Equal(r.Format(0), n.Format(0)) {
				t.Errorf("counters after release %s, want %s", counts(r), counts(n))
			}
			// Reclaim counts the port again, exactly like Allocate did.
			rc, err := Reclaim(r, q)
			wantErr(t, err, "")
			if !bytes.Equal(rc.Format(0), c.Format(0)) {
				t.Errorf("counters after reclaim %s, want %s", counts(rc), counts(c))
			}
		})
	}
}

func TestReleaseErrors(t *testing.T) {
	tests := []struct {
		name, network, plug string
		error               string
	}{
		{name: "network count at zero", network: netNAT, plug: `<plug type='network' bridge='virbr1'/>`,
			error: "the network's connection count is already 0"},
		{name: "dev not in pool", network: netDirect("vepa", "eth0:1"), plug: `<plug type='direct' dev='eth9' mode='vepa'/>`,
			error: "<plug dev='eth9'>: the network doesn't have dev 'eth9' in its interface pool"},
		{name: "dev count at zero", network: netDirect("vepa", "eth0"), plug: `<plug type='direct' dev='eth0' mode='vepa'/>`,
			error: "dev eth0 has no connections to release"},
		{name: "PCI device not in pool", network: netHostdev, plug: `<plug type='hostdev-pci'><address domain='0' bus='9' slot='0' function='0'/></plug>`,
			error: "the network doesn't have PCI device 0000:09:00.0 in its pool"},
		{name: "PCI count at zero", network: netHostdev, plug: `<plug type='hostdev-pci'><address domain='0' bus='2' slot='0x10' function='0'/></plug>`,
			error: "PCI device 0000:02:10.0 has no connections to release"},
		{name: "no plug", network: netNAT, error: "the port has no plug"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Release(mustNet(t, tt.network), mustPort(t, tt.plug))
			wantErr(t, err, tt.error)
		})
	}
}

func TestReclaim(t *testing.T) {
	tests := []struct {
		name, network, port string
		counts, error       string
	}{
		{name: "network plug", network: netNAT, port: `<plug type='network' bridge='virbr1'/>`, counts: "net=1"},
		{name: "bridge plug", network: netHostBridge, port: `<plug type='bridge' bridge='br0'/>`, counts: "net=1"},
		{name: "shared dev in use", network: netDirect("vepa", "eth0:2", "eth1"),
			port: `<plug type='direct' dev='eth0' mode='vepa'/>`, counts: "net=1 eth0=3 eth1=0"},
		{name: "passthrough dev free", network: netDirect("passthrough", "eth0:1", "eth1"),
			port: `<plug type='direct' dev='eth1' mode='passthrough'/>`, counts: "net=1 eth0=1 eth1=1"},
		{name: "passthrough dev in use", network: netDirect("passthrough", "eth0:1", "eth1"),
			port:  `<plug type='direct' dev='eth0' mode='passthrough'/>`,
			error: "<plug dev='eth0'>: the network claims dev eth0 is already in use by a different port"},
		{name: "private+802.1Qbh dev in use", network: netDirect("private", "eth0:1"),
			port:  qbh + `<plug type='direct' dev='eth0' mode='private'/>`,
			error: "claims dev eth0 is already in use by a different port"},
		{name: "private dev in use, shared", network: netDirect("private", "eth0:1"),
			port: `<plug type='direct' dev='eth0' mode='private'/>`, counts: "net=1 eth0=2"},
		{name: "hostdev free", network: netHostdev,
			port:   `<plug type='hostdev-pci' managed='yes'><address domain='0' bus='2' slot='0x10' function='1'/></plug>`,
			counts: "net=1 0000:02:10.0=0 0000:02:10.1=1"},
		{name: "hostdev in use", network: `<network><name>hd</name><forward mode='hostdev'>
			<address type='pci' domain='0' bus='2' slot='0x10' function='0' connections='1'/></forward></network>`,
			port:  `<plug type='hostdev-pci'><address domain='0' bus='2' slot='0x10' function='0'/></plug>`,
			error: "the network claims PCI device 0000:02:10.0 is already in use by a different port"},
		{name: "hostdev not in pool", network: netHostdev,
			port:  `<plug type='hostdev-pci'><address domain='0' bus='7' slot='0' function='0'/></plug>`,
			error: "the network doesn't have PCI device 0000:07:00.0 in its pool"},
		{name: "dev not in pool", network: netDirect("vepa", "eth0"),
			port:  `<plug type='direct' dev='eth7' mode='vepa'/>`,
			error: "the network doesn't have dev 'eth7' in its interface pool"},
		{name: "other bridge", network: netNAT, port: `<plug type='network' bridge='virbr0'/>`,
			error: "<plug bridge='virbr0'> is not the network's bridge 'virbr1'"},
		{name: "network plug on a host bridge", network: netHostBridge, port: `<plug type='network' bridge='br0'/>`,
			error: "<plug type='network'> does not fit a network with forward mode 'bridge' (a host bridge, br0)"},
		{name: "bridge plug on a managed network", network: netNAT, port: `<plug type='bridge' bridge='virbr1'/>`,
			error: "<plug type='bridge'> does not fit a network with forward mode 'nat'"},
		{name: "direct plug on a managed network", network: netNAT, port: `<plug type='direct' dev='eth0' mode='vepa'/>`,
			error: "<plug type='direct'> does not fit a network with forward mode 'nat'"},
		{name: "hostdev plug on a macvtap network", network: netDirect("vepa", "eth0"),
			port:  `<plug type='hostdev-pci'><address domain='0' bus='2' slot='0x10' function='0'/></plug>`,
			error: "<plug type='hostdev-pci'> does not fit a network with forward mode 'vepa'"},
		{name: "no plug", network: netNAT, error: "a reclaimed port must have its plug"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, p := mustNet(t, tt.network), mustPort(t, tt.port)
			nBefore, pBefore := n.Format(0), p.Format()
			c, err := Reclaim(n, p)
			if !bytes.Equal(n.Format(0), nBefore) || !bytes.Equal(p.Format(), pBefore) {
				t.Errorf("Reclaim modified its inputs")
			}
			wantErr(t, err, tt.error)
			if err == nil && counts(c) != tt.counts {
				t.Errorf("counters %s, want %s", counts(c), tt.counts)
			}
		})
	}
}

// Allocating the whole exclusive pool, releasing one port and allocating
// again hands out the freed device.
func TestExclusiveRoundTrip(t *testing.T) {
	n := mustNet(t, netDirect("passthrough", "eth0", "eth1"))
	n1, p1, err := allocate(t, n, mustPort(t, ""), 0)
	wantErr(t, err, "")
	n2, p2, err := allocate(t, n1, mustPort(t, ""), 0)
	wantErr(t, err, "")
	if p1.Plug.Dev != "eth0" || p2.Plug.Dev != "eth1" {
		t.Fatalf("devices %s %s", p1.Plug.Dev, p2.Plug.Dev)
	}
	_, _, err = allocate(t, n2, mustPort(t, ""), 0)
	wantErr(t, err, "none are available")
	n3, err := Release(n2, p1)
	wantErr(t, err, "")
	_, p3, err := allocate(t, n3, mustPort(t, ""), 0)
	wantErr(t, err, "")
	if p3.Plug.Dev != "eth0" {
		t.Errorf("device %s, want the released eth0", p3.Plug.Dev)
	}
	// The reclaimed port of eth1 conflicts with a second claim of eth1.
	if _, err := Reclaim(n2, p2); err == nil || !strings.Contains(err.Error(), "claims dev eth1 is already in use") {
		t.Errorf("double reclaim: %v", err)
	}
}

func TestCheckFloorNoFloor(t *testing.T) {
	// The daemon calls CheckFloor on allocated ports when their bandwidth
	// changes: no floor always passes, whatever the network.
	if err := CheckFloor(mustNet(t, netHostdev), mustPort(t, `<bandwidth><inbound average='1'/></bandwidth>`), 1<<40); err != nil {
		t.Error(err)
	}
}
