package firewall

import (
	"fmt"
	"net/netip"
	"strings"
)

// String renders the rule in nft syntax as libvirt writes it on nft's command
// line, e.g. `ip saddr 192.168.122.0/24 iif virbr0 counter accept`.
func (r Rule) String() string { return r.text(false) }

// text renders the rule; quoted puts interface names in double quotes, as
// `nft list ruleset` does, so that any interface name reads back.
func (r Rule) text(quoted bool) string {
	var w []string
	iface := func(name string) string {
		if quoted {
			return `"` + name + `"`
		}
		return name
	}
	for _, m := range r.Match {
		switch m.Kind {
		case MatchIIF:
			w = append(w, "iif", iface(m.Iface))
		case MatchOIF:
			w = append(w, "oif", iface(m.Iface))
		case MatchIIFName:
			w = append(w, "iifname", iface(m.Iface))
		case MatchOIFName:
			w = append(w, "oifname", iface(m.Iface))
		case MatchL4Proto:
			w = append(w, "meta", "l4proto", m.Proto.String())
		case MatchSaddr, MatchDaddr:
			dir := "saddr"
			if m.Kind == MatchDaddr {
				dir = "daddr"
			}
			w = append(w, familyOf(m.Prefix).String(), dir)
			if m.Not {
				w = append(w, "!=")
			}
			w = append(w, m.Prefix.String())
		case MatchRelatedEstablished:
			w = append(w, "ct", "state", "related,established")
		default:
			w = append(w, fmt.Sprintf("<match %d>", m.Kind))
		}
	}
	if r.Counter {
		w = append(w, "counter")
	}
	w = append(w, r.Action.String())
	return strings.Join(w, " ")
}

// String renders the statement in nft syntax.
func (a Action) String() string {
	ports := ""
	if a.PortStart != 0 || a.PortEnd != 0 {
		ports = fmt.Sprintf(":%d-%d", a.PortStart, a.PortEnd)
	}
	switch a.Verdict {
	case Accept:
		return "accept"
	case Reject:
		return "reject"
	case Return:
		return "return"
	case Jump:
		return "jump " + a.Chain
	case Masquerade:
		if ports != "" {
			return "masquerade to " + ports
		}
		return "masquerade"
	case SNAT:
		addr := addrString(a.AddrStart)
		if a.AddrEnd.IsValid() {
			addr += "-" + addrString(a.AddrEnd)
		}
		return "snat to " + addr + ports
	}
	return fmt.Sprintf("<verdict %d>", a.Verdict)
}

// addrString brackets IPv6 addresses, which nft needs before a ":port".
func addrString(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// Spec is the base chain's nft declaration, as in libvirt's `nft add chain`.
func (b *BaseChain) Spec() string {
	return fmt.Sprintf("{ type %s hook %s priority %d; policy accept; }", b.Type, b.Hook, b.Priority)
}

// NFT renders the plan as an `nft -f` file. Loading it installs the same
// tables, chains and rules as Apply, in one transaction: each table is created
// if missing, deleted with everything in it, and created afresh. (Apply also
// deletes the bridge's table of a family the plan has none for, left from an
// earlier configuration; the file leaves such a table alone.) A plan without
// tables renders as nothing.
func (p *Plan) NFT() string {
	if len(p.Tables) == 0 {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "# vnetd firewall of network %q (bridge %s)\n", p.Network, p.Bridge)
	for _, t := range p.Tables {
		// "table" alone is nft's "add table": it makes the delete below
		// succeed whether or not the table was there.
		fmt.Fprintf(&sb, "\ntable %s %s\ndelete table %s %s\ntable %s %s {\n", t.Family, t.Name, t.Family, t.Name, t.Family, t.Name)
		for i, c := range t.Chains {
			if i > 0 {
				sb.WriteString("\n")
			}
			fmt.Fprintf(&sb, "\tchain %s {\n", c.Name)
			if c.Base != nil {
				fmt.Fprintf(&sb, "\t\ttype %s hook %s priority %d; policy accept;\n", c.Base.Type, c.Base.Hook, c.Base.Priority)
			}
			for _, r := range t.ChainRules(c.Name) {
				fmt.Fprintf(&sb, "\t\t%s\n", r.text(true))
			}
			sb.WriteString("\t}\n")
		}
		sb.WriteString("}\n")
	}
	return sb.String()
}
