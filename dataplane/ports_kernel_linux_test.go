package dataplane

// Real-kernel tests of the port devices, in the namespaces of
// kernel_linux_test.go; they skip unless run as root.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"os/user"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vnetd/vnetd/conf"
)

// peerNS makes a second namespace, for a guest's end of a veth.
func (k *kernelNS) peerNS(t *testing.T) string {
	t.Helper()
	name := "vnetd-dpg-" + randHex(4)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// ipIn runs "ip -n ns args..." in another namespace.
func ipIn(t *testing.T, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
}

// bridgeJSON runs "bridge -n NS -j args..." and decodes its array.
func (k *kernelNS) bridgeJSON(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	if _, err := exec.LookPath("bridge"); err != nil {
		t.Skip("needs iproute2's bridge to observe the kernel")
	}
	cmd := exec.Command("bridge", append([]string{"-n", k.name, "-j"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bridge %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return decodeJSONArray(t, out)
}

func decodeJSONArray(t *testing.T, out []byte) []map[string]any {
	t.Helper()
	var v []map[string]any
	if strings.TrimSpace(string(out)) == "" {
		return nil
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	return v
}

// link is "ip -d link show dev name" of one device.
func (k *kernelNS) link(t *testing.T, name string) map[string]any {
	t.Helper()
	l := k.ipJSON(t, "-d", "link", "show", "dev", name)
	if len(l) != 1 {
		t.Fatalf("ip link show %s: %v", name, l)
	}
	return l[0]
}

// brport is "bridge -d link show dev name" of one bridge port.
func (k *kernelNS) brport(t *testing.T, name string) map[string]any {
	t.Helper()
	l := k.bridgeJSON(t, "-d", "link", "show", "dev", name)
	if len(l) != 1 {
		t.Fatalf("bridge link show %s: %v", name, l)
	}
	return l[0]
}

// fdb finds the bridge br's FDB entry for mac, nil if there is none.
func (k *kernelNS) fdb(t *testing.T, br string, mac net.HardwareAddr) map[string]any {
	t.Helper()
	for _, e := range k.bridgeJSON(t, "fdb", "show", "br", br) {
		if e["mac"] == mac.String() {
			return e
		}
	}
	return nil
}

// plainBridge makes a bridge with STP off, up, as a host bridge would be.
func (k *kernelNS) plainBridge(t *testing.T) string {
	t.Helper()
	br := uniqueBridge()
	k.ip(t, "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
	k.ip(t, "link", "set", br, "up")
	return br
}

func hasFlag(l map[string]any, flag string) bool {
	flags, _ := l["flags"].([]any)
	return slices.Contains(flags, any(flag))
}

// (a) a veth standing in for a guest reaches the network's bridge through the
// attached port, and DetachPort takes it out again.
func TestKernelPortTraffic(t *testing.T) {
	k := newKernelNS(t)
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("needs ping")
	}
	br := uniqueBridge()
	n := &conf.Network{
		Name:   "t-port",
		Bridge: conf.Bridge{Name: br, STP: conf.TristateNo},
		IPs:    []conf.IP{ip4("192.168.152.1", 24)},
	}
	n.Forward.Mode = conf.ForwardNone
	if _, err := k.dp.Start(n); err != nil {
		t.Fatalf("Start: %v", err)
	}
	host, guest := "vth"+randHex(3), "vtg"+randHex(3)
	k.ip(t, "link", "add", host, "type", "veth", "peer", "name", guest)
	g := k.peerNS(t)
	k.ip(t, "link", "set", guest, "netns", g)
	ipIn(t, g, "addr", "add", "192.168.152.10/24", "dev", guest)
	ipIn(t, g, "link", "set", guest, "up")

	pl := PortLink{Bridge: br, Name: host, MTU: 1400}
	idx, err := k.dp.AttachPort(pl)
	if err != nil {
		t.Fatalf("AttachPort: %v", err)
	}
	l := k.link(t, host)
	if int(l["ifindex"].(float64)) != idx || l["master"] != br || l["mtu"] != float64(1400) || !hasFlag(l, "UP") {
		t.Errorf("port after AttachPort (ifindex %d): %v; want master %s, mtu 1400, UP", idx, l, br)
	}
	if got, err := k.dp.LinkIndex(host); err != nil || got != idx {
		t.Errorf("LinkIndex(%s) = %d, %v; want %d", host, got, err, idx)
	}

	var out []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err = exec.Command("ip", "netns", "exec", g, "ping", "-n", "-c", "1", "-W", "1", "192.168.152.1").CombinedOutput()
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("ping from the guest namespace to the bridge: %v: %s", err, out)
	}

	if err := k.dp.DetachPort(pl, false); err != nil {
		t.Fatalf("DetachPort: %v", err)
	}
	l = k.link(t, host)
	if _, ok := l["master"]; ok {
		t.Errorf("port still has master %v after DetachPort", l["master"])
	}
	if err := k.dp.DetachPort(pl, false); err != nil {
		t.Errorf("second DetachPort: %v", err)
	}
	if err := k.dp.DetachPort(PortLink{Bridge: br, Name: "vtnothere"}, true); err != nil {
		t.Errorf("DetachPort of a missing device: %v", err)
	}
	if _, err := k.dp.LinkIndex("vtnothere"); !errors.Is(err, ErrNoSuchLink) {
		t.Errorf("LinkIndex of a missing device = %v, want ErrNoSuchLink", err)
	}
}

func TestKernelAttachPortRefusals(t *testing.T) {
	k := newKernelNS(t)
	br, other := k.plainBridge(t), k.plainBridge(t)
	k.veth(t, "vtA", "vtB")

	if _, err := k.dp.AttachPort(PortLink{Bridge: "vtB", Name: "vtA"}); err == nil || !strings.Contains(err.Error(), "vtB is a veth, not a bridge") {
		t.Errorf("AttachPort to a veth = %v", err)
	}
	if _, err := k.dp.AttachPort(PortLink{Bridge: "vtnothere", Name: "vtA"}); !errors.Is(err, ErrNoSuchLink) {
		t.Errorf("AttachPort to a missing bridge = %v, want ErrNoSuchLink", err)
	}
	if _, err := k.dp.AttachPort(PortLink{Bridge: br, Name: "vtnothere"}); !errors.Is(err, ErrNoSuchLink) {
		t.Errorf("AttachPort of a missing device = %v, want ErrNoSuchLink", err)
	}
	k.ip(t, "link", "set", "vtA", "master", other)
	_, err := k.dp.AttachPort(PortLink{Bridge: br, Name: "vtA"})
	if err == nil || !strings.Contains(err.Error(), "port vtA on bridge "+br+": enslave: device already has another master ("+other+")") {
		t.Errorf("AttachPort of another bridge's port = %v", err)
	}
	// DetachPort leaves another bridge's port alone.
	if err := k.dp.DetachPort(PortLink{Bridge: br, Name: "vtA"}, false); err != nil {
		t.Errorf("DetachPort of another bridge's port: %v", err)
	}
	if got := k.link(t, "vtA")["master"]; got != other {
		t.Errorf("DetachPort took the port from %s (master now %v)", other, got)
	}
	if err := k.dp.DetachPort(PortLink{Bridge: br, Name: "vtA"}, true); err == nil || !strings.Contains(err.Error(), "not a tap") {
		t.Errorf("DetachPort deleting a veth = %v", err)
	}
	if !k.linkExists(t, "vtA") {
		t.Errorf("DetachPort deleted a veth")
	}
}

// Every step of AttachPort failing leaves the device as it was.
func TestKernelAttachPortRollback(t *testing.T) {
	k := newKernelNS(t)
	br := k.plainBridge(t)
	k.veth(t, "vtA", "vtB")
	k.ip(t, "link", "set", "vtA", "down")
	pl := PortLink{Bridge: br, Name: "vtA", MAC: guestMAC, MTU: 1300, Isolated: true, MACTableLibvirt: true}
	t.Cleanup(func() { k.dp.fail = nil })
	for _, step := range []string{stepPortMTU, stepPortMaster, stepPortFlags, stepPortFDB, stepPortUp} {
		k.dp.fail = func(s string) error {
			if s == step {
				return errors.New("injected")
			}
			return nil
		}
		_, err := k.dp.AttachPort(pl)
		if err == nil || !strings.Contains(err.Error(), "port vtA on bridge "+br+": "+step+": injected") {
			t.Errorf("step %s: AttachPort = %v", step, err)
			continue
		}
		l := k.link(t, "vtA")
		if _, ok := l["master"]; ok || l["mtu"] != float64(1500) || hasFlag(l, "UP") {
			t.Errorf("step %s: device left as %v; want no master, mtu 1500, down", step, l)
		}
		if e := k.fdb(t, br, guestMAC); e != nil {
			t.Errorf("step %s: FDB entry left: %v", step, e)
		}
	}
}

// (b) a persistent multi-queue vnet_hdr tap with an owner.
func TestKernelTap(t *testing.T) {
	k := newKernelNS(t)
	br := k.plainBridge(t)
	tap := "vtap" + randHex(3)
	mac := HostTapMAC(guestMAC)
	if err := k.dp.CreateTap(tap, TapOptions{Owner: 1000, MultiQueue: true, VnetHdr: true, MAC: mac}); err != nil {
		t.Fatalf("CreateTap: %v", err)
	}
	l := k.link(t, tap)
	info := l["linkinfo"].(map[string]any)
	data := info["info_data"].(map[string]any)
	owner := []any{"1000"}
	if u, err := user.LookupId("1000"); err == nil {
		owner = append(owner, u.Username) // ip prints the name when it has one
	}
	if info["info_kind"] != "tun" || data["type"] != "tap" || data["pi"] != false || data["vnet_hdr"] != true ||
		data["multi_queue"] != true || data["persist"] != true || !slices.Contains(owner, data["user"]) {
		t.Errorf("tap linkinfo = %v; want a persistent tap, pi off, vnet_hdr, multi_queue, user 1000", info)
	}
	if g, ok := data["group"]; ok {
		t.Errorf("tap has group %v; none was asked for", g)
	}
	if l["address"] != mac.String() || hasFlag(l, "UP") {
		t.Errorf("tap address %v, flags %v; want %s, down", l["address"], l["flags"], mac)
	}

	err := k.dp.CreateTap(tap, TapOptions{Owner: -1})
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "tap "+tap+": create: a device of that name already exists") {
		t.Errorf("CreateTap of an existing tap = %v", err)
	}
	k.veth(t, "vtA", "vtB")
	if err := k.dp.CreateTap("vtA", TapOptions{Owner: -1}); !errors.Is(err, unix.EBUSY) {
		t.Errorf("CreateTap over a veth = %v", err)
	}
	if k.link(t, "vtA")["linkinfo"].(map[string]any)["info_kind"] != "veth" {
		t.Errorf("the veth changed")
	}

	pl := PortLink{Bridge: br, Name: tap, MTU: 1450}
	if _, err := k.dp.AttachPort(pl); err != nil {
		t.Fatalf("AttachPort: %v", err)
	}
	if l := k.link(t, tap); l["master"] != br || l["mtu"] != float64(1450) || !hasFlag(l, "UP") {
		t.Errorf("tap after AttachPort: %v", l)
	}
	if err := k.dp.DetachPort(pl, true); err != nil {
		t.Fatalf("DetachPort: %v", err)
	}
	if k.linkExists(t, tap) {
		t.Errorf("tap %s still exists after DetachPort with deleteLink", tap)
	}

	// Without an owner: no user shown; DeleteLink removes a tap too.
	tap2 := "vtap" + randHex(3)
	if err := k.dp.CreateTap(tap2, TapOptions{Owner: -1}); err != nil {
		t.Fatalf("CreateTap without owner: %v", err)
	}
	data = k.link(t, tap2)["linkinfo"].(map[string]any)["info_data"].(map[string]any)
	if _, ok := data["user"]; ok || data["persist"] != true || data["multi_queue"] != false || data["vnet_hdr"] != false {
		t.Errorf("tap without options: %v", data)
	}
	if err := k.dp.DeleteLink(tap2); err != nil {
		t.Fatalf("DeleteLink: %v", err)
	}
	if k.linkExists(t, tap2) {
		t.Errorf("tap %s survived DeleteLink", tap2)
	}

	// A refused option leaves nothing behind.
	if err := k.dp.CreateTap("vtap"+randHex(3), TapOptions{Owner: -1, MAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}}); err == nil {
		t.Errorf("CreateTap with a multicast MAC succeeded")
	}
	if err := k.dp.CreateTap("vnet%d", TapOptions{Owner: -1}); err == nil {
		t.Errorf("CreateTap with a name template succeeded")
	}
	taps := 0
	for _, l := range k.ipJSON(t, "-d", "link", "show") {
		if info, ok := l["linkinfo"].(map[string]any); ok && info["info_kind"] == "tun" {
			taps++
		}
	}
	if taps != 0 {
		t.Errorf("%d taps left", taps)
	}
}

// (c) <port isolated='yes'>.
func TestKernelPortIsolated(t *testing.T) {
	k := newKernelNS(t)
	br := k.plainBridge(t)
	k.veth(t, "vtA", "vtB")
	k.veth(t, "vtC", "vtD")
	if _, err := k.dp.AttachPort(PortLink{Bridge: br, Name: "vtA", Isolated: true}); err != nil {
		t.Fatalf("AttachPort: %v", err)
	}
	if _, err := k.dp.AttachPort(PortLink{Bridge: br, Name: "vtC"}); err != nil {
		t.Fatalf("AttachPort: %v", err)
	}
	if p := k.brport(t, "vtA"); p["isolated"] != true || p["learning"] != true || p["flood"] != true {
		t.Errorf("isolated port: %v; want isolated, learning, flood", p)
	}
	if p := k.brport(t, "vtC"); p["isolated"] != false {
		t.Errorf("plain port: isolated %v", p["isolated"])
	}
	// Re-attaching (as after a restart) applies the flags it is given.
	if _, err := k.dp.AttachPort(PortLink{Bridge: br, Name: "vtA"}); err != nil {
		t.Fatalf("AttachPort again: %v", err)
	}
	if p := k.brport(t, "vtA"); p["isolated"] != false {
		t.Errorf("re-attached port still isolated")
	}
}

// (d) macTableManager='libvirt'.
func TestKernelPortMACTableLibvirt(t *testing.T) {
	k := newKernelNS(t)
	br := k.plainBridge(t)
	k.veth(t, "vtA", "vtB")
	pl := PortLink{Bridge: br, Name: "vtA", MAC: guestMAC, MACTableLibvirt: true}
	for i := range 2 { // the second attach is a re-adoption: same result
		if _, err := k.dp.AttachPort(pl); err != nil {
			t.Fatalf("AttachPort #%d: %v", i+1, err)
		}
	}
	if p := k.brport(t, "vtA"); p["learning"] != false || p["flood"] != false || p["isolated"] != false {
		t.Errorf("port: %v; want learning off, flood off", p)
	}
	e := k.fdb(t, br, guestMAC)
	if e == nil || e["ifname"] != "vtA" || e["master"] != br || e["state"] != "static" {
		t.Errorf("FDB entry = %v; want %s dev vtA master %s static", e, guestMAC, br)
	}
	n := 0
	for _, e := range k.bridgeJSON(t, "fdb", "show", "br", br) {
		if e["mac"] == guestMAC.String() {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d FDB entries for %s, want 1", n, guestMAC)
	}
	if err := k.dp.DetachPort(pl, false); err != nil {
		t.Fatalf("DetachPort: %v", err)
	}
	if e := k.fdb(t, br, guestMAC); e != nil {
		t.Errorf("FDB entry left after DetachPort: %v", e)
	}
	if _, ok := k.link(t, "vtA")["master"]; ok {
		t.Errorf("port still in the bridge")
	}
}

// (e) macvtap in each mode on a veth standing in for a NIC.
func TestKernelMacvtap(t *testing.T) {
	k := newKernelNS(t)
	for i, tc := range []struct {
		mode conf.MacvtapMode
		want string
	}{
		{conf.MacvtapVEPA, "vepa"},
		{conf.MacvtapPrivate, "private"},
		{conf.MacvtapBridge, "bridge"},
		{conf.MacvtapPassthrough, "passthru"},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			k.enter(t)
			parent, peer, name := fmt.Sprintf("vtp%d", i), fmt.Sprintf("vtq%d", i), fmt.Sprintf("mvt%d%s", i, randHex(2))
			k.veth(t, parent, peer)
			mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x10, byte(i)}
			idx, err := k.dp.CreateMacvtap(name, parent, tc.mode, mac, 1400)
			if err != nil {
				t.Fatalf("CreateMacvtap: %v", err)
			}
			l := k.link(t, name)
			info := l["linkinfo"].(map[string]any)
			if info["info_kind"] != "macvtap" || info["info_data"].(map[string]any)["mode"] != tc.want {
				t.Errorf("linkinfo = %v, want macvtap mode %s", info, tc.want)
			}
			if int(l["ifindex"].(float64)) != idx || l["link"] != parent || l["mtu"] != float64(1400) || !hasFlag(l, "UP") {
				t.Errorf("macvtap = %v; want ifindex %d, link %s, mtu 1400, UP", l, idx, parent)
			}
			wantMAC := mac.String()
			if tc.mode == conf.MacvtapPassthrough {
				wantMAC = k.link(t, parent)["address"].(string) // the kernel's choice
			}
			if l["address"] != wantMAC {
				t.Errorf("address = %v, want %s", l["address"], wantMAC)
			}
			if err := k.dp.DeleteLink(name); err != nil {
				t.Fatalf("DeleteLink: %v", err)
			}
			if k.linkExists(t, name) {
				t.Errorf("macvtap survived DeleteLink")
			}
			if err := k.dp.DeleteLink(name); err != nil {
				t.Errorf("DeleteLink of a missing device: %v", err)
			}
		})
	}

	k.veth(t, "vtA", "vtB")
	if _, err := k.dp.CreateMacvtap("mvtx", "vtnothere", conf.MacvtapBridge, nil, 0); !errors.Is(err, ErrNoSuchLink) {
		t.Errorf("CreateMacvtap on a missing parent = %v", err)
	}
	if _, err := k.dp.CreateMacvtap("mvtx", "vtA", conf.MacvtapBridge, nil, 9000); err == nil {
		t.Errorf("CreateMacvtap with an MTU above the parent's succeeded")
	}
	if k.linkExists(t, "mvtx") {
		t.Errorf("a failed CreateMacvtap left mvtx")
	}
	// Passthrough takes the parent whole: a second macvtap is refused and
	// leaves nothing.
	if _, err := k.dp.CreateMacvtap("mvty", "vtA", conf.MacvtapPassthrough, nil, 0); err != nil {
		t.Fatalf("CreateMacvtap passthrough: %v", err)
	}
	if _, err := k.dp.CreateMacvtap("mvtz", "vtA", conf.MacvtapBridge, nil, 0); err == nil {
		t.Errorf("a second macvtap on a passthrough parent was created")
	}
	if k.linkExists(t, "mvtz") {
		t.Errorf("refused macvtap left behind")
	}
	if err := k.dp.DeleteLink("vtA"); err == nil || !strings.Contains(err.Error(), "it is a veth, not a tap or macvtap") {
		t.Errorf("DeleteLink of a veth = %v", err)
	}
	if !k.linkExists(t, "vtA") {
		t.Errorf("DeleteLink deleted a veth")
	}
}
