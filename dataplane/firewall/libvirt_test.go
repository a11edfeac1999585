package firewall

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/conf"
)

// networkxml2firewallCases is libvirt v11.3.0's tests/networkxml2firewalltest.c
// list.
var networkxml2firewallCases = []string{
	"nat-default",
	"nat-tftp",
	"nat-many-ips",
	"nat-no-dhcp",
	"nat-ipv6",
	"nat-ipv6-masquerade",
	"route-default",
	"forward-dev",
	"isolated",
	"nat-port-range",
	"nat-port-range-ipv6",
}

// firewallCorpus finds libvirt's networkxml2firewalldata: under
// $VNETD_LIBVIRT_TESTDATA, else ../../../shared/conformance/libvirt. It is LGPL
// test data, read in place and never copied into the repository.
func firewallCorpus(t testing.TB) string {
	t.Helper()
	root := os.Getenv("VNETD_LIBVIRT_TESTDATA")
	if root == "" {
		root = filepath.Join("..", "..", "..", "shared", "conformance", "libvirt")
	}
	dir := filepath.Join(root, "tests", "networkxml2firewalldata")
	if _, err := os.Stat(filepath.Join(dir, "base.nftables")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("libvirt conformance corpus not found at %s (set VNETD_LIBVIRT_TESTDATA): %v", dir, err)
		}
		t.Skipf("libvirt conformance corpus not found at %s (set VNETD_LIBVIRT_TESTDATA); skipping", dir)
	}
	return dir
}

// ruleset is the state of nftables as a list of libvirt commands leaves it:
// per family ("ip", "ip6"), the chains in creation order with their
// declarations, and each chain's rules in evaluation order.
type ruleset map[string]*familyRules

type familyRules struct {
	chains []string            // "name" or "name { type … }"
	rules  map[string][]string // chain → rules
}

// parseCommands reads a libvirt *.nftables file: commands of one argument per
// line, continued with " \", with shell quoting around arguments that hold
// spaces or '!='.
func parseCommands(data string) [][]string {
	var cmds [][]string
	var cur []string
	for _, line := range strings.Split(data, "\n") {
		if line == "" && cur == nil {
			continue
		}
		arg, more := strings.CutSuffix(line, " \\")
		if len(arg) >= 2 && arg[0] == '\'' && arg[len(arg)-1] == '\'' {
			arg = arg[1 : len(arg)-1]
		}
		cur = append(cur, arg)
		if !more {
			cmds = append(cmds, cur)
			cur = nil
		}
	}
	if cur != nil {
		cmds = append(cmds, cur)
	}
	return cmds
}

// apply replays libvirt's nft commands on rs; tc commands are ignored (vnetd
// has no csum filter, see doc.go). table is the libvirt table name.
func (rs ruleset) apply(t *testing.T, file string, cmds [][]string) {
	t.Helper()
	for _, c := range cmds {
		if c[0] == "tc" {
			continue
		}
		if c[0] != "nft" {
			t.Fatalf("%s: unexpected command %q", file, c)
		}
		var args []string
		for _, a := range c[1:] {
			// "-ae insert" is one line: options, then the verb.
			if strings.HasPrefix(a, "-") {
				f := strings.Fields(a)
				args = append(args, f[1:]...)
				continue
			}
			args = append(args, a)
		}
		if len(args) < 4 {
			t.Fatalf("%s: short command %q", file, c)
		}
		verb, fam, table := args[0]+" "+args[1], args[2], args[3]
		if table != "libvirt_network" {
			t.Fatalf("%s: unexpected table %q", file, table)
		}
		fr := rs[fam]
		switch verb {
		case "list table":
		case "add table":
			if fr == nil {
				rs[fam] = &familyRules{rules: map[string][]string{}}
			}
		case "add chain":
			decl := strings.Join(args[4:], " ")
			fr.chains = append(fr.chains, decl)
		case "insert rule":
			chain := args[4]
			fr.rules[chain] = append([]string{strings.Join(args[5:], " ")}, fr.rules[chain]...)
		default:
			t.Fatalf("%s: unexpected command %q", file, c)
		}
	}
}

