package dataplane

// Real-kernel tests: each one makes its own network namespace, switches a
// locked OS thread into it and drives the Dataplane there; iproute2 only
// observes. They skip unless run as root.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vnetd/vnetd/conf"
)

type kernelNS struct {
	name string
	ns   netns.NsHandle
	dp   *Dataplane
	sys  Sysctl
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newKernelNS creates a namespace, moves the test's (locked) thread into it
// (see enter) and returns a Dataplane bound to it. Everything is undone in
// t.Cleanup, also when the test fails.
func newKernelNS(t *testing.T) *kernelNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip to observe the kernel")
	}
	name := "vnetd-dp-" + randHex(4)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { ns.Close() })
	k := &kernelNS{name: name, ns: ns, sys: Sysctl{Root: "/proc/sys"}}
	k.enter(t)

	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	k.dp = New(h, k.sys, log)
	return k
}

// enter locks the calling goroutine (the test's, or a subtest's: t.Run starts
// a new one) to its thread and moves that thread into the namespace until t
// ends: the sysctls and the bridge options follow the calling thread's
// namespace, not the netlink handle's.
func (k *kernelNS) enter(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("current netns: %v", err)
	}
	if err := netns.Set(k.ns); err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("enter netns %s: %v", k.name, err)
	}
	t.Cleanup(func() {
		defer orig.Close()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the runtime then retires this thread with the
			// goroutine instead of reusing it in the test namespace.
			t.Errorf("restore netns: %v", err)
			return
		}
		runtime.UnlockOSThread()
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// ip runs "ip -n NS args..." and fails the test on error.
func (k *kernelNS) ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", k.name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", k.name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipJSON runs "ip -n NS -j args..." and decodes its array.
func (k *kernelNS) ipJSON(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	out := k.ip(t, append([]string{"-j"}, args...)...)
	var v []map[string]any
	if strings.TrimSpace(out) == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("ip %s: decode %q: %v", strings.Join(args, " "), out, err)
	}
	return v
}

// snapshot is the namespace's links and routes (all tables), as ip prints them.
func (k *kernelNS) snapshot(t *testing.T) string {
	t.Helper()
	return k.ip(t, "-j", "link", "show") + "\n" +
		k.ip(t, "-j", "-4", "route", "show", "table", "all") + "\n" +
		k.ip(t, "-j", "-6", "route", "show", "table", "all")
}

