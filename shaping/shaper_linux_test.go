package shaping

// Real-kernel tests: each makes its own network namespaces (internal/nettest,
// removed when the test ends, pass or fail), drives a Shaper bound to one
// and observes the result with tc and ip. They skip unless run as root.

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/internal/nettest"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newShaper returns a Shaper bound to namespace ns.
func newShaper(t *testing.T, ns string) *Shaper {
	t.Helper()
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := New(int(f.Fd()), slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// tcShow is `tc -s <args>` in ns.
func tcShow(t *testing.T, ns string, args ...string) string {
	t.Helper()
	return nettest.MustIn(t, ns, "tc", append([]string{"-s"}, args...)...)
}

// ifindexIn is dev's ifindex in ns, 0 if there is no such device.
func ifindexIn(t *testing.T, ns, dev string) int {
	t.Helper()
	out, err := nettest.In(ns, "ip", "-j", "link", "show", "dev", dev)
	if err != nil {
		return 0
	}
	var links []struct {
		Ifindex int `json:"ifindex"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j link show %s: %v %s", dev, err, out)
	}
	return links[0].Ifindex
}

// sentBytes is the "Sent N bytes" of the first object in tc -s output.
func sentBytes(t *testing.T, out string) int {
	t.Helper()
	m := regexp.MustCompile(`Sent (\d+) bytes`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no Sent counter in:\n%s", out)
	}
	n := 0
	for _, c := range m[1] {
		n = n*10 + int(c-'0')
	}
	return n
}

func mustContain(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

func mustNotContain(t *testing.T, what, out string, nots ...string) {
	t.Helper()
	for _, w := range nots {
		if strings.Contains(out, w) {
			t.Errorf("%s still has %q:\n%s", what, w, out)
		}
	}
}

// portNS makes a namespace "host" with port device v0 whose peer v1 (the
// guest's side) lives in namespace "guest"; 10.99.0.1 and .2.
func portNS(t *testing.T) (host, guest string) {
	nettest.SkipUnlessRoot(t)
	if _, err := os.Stat("/run/netns"); err != nil {
		nettest.Must(t, "ip", "netns", "list") // creates nothing, but fails clearly
	}
	host, guest = nettest.NewNS(t, "shh"), nettest.NewNS(t, "shg")
	nettest.Veth(t, host, "v0", guest, "v1")
	nettest.Must(t, "ip", "-n", host, "addr", "add", "10.99.0.1/24", "dev", "v0")
	nettest.Must(t, "ip", "-n", guest, "addr", "add", "10.99.0.2/24", "dev", "v1")
	return host, guest
}

func TestKernelPortApplyChangeClear(t *testing.T) {
	host, guest := portNS(t)
	s := newShaper(t, host)
	ctx := context.Background()
	v0 := ifindexIn(t, host, "v0")
	ifb := IFBName(v0)

	bw := &conf.Bandwidth{Inbound: rate(1250, 2500, 0, 64), Outbound: rate(625, 0, 0, 0)}
	if err := s.ApplyPort(ctx, "v0", bw); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "qdiscs of v0", tcShow(t, host, "qdisc", "show", "dev", "v0"),
		"qdisc htb 1: root", "default 0x1", "qdisc pfifo 2: parent 1:1 limit", "qdisc ingress ffff:")
	mustContain(t, "class of v0", tcShow(t, host, "class", "show", "dev", "v0"),
		"class htb 1:1 root leaf 2: prio 0 rate 10Mbit ceil 20Mbit burst 64Kb")
	mustContain(t, "filter of v0", tcShow(t, host, "filter", "show", "dev", "v0", "ingress"),
		"u32", "fh 800::800", "match 00000000/00000000 at 0", "mirred (Egress Redirect to device "+ifb+")")
	mustContain(t, "class of the IFB", tcShow(t, host, "class", "show", "dev", ifb),
		"class htb 1:1 root leaf 2: prio 0 rate 5Mbit ceil 5Mbit")
	ifbIndex := ifindexIn(t, host, ifb)
	if ifbIndex == 0 {
		t.Fatalf("no IFB %s", ifb)
	}

	// Traffic through both classes, so their counters are not zero.
	nettest.MustIn(t, guest, "ping", "-c", "20", "-i", "0.01", "-s", "1000", "-q", "10.99.0.1")
	inBefore := sentBytes(t, tcShow(t, host, "class", "show", "dev", "v0"))
	outBefore := sentBytes(t, tcShow(t, host, "class", "show", "dev", ifb))
	if inBefore < 20*1000 || outBefore < 20*1000 {
		t.Fatalf("counters after 20 pings each way: in %d, out %d bytes", inBefore, outBefore)
	}

	// Idempotent: the same bandwidth again changes nothing.
	snap := func() string {
		return tcShow(t, host, "qdisc", "show") + tcShow(t, host, "class", "show", "dev", "v0") + tcShow(t, host, "class", "show", "dev", ifb)
	}
	before := regexp.MustCompile(`(?m)^\s+(Sent|backlog|lended|tokens).*\n`).ReplaceAllString(snap(), "")
	if err := s.ApplyPort(ctx, "v0", bw); err != nil {
		t.Fatal(err)
	}
	after := regexp.MustCompile(`(?m)^\s+(Sent|backlog|lended|tokens).*\n`).ReplaceAllString(snap(), "")
	if before != after {
		t.Errorf("second ApplyPort changed the configuration:\n%s", lineDiff(before, after))
	}

	// New rates: changed in place (same classes, counters kept, same IFB).
	bw2 := &conf.Bandwidth{Inbound: rate(2500, 0, 0, 0), Outbound: rate(1250, 5000, 0, 32)}
	if err := s.ApplyPort(ctx, "v0", bw2); err != nil {
		t.Fatal(err)
	}
	in := tcShow(t, host, "class", "show", "dev", "v0")
	mustContain(t, "changed class of v0", in, "class htb 1:1 root leaf 2: prio 0 rate 20Mbit ceil 20Mbit")
	out := tcShow(t, host, "class", "show", "dev", ifb)
	mustContain(t, "changed class of the IFB", out, "class htb 1:1 root leaf 2: prio 0 rate 10Mbit ceil 40Mbit burst 32Kb")
	if got := sentBytes(t, in); got < inBefore {
		t.Errorf("inbound class was recreated: counter %d < %d", got, inBefore)
	}
	if got := sentBytes(t, out); got < outBefore {
		t.Errorf("outbound class was recreated: counter %d < %d", got, outBefore)
	}
	if got := ifindexIn(t, host, ifb); got != ifbIndex {
		t.Errorf("IFB recreated: ifindex %d, was %d", got, ifbIndex)
	}

	// Only outbound: the root HTB goes, the redirect stays.
	if err := s.ApplyPort(ctx, "v0", &conf.Bandwidth{Outbound: rate(1250, 0, 0, 0)}); err != nil {
		t.Fatal(err)
	}
	q := tcShow(t, host, "qdisc", "show", "dev", "v0")
	mustNotContain(t, "qdiscs of v0", q, "htb")
	mustContain(t, "qdiscs of v0", q, "ingress")
	if got := ifindexIn(t, host, ifb); got != ifbIndex {
		t.Errorf("IFB recreated: ifindex %d, was %d", got, ifbIndex)
	}

	// Only inbound: the redirect and the IFB go.
	if err := s.ApplyPort(ctx, "v0", &conf.Bandwidth{Inbound: rate(1250, 0, 0, 0)}); err != nil {
		t.Fatal(err)
	}
	q = tcShow(t, host, "qdisc", "show", "dev", "v0")
	mustContain(t, "qdiscs of v0", q, "htb 1: root")
	mustNotContain(t, "qdiscs of v0", q, "ingress")
	if ifindexIn(t, host, ifb) != 0 {
		t.Errorf("IFB %s left behind", ifb)
	}

	// Both again, then clear: nothing left at all.
	if err := s.ApplyPort(ctx, "v0", bw); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearPort(ctx, "v0"); err != nil {
		t.Fatal(err)
	}
	assertClean(t, host, "v0")
	// Clearing twice, and clearing a device that does not exist, is fine.
	if err := s.ClearPort(ctx, "v0"); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearPort(ctx, "nosuchdev"); err != nil {
		t.Fatal(err)
	}
	// An empty bandwidth clears too.
	if err := s.ApplyPort(ctx, "v0", bw); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyPort(ctx, "v0", &conf.Bandwidth{}); err != nil {
		t.Fatal(err)
	}
	assertClean(t, host, "v0")
}

// assertClean checks that ns has no qdisc but the kernel's defaults, no
// class, no filter and no IFB.
func assertClean(t *testing.T, ns string, devs ...string) {
	t.Helper()
	q := tcShow(t, ns, "qdisc", "show")
	mustNotContain(t, "qdiscs", q, "htb", "pfifo 2:", "ingress", "clsact", "ifb")
	for _, dev := range devs {
		if c := strings.TrimSpace(tcShow(t, ns, "class", "show", "dev", dev)); c != "" {
			t.Errorf("classes left on %s:\n%s", dev, c)
		}
	}
	links := nettest.MustIn(t, ns, "ip", "-d", "link", "show")
	mustNotContain(t, "links", links, "vnifb", "ifb ")
}

func TestKernelPortErrors(t *testing.T) {
	host, _ := portNS(t)
	s := newShaper(t, host)
	ctx := context.Background()
	err := s.ApplyPort(ctx, "nosuchdev", &conf.Bandwidth{Inbound: rate(1, 0, 0, 0)})
	if err == nil || !strings.Contains(err.Error(), "shaping: nosuchdev") {
		t.Errorf("ApplyPort on a missing device: %v", err)
	}
	err = s.ApplyPort(ctx, "v0", &conf.Bandwidth{Inbound: rate(1, 0, 0, MaxBurst+1)})
	if err == nil || !strings.Contains(err.Error(), "shaping: v0: <inbound burst='4194304'>") {
		t.Errorf("ApplyPort with a burst over the limit: %v", err)
	}
	assertClean(t, host, "v0")
}

// TestKernelPortRollback makes the outbound half fail (a non-IFB device
// holds the IFB's name) and checks that the inbound half it created first
// is removed again, and that a rate changed in place gets its old value.
func TestKernelPortRollback(t *testing.T) {
	host, _ := portNS(t)
	s := newShaper(t, host)
	ctx := context.Background()
	ifb := IFBName(ifindexIn(t, host, "v0"))
	nettest.Must(t, "ip", "-n", host, "link", "add", ifb, "type", "veth", "peer", "name", "squat1")
	err := s.ApplyPort(ctx, "v0", &conf.Bandwidth{Inbound: rate(1250, 0, 0, 0), Outbound: rate(1250, 0, 0, 0)})
	if err == nil || !strings.Contains(err.Error(), ifb+" exists and is a veth device, not an IFB") {
		t.Fatalf("ApplyPort = %v", err)
	}
	mustNotContain(t, "qdiscs after rollback", tcShow(t, host, "qdisc", "show", "dev", "v0"), "htb", "ingress")

	// With inbound applied, a failing change restores the old rate.
	if err := s.ApplyPort(ctx, "v0", &conf.Bandwidth{Inbound: rate(1250, 0, 0, 0)}); err != nil {
		t.Fatal(err)
	}
	err = s.ApplyPort(ctx, "v0", &conf.Bandwidth{Inbound: rate(2500, 0, 0, 0), Outbound: rate(1250, 0, 0, 0)})
	if err == nil {
		t.Fatal("ApplyPort succeeded with the IFB's name taken")
	}
	mustContain(t, "class after rollback", tcShow(t, host, "class", "show", "dev", "v0"), "rate 10Mbit ceil 10Mbit")
	nettest.Must(t, "ip", "-n", host, "link", "del", ifb)
	if err := s.ClearPort(ctx, "v0"); err != nil {
		t.Fatal(err)
	}
	assertClean(t, host, "v0")
}

func TestKernelSweep(t *testing.T) {
	host, _ := portNS(t)
	s := newShaper(t, host)
	ctx := context.Background()
	nettest.Must(t, "ip", "-n", host, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
	ifb := IFBName(ifindexIn(t, host, "p0"))
	for _, dev := range []string{"v0", "p0"} {
		if err := s.ApplyPort(ctx, dev, &conf.Bandwidth{Outbound: rate(1250, 0, 0, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	nettest.Must(t, "ip", "-n", host, "link", "del", "p0") // the guest went away
	if ifindexIn(t, host, ifb) == 0 {
		t.Fatal("the IFB went with its device: nothing to sweep")
	}
	nettest.Must(t, "ip", "-n", host, "link", "add", probePrefix+"0badf00d", "type", "ifb") // an interrupted Probe
	nettest.Must(t, "ip", "-n", host, "link", "add", "otherifb", "type", "ifb")             // not ours
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{ifb, probePrefix + "0badf00d"} {
		if ifindexIn(t, host, gone) != 0 {
			t.Errorf("Sweep left %s", gone)
		}
	}
	if ifindexIn(t, host, "otherifb") == 0 {
		t.Error("Sweep removed an IFB that is not shaping's")
	}
	if ifindexIn(t, host, IFBName(ifindexIn(t, host, "v0"))) == 0 {
		t.Error("Sweep removed the IFB of a live device")
	}
}

func TestKernelProbe(t *testing.T) {
	host, _ := portNS(t)
	s := newShaper(t, host)
	k, err := s.Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !k.Valid() {
		t.Fatalf("Probe = %v", k)
	}
	t.Logf("leaf qdisc: %s", k)
	if k2, _ := s.Probe(context.Background()); k2 != k {
		t.Errorf("second Probe = %v, first %v", k2, k)
	}
	links := nettest.MustIn(t, host, "ip", "link", "show")
	mustNotContain(t, "links after Probe", links, "vnprobe")
}

// TestKernelLimits applies the largest values tc takes (64-bit rates).
func TestKernelLimits(t *testing.T) {
	host, _ := portNS(t)
	s := newShaper(t, host)
	ctx := context.Background()
	bw := &conf.Bandwidth{Inbound: rate(4294967295, 0, 0, MaxBurst), Outbound: rate(MaxRate, MaxRate, 0, MaxBurst)}
	if err := s.ApplyPort(ctx, "v0", bw); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "class of v0", tcShow(t, host, "class", "show", "dev", "v0"), "rate 34359Gbit")
	st, err := s.Stats(ctx, "v0")
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Rate != 4294967295000 || st[1].Rate != BytesPerSecond(MaxRate) || !st[1].Outbound {
		t.Errorf("Stats = %+v", st)
	}
	if err := s.ClearPort(ctx, "v0"); err != nil {
		t.Fatal(err)
	}
	assertClean(t, host, "v0")
}

// bridgeNS makes a namespace with bridge br0 and two ports, vp0/vp1,
// enslaved (their peers stay in the namespace, down: only the tc objects
// matter here).
func bridgeNS(t *testing.T) string {
	nettest.SkipUnlessRoot(t)
	ns := nettest.NewNS(t, "shb")
	nettest.Must(t, "ip", "-n", ns, "link", "add", "br0", "type", "bridge")
	nettest.Must(t, "ip", "-n", ns, "link", "set", "br0", "up")
	for _, p := range []string{"vp0", "vp1"} {
		nettest.Must(t, "ip", "-n", ns, "link", "add", p, "type", "veth", "peer", "name", p+"g")
		nettest.Must(t, "ip", "-n", ns, "link", "set", p, "master", "br0", "up")
	}
	return ns
}

func TestKernelNetworkFloors(t *testing.T) {
	ns := bridgeNS(t)
	s := newShaper(t, ns)
	ctx := context.Background()
	n := &conf.Network{Name: "floors", Forward: conf.Forward{Mode: conf.ForwardNAT},
		Bandwidth: &conf.Bandwidth{Inbound: rate(12500, 0, 0, 0), Outbound: rate(12500, 0, 0, 0)}}
	if err := s.ApplyNetwork(ctx, "br0", n.Bandwidth, 0); err != nil {
		t.Fatal(err)
	}
	cls := tcShow(t, ns, "class", "show", "dev", "br0")
	mustContain(t, "classes of br0", cls, "class htb 1:1 root rate 100Mbit ceil 100Mbit", "class htb 1:2 parent 1:1 leaf 2: prio 0 rate 100Mbit ceil 100Mbit")
	mustContain(t, "qdiscs of br0", tcShow(t, ns, "qdisc", "show", "dev", "br0"), "qdisc htb 1: root", "default 0x2", "qdisc ingress ffff:")

	mac0, _ := net.ParseMAC("52:54:00:12:34:56")
	mac1, _ := net.ParseMAC("52:54:00:ab:cd:ef")
	p0 := &conf.Port{MAC: mac0, Bandwidth: &conf.Bandwidth{Inbound: &conf.Rate{Floor: 7500}}}
	p1 := &conf.Port{MAC: mac1, Bandwidth: &conf.Bandwidth{Inbound: &conf.Rate{Floor: 3750, Average: 6250}}}
	var ids ClassIDs
	id0, err := s.PlugFloor(ctx, "br0", n, p0, 0, &ids)
	if err != nil || id0 != 3 {
		t.Fatalf("PlugFloor = %d, %v", id0, err)
	}
	p0.Bandwidth.ClassID = uint(id0)
	id1, err := s.PlugFloor(ctx, "br0", n, p1, 7500, &ids)
	if err != nil || id1 != 4 {
		t.Fatalf("PlugFloor = %d, %v", id1, err)
	}
	p1.Bandwidth.ClassID = uint(id1)
	if ids.String() != "0-4" {
		t.Errorf("ids = %s", ids)
	}
	cls = tcShow(t, ns, "class", "show", "dev", "br0")
	mustContain(t, "classes of br0", cls,
		"class htb 1:2 parent 1:1 leaf 2: prio 0 rate 10Mbit ceil 100Mbit",
		"class htb 1:3 parent 1:1 leaf 3: prio 0 rate 60Mbit ceil 100Mbit",
		"class htb 1:4 parent 1:1 leaf 4: prio 0 rate 30Mbit ceil 100Mbit")
	f := tcShow(t, ns, "filter", "show", "dev", "br0")
	mustContain(t, "filters of br0", f,
		"filter parent 1: protocol all pref 2 u32 chain 0 fh 800::3 order 3 key ht 800 bkt 0 *flowid 1:3", // tc prints a * for every classid
		"match 00005254/0000ffff at -16", "match 00123456/ffffffff at -12",
		"fh 800::4", "match 00abcdef/ffffffff at -12")

	// A third floor would overcommit: refused, nothing changes.
	p2 := &conf.Port{MAC: mac1, Bandwidth: &conf.Bandwidth{Inbound: &conf.Rate{Floor: 2000}}}
	if _, err := s.PlugFloor(ctx, "br0", n, p2, 11250, &ids); err == nil || !strings.Contains(err.Error(), "cannot plug port") {
		t.Errorf("overcommitting PlugFloor = %v", err)
	}
	if ids.String() != "0-4" {
		t.Errorf("ids after a refused plug = %s", ids)
	}

	// Update in place: port 1's floor to 2500 and a new MAC.
	mac2, _ := net.ParseMAC("52:54:00:00:00:01")
	p1.MAC = mac2
	p1.Bandwidth.Inbound.Floor = 2500
	before := sentBytes(t, tcShow(t, ns, "class", "show", "dev", "br0", "classid", "1:4"))
	if id, err := s.UpdateFloor(ctx, "br0", n, p1, 7500, &ids); err != nil || id != 4 {
		t.Fatalf("UpdateFloor = %d, %v", id, err)
	}
	cls = tcShow(t, ns, "class", "show", "dev", "br0")
	mustContain(t, "classes of br0", cls,
		"class htb 1:2 parent 1:1 leaf 2: prio 0 rate 20Mbit ceil 100Mbit",
		"class htb 1:4 parent 1:1 leaf 4: prio 0 rate 20Mbit ceil 100Mbit")
	f = tcShow(t, ns, "filter", "show", "dev", "br0")
	mustContain(t, "filters of br0", f, "match 00000001/ffffffff at -12")
	mustNotContain(t, "filters of br0", f, "00abcdef")
	if after := sentBytes(t, tcShow(t, ns, "class", "show", "dev", "br0", "classid", "1:4")); after < before {
		t.Errorf("class 1:4 recreated")
	}

	// Unplug port 0 (floor removed through UpdateFloor) and port 1.
	p0.Bandwidth.Inbound.Floor = 0
	if id, err := s.UpdateFloor(ctx, "br0", n, p0, 2500, &ids); err != nil || id != 0 {
		t.Fatalf("UpdateFloor to no floor = %d, %v", id, err)
	}
	if err := s.UnplugFloor(ctx, "br0", n, id1, 0, &ids); err != nil {
		t.Fatal(err)
	}
	if ids.String() != "0-2" {
		t.Errorf("ids after unplugging = %s", ids)
	}
	cls = tcShow(t, ns, "class", "show", "dev", "br0")
	mustContain(t, "classes of br0", cls, "class htb 1:2 parent 1:1 leaf 2: prio 0 rate 100Mbit ceil 100Mbit")
	mustNotContain(t, "classes of br0", cls, "1:3", "1:4")
	if f := strings.TrimSpace(tcShow(t, ns, "filter", "show", "dev", "br0")); f != "" {
		t.Errorf("filters left on br0:\n%s", f)
	}
	// Unplugging again is not an error (objects already gone).
	if err := s.UnplugFloor(ctx, "br0", n, id1, 0, &ids); err != nil {
		t.Errorf("second UnplugFloor: %v", err)
	}

	if err := s.ClearNetwork(ctx, "br0"); err != nil {
		t.Fatal(err)
	}
	assertClean(t, ns, "br0")
}

func TestKernelFloorErrors(t *testing.T) {
	ns := bridgeNS(t)
	s := newShaper(t, ns)
	ctx := context.Background()
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	p := &conf.Port{MAC: mac, Bandwidth: &conf.Bandwidth{Inbound: &conf.Rate{Floor: 100}}}
	var ids ClassIDs
	noQoS := &conf.Network{Name: "n", Forward: conf.Forward{Mode: conf.ForwardNAT}}
	if _, err := s.PlugFloor(ctx, "br0", noQoS, p, 0, &ids); err == nil || !strings.Contains(err.Error(), "no inbound QoS") {
		t.Errorf("PlugFloor without network QoS = %v", err)
	}
	// The network's root HTB is missing (network not applied): the plug
	// fails and leaves nothing, the id is released.
	n := &conf.Network{Name: "n", Forward: conf.Forward{Mode: conf.ForwardNAT}, Bandwidth: &conf.Bandwidth{Inbound: rate(1000, 0, 0, 0)}}
	if _, err := s.PlugFloor(ctx, "br0", n, p, 0, &ids); err == nil || !strings.Contains(err.Error(), "class dev br0 parent 1:1 classid 1:3") {
		t.Errorf("PlugFloor without the network's HTB = %v", err)
	}
	if ids.String() != "0-2" {
		t.Errorf("ids after a failed plug = %s", ids)
	}
	assertClean(t, ns, "br0")
	// A port without a floor plugs nothing.
	if id, err := s.PlugFloor(ctx, "br0", n, &conf.Port{MAC: mac}, 0, &ids); err != nil || id != 0 {
		t.Errorf("PlugFloor without a floor = %d, %v", id, err)
	}
}

func TestKernelStats(t *testing.T) {
	host, guest := portNS(t)
	s := newShaper(t, host)
	ctx := context.Background()
	if err := s.ApplyPort(ctx, "v0", &conf.Bandwidth{Inbound: rate(1250, 0, 0, 0), Outbound: rate(625, 0, 0, 0)}); err != nil {
		t.Fatal(err)
	}
	nettest.MustIn(t, guest, "ping", "-c", "10", "-i", "0.01", "-q", "10.99.0.1")
	st, err := s.Stats(ctx, "v0")
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 {
		t.Fatalf("Stats = %+v", st)
	}
	in, out := st[0], st[1]
	if in.Dev != "v0" || in.Outbound || in.Class != NewHandle(1, 1) || in.Rate != 1250000 || in.Packets < 10 || in.Bytes < 10*98 {
		t.Errorf("inbound stats %+v", in)
	}
	if out.Dev != IFBName(ifindexIn(t, host, "v0")) || !out.Outbound || out.Rate != 625000 || out.Packets < 10 {
		t.Errorf("outbound stats %+v", out)
	}
	if err := s.ClearPort(ctx, "v0"); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Stats(ctx, "v0"); err != nil || len(st) != 0 {
		t.Errorf("Stats after clear = %+v, %v", st, err)
	}
}
