package conf

import (
	"errors"
	"fmt"
	"strings"
)

// Validate applies every rule of libvirt's parser and of its define/create
// path (libvirt-behavior.md §1a–1c) to n and reports all problems at once,
// each naming its element path. Parse already enforced the parser rules on
// XML input; Validate is what a definition built in Go must pass too.
func (n *Network) Validate() error {
	return errors.Join(n.parseRules(), n.defineRules())
}

// defineRules is libvirt's networkValidate plus the bandwidth limits of
// netdev_bandwidth_conf.c and the checks libvirt leaves to start time but that
// need nothing but the definition.
func (n *Network) defineRules() error {
	var p problems
	mode := n.Forward.Mode
	if strings.ContainsAny(n.Name, "\n\x00") {
		p.add("network/name", "name must not contain a newline or NUL")
	}
	n.bridgeNameRules(&p)
	if !mode.Managed() && mode.Valid() {
		unsupported := func(path, elem string) {
			p.add(path, "<%s> is not supported in a network with forward mode='%s' (it only hands out devices)", elem, mode)
		}
		if n.MAC != nil {
			unsupported("network/mac", "mac")
		}
		if len(n.IPs) > 0 {
			unsupported("network/ip[1]", "ip")
		}
		if len(n.DNS.TXTs) > 0 || len(n.DNS.SRVs) > 0 || len(n.DNS.Hosts) > 0 {
			unsupported("network/dns", "dns")
		}
		if n.Domain != nil {
			unsupported("network/domain", "domain")
		}
		if len(n.Routes) > 0 {
			unsupported("network/route[1]", "route")
		}
	}
	bandwidthAllowed := mode.Managed() || (mode == ForwardBridge && n.Bridge.Name != "")
	if n.Bandwidth != nil {
		if !bandwidthAllowed {
			p.add("network/bandwidth", "bandwidth is not supported in a network with forward mode='%s'%s", mode, bridgeHint(mode))
		}
		n.Bandwidth.limits(&p, "network/bandwidth")
	}
	n.forwardPoolRules(&p)
	n.dhcpRules(&p)
	n.vlanRules(&p)
	defaults := 0
	names := map[string]bool{}
	for i := range n.PortGroups {
		pg := &n.PortGroups[i]
		path := fmt.Sprintf("network/portgroup[%d]", i+1)
		if names[pg.Name] {
			p.add(path, "a second portgroup named %q", pg.Name)
		}
		names[pg.Name] = true
		if pg.Default {
			defaults++
			if defaults == 2 {
				p.add(path, "a second default portgroup (%q): only one may be default", pg.Name)
			}
		}
		if pg.Bandwidth != nil {
			if !bandwidthAllowed || mode == ForwardHostdev {
				p.add(path+"/bandwidth", "bandwidth is not supported in a portgroup of a network with forward mode='%s'", mode)
			}
			pg.Bandwidth.limits(&p, path+"/bandwidth")
		}
	}
	if n.MTU != 0 {
		if n.MTU < 68 {
			p.add("network/mtu", "size %d is below the minimum of 68", n.MTU)
		} else if n.MTU < 1280 && n.hasIPv6() {
			p.add("network/mtu", "size %d is below IPv6's minimum of 1280 and the network has IPv6 addresses", n.MTU)
		}
	}
	for i := range n.IPs {
		ip := &n.IPs[i]
		path := fmt.Sprintf("network/ip[%d]", i+1)
		if ip.LocalPTR == TristateYes {
			bits, err := ip.PrefixLen()
			if err == nil && ip.Address.Is4() && (bits%8 != 0 || bits == 0 || bits > 24) {
				p.add(path, "localPtr='yes' needs an IPv4 prefix of 8, 16 or 24 to derive a PTR domain, not %d", bits)
			}
			if err == nil && ip.Address.Is6() && (bits%4 != 0 || bits == 0 || bits >= 128) {
				p.add(path, "localPtr='yes' needs an IPv6 prefix that is a multiple of 4 below 128, not %d", bits)
			}
		}
		subnet, err := ip.Subnet()
		if err != nil || ip.DHCP == nil {
			continue
		}
		for j, h := range ip.DHCP.Hosts {
			if h.IP.IsValid() && h.IP.BitLen() == subnet.Addr().BitLen() && !subnet.Contains(h.IP) {
				p.add(fmt.Sprintf("%s/dhcp/host[%d]", path, j+1), "ip %s is outside the network %s and could never be handed out", h.IP, subnet)
			}
		}
	}
	return p.err()
}

func bridgeHint(mode ForwardMode) string {
	if mode == ForwardBridge {
		return " without a bridge name"
	}
	return ""
}