func (k *kernelNS) sysctl(t *testing.T, key string) string {
	t.Helper()
	v, err := k.sys.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (k *kernelNS) linkExists(t *testing.T, name string) bool {
	t.Helper()
	ok, err := k.dp.LinkExists(name)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// veth makes a veth pair a/b in the namespace, both up.
func (k *kernelNS) veth(t *testing.T, a, b string) {
	t.Helper()
	k.ip(t, "link", "add", a, "type", "veth", "peer", "name", b)
	k.ip(t, "link", "set", a, "up")
	k.ip(t, "link", "set", b, "up")
}

func uniqueBridge() string { return "vnt" + randHex(4) }

// kernelNet is a nat network like libvirt's default, with IPv6 and routes.
func kernelNet(br string) *conf.Network {
	return &conf.Network{
		Name:    "t-" + br,
		Forward: conf.Forward{Mode: conf.ForwardNAT},
		Bridge:  conf.Bridge{Name: br, Delay: 4},
		MAC:     net.HardwareAddr{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef},
		MTU:     1400,
		IPs:     []conf.IP{ip4("192.168.150.1", 24), ip6("fd00:150::1", 64)},
		Routes: []conf.Route{
			route("10.150.0.0", 16, "192.168.150.2", 5),
			route("fd00:151::", 64, "fd00:150::2", 0),
		},
	}
}

func hasAddr(info []map[string]any, local string, prefixlen int) bool {
	for _, l := range info {
		for _, a := range l["addr_info"].([]any) {
			m := a.(map[string]any)
			if m["local"] == local && m["prefixlen"] == float64(prefixlen) {
				return true
			}
		}
	}
	return false
}

func findRoute(routes []map[string]any, dst, gw string) map[string]any {
	for _, r := range routes {
		if r["dst"] == dst && r["gateway"] == gw {
			return r
		}
	}
	return nil
}

func TestKernelStartStop(t *testing.T) {
	k := newKernelNS(t)
	br := uniqueBridge()
	n := kernelNet(br)
	before := k.snapshot(t)

	idx, err := k.dp.Start(n)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}

	links := k.ipJSON(t, "-d", "link", "show", "dev", br)
	if len(links) != 1 {
		t.Fatalf("ip link show %s: %v", br, links)
	}
	l := links[0]
	if got := int(l["ifindex"].(float64)); got != idx {
		t.Errorf("ifindex = %d, Start returned %d", got, idx)
	}
	if l["address"] != n.MAC.String() {
		t.Errorf("MAC = %v, want %s", l["address"], n.MAC)
	}
	if l["mtu"] != float64(1400) {
		t.Errorf("MTU = %v, want 1400", l["mtu"])
	}
	if flags, _ := l["flags"].([]any); !slices.Contains(flags, any("UP")) {
		t.Errorf("flags = %v, want UP", l["flags"])
	}
	info := l["linkinfo"].(map[string]any)
	data := info["info_data"].(map[string]any)
	if info["info_kind"] != "bridge" || data["stp_state"] != float64(1) || data["forward_delay"] != float64(400) {
		t.Errorf("linkinfo = %v, want a bridge with stp_state 1, forward_delay 400", info)
	}
	if data["vlan_filtering"] != float64(0) {
		t.Errorf("vlan_filtering = %v without macTableManager", data["vlan_filtering"])
	}

	addrs := k.ipJSON(t, "addr", "show", "dev", br)
	for _, a := range []struct {
		local string
		len   int
	}{{"192.168.150.1", 24}, {"fd00:150::1", 64}} {
		if !hasAddr(addrs, a.local, a.len) {
			t.Errorf("address %s/%d missing: %v", a.local, a.len, addrs)
		}
	}

	r4 := findRoute(k.ipJSON(t, "-4", "route", "show", "dev", br), "10.150.0.0/16", "192.168.150.2")
	if r4 == nil || r4["metric"] != float64(5) || r4["protocol"] != "static" {
		t.Errorf("IPv4 static route = %v, want 10.150.0.0/16 via 192.168.150.2 metric 5 proto static", r4)
	}
	r6 := findRoute(k.ipJSON(t, "-6", "route", "show", "dev", br), "fd00:151::/64", "fd00:150::2")
	if r6 == nil || r6["metric"] != float64(1) {
		t.Errorf("IPv6 static route = %v, want fd00:151::/64 via fd00:150::2 metric 1", r6)
	}

	for key, want := range map[string]string{
		"net/ipv6/conf/" + br + "/disable_ipv6": "0",
		"net/ipv6/conf/" + br + "/accept_ra":    "0",
		"net/ipv6/conf/" + br + "/autoconf":     "0",
		"net/ipv4/ip_forward":                   "1",
		"net/ipv6/conf/all/forwarding":          "1",
	} {
		if got := k.sysctl(t, key); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	if !k.linkExists(t, br) {
		t.Errorf("LinkExists(%s) = false after Start", br)
	}

	if err := k.dp.Stop(n); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if k.linkExists(t, br) {
		t.Errorf("bridge %s still exists after Stop", br)
	}
	if after := k.snapshot(t); after != before {
		t.Errorf("links and routes changed by Start+Stop:\nbefore %s\nafter  %s", before, after)
	}
	if err := k.dp.Stop(n); err != nil {
		t.Errorf("Stop of a stopped network: %v", err)
	}
}

func TestKernelIsolated(t *testing.T) {
	k := newKernelNS(t)
	br := uniqueBridge()
	n := &conf.Network{
		Name:   "t-iso",
		Bridge: conf.Bridge{Name: br, STP: conf.TristateNo, MACTableManager: conf.MACTableLibvirt},
		IPs:    []conf.IP{ip4("192.168.151.1", 24)},
	}
	n.Forward.Mode = conf.ForwardNone
	fwd := k.sysctl(t, "net/ipv4/ip_forward")

	if _, err := k.dp.Start(n); err != nil {
		t.Fatalf("Start: %v", err)
	}
	data := k.ipJSON(t, "-d", "link", "show", "dev", br)[0]["linkinfo"].(map[string]any)["info_data"].(map[string]any)
	if data["stp_state"] != float64(0) || data["forward_delay"] != float64(0) {
		t.Errorf("info_data = %v, want stp_state 0, forward_delay 0", data)
	}
	// Kernels without CONFIG_BRIDGE_VLAN_FILTERING refuse it; Start then
	// only warns. Probe with a bridge of our own to know which to expect.
	wantVF := float64(0)
	if err := exec.Command("ip", "-n", k.name, "link", "add", "vtprobe", "type", "bridge", "vlan_filtering", "1").Run(); err == nil {
		wantVF = 1
		k.ip(t, "link", "del", "vtprobe")
	} else {
		t.Log("kernel without bridge VLAN filtering: expecting vlan_filtering 0")
	}
	if data["vlan_filtering"] != wantVF {
		t.Errorf("vlan_filtering = %v, want %v for macTableManager='libvirt'", data["vlan_filtering"], wantVF)
	}
	if got := k.sysctl(t, "net/ipv6/conf/"+br+"/disable_ipv6"); got != "1" {
		t.Errorf("disable_ipv6 = %s on a network without IPv6, want 1", got)
	}
	if got := k.sysctl(t, "net/ipv4/ip_forward"); got != fwd {
		t.Errorf("isolated network changed ip_forward from %s to %s", fwd, got)
	}
	if err := k.dp.Stop(n); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func TestKernelCollision(t *testing.T) {
	k := newKernelNS(t)
	k.veth(t, "vtA", "vtB")
	k.ip(t, "addr", "add", "192.168.77.1/24", "dev", "vtA")
	before := k.snapshot(t)

	t.Run("subnet", func(t *testing.T) {
		k.enter(t)
		br := uniqueBridge()
		n := kernelNet(br)
		n.IPs = []conf.IP{ip4("192.168.77.254", 24)}
		n.Routes = nil
		_, err := k.dp.Start(n)
		var ce *CollisionError
		if !errors.As(err, &ce) || ce.Interface != "vtA" || ce.Route {
			t.Fatalf("Start = %v, want a collision with vtA", err)
		}
		if want := "network 192.168.77.0/24 is already in use by interface vtA"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
		if k.linkExists(t, br) {
			t.Errorf("bridge %s created despite the collision", br)
		}
		if err := k.dp.CheckCollisions(n); err == nil {
			t.Errorf("CheckCollisions found nothing")
		}
	})
	t.Run("static route", func(t *testing.T) {
		k.enter(t)
		br := uniqueBridge()
		n := kernelNet(br)
		n.Routes = []conf.Route{route("192.168.77.0", 24, "192.168.150.2", 0)}
		_, err := k.dp.Start(n)
		var ce *CollisionError
		if !errors.As(err, &ce) || ce.Interface != "vtA" || !ce.Route {
			t.Fatalf("Start = %v, want a static-route collision with vtA", err)
		}
		if k.linkExists(t, br) {
			t.Errorf("bridge %s created despite the collision", br)
		}
	})
	if after := k.snapshot(t); after != before {
		t.Errorf("a refused Start changed links or routes:\nbefore %s\nafter  %s", before, after)
	}
}

func TestKernelRollback(t *testing.T) {
	k := newKernelNS(t)
	before := k.ip(t, "-j", "link", "show")

	check := func(t *testing.T, br string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("Start succeeded")
		}
		if k.linkExists(t, br) {
			t.Errorf("bridge %s left behind after: %v", br, err)
		}
		if after := k.ip(t, "-j", "link", "show"); after != before {
			t.Errorf("links changed:\nbefore %s\nafter  %s", before, after)
		}
	}

	t.Run("kernel refuses the MTU", func(t *testing.T) {
		k.enter(t)
		br := uniqueBridge()
		n := kernelNet(br)
		n.MTU = 10 // below the minimum of 68
		_, err := k.dp.Start(n)
		check(t, br, err)
		if err != nil && !strings.Contains(err.Error(), "set mtu 10") {
			t.Errorf("error %q does not name the step", err)
		}
	})
	for _, step := range []string{stepMTU, stepSTP, stepSysctl, stepAddrs, stepMACTable, stepUp, stepRoutes, stepForwarding} {
		t.Run("fail at "+step, func(t *testing.T) {
			k.enter(t)
			br := uniqueBridge()
			k.dp.fail = func(s string) error {
				if s == step {
					return fmt.Errorf("injected failure at %s", s)
				}
				return nil
			}
			defer func() { k.dp.fail = nil }()
			_, err := k.dp.Start(kernelNet(br))
			check(t, br, err)
			if err != nil && !strings.Contains(err.Error(), "injected failure at "+step) {
				t.Errorf("error %q lost the cause", err)
			}
		})
	}
}

func TestKernelAdopt(t *testing.T) {
	k := newKernelNS(t)
	br := uniqueBridge()
	n := kernelNet(br)
	// libvirt's default: STP on with no delay, which the kernel raises to
	// its 2 s minimum when STP starts.
	n.Bridge.Delay = 0
	idx, err := k.dp.Start(n)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	data := k.ipJSON(t, "-d", "link", "show", "dev", br)[0]["linkinfo"].(map[string]any)["info_data"].(map[string]any)
	if data["stp_state"] != float64(1) || data["forward_delay"] != float64(200) {
		t.Errorf("info_data = %v, want stp_state 1, forward_delay 200", data)
	}

	// Damage it the way an administrator might: an address and a route gone.
	k.ip(t, "addr", "del", "192.168.150.1/24", "dev", br)
	k.ip(t, "-6", "addr", "del", "fd00:150::1/64", "dev", br)
	k.ip(t, "link", "set", br, "down")
	if findRoute(k.ipJSON(t, "-4", "route", "show", "dev", br), "10.150.0.0/16", "192.168.150.2") != nil {
		t.Fatalf("route survived its address")
	}

	if err := k.dp.Adopt(n, idx); err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	l := k.ipJSON(t, "link", "show", "dev", br)[0]
	if int(l["ifindex"].(float64)) != idx {
		t.Errorf("ifindex changed from %d to %v: the bridge was recreated", idx, l["ifindex"])
	}
	if flags, _ := l["flags"].([]any); !slices.Contains(flags, any("UP")) {
		t.Errorf("bridge not up after Adopt: %v", l["flags"])
	}
	addrs := k.ipJSON(t, "addr", "show", "dev", br)
	if !hasAddr(addrs, "192.168.150.1", 24) || !hasAddr(addrs, "fd00:150::1", 64) {
		t.Errorf("addresses not restored: %v", addrs)
	}
	if findRoute(k.ipJSON(t, "-4", "route", "show", "dev", br), "10.150.0.0/16", "192.168.150.2") == nil {
		t.Errorf("static route not restored")
	}

	// A second Adopt has nothing to do.
	snap := k.snapshot(t)
	if err := k.dp.Adopt(n, idx); err != nil {
		t.Fatalf("second Adopt: %v", err)
	}
	if after := k.snapshot(t); after != snap {
		t.Errorf("second Adopt changed state:\nbefore %s\nafter  %s", snap, after)
	}

	if err := k.dp.Adopt(n, idx+1000); !errors.Is(err, ErrBridgeReplaced) {
		t.Errorf("Adopt with the wrong ifindex = %v, want ErrBridgeReplaced", err)
	}
	if !k.linkExists(t, br) {
		t.Errorf("a refused Adopt removed the bridge")
	}
	if err := k.dp.Stop(n); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := k.dp.Adopt(n, idx); !errors.Is(err, ErrBridgeGone) {
		t.Errorf("Adopt after Stop = %v, want ErrBridgeGone", err)
	}
}

func TestKernelRAUplink(t *testing.T) {
	k := newKernelNS(t)
	k.veth(t, "vtUp", "vtPeer")
	for _, l := range []string{"vtUp", "vtPeer"} {
		if err := k.sys.Set("net/ipv6/conf/"+l+"/accept_ra", "1"); err != nil {
			t.Fatal(err)
		}
	}
	// What the kernel installs from a router advertisement: a default route
	// with protocol "ra" on the uplink.
	k.ip(t, "-6", "route", "add", "default", "via", "fe80::1", "dev", "vtUp", "proto", "ra")

	br := uniqueBridge()
	n := kernelNet(br)
	n.Forward.Mode = conf.ForwardRoute
	if _, err := k.dp.Start(n); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := k.sysctl(t, "net/ipv6/conf/vtUp/accept_ra"); got != "2" {
		t.Errorf("uplink accept_ra = %s, want 2", got)
	}
	if got := k.sysctl(t, "net/ipv6/conf/vtPeer/accept_ra"); got != "1" {
		t.Errorf("accept_ra of an interface without RA routes = %s, want it untouched (1)", got)
	}
	if got := k.sysctl(t, "net/ipv6/conf/all/forwarding"); got != "1" {
		t.Errorf("IPv6 forwarding = %s, want 1", got)
	}
	if err := k.dp.Stop(n); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func TestKernelStopLeavesOtherLinks(t *testing.T) {
	k := newKernelNS(t)
	k.veth(t, "vtX", "vtY")
	n := kernelNet("vtX")
	if err := k.dp.Stop(n); err == nil || !strings.Contains(err.Error(), "not a bridge") {
		t.Errorf("Stop on a veth named like the bridge = %v, want a refusal", err)
	}
	if !k.linkExists(t, "vtX") {
		t.Errorf("Stop deleted a link that is not a bridge")
	}
	if ok := k.linkExists(t, "lo"); !ok {
		t.Errorf("LinkExists(lo) = false")
	}
	for _, name := range []string{"vtnothere", "a-name-longer-than-ifnamsiz"} {
		if ok := k.linkExists(t, name); ok {
			t.Errorf("LinkExists(%s) = true", name)
		}
	}
}
