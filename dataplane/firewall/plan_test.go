package firewall

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/conf"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// parseNetwork parses and validates one of our own test networks.
func parseNetwork(t testing.TB, xml string) *conf.Network {
	t.Helper()
	n, err := conf.Parse([]byte(xml))
	if err != nil {
		t.Fatalf("conf.Parse: %v", err)
	}
	if err := n.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return n
}

// TestGolden renders our own networks (testdata/*.xml) as nft files and
// compares them with testdata/*.nft; -update rewrites those.
func TestGolden(t *testing.T) {
	xmls, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil || len(xmls) == 0 {
		t.Fatalf("no testdata/*.xml: %v", err)
	}
	for _, x := range xmls {
		name := strings.TrimSuffix(filepath.Base(x), ".xml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(x)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Build(parseNetwork(t, string(data)))
			if err != nil {
				t.Fatal(err)
			}
			got := p.NFT()
			golden := filepath.Join("testdata", name+".nft")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs (go test -update rewrites it); got:\n%s", golden, got)
			}
		})
	}
}

const natXML = `<network>
  <name>default</name>
  <bridge name='virbr0'/>
  <forward mode='nat'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'/>
</network>`

func TestBuildModes(t *testing.T) {
	for _, tc := range []struct {
		name string
		xml  string
		// tables is the families of the tables, "" for none.
		tables string
		// rules counts the rules per family, forward jumps included.
		rules map[Family]int
	}{
		{
			name:   "isolated",
			xml:    `<network><name>n</name><bridge name='br1'/><ip address='10.0.0.1' prefix='24'/></network>`,
			tables: "ip",
			rules:  map[Family]int{IPv4: 3 + 3},
		},
		{
			name:   "isolated with IPv6",
			xml:    `<network><name>n</name><bridge name='br1'/><ip family='ipv6' address='fd00::1' prefix='64'/></network>`,
			tables: "ip ip6",
			rules:  map[Family]int{IPv4: 6, IPv6: 6},
		},
		{
			name:   "isolated ipv6=yes without IPv6 address",
			xml:    `<network ipv6='yes'><name>n</name><bridge name='br1'/></network>`,
			tables: "ip ip6",
			rules:  map[Family]int{IPv4: 6, IPv6: 6},
		},
		{
			name:   "nat",
			xml:    natXML,
			tables: "ip",
			rules:  map[Family]int{IPv4: 6 + 7},
		},
		{
			name:   "nat ipv6=yes, IPv4 only: IPv6 triple only",
			xml:    `<network><name>n</name><bridge name='br1'/><forward><nat ipv6='yes'/></forward><ip address='10.0.0.1' prefix='24'/></network>`,
			tables: "ip",
			rules:  map[Family]int{IPv4: 6 + 7},
		},
		{
			name:   "route, IPv6 only",
			xml:    `<network><name>n</name><bridge name='br1'/><forward mode='route'/><ip family='ipv6' address='fd00::1' prefix='64'/></network>`,
			tables: "ip ip6",
			rules:  map[Family]int{IPv4: 6, IPv6: 6 + 2},
		},
		{
			name: "open: no rules at all",
			xml:  `<network><name>n</name><bridge name='br1'/><forward mode='open'/><ip address='10.0.0.1' prefix='24'/></network>`,
		},
		{
			name: "bridge pool",
			xml:  `<network><name>n</name><forward mode='bridge'><interface dev='eth0'/></forward></network>`,
		},
		{
			name: "bridge with host bridge",
			xml:  `<network><name>n</name><bridge name='br0'/><forward mode='bridge'/></network>`,
		},
		{
			name: "vepa",
			xml:  `<network><name>n</name><forward mode='vepa'><interface dev='eth0'/></forward></network>`,
		},
		{
			name: "passthrough",
			xml:  `<network><name>n</name><forward mode='passthrough'><interface dev='eth0'/></forward></network>`,
		},
		{
			name: "private",
			xml:  `<network><name>n</name><forward mode='private'><interface dev='eth0'/></forward></network>`,
		},
		{
			name: "hostdev",
			xml:  `<network><name>n</name><forward mode='hostdev' managed='yes'><pf dev='eth0'/></forward></network>`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Build(parseNetwork(t, tc.xml))
			if err != nil {
				t.Fatal(err)
			}
			var fams []string
			for _, tb := range p.Tables {
				fams = append(fams, tb.Family.String())
				if want := TableName(p.Bridge); tb.Name != want {
					t.Errorf("table %s, want %s", tb.Name, want)
				}
				if got := len(tb.Rules); got != tc.rules[tb.Family] {
					t.Errorf("%s: %d rules, want %d:\n%s", tb.Family, got, tc.rules[tb.Family], p.NFT())
				}
			}
			if got := strings.Join(fams, " "); got != tc.tables {
				t.Errorf("tables %q, want %q", got, tc.tables)
			}
			if len(p.Tables) == 0 && p.NFT() != "" {
				t.Errorf("NFT of an empty plan: %q", p.NFT())
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(n *conf.Network)
		want string
	}{
		{"no bridge", func(n *conf.Network) { n.Bridge.Name = "" }, "no bridge name"},
		{"bridge template", func(n *conf.Network) { n.Bridge.Name = "virbr%d" }, "table name"},
		{"bridge with @", func(n *conf.Network) { n.Bridge.Name = "br@0" }, "table name"},
		{"bridge too long", func(n *conf.Network) { n.Bridge.Name = "abcdefghijklmnop" }, "longer than 15"},
		{"bridge with /", func(n *conf.Network) { n.Bridge.Name = "a/b" }, "cannot take"},
		{"forward dev with quote", func(n *conf.Network) {
			n.Forward.Interfaces = []conf.ForwardInterface{{Dev: `et"h0`}}
		}, "forward dev"},
		{"forward dev with space", func(n *conf.Network) {
			n.Forward.Interfaces = []conf.ForwardInterface{{Dev: "eth 0"}}
		}, "forward dev"},
		{"port range start = end", func(n *conf.Network) {
			n.Forward.NAT = &conf.NAT{PortStart: 2000, PortEnd: 2000}
		}, "invalid port range"},
		{"port range without end", func(n *conf.Network) {
			n.Forward.NAT = &conf.NAT{PortStart: 2000}
		}, "invalid port range"},
		{"class D address without netmask", func(n *conf.Network) {
			n.IPs = []conf.IP{{Address: netip.MustParseAddr("224.0.0.1")}}
		}, "invalid prefix or netmask"},
		{"ip without address", func(n *conf.Network) {
			n.IPs = []conf.IP{{Prefix: 24}}
		}, "invalid prefix or netmask"},
		{"invalid mode", func(n *conf.Network) { n.Forward.Mode = 0 }, "invalid forward mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := parseNetwork(t, natXML)
			tc.edit(n)
			p, err := Build(n)
			if err == nil {
				t.Fatalf("no error; plan:\n%s", p.NFT())
			}
			if !strings.HasPrefix(err.Error(), `network "default": firewall: `) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want the network named and %q", err, tc.want)
			}
		})
	}
	if _, err := Build(nil); err == nil {
		t.Error("Build(nil): no error")
	}
}

