package radvd

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/vnetd/vnetd/conf"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

var testMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func parseNet(t testing.TB, path string) *conf.Network {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := conf.Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

// TestBuildRAGolden: every network under testdata/networks gives the
// advertisement in testdata/golden/NAME.txt: its bytes as
// ndp.MarshalMessage writes them (checksum left to the kernel) and what
// ndp.ParseMessage reads back from them.
func TestBuildRAGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/networks/*.xml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test networks: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".xml")
		t.Run(name, func(t *testing.T) {
			p, err := ParamsFromNetwork(parseNet(t, f), testMAC)
			if err != nil {
				t.Fatal(err)
			}
			got := renderGolden(t, BuildRA(p))
			golden := filepath.Join("testdata", "golden", name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./radvd -run TestBuildRAGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("advertisement of %s differs from %s:\n got:\n%s\nwant:\n%s", f, golden, got, want)
			}
		})
	}
}

// renderGolden is the hex of the marshalled advertisement and its decoding.
func renderGolden(t testing.TB, ra *ndp.RouterAdvertisement) string {
	t.Helper()
	b, err := ndp.MarshalMessage(ra)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	sb.WriteString("# ndp.MarshalMessage\n")
	for i := 0; i < len(b); i += 16 {
		line := b[i:min(i+16, len(b))]
		for j, c := range line {
			if j > 0 {
				sb.WriteByte(' ')
			}
			fmt.Fprintf(&sb, "%02x", c)
		}
		sb.WriteByte('\n')
	}
	m, err := ndp.ParseMessage(b)
	if err != nil {
		t.Fatalf("parsing back: %v", err)
	}
	sb.WriteString("# ndp.ParseMessage\n")
	sb.WriteString(describeRA(m.(*ndp.RouterAdvertisement)))
	return sb.String()
}

// describeRA renders an advertisement as text, one field a line.
func describeRA(ra *ndp.RouterAdvertisement) string {
	var sb strings.Builder
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	secs := func(d time.Duration) string { return fmt.Sprintf("%ds", int64(d/time.Second)) }
	fmt.Fprintf(&sb, "hop-limit %d\nmanaged %s\nother %s\npreference %s\nrouter-lifetime %s\nreachable %s\nretransmit %s\n",
		ra.CurrentHopLimit, yn(ra.ManagedConfiguration), yn(ra.OtherConfiguration), ra.RouterSelectionPreference,
		secs(ra.RouterLifetime), ra.ReachableTime, ra.RetransmitTimer)
	for _, o := range ra.Options {
		switch o := o.(type) {
		case *ndp.LinkLayerAddress:
			fmt.Fprintf(&sb, "source-link-layer %s\n", o.Addr)
		case *ndp.MTU:
			fmt.Fprintf(&sb, "mtu %d\n", o.MTU)
		case *ndp.PrefixInformation:
			fmt.Fprintf(&sb, "prefix %s/%d on-link %s autonomous %s valid %s preferred %s\n", o.Prefix, o.PrefixLength,
				yn(o.OnLink), yn(o.AutonomousAddressConfiguration), secs(o.ValidLifetime), secs(o.PreferredLifetime))
		case *ndp.RecursiveDNSServer:
			fmt.Fprintf(&sb, "rdnss %v lifetime %s\n", o.Servers, secs(o.Lifetime))
		case *ndp.DNSSearchList:
			fmt.Fprintf(&sb, "dnssl %v lifetime %s\n", o.DomainNames, secs(o.Lifetime))
		default:
			fmt.Fprintf(&sb, "option %d %#v\n", o.Code(), o)
		}
	}
	return sb.String()
}

func TestParamsFromNetwork(t *testing.T) {
	pfx := func(s string, auto bool) Prefix {
		return Prefix{Prefix: netip.MustParsePrefix(s), OnLink: true, Autonomous: auto, ValidLifetime: ValidLifetime, PreferredLifetime: PreferredLifetime}
	}
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	base := Params{RouterLifetime: RouterLifetime, HopLimit: CurHopLimit, DNSLifetime: DNSLifetime}
	with := func(f func(*Params)) Params {
		p := base
		f(&p)
		return p
	}
	tests := []struct {
		name string
		file string
		edit func(*conf.Network)
		want Params
	}{
		{"slaac", "slaac", nil, with(func(p *Params) {
			p.MTU = 1400
			p.Prefixes = []Prefix{pfx("fd00:10::/64", true)}
			p.RDNSS = addrs("fd00:10::1")
			p.DNSSL = []string{"example.test"}
		})},
		{"stateful: M and O, prefix not autonomous, trailing dot of the domain dropped", "stateful", nil, with(func(p *Params) {
			p.Managed, p.Other = true, true
			p.Prefixes = []Prefix{pfx("2001:db8:ca2:2::/64", false)}
			p.RDNSS = addrs("2001:db8:ca2:2::1")
			p.DNSSL = []string{"stateful.test"}
		})},
		{"isolated: router lifetime 0", "isolated", nil, with(func(p *Params) {
			p.RouterLifetime = 0
			p.Prefixes = []Prefix{pfx("fd00:30::/64", true)}
			p.RDNSS = addrs("fd00:30::1")
		})},
		{"item 17: only the DHCP <ip> is advertised, its address is the RDNSS", "mixed", nil, with(func(p *Params) {
			p.Managed, p.Other = true, true
			p.Prefixes = []Prefix{pfx("fd00:41::/64", false)}
			p.RDNSS = addrs("fd00:41::1")
		})},
		{"every <ip> a prefix, autonomous only when /64, default /64", "multi-slaac", nil, with(func(p *Params) {
			p.Prefixes = []Prefix{pfx("fd00:50::/64", true), pfx("fd00:51::/56", false), pfx("fd00:52::/64", true)}
			p.RDNSS = addrs("fd00:50::1")
		})},
		{"dns disabled: neither RDNSS nor DNSSL", "no-dns", nil, with(func(p *Params) {
			p.MTU = 1280
			p.Prefixes = []Prefix{pfx("fd00:60::/64", true)}
		})},
		{"MTU below 1280: no MTU option", "no-dns", func(n *conf.Network) { n.MTU = 1000 }, with(func(p *Params) {
			p.Prefixes = []Prefix{pfx("fd00:60::/64", true)}
		})},
		{"empty <dhcp/> hands out nothing: SLAAC", "empty-dhcp", nil, with(func(p *Params) {
			p.MTU = 9000
			p.Prefixes = []Prefix{pfx("fd00:70::/64", true)}
			p.RDNSS = addrs("fd00:70::1")
		})},
		{"same /64 twice: one prefix", "multi-slaac", func(n *conf.Network) { n.IPs[1].Address = netip.MustParseAddr("fd00:50::2"); n.IPs[1].Prefix = 64 }, with(func(p *Params) {
			p.Prefixes = []Prefix{pfx("fd00:50::/64", true), pfx("fd00:52::/64", true)}
			p.RDNSS = addrs("fd00:50::1")
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := parseNet(t, filepath.Join("testdata", "networks", tc.file+".xml"))
			if tc.edit != nil {
				tc.edit(n)
			}
			got, err := ParamsFromNetwork(n, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParamsFromNetworkErrors(t *testing.T) {
	v4 := parseNet(t, "../testdata/networks/default.xml")
	if _, err := ParamsFromNetwork(v4, nil); !errors.Is(err, ErrNoIPv6) {
		t.Errorf("IPv4-only network: %v, want ErrNoIPv6", err)
	}
	if _, err := New(Config{Network: v4, Bridge: "virbr0"}); !errors.Is(err, ErrNoIPv6) {
		t.Errorf("New on an IPv4-only network: %v, want ErrNoIPv6", err)
	}
	n := parseNet(t, "testdata/networks/slaac.xml")
	n.Domain.Name = strings.Repeat("a", 64) + ".test"
	if _, err := ParamsFromNetwork(n, nil); err == nil || !strings.Contains(err.Error(), "network slaac") {
		t.Errorf("domain label of 64 characters: %v, want an error naming the network", err)
	}
	if _, err := ParamsFromNetwork(nil, nil); err == nil {
		t.Error("nil network accepted")
	}
}

// TestBuildRAWithdrawn: an update that drops a prefix and the DNS options
// announces them with lifetime 0, and bringing one back stops that.
func TestBuildRAWithdrawn(t *testing.T) {
	old, err := ParamsFromNetwork(parseNet(t, "testdata/networks/slaac.xml"), testMAC)
	if err != nil {
		t.Fatal(err)
	}
	cur := old
	cur.Prefixes = []Prefix{{Prefix: netip.MustParsePrefix("fd00:11::/64"), OnLink: true, Autonomous: true, ValidLifetime: ValidLifetime, PreferredLifetime: PreferredLifetime}}
	cur.RDNSS = []netip.Addr{netip.MustParseAddr("fd00:11::1")}
	cur.DNSSL = nil
	w := withdrawn(Params{}, old, cur)
	got := describeRA(BuildRA(cur.with(w)))
	want := `hop-limit 64
managed no
other no
preference Medium
router-lifetime 1800s
reachable 0s
retransmit 0s
source-link-layer 52:54:00:12:34:56
mtu 1400
prefix fd00:11::/64 on-link yes autonomous yes valid 86400s preferred 14400s
prefix fd00:10::/64 on-link yes autonomous yes valid 0s preferred 0s
rdnss [fd00:11::1] lifetime 1200s
rdnss [fd00:10::1] lifetime 0s
dnssl [example.test] lifetime 0s
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if _, err := ndp.MarshalMessage(BuildRA(cur.with(w))); err != nil {
		t.Fatal(err)
	}
	// Back to the old definition: nothing is withdrawn but fd00:11::/64,
	// and what old had is advertised normally.
	w2 := withdrawn(w, cur, old)
	if len(w2.Prefixes) != 1 || w2.Prefixes[0].Prefix != netip.MustParsePrefix("fd00:11::/64") || w2.Prefixes[0].ValidLifetime != 0 {
		t.Errorf("withdrawn after going back: %+v", w2.Prefixes)
	}
	if !reflect.DeepEqual(w2.RetiredRDNSS, []netip.Addr{netip.MustParseAddr("fd00:11::1")}) || len(w2.RetiredDNSSL) != 0 {
		t.Errorf("withdrawn DNS after going back: %v %v", w2.RetiredRDNSS, w2.RetiredDNSSL)
	}
	if !withdrawn(Params{}, old, old).empty() {
		t.Error("no change withdraws something")
	}
}
