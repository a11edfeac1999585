package shaping

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/conf"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name.golden; -update rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./shaping -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run go test ./shaping -update after checking):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff lists the lines only in want (-) or only in got (+), in order.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	i, j := 0, 0
	for i < len(w) || j < len(g) {
		switch {
		case i < len(w) && j < len(g) && w[i] == g[j]:
			i, j = i+1, j+1
		case j < len(g) && !contains(w[i:], g[j]):
			fmt.Fprintf(&b, "+ %s\n", g[j])
			j++
		case i < len(w):
			fmt.Fprintf(&b, "- %s\n", w[i])
			i++
		default:
			fmt.Fprintf(&b, "+ %s\n", g[j])
			j++
		}
	}
	return b.String()
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// describe writes bw as the <bandwidth> element it comes from.
func describe(bw *conf.Bandwidth) string {
	if bw == nil {
		return "(no <bandwidth>)"
	}
	var b strings.Builder
	b.WriteString("<bandwidth>")
	for _, d := range []struct {
		name string
		r    *conf.Rate
	}{{"inbound", bw.Inbound}, {"outbound", bw.Outbound}} {
		if d.r == nil {
			continue
		}
		b.WriteString("<" + d.name)
		for _, a := range []struct {
			n string
			v uint64
		}{{"average", d.r.Average}, {"peak", d.r.Peak}, {"floor", d.r.Floor}, {"burst", d.r.Burst}} {
			if a.v != 0 {
				fmt.Fprintf(&b, " %s='%d'", a.n, a.v)
			}
		}
		b.WriteString("/>")
	}
	b.WriteString("</bandwidth>")
	return b.String()
}

func rate(avg, peak, floor, burst uint64) *conf.Rate {
	return &conf.Rate{Average: avg, Peak: peak, Floor: floor, Burst: burst}
}

// The cases of libvirt's virnetdevbandwidthtest, as the conformance README
// describes them, on a tap device ("eth0", ifindex 7). vnetd differs from
// libvirt by design: outbound is shaped on an IFB instead of policed, so
// it keeps peak and burst; no fw filter; the leaf is the probed kind.
var portCases = []struct {
	name string
	bw   *conf.Bandwidth
}{
	{"port-none", nil},
	{"port-empty", &conf.Bandwidth{}},
	{"port-inbound-average", &conf.Bandwidth{Inbound: rate(1024, 0, 0, 0)}},
	{"port-outbound-average", &conf.Bandwidth{Outbound: rate(1024, 0, 0, 0)}},
	{"port-all-attributes", &conf.Bandwidth{Inbound: rate(1, 2, 3, 4), Outbound: rate(5, 6, 0, 7)}},
	{"port-uint-max", &conf.Bandwidth{Inbound: rate(4294967295, 0, 0, 0), Outbound: rate(4294967295, 0, 0, 0)}},
	// Beyond the README: a floor alone is the bridge's business; the
	// largest values tc takes; a peak without a burst.
	{"port-floor-only", &conf.Bandwidth{Inbound: rate(0, 0, 1000, 0)}},
	{"port-limits", &conf.Bandwidth{Inbound: rate(MaxRate, MaxRate, 0, MaxBurst), Outbound: rate(MaxRate, 0, 0, MaxBurst)}},
	{"port-peak-no-burst", &conf.Bandwidth{Inbound: rate(12500, 25000, 0, 0)}},
}

func TestPlanPortGolden(t *testing.T) {
	for _, leaf := range []LeafKind{LeafPfifo, LeafFQCodel} {
		for _, c := range portCases {
			name := c.name
			if leaf != LeafPfifo {
				if c.name != "port-all-attributes" {
					continue
				}
				name += "-" + leaf.String()
			}
			t.Run(name, func(t *testing.T) {
				p, err := PlanPort("eth0", 7, c.bw, leaf)
				if err != nil {
					t.Fatal(err)
				}
				got := fmt.Sprintf("# PlanPort(eth0, ifindex 7, %s, leaf %s)\n%s", describe(c.bw), leaf, p)
				golden(t, name, got)
			})
		}
	}
}

