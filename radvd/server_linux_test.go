package radvd

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/internal/nettest"
)

// lab is a "host" namespace whose bridge is served by a Server and a
// "guest" namespace whose eth0 is plugged into the bridge, with IPv6
// configured like a guest's: accepting router advertisements, not
// forwarding.
type lab struct {
	t      *testing.T
	host   string
	guest  string
	bridge string
	prefix string // "fd00:NN::"
	net    *conf.Network
	srv    *Server
	hostLL netip.Addr // the bridge's link-local address
}

// labXML are the lab's networks. %[1]s is the prefix, %[2]s the bridge.
var labXML = map[string]string{
	"slaac": `<network>
  <name>slaac</name>
  <forward mode='nat'/>
  <bridge name='%[2]s' stp='off' delay='0'/>
  <mtu size='1400'/>
  <domain name='slaac.test'/>
  <ip family='ipv6' address='%[1]s1' prefix='64'/>
</network>`,
	"stateful": `<network>
  <name>stateful</name>
  <forward mode='route'/>
  <bridge name='%[2]s' stp='off' delay='0'/>
  <domain name='stateful.test'/>
  <ip family='ipv6' address='%[1]s1' prefix='64'>
    <dhcp>
      <range start='%[1]s100' end='%[1]s1ff'/>
    </dhcp>
  </ip>
</network>`,
	"isolated": `<network>
  <name>isolated</name>
  <bridge name='%[2]s' stp='off' delay='0'/>
  <ip family='ipv6' address='%[1]s1' prefix='64'/>
</network>`,
}

// newLab builds the namespaces; start starts the server.
func newLab(t *testing.T, kind string) *lab {
	t.Helper()
	return buildLab(t, kind, true)
}

// buildLab builds the lab; unless plugged, the bridge is left down and the
// guest's veth out of it.
func buildLab(t *testing.T, kind string, plugged bool) *lab {
	t.Helper()
	nettest.SkipUnlessRoot(t)
	if _, err := exec.LookPath("rdisc6"); err != nil {
		t.Skip("needs rdisc6 (ndisc6)")
	}
	l := &lab{t: t, bridge: "br-ra"}
	l.host = nettest.NewNS(t, "rah")
	l.guest = nettest.NewNS(t, "rag")
	l.prefix = fmt.Sprintf("fd00:%x::", 1+rand.IntN(0xfffe))
	// Like dataplane: the bridge itself takes no advertisements.
	nettest.MustIn(t, l.host, "sysctl", "-qw", "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0")
	nettest.Must(t, "ip", "-n", l.host, "link", "add", l.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
	nettest.Must(t, "ip", "-n", l.host, "addr", "add", l.prefix+"1/64", "dev", l.bridge, "nodad")
	if plugged {
		nettest.Must(t, "ip", "-n", l.host, "link", "set", l.bridge, "up")
	}
	nettest.MustIn(t, l.guest, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=0", "net.ipv6.conf.default.accept_ra=1", "net.ipv6.conf.default.autoconf=1")
	nettest.Veth(t, l.host, "vh-ra", l.guest, "eth0")
	nettest.MustIn(t, l.guest, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=1", "net.ipv6.conf.eth0.forwarding=0", "net.ipv6.conf.eth0.autoconf=1")
	if plugged {
		l.plug()
	}
	l.waitLinkLocal(l.guest, "eth0")

	n, err := conf.Parse([]byte(fmt.Sprintf(labXML[kind], l.prefix, l.bridge)))
	if err != nil {
		t.Fatal(err)
	}
	l.net = n
	l.srv, err = New(Config{Network: n, Bridge: l.bridge, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.srv.Close() })
	return l
}

// plug puts the guest's veth into the bridge, which then gets carrier and
// a link-local address.
func (l *lab) plug() {
	l.t.Helper()
	nettest.Must(l.t, "ip", "-n", l.host, "link", "set", "vh-ra", "master", l.bridge)
	l.hostLL = l.waitLinkLocal(l.host, l.bridge)
}

func (l *lab) start() {
	l.t.Helper()
	if err := nettest.Do(l.host, func() error { return l.srv.Start(context.Background()) }); err != nil {
		l.t.Fatal(err)
	}
}

// waitLinkLocal waits until dev in ns has a link-local address that DAD
// has finished with, and returns it.
func (l *lab) waitLinkLocal(ns, dev string) netip.Addr {
	l.t.Helper()
	var out string
	ok := waitFor(10*time.Second, func() bool {
		out, _ = nettest.In(ns, "ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link")
		return strings.Contains(out, "fe80:") && !strings.Contains(out, "tentative")
	})
	if !ok {
		l.t.Fatalf("%s in %s: no usable link-local address:\n%s", dev, ns, out)
	}
	for _, f := range strings.Fields(out) {
		if p, err := netip.ParsePrefix(f); err == nil {
			return p.Addr()
		}
	}
	l.t.Fatalf("no address in %q", out)
	return netip.Addr{}
}

var spaces = regexp.MustCompile(`\s+`)

// rdisc6 solicits from the guest and returns the first advertisement's
// lines, each with its runs of blanks squeezed to one.
func (l *lab) rdisc6() []string {
	l.t.Helper()
	out, err := nettest.In(l.guest, "rdisc6", "-1", "-n", "-w", "1500", "eth0")
	if err != nil {
		l.t.Fatalf("%v\nstats %+v", err, l.srv.Stats())
	}
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(spaces.ReplaceAllString(line, " ")); line != "" {
			lines = append(lines, line)
		}
	}
	return lines
}

// expectLines checks that every line of want is in got.
func expectLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, g := range got {
			if g == w {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("rdisc6 output lacks %q:\n%s", w, strings.Join(got, "\n"))
		}
	}
}

// bridgeMAC is the bridge's MAC as rdisc6 prints it.
func (l *lab) bridgeMAC() string {
	return strings.ToUpper(strings.TrimSpace(nettest.MustIn(l.t, l.host, "cat", "/sys/class/net/"+l.bridge+"/address")))
}

// guestAddrs are the global addresses of the guest's eth0 that DAD has
// finished with.
func (l *lab) guestAddrs() []netip.Addr {
	out, _ := nettest.In(l.guest, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global")
	var as []netip.Addr
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "tentative") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if p, err := netip.ParsePrefix(f); err == nil {
				as = append(as, p.Addr())
			}
		}
	}
	return as
}

