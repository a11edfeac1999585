package conf

import (
	"fmt"
	"strings"
)

// HonouredDnsmasqOptions are the <dnsmasq:option> values vnetd honours. vnetd
// runs no dnsmasq: an option is honoured only when vnetd's own servers already
// behave the way it asks, so keeping it changes nothing. Every other option
// is kept in the definition and formatted back, but a network carrying it
// refuses to start (CheckDnsmasqOptions) rather than silently ignore it.
var HonouredDnsmasqOptions = map[string]string{
	"dhcp-authoritative":  "vnetd's DHCPv4 server is always authoritative (NAKs foreign requests at once)",
	"strict-order":        "upstream servers are always tried in the order given",
	"bind-dynamic":        "vnetd's servers always bind to the network's bridge addresses only",
	"bind-interfaces":     "vnetd's servers always bind to the network's bridge addresses only",
	"except-interface=lo": "vnetd never serves on loopback",
	"dhcp-no-override":    "the boot file and next-server fields are never replaced by options",
	"domain-needed":       "same as <dns forwardPlainNames='no'> when that is set; refused otherwise",
}

// CheckDnsmasqOptions reports every <dnsmasq:option> that vnetd cannot honour
// for this network; a network with such options must not start.
func (n *Network) CheckDnsmasqOptions() error {
	var p problems
	for i, opt := range n.DnsmasqOptions {
		key := strings.TrimSpace(opt)
		path := fmt.Sprintf("network/dnsmasq:options/dnsmasq:option[%d]", i+1)
		if key == "domain-needed" && n.DNS.ForwardPlainNames != TristateNo {
			p.add(path, "%q is only honoured together with <dns forwardPlainNames='no'>", opt)
			continue
		}
		if _, ok := HonouredDnsmasqOptions[key]; !ok {
			p.add(path, "dnsmasq option %q is not implemented by vnetd, which runs no dnsmasq; remove it or express it in the network XML", opt)
		}
	}
	return p.err()
}