var networkCases = []struct {
	name     string
	bw       *conf.Bandwidth
	floorSum uint64
}{
	{"network-none", nil, 0},
	{"network-inbound", &conf.Bandwidth{Inbound: rate(12500, 0, 0, 0)}, 0},
	{"network-inbound-peak-burst", &conf.Bandwidth{Inbound: rate(12500, 25000, 0, 256)}, 0},
	{"network-outbound", &conf.Bandwidth{Outbound: rate(6250, 12500, 0, 64)}, 0},
	{"network-both-floors-plugged", &conf.Bandwidth{Inbound: rate(12500, 0, 0, 0), Outbound: rate(12500, 0, 0, 0)}, 11250},
}

func TestPlanNetworkGolden(t *testing.T) {
	for _, c := range networkCases {
		t.Run(c.name, func(t *testing.T) {
			p, err := PlanNetwork("virbr0", 3, c.bw, c.floorSum, LeafPfifo)
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("# PlanNetwork(virbr0, ifindex 3, %s, floorSum %d, leaf pfifo)\n%s", describe(c.bw), c.floorSum, p)
			golden(t, c.name, got)
		})
	}
}

// TestPlanFloorGolden is the bench's floor scenario step by step: a
// network of 100 Mbit/s, floors of 60 and 30 Mbit/s plugged, the second
// changed to 20 Mbit/s and a new MAC, both unplugged.
func TestPlanFloorGolden(t *testing.T) {
	netBW := &conf.Bandwidth{Inbound: rate(12500, 0, 0, 0)}
	mac1, _ := net.ParseMAC("52:54:00:12:34:56")
	mac2, _ := net.ParseMAC("52:54:00:ab:cd:ef")
	mac3, _ := net.ParseMAC("52:54:00:00:00:01")
	var b strings.Builder
	step := func(what string, p Plan, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		fmt.Fprintf(&b, "# %s\n%s", what, p)
	}
	base, err := PlanNetwork("virbr0", 3, netBW, 0, LeafPfifo)
	step("network "+describe(netBW), base, err)
	f1 := Floor{ClassID: 3, MAC: mac1, Floor: 7500}
	p, err := PlanPlug("virbr0", netBW, f1, 0, LeafPfifo)
	step("plug 52:54:00:12:34:56 floor 7500 (class 3)", p, err)
	f2 := Floor{ClassID: 4, MAC: mac2, Floor: 3750, Average: 6250}
	p, err = PlanPlug("virbr0", netBW, f2, 7500, LeafPfifo)
	step("plug 52:54:00:ab:cd:ef floor 3750 average 6250 (class 4)", p, err)
	f2 = Floor{ClassID: 4, MAC: mac3, Floor: 2500}
	p, err = PlanUpdate("virbr0", netBW, f2, 7500, LeafPfifo)
	step("update class 4: floor 2500, no average, MAC 52:54:00:00:00:01", p, err)
	p, err = PlanUnplug("virbr0", netBW, f1, 2500)
	step("unplug class 3", p, err)
	p, err = PlanUnplug("virbr0", netBW, f2, 0)
	step("unplug class 4", p, err)
	golden(t, "floor-sequence", b.String())
}