// defaultRoute is the guest's IPv6 default route, "" when none.
func (l *lab) defaultRoute() string {
	out, _ := nettest.In(l.guest, "ip", "-6", "route", "show", "default")
	return strings.TrimSpace(out)
}

func (l *lab) hasSLAAC() (netip.Addr, bool) {
	pfx := netip.MustParsePrefix(l.prefix + "/64")
	for _, a := range l.guestAddrs() {
		if pfx.Contains(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// TestLabSLAAC: rdisc6 sees the SLAAC advertisement, and the guest's kernel
// configures an address from the prefix and a default route through the
// bridge's link-local address.
func TestLabSLAAC(t *testing.T) {
	l := newLab(t, "slaac")
	l.start()
	lines := l.rdisc6()
	expectLines(t, lines,
		"Hop limit : 64 ( 0x40)",
		"Stateful address conf. : No",
		"Stateful other conf. : No",
		"Router lifetime : 1800 (0x00000708) seconds",
		"MTU : 1400 bytes (valid)",
		"Prefix : "+l.prefix+"/64",
		"On-link : Yes",
		"Autonomous address conf.: Yes",
		"Valid time : 86400 (0x00015180) seconds",
		"Pref. time : 14400 (0x00003840) seconds",
		"Recursive DNS server : "+l.prefix+"1",
		"DNS server lifetime : 1200 (0x000004b0) seconds",
		"DNS search list : slaac.test",
		"DNS search list lifetime: 1200 (0x000004b0) seconds",
		"Source link-layer address: "+l.bridgeMAC(),
		"from "+l.hostLL.String(),
	)
	var addr netip.Addr
	if !waitFor(10*time.Second, func() bool { var ok bool; addr, ok = l.hasSLAAC(); return ok }) {
		t.Fatalf("no SLAAC address in %s/64: %v", l.prefix, l.guestAddrs())
	}
	t.Logf("guest configured %s", addr)
	if !waitFor(5*time.Second, func() bool { return strings.Contains(l.defaultRoute(), "via "+l.hostLL.String()+" dev eth0 proto ra") }) {
		t.Fatalf("default route %q, want one via %s from the advertisement", l.defaultRoute(), l.hostLL)
	}
	if mtu := strings.TrimSpace(nettest.MustIn(t, l.guest, "cat", "/proc/sys/net/ipv6/conf/eth0/mtu")); mtu != "1400" {
		t.Errorf("guest IPv6 MTU %s, want 1400 from the advertisement", mtu)
	}
	// The guest reaches the bridge through what it learned.
	nettest.MustIn(t, l.guest, "ping", "-6", "-c", "1", "-W", "2", l.prefix+"1")
	if st := l.srv.Stats(); st.Received == 0 || st.Answered == 0 || st.Malformed != 0 || st.SendErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestLabClose: the final advertisement makes the guest drop its default
// route at once (its lifetime was 1800 s).
func TestLabClose(t *testing.T) {
	l := newLab(t, "slaac")
	l.start()
	if !waitFor(10*time.Second, func() bool { return l.defaultRoute() != "" }) {
		t.Fatal("no default route from the advertisement")
	}
	if err := l.srv.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if !waitFor(2*time.Second, func() bool { return l.defaultRoute() == "" }) {
		t.Fatalf("default route still there %s after Close: %q", time.Since(start), l.defaultRoute())
	}
	t.Logf("default route gone %s after Close", time.Since(start))
	// Nothing answers any more.
	if out, err := nettest.In(l.guest, "rdisc6", "-1", "-r", "1", "-w", "500", "eth0"); err == nil {
		t.Errorf("rdisc6 got an answer after Close:\n%s", out)
	}
}

// TestLabStateful: with <dhcp>, M and O are set and the prefix is on-link
// only: the guest's kernel makes no address from it but installs the
// default route and the on-link route, and dhclient -6 gets its address
// from the DHCPv6 server.
func TestLabStateful(t *testing.T) {
	l := newLab(t, "stateful")
	l.start()
	expectLines(t, l.rdisc6(),
		"Stateful address conf. : Yes",
		"Stateful other conf. : Yes",
		"Router lifetime : 1800 (0x00000708) seconds",
		"Prefix : "+l.prefix+"/64",
		"On-link : Yes",
		"Autonomous address conf.: No",
		"Recursive DNS server : "+l.prefix+"1",
		"DNS search list : stateful.test",
		"from "+l.hostLL.String(),
	)
	if !waitFor(5*time.Second, func() bool { return strings.Contains(l.defaultRoute(), "via "+l.hostLL.String()) }) {
		t.Fatalf("default route %q, want one via %s", l.defaultRoute(), l.hostLL)
	}
	// Linux marks the prefix route it learned "proto kernel", like the
	// one of an address, but with the advertised valid lifetime.
	if out := nettest.MustIn(t, l.guest, "ip", "-6", "route", "show", l.prefix+"/64"); !strings.Contains(out, "expires") {
		t.Errorf("no on-link route from the advertisement: %q", out)
	}
	// Long enough for an autonomous prefix to have made an address.
	time.Sleep(1500 * time.Millisecond)
	if out := nettest.MustIn(t, l.guest, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"); out != "" {
		t.Fatalf("the guest made an address from a non-autonomous prefix: %s", out)
	}

	// dhclient -6 after this Managed RA, served by the daemon's DHCPv6
	// server, is e2e.TestStatefulIPv6Network (radvd does not import the
	// other servers, not even in tests).
}

// TestLabIsolated: router lifetime 0, so the guest makes its SLAAC address
// but no default route.
func TestLabIsolated(t *testing.T) {
	l := newLab(t, "isolated")
	l.start()
	expectLines(t, l.rdisc6(),
		"Stateful address conf. : No",
		"Router lifetime : 0 (0x00000000) seconds",
		"Prefix : "+l.prefix+"/64",
		"Autonomous address conf.: Yes",
		"Recursive DNS server : "+l.prefix+"1",
		"from "+l.hostLL.String(),
	)
	if !waitFor(10*time.Second, func() bool { _, ok := l.hasSLAAC(); return ok }) {
		t.Fatalf("no SLAAC address in %s/64: %v", l.prefix, l.guestAddrs())
	}
	if r := l.defaultRoute(); r != "" {
		t.Fatalf("isolated network gave the guest a default route: %s", r)
	}
	nettest.MustIn(t, l.guest, "ping", "-6", "-c", "1", "-W", "2", l.prefix+"1")
}

// TestLabUpdate: a new MTU and a new prefix reach the guest at once; the
// old prefix is withdrawn (its on-link route goes, its address is
// deprecated).
func TestLabUpdate(t *testing.T) {
	l := newLab(t, "slaac")
	l.start()
	old, ok := netip.Addr{}, false
	if !waitFor(10*time.Second, func() bool { old, ok = l.hasSLAAC(); return ok }) {
		t.Fatalf("no SLAAC address in %s/64", l.prefix)
	}
	oldPrefix := l.prefix
	l.prefix = fmt.Sprintf("fd01:%x::", 1+rand.IntN(0xfffe))
	nettest.Must(t, "ip", "-n", l.host, "addr", "add", l.prefix+"1/64", "dev", l.bridge, "nodad")
	n, err := conf.Parse([]byte(fmt.Sprintf(labXML["slaac"], l.prefix, l.bridge)))
	if err != nil {
		t.Fatal(err)
	}
	n.MTU = 1450
	start := time.Now()
	if err := l.srv.Update(n); err != nil {
		t.Fatal(err)
	}
	var addr netip.Addr
	if !waitFor(10*time.Second, func() bool { addr, ok = l.hasSLAAC(); return ok }) {
		t.Fatalf("no SLAAC address in the new prefix %s/64: %v", l.prefix, l.guestAddrs())
	}
	t.Logf("new address %s %s after the update", addr, time.Since(start))
	if mtu := strings.TrimSpace(nettest.MustIn(t, l.guest, "cat", "/proc/sys/net/ipv6/conf/eth0/mtu")); mtu != "1450" {
		t.Errorf("guest IPv6 MTU %s, want 1450", mtu)
	}
	if out := nettest.MustIn(t, l.guest, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "to", old.String()); !strings.Contains(out, "deprecated") {
		t.Errorf("old address not deprecated: %q", out)
	}
	if out := nettest.MustIn(t, l.guest, "ip", "-6", "route", "show", oldPrefix+"/64"); out != "" {
		t.Errorf("old on-link route still there: %q", out)
	}
	lines := l.rdisc6()
	expectLines(t, lines, "MTU : 1450 bytes (valid)", "Prefix : "+l.prefix+"/64", "Recursive DNS server : "+l.prefix+"1")
}

// TestLabOnlyTheBridge: a guest on another bridge of the same host hears
// nothing, solicited or not.
func TestLabOnlyTheBridge(t *testing.T) {
	l := newLab(t, "slaac")
	other := nettest.NewNS(t, "rao")
	nettest.Must(t, "ip", "-n", l.host, "link", "add", "br-other", "type", "bridge", "stp_state", "0", "forward_delay", "0")
	nettest.Must(t, "ip", "-n", l.host, "link", "set", "br-other", "up")
	nettest.Veth(t, l.host, "vo-ra", other, "eth0")
	nettest.Must(t, "ip", "-n", l.host, "link", "set", "vo-ra", "master", "br-other")
	l.waitLinkLocal(l.host, "br-other")
	l.waitLinkLocal(other, "eth0")
	l.start()
	if out, err := nettest.In(other, "rdisc6", "-1", "-r", "2", "-w", "800", "eth0"); err == nil {
		t.Fatalf("an advertisement reached the other bridge:\n%s", out)
	}
	if out := nettest.MustIn(t, other, "ip", "-6", "route", "show", "default"); out != "" {
		t.Errorf("guest on the other bridge has a default route: %s", out)
	}
	if _, ok := l.hasSLAAC(); !ok {
		// The served guest did hear it in the meantime.
		if !waitFor(5*time.Second, func() bool { _, ok := l.hasSLAAC(); return ok }) {
			t.Error("the guest on the served bridge got no address")
		}
	}
}

// TestLabStartDuringDAD: right after the bridge comes up its link-local
// address is tentative for about a second (on Linux 6.18 a bridge without
// ports has carrier, so DAD runs and completes): Start returns at once
// without sending, the first advertisement follows DAD, and a guest that
// plugs in later is served.
func TestLabStartDuringDAD(t *testing.T) {
	l := buildLab(t, "slaac", false)
	nettest.Must(t, "ip", "-n", l.host, "link", "set", l.bridge, "up")
	begin := time.Now()
	l.start()
	if d := time.Since(begin); d > 500*time.Millisecond {
		t.Errorf("Start took %s", d)
	}
	if !waitFor(5*time.Second, func() bool { return l.srv.Stats().Multicast > 0 }) {
		t.Fatalf("no advertisement after DAD: %+v", l.srv.Stats())
	}
	t.Logf("first advertisement %s after Start", time.Since(begin))
	if st := l.srv.Stats(); st.SendErrors != 0 {
		t.Errorf("send errors during DAD: %+v", st)
	}
	l.plug()
	plugged := time.Now()
	if !waitFor(15*time.Second, func() bool { return strings.Contains(l.defaultRoute(), "via "+l.hostLL.String()) }) {
		t.Fatalf("no default route via %s after plugging in: %q (stats %+v)", l.hostLL, l.defaultRoute(), l.srv.Stats())
	}
	t.Logf("default route %s after plugging in, stats %+v", time.Since(plugged), l.srv.Stats())
}