// TestBuildNATWithoutAddresses: the parser refuses such a network, but Build
// must not depend on that: only the general rules remain.
func TestBuildNATWithoutAddresses(t *testing.T) {
	n := parseNetwork(t, natXML)
	n.IPs = nil
	p, err := Build(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Tables) != 1 || len(p.Tables[0].Rules) != 6 {
		t.Errorf("plan:\n%s", p.NFT())
	}
}

// TestBuildPortRangeOnlyWhereUsed: libvirt checks the NAT port range only where
// it uses it, so an isolated or route network never fails over it.
func TestBuildPortRangeOnlyWhereUsed(t *testing.T) {
	n := parseNetwork(t, `<network><name>n</name><bridge name='br1'/><forward mode='nat'/><ip family='ipv6' address='fd00::1' prefix='64'/></network>`)
	n.Forward.NAT = &conf.NAT{PortStart: 5, PortEnd: 5}
	if _, err := Build(n); err != nil {
		t.Errorf("IPv6-only NAT network (routed): %v", err)
	}
}

func TestRuleText(t *testing.T) {
	net4 := netip.MustParsePrefix("192.168.122.0/24")
	for _, tc := range []struct {
		rule Rule
		want string
	}{
		{Rule{Match: []Match{{Kind: MatchIIF, Iface: "virbr0"}}, Counter: true, Action: Action{Verdict: Reject}}, "iif virbr0 counter reject"},
		{Rule{Match: []Match{{Kind: MatchIIFName, Iface: "eth0"}, {Kind: MatchOIF, Iface: "virbr0"}, {Kind: MatchDaddr, Prefix: net4}, {Kind: MatchRelatedEstablished}}, Counter: true, Action: Action{Verdict: Accept}},
			"iifname eth0 oif virbr0 ip daddr 192.168.122.0/24 ct state related,established counter accept"},
		{Rule{Match: []Match{{Kind: MatchL4Proto, Proto: ProtoTCP}, {Kind: MatchSaddr, Prefix: net4}, {Kind: MatchDaddr, Prefix: net4, Not: true}, {Kind: MatchOIFName, Iface: "eth0"}}, Counter: true, Action: Action{Verdict: Masquerade, PortStart: 1024, PortEnd: 65535}},
			"meta l4proto tcp ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 oifname eth0 counter masquerade to :1024-65535"},
		{Rule{Match: []Match{{Kind: MatchSaddr, Prefix: netip.MustParsePrefix("fd00::/64")}}, Action: Action{Verdict: Masquerade}}, "ip6 saddr fd00::/64 masquerade"},
		{Rule{Counter: true, Action: Action{Verdict: SNAT, AddrStart: netip.MustParseAddr("10.0.0.1")}}, "counter snat to 10.0.0.1"},
		{Rule{Action: Action{Verdict: SNAT, AddrStart: netip.MustParseAddr("10.0.0.1"), AddrEnd: netip.MustParseAddr("10.0.0.9"), PortStart: 100, PortEnd: 200}}, "snat to 10.0.0.1-10.0.0.9:100-200"},
		{Rule{Action: Action{Verdict: SNAT, AddrStart: netip.MustParseAddr("fd00::1"), PortStart: 100, PortEnd: 200}}, "snat to [fd00::1]:100-200"},
		{Rule{Counter: true, Action: Action{Verdict: Jump, Chain: ChainCross}}, "counter jump guest_cross"},
		{Rule{Match: []Match{{Kind: MatchDaddr, Prefix: localBroadcast}}, Action: Action{Verdict: Return}}, "ip daddr 255.255.255.255/32 return"},
	} {
		if got := tc.rule.String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

// TestSNATOnlyForItsFamily: <nat><address> is IPv4, so with ipv6='yes' the
// IPv6 subnets are masqueraded, as libvirt does.
func TestSNATOnlyForItsFamily(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "nat-ipv6-snat.xml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(parseNetwork(t, string(data)))
	if err != nil {
		t.Fatal(err)
	}
	verdicts := map[Family][]Verdict{}
	for _, tb := range p.Tables {
		for _, r := range tb.ChainRules(ChainNAT) {
			if !slices.Contains(verdicts[tb.Family], r.Action.Verdict) {
				verdicts[tb.Family] = append(verdicts[tb.Family], r.Action.Verdict)
			}
		}
	}
	if !slices.Equal(verdicts[IPv4], []Verdict{Return, SNAT}) || !slices.Equal(verdicts[IPv6], []Verdict{Return, Masquerade}) {
		t.Errorf("guest_nat verdicts %v", verdicts)
	}
}