func TestPlanErrors(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	netBW := &conf.Bandwidth{Inbound: rate(100, 0, 0, 0)}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"no device", func() error { _, err := PlanPort("", 1, nil, LeafPfifo); return err }(), "no device name"},
		{"bad ifindex", func() error { _, err := PlanPort("eth0", 0, nil, LeafPfifo); return err }(), "eth0: invalid ifindex 0"},
		{"bad leaf", func() error { _, err := PlanPort("eth0", 1, nil, 0); return err }(), "invalid leaf qdisc"},
		{"average over limit", func() error {
			_, err := PlanPort("eth0", 1, &conf.Bandwidth{Inbound: rate(MaxRate+1, 0, 0, 0)}, LeafPfifo)
			return err
		}(), "eth0: <inbound average='18014398509481985'>: over the limit of 18014398509481984 kB/s"},
		{"peak over limit", func() error {
			_, err := PlanPort("eth0", 1, &conf.Bandwidth{Outbound: rate(1, MaxRate+1, 0, 0)}, LeafPfifo)
			return err
		}(), "<outbound peak='18014398509481985'>"},
		{"burst over limit", func() error {
			_, err := PlanPort("eth0", 1, &conf.Bandwidth{Inbound: rate(1, 0, 0, MaxBurst+1)}, LeafPfifo)
			return err
		}(), "eth0: <inbound burst='4194304'>: over the limit of 4194303 KiB"},
		{"burst without average", func() error {
			_, err := PlanPort("eth0", 1, &conf.Bandwidth{Inbound: rate(0, 0, 5, 4)}, LeafPfifo)
			return err
		}(), "<inbound>: peak and burst need an average"},
		{"outbound floor", func() error {
			_, err := PlanPort("eth0", 1, &conf.Bandwidth{Outbound: rate(1, 0, 5, 0)}, LeafPfifo)
			return err
		}(), "<outbound floor='5'>: floor is only for inbound"},
		{"floors without network inbound", func() error {
			_, err := PlanNetwork("br0", 1, &conf.Bandwidth{Outbound: rate(1, 0, 0, 0)}, 5, LeafPfifo)
			return err
		}(), "br0: floors of 5 kB/s are plugged but the network has no inbound average"},
		{"plug without network inbound", func() error {
			_, err := PlanPlug("br0", &conf.Bandwidth{}, Floor{ClassID: 3, MAC: mac, Floor: 1}, 0, LeafPfifo)
			return err
		}(), "br0: the network has no inbound average, required by a floor"},
		{"plug reserved class", func() error {
			_, err := PlanPlug("br0", netBW, Floor{ClassID: 2, MAC: mac, Floor: 1}, 0, LeafPfifo)
			return err
		}(), "br0: floor class id 2 out of range 3-4095"},
		{"plug without MAC", func() error {
			_, err := PlanPlug("br0", netBW, Floor{ClassID: 3, Floor: 1}, 0, LeafPfifo)
			return err
		}(), "br0: class 1:3: malformed MAC address"},
		{"plug without floor", func() error {
			_, err := PlanPlug("br0", netBW, Floor{ClassID: 3, MAC: mac}, 0, LeafPfifo)
			return err
		}(), "br0: <inbound floor='0'>: must be 1 to"},
		{"unplug class over max", func() error {
			_, err := PlanUnplug("br0", netBW, Floor{ClassID: MaxClassID + 1}, 0)
			return err
		}(), "floor class id 4096 out of range"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", c.err, c.want)
			}
		})
	}
}

func TestHandleString(t *testing.T) {
	for h, want := range map[Handle]string{
		HandleRoot:       "root",
		HandleIngress:    "ingress",
		ingressQdisc:     "ffff:",
		NewHandle(1, 0):  "1:",
		NewHandle(1, 2):  "1:2",
		NewHandle(1, 26): "1:1a",
	} {
		if got := h.String(); got != want {
			t.Errorf("Handle(%#x) = %q, want %q", uint32(h), got, want)
		}
	}
	if got := u32Handle(0x800<<20 | 0x800); got != "800::800" {
		t.Errorf("u32Handle = %q", got)
	}
}

// TestFloorFilterKeys checks the MAC match against the Ethernet header as
// the kernel's u32 reads it: words at -16 and -12 from the network header.
func TestFloorFilterKeys(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	f := floorFilter("br0", Floor{ClassID: 5, MAC: mac})
	// Two bytes before the frame, then the Ethernet header, then IPv4.
	frame := append([]byte{0xaa, 0xbb}, mac...)
	frame = append(frame, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45)
	nh := 2 + 14
	for _, k := range f.Keys {
		off := nh + int(k.Off)
		w := uint32(frame[off])<<24 | uint32(frame[off+1])<<16 | uint32(frame[off+2])<<8 | uint32(frame[off+3])
		if w&k.Mask != k.Val {
			t.Errorf("key %+v does not match the frame's word %#08x", k, w)
		}
	}
	other := append([]byte(nil), frame...)
	other[2+5] ^= 1 // another destination MAC
	matched := true
	for _, k := range f.Keys {
		off := nh + int(k.Off)
		w := uint32(other[off])<<24 | uint32(other[off+1])<<16 | uint32(other[off+2])<<8 | uint32(other[off+3])
		matched = matched && w&k.Mask == k.Val
	}
	if matched {
		t.Error("keys match another MAC")
	}
	if f.FlowID != NewHandle(1, 5) || f.Handle != 0x800<<20|5 || f.Prio != prioFloor {
		t.Errorf("filter %+v", f)
	}
}