// planRuleset is the same view of one of our plans, in libvirt's syntax and
// under libvirt's table name.
func planRuleset(p *Plan) ruleset {
	rs := ruleset{}
	for _, t := range p.Tables {
		fr := &familyRules{rules: map[string][]string{}}
		for _, c := range t.Chains {
			decl := c.Name
			if c.Base != nil {
				decl += " " + c.Base.Spec()
			}
			fr.chains = append(fr.chains, decl)
			for _, r := range t.ChainRules(c.Name) {
				fr.rules[c.Name] = append(fr.rules[c.Name], r.String())
			}
		}
		rs[t.Family.String()] = fr
	}
	return rs
}

// TestNetworkxml2firewall compares Build with libvirt's expected nftables
// commands, rule for rule. libvirt's once-per-host table (base.nftables)
// stands for each of our per-network tables; its ip6 table only counts when the
// network has IPv6 rules, since vnetd creates an ip6 table only then.
func TestConformanceNetworkXML2Firewall(t *testing.T) {
	dir := firewallCorpus(t)
	base, err := os.ReadFile(filepath.Join(dir, "base.nftables"))
	if err != nil {
		t.Fatal(err)
	}
	xmls, _ := filepath.Glob(filepath.Join(dir, "*.xml"))
	if len(xmls) != len(networkxml2firewallCases) {
		t.Errorf("corpus has %d networks, the case list %d: update networkxml2firewallCases", len(xmls), len(networkxml2firewallCases))
	}

	equivalent := 0
	for _, name := range networkxml2firewallCases {
		ok := t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, name+".xml"))
			if err != nil {
				t.Fatal(err)
			}
			n, err := conf.Parse(data)
			if err != nil {
				t.Fatalf("conf.Parse: %v", err)
			}
			p, err := Build(n)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			want := ruleset{}
			want.apply(t, "base.nftables", parseCommands(string(base)))
			netFile := name + "-linux.nftables"
			netData, err := os.ReadFile(filepath.Join(dir, netFile))
			if err != nil {
				t.Fatal(err)
			}
			netCmds := parseCommands(string(netData))
			want.apply(t, netFile, netCmds)
			// The families libvirt writes this network's rules into.
			var fams []string
			for _, c := range netCmds {
				if c[0] == "nft" && len(c) > 3 && c[2] == "rule" && !slices.Contains(fams, c[3]) {
					fams = append(fams, c[3])
				}
			}
			got := planRuleset(p)
			for fam := range want {
				if !slices.Contains(fams, fam) {
					delete(want, fam)
				}
			}
			if diff := diffRulesets(want, got); diff != "" {
				t.Errorf("rules differ from libvirt's (- libvirt, + vnetd):\n%s", diff)
			}
		})
		if ok {
			equivalent++
		}
	}
	os.Stdout.WriteString(fmt.Sprintf("networkxml2firewall: %d/%d rule-for-rule equivalent\n", equivalent, len(networkxml2firewallCases)))
}

func diffRulesets(want, got ruleset) string {
	var sb strings.Builder
	for _, fam := range []string{"ip", "ip6"} {
		w, g := want[fam], got[fam]
		switch {
		case w == nil && g == nil:
			continue
		case w == nil:
			fmt.Fprintf(&sb, "+ table %s (libvirt has no rules for this family)\n", fam)
			continue
		case g == nil:
			fmt.Fprintf(&sb, "- table %s (vnetd has no table for this family)\n", fam)
			continue
		}
		if !slices.Equal(w.chains, g.chains) {
			fmt.Fprintf(&sb, "%s chains:\n- %q\n+ %q\n", fam, w.chains, g.chains)
		}
		var names []string
		for c := range w.rules {
			names = append(names, c)
		}
		for c := range g.rules {
			if _, ok := w.rules[c]; !ok {
				names = append(names, c)
			}
		}
		slices.Sort(names)
		for _, c := range names {
			if slices.Equal(w.rules[c], g.rules[c]) {
				continue
			}
			fmt.Fprintf(&sb, "%s %s:\n", fam, c)
			for _, r := range w.rules[c] {
				fmt.Fprintf(&sb, "- %s\n", r)
			}
			for _, r := range g.rules[c] {
				fmt.Fprintf(&sb, "+ %s\n", r)
			}
		}
	}
	return sb.String()
}
