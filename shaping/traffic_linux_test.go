package shaping

// Traffic through shaped devices: iperf3 throughput in the right ballpark
// (the exact figures are bench/shaping.sh's), and floor classification of
// IPv4 and IPv6 alike.

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/internal/nettest"
)

// iperf runs an iperf3 server in serverNS and a client in clientNS for 5
// seconds and returns the goodput the server received, in Mbit/s.
func iperf(t *testing.T, clientNS, serverNS, serverIP string) float64 {
	t.Helper()
	srv := exec.Command("ip", "netns", "exec", serverNS, "iperf3", "-s", "-1")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	defer func() {
		srv.Process.Kill()
		<-done
	}()
	for i := 0; ; i++ { // until the server listens
		if out, _ := nettest.In(serverNS, "ss", "-Hltn", "sport", "= :5201"); strings.Contains(out, "5201") {
			break
		}
		if i == 100 {
			t.Fatal("iperf3 server does not listen")
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err := nettest.In(clientNS, "iperf3", "-c", serverIP, "-t", "5", "-J")
	if err != nil {
		t.Fatalf("iperf3: %v", err)
	}
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("iperf3 -J: %v\n%s", err, out)
	}
	if r.Error != "" {
		t.Fatalf("iperf3: %s", r.Error)
	}
	return r.End.SumReceived.BitsPerSecond / 1e6
}

// TestKernelIperf shapes a port to 10 Mbit/s each way and checks TCP gets
// within ±25% of it: 95.6% of the link-layer rate is TCP payload at MTU
// 1500.
func TestKernelIperf(t *testing.T) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("needs iperf3")
	}
	if testing.Short() {
		t.Skip("10 s of iperf3")
	}
	host, guest := portNS(t)
	s := newShaper(t, host)
	ctx := context.Background()
	if err := s.ApplyPort(ctx, "v0", &conf.Bandwidth{Inbound: rate(1250, 0, 0, 0), Outbound: rate(1250, 0, 0, 0)}); err != nil {
		t.Fatal(err)
	}
	const want = 10 * 1448.0 / 1514
	for _, c := range []struct {
		dir            string
		client, server string
		ip             string
	}{
		{"inbound", host, guest, "10.99.0.2"},
		{"outbound", guest, host, "10.99.0.1"},
	} {
		got := iperf(t, c.client, c.server, c.ip)
		t.Logf("%s: %.2f Mbit/s (TCP payload at 10 Mbit/s: %.2f)", c.dir, got, want)
		if got < 0.75*want || got > 1.25*want {
			t.Errorf("%s: %.2f Mbit/s, want %.2f ± 25%%", c.dir, got, want)
		}
	}
}

// TestKernelFloorClassifiesAll checks that a port's floor class gets the
// traffic to its MAC whatever the protocol (libvirt's filter matches IPv4
// only).
func TestKernelFloorClassifiesAll(t *testing.T) {
	nettest.SkipUnlessRoot(t)
	host, guest := nettest.NewNS(t, "shfh"), nettest.NewNS(t, "shfg")
	nettest.Must(t, "ip", "-n", host, "link", "add", "br0", "type", "bridge")
	nettest.Veth(t, host, "vp0", guest, "eth0")
	nettest.Must(t, "ip", "-n", host, "link", "set", "vp0", "master", "br0")
	nettest.Must(t, "ip", "-n", host, "link", "set", "br0", "up")
	nettest.Must(t, "ip", "-n", host, "addr", "add", "10.98.0.1/24", "dev", "br0")
	nettest.Must(t, "ip", "-n", host, "addr", "add", "fd98::1/64", "dev", "br0", "nodad")
	nettest.Must(t, "ip", "-n", guest, "addr", "add", "10.98.0.2/24", "dev", "eth0")
	nettest.Must(t, "ip", "-n", guest, "addr", "add", "fd98::2/64", "dev", "eth0", "nodad")
	var link []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(nettest.MustIn(t, guest, "ip", "-j", "link", "show", "eth0")), &link); err != nil || len(link) != 1 {
		t.Fatalf("guest MAC: %v", err)
	}
	mac, err := net.ParseMAC(link[0].Address)
	if err != nil {
		t.Fatal(err)
	}

	s := newShaper(t, host)
	ctx := context.Background()
	n := &conf.Network{Name: "n", Forward: conf.Forward{Mode: conf.ForwardNAT}, Bandwidth: &conf.Bandwidth{Inbound: rate(12500, 0, 0, 0)}}
	if err := s.ApplyNetwork(ctx, "br0", n.Bandwidth, 0); err != nil {
		t.Fatal(err)
	}
	var ids ClassIDs
	id, err := s.PlugFloor(ctx, "br0", n, &conf.Port{MAC: mac, Bandwidth: &conf.Bandwidth{Inbound: &conf.Rate{Floor: 1000}}}, 0, &ids)
	if err != nil {
		t.Fatal(err)
	}
	counts := func() (floor, rest uint32) {
		st, err := s.Stats(ctx, "br0")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range st {
			switch c.Class {
			case NewHandle(1, id):
				floor = c.Packets
			case NewHandle(1, 2):
				rest = c.Packets
			}
		}
		return floor, rest
	}
	// Resolve neighbours first: requests are broadcast (class 1:2).
	nettest.MustIn(t, host, "ping", "-c", "1", "-W", "2", "10.98.0.2")
	nettest.MustIn(t, host, "ping", "-6", "-c", "1", "-W", "2", "fd98::2")
	f0, _ := counts()
	nettest.MustIn(t, host, "ping", "-c", "5", "-i", "0.05", "10.98.0.2")
	f1, _ := counts()
	nettest.MustIn(t, host, "ping", "-6", "-c", "5", "-i", "0.05", "fd98::2")
	f2, _ := counts()
	if f1-f0 < 5 {
		t.Errorf("IPv4: %d packets in the floor class, want ≥ 5", f1-f0)
	}
	if f2-f1 < 5 {
		t.Errorf("IPv6: %d packets in the floor class, want ≥ 5", f2-f1)
	}
	if err := s.ClearNetwork(ctx, "br0"); err != nil {
		t.Fatal(err)
	}
	assertClean(t, host, "br0")
}