func (n *Network) hasIPv6() bool {
	for i := range n.IPs {
		if n.IPs[i].Address.Is6() {
			return true
		}
	}
	return false
}

// bridgeNameRules checks <bridge name>: a kernel interface name, or a
// template with one %d for the define-time allocation.
func (n *Network) bridgeNameRules(p *problems) {
	name := n.Bridge.Name
	if name == "" {
		return
	}
	const path = "network/bridge"
	if c := strings.Count(name, "%"); c > 0 && (c != 1 || strings.Count(name, "%d") != 1) {
		p.add(path, "name %q: only a single %%d template is allowed", name)
		return
	}
	probe := strings.Replace(name, "%d", "256", 1)
	switch {
	case len(probe) > maxBridgeNameLen:
		p.add(path, "name %q is longer than the kernel's %d characters", name, maxBridgeNameLen)
	case name == "." || name == "..":
		p.add(path, "name %q is not an interface name", name)
	case strings.ContainsAny(name, "/: \t\n\x00"):
		p.add(path, "name %q must not contain '/', ':' or white space", name)
	}
}

// limits checks rates against what tc can take.
func (b *Bandwidth) limits(p *problems, path string) {
	for _, dir := range b.directions() {
		r := dir.r
		if r == nil {
			continue
		}
		for _, v := range []struct {
			attr string
			v    uint64
		}{{"average", r.Average}, {"peak", r.Peak}, {"floor", r.Floor}} {
			if v.v > maxRate {
				p.add(path+"/"+dir.name, "%s %d kB/s is over the limit of %d", v.attr, v.v, uint64(maxRate))
			}
		}
		if r.Burst > maxBurst {
			p.add(path+"/"+dir.name, "burst %d kB is over the limit of %d", r.Burst, maxBurst)
		}
	}
}

func (n *Network) forwardPoolRules(p *problems) {
	f := &n.Forward
	const path = "network/forward"
	kinds := 0
	for _, used := range []bool{len(f.Interfaces) > 0, len(f.Addresses) > 0, f.PF != ""} {
		if used {
			kinds++
		}
	}
	if kinds > 1 {
		p.add(path, "<pf>, <interface> and <address> are mutually exclusive")
	}
	if f.Mode == ForwardHostdev && len(f.Interfaces) > 0 {
		p.add(path, "mode='hostdev' takes PCI <address>es or a <pf>, not <interface>s")
	}
	if f.Mode != ForwardHostdev && len(f.Addresses) > 0 {
		p.add(path, "PCI <address>es are only allowed in mode='hostdev', not mode='%s'", f.Mode)
	}
	if f.PF != "" && !(f.Mode == ForwardHostdev || f.Mode == ForwardPassthrough || f.Mode == ForwardPrivate || f.Mode == ForwardVEPA || f.Mode == ForwardBridge) {
		p.add(path, "<pf> is not allowed in mode='%s'", f.Mode)
	}
}

// dhcpRules: one DHCP service per address family (dnsmasq's limit that
// libvirt kept, and one server per family is what vnetd runs).
func (n *Network) dhcpRules(p *problems) {
	first := map[bool]int{}
	for i := range n.IPs {
		ip := &n.IPs[i]
		if !ip.HasDHCP() {
			continue
		}
		v6 := ip.Address.Is6()
		if j, dup := first[v6]; dup {
			fam := "IPv4"
			if v6 {
				fam = "IPv6"
			}
			p.add(fmt.Sprintf("network/ip[%d]/dhcp", i+1), "a second %s <dhcp> (ip[%d] has one already): only one %s address may serve DHCP", fam, j+1, fam)
			continue
		}
		first[v6] = i
	}
}

// vlanRules: only device pools that pass tags through and Open vSwitch or
// plain bridges can carry a VLAN configuration.
func (n *Network) vlanRules(p *problems) {
	mode := n.Forward.Mode
	ovs := n.VirtualPort != nil && n.VirtualPort.Type == VirtualPortOpenvswitch
	allowed := mode == ForwardHostdev || mode == ForwardPassthrough || (mode == ForwardBridge && (ovs || n.VirtualPort == nil))
	if n.VLAN != nil && len(n.VLAN.Tags) > 0 && !allowed {
		p.add("network/vlan", "<vlan> is not supported in a network with forward mode='%s'", mode)
	}
	for i := range n.PortGroups {
		pg := &n.PortGroups[i]
		if pg.VLAN != nil && len(pg.VLAN.Tags) > 0 && !allowed {
			p.add(fmt.Sprintf("network/portgroup[%d]/vlan", i+1), "<vlan> is not supported in a network with forward mode='%s'", mode)
		}
	}
}
