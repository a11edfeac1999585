package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/client"
	"github.com/vnetd/vnetd/internal/nettest"
)

// Crash durability (issue 10): whatever vnetd acknowledged before a SIGKILL
// is there after the restart. make test runs these bounded; bench/crash.sh
// runs them long through these variables (and VNETD_CRASH_TAG, see
// crashNS).
type crashSettings struct {
	kills    int           // VNETD_CRASH_KILLS, per family and for the ports
	interval time.Duration // VNETD_CRASH_INTERVAL, between DHCP kills
	rate     int           // VNETD_CRASH_RATE, exchanges/s offered by perfdhcp
	clients  int           // VNETD_CRASH_CLIENTS, perfdhcp's -R
}

func crashConfig(t *testing.T) crashSettings {
	t.Helper()
	c := crashSettings{kills: 5, interval: 1500 * time.Millisecond, rate: 1000, clients: 15000}
	for _, v := range []struct {
		env      string
		dst      *int
		min, max int
	}{
		{"VNETD_CRASH_KILLS", &c.kills, 1, 1000},
		{"VNETD_CRASH_RATE", &c.rate, 1, 100000},
		// The DHCPv4 range holds 20480 addresses.
		{"VNETD_CRASH_CLIENTS", &c.clients, 1, 20000},
	} {
		if s := os.Getenv(v.env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < v.min || n > v.max {
				t.Fatalf("%s=%q: want a number from %d to %d", v.env, s, v.min, v.max)
			}
			*v.dst = n
		}
	}
	if tag := os.Getenv("VNETD_CRASH_TAG"); !regexp.MustCompile(`^[a-z0-9]{0,8}$`).MatchString(tag) {
		t.Fatalf("VNETD_CRASH_TAG=%q: want up to 8 lowercase letters and digits", tag)
	}
	if s := os.Getenv("VNETD_CRASH_INTERVAL"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 100*time.Millisecond {
			t.Fatalf("VNETD_CRASH_INTERVAL=%q: want a duration of at least 100ms", s)
		}
		c.interval = d
	}
	return c
}

// crashNS is nettest.NewNS with VNETD_CRASH_TAG in the name, so that
// bench/crash.sh can remove exactly its own namespaces when it is
// interrupted (an interrupted test runs no cleanups).
func crashNS(t *testing.T, prefix string) string {
	return nettest.NewNS(t, prefix+os.Getenv("VNETD_CRASH_TAG"))
}

// dhcpLoad is a vnetd namespace serving one network with large DHCPv4 and
// DHCPv6 ranges to a client namespace where perfdhcp runs.
type dhcpLoad struct {
	srv, cli string
	d        *daemon
	net      string
}

func newDHCPLoad(t *testing.T) *dhcpLoad {
	t.Helper()
	nettest.SkipUnlessRoot(t)
	if _, err := exec.LookPath("perfdhcp"); err != nil {
		t.Skip("needs perfdhcp (Debian package kea-admin)")
	}
	s := &dhcpLoad{srv: crashNS(t, "crsrv"), cli: crashNS(t, "crcli"), net: "crash"}
	bridge := nettest.Unique("vbrc", 12)
	for _, ns := range []string{s.srv, s.cli} {
		// DHCPv6 runs between link-local addresses: no wait for DAD.
		nettest.MustIn(t, ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	nettest.Veth(t, s.cli, "eth0", s.srv, "vport")
	nettest.Must(t, "ip", "-n", s.cli, "addr", "add", "10.201.0.2/16", "dev", "eth0")
	// perfdhcp -4 always acts as a relay agent (giaddr set, sent from port
	// 67, answers expected on its address port 67), which vnetd refuses, as
	// it serves its bridge only. This table turns its requests into a local
	// client's (hops 0, giaddr 0, BROADCAST flag) and hands the broadcast
	// answers to perfdhcp's socket; see bench/dhcp.sh. The tests' capture
	// reads frames before this DNAT.
	nft := exec.Command("ip", "netns", "exec", s.cli, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(`table ip perfdhcp {
  chain out {
    type filter hook output priority mangle; policy accept;
    udp dport 67 @th,88,8 set 0 @th,144,16 set 0x8000 @th,256,32 set 0
  }
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    udp dport 68 ip daddr 255.255.255.255 dnat to 10.201.0.2:67
  }
}`)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft table for perfdhcp: %v\n%s", err, out)
	}
	dir := t.TempDir()
	s.d = &daemon{t: t, ns: s.srv, dir: dir, socket: filepath.Join(dir, "vnetd.sock"), logLevel: "warn"}
	s.d.start()
	file := filepath.Join(t.TempDir(), "net.xml")
	// 20480 IPv4 and 65536 IPv6 addresses for 15000 clients: no pool runs out.
	os.WriteFile(file, []byte(fmt.Sprintf(`<network><name>%s</name><bridge name='%s' stp='off' delay='0'/>
  <ip address='10.201.0.1' netmask='255.255.0.0'><dhcp><range start='10.201.1.0' end='10.201.80.255'/></dhcp></ip>
  <ip family='ipv6' address='fd00:201::1' prefix='64'><dhcp><range start='fd00:201::1:0' end='fd00:201::1:ffff'/></dhcp></ip>
</network>`, s.net, bridge)), 0o600)
	s.d.mustCtl("net-define", file)
	s.d.mustCtl("net-start", s.net)
	nettest.Must(t, "ip", "-n", s.srv, "link", "set", "vport", "master", bridge)
	deadline := time.Now().Add(10 * time.Second)
	for {
		cli := nettest.Must(t, "ip", "-n", s.cli, "-6", "addr", "show", "dev", "eth0")
		br := nettest.Must(t, "ip", "-n", s.srv, "-6", "addr", "show", "dev", bridge)
		if strings.Contains(cli, "fe80") && strings.Contains(br, "fe80") && !strings.Contains(cli+br, "tentative") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("link-local addresses not ready:\n%s\n%s", cli, br)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// loadAndKill runs perfdhcp with args in the client namespace and SIGKILLs
// and restarts vnetd kills times, every interval, while it runs; then it
// stops the load and lets the last answers arrive. It returns perfdhcp's
// report.
func (s *dhcpLoad) loadAndKill(t *testing.T, args []string, kills int, interval time.Duration) (points []time.Time, report string) {
	t.Helper()
	var out bytes.Buffer
	perf := exec.Command("ip", append([]string{"netns", "exec", s.cli, "perfdhcp"}, args...)...)
	perf.Stdout, perf.Stderr = &out, &out
	if err := perf.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { perf.Wait(); close(exited) }()
	t.Cleanup(func() {
		perf.Process.Kill()
		<-exited
	})
	for range kills {
		time.Sleep(interval)
		select {
		case <-exited:
			t.Fatalf("perfdhcp ended early:\n%s", out.String())
		default:
		}
		points = append(points, time.Now())
		s.d.kill()
		s.d.start()
	}
	time.Sleep(interval)
	// perfdhcp prints its statistics when interrupted.
	perf.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		perf.Process.Kill()
		<-exited
	}
	time.Sleep(time.Second) // answers to the last requests
	return points, out.String()
}

// answersBefore counts, for each kill point, the answers seen in the second
// before it.
func answersBefore(points, answers []time.Time) []int {
	n := make([]int, len(points))
	for i, p := range points {
		for _, a := range answers {
			if !a.After(p) && p.Sub(a) < time.Second {
				n[i]++
			}
		}
	}
	return n
}

// lostLeases4 returns the clients whose last DHCPACK (acks in the order the
// clients saw them) has no lease in list; moved counts clients ACKed with
// more than one address over the run.
func lostLeases4(acks []ack4, list []api.Lease) (clients int, lost []ack4, moved int) {
	last := map[string]netip.Addr{}
	seen := map[string]map[netip.Addr]bool{}
	for _, a := range acks {
		last[a.MAC] = a.IP
		if seen[a.MAC] == nil {
			seen[a.MAC] = map[netip.Addr]bool{}
		}
		seen[a.MAC][a.IP] = true
	}
	have := map[ack4]bool{}
	for _, l := range list {
		ip, err := netip.ParseAddr(l.IP)
		if l.Type == "ipv4" && err == nil {
			have[ack4{MAC: strings.ToLower(l.MAC), IP: ip}] = true
		}
	}
	for mac, ip := range last {
		if a := (ack4{MAC: strings.ToLower(mac), IP: ip}); !have[a] {
			lost = append(lost, a)
		}
		if len(seen[mac]) > 1 {
			moved++
		}
	}
	sort.Slice(lost, func(i, j int) bool { return lost[i].MAC < lost[j].MAC })
	return len(last), lost, moved
}

// lostLeases6 is lostLeases4 for DHCPv6 Replies, per DUID and IAID.
func lostLeases6(replies []reply6, list []api.Lease) (clients int, lost []reply6, moved int) {
	type key struct {
		duid string
		iaid uint32
	}
	last := map[key]netip.Addr{}
	seen := map[key]map[netip.Addr]bool{}
	for _, r := range replies {
		k := key{strings.ToLower(r.DUID), r.IAID}
		last[k] = r.IP
		if seen[k] == nil {
			seen[k] = map[netip.Addr]bool{}
		}
		seen[k][r.IP] = true
	}
	have := map[reply6]bool{}
	for _, l := range list {
		ip, err := netip.ParseAddr(l.IP)
		if l.Type == "ipv6" && err == nil {
			have[reply6{DUID: strings.ToLower(l.ClientID), IAID: l.IAID, IP: ip}] = true
		}
	}
	for k, ip := range last {
		if r := (reply6{DUID: k.duid, IAID: k.iaid, IP: ip}); !have[r] {
			lost = append(lost, r)
		}
		if len(seen[k]) > 1 {
			moved++
		}
	}
	sort.Slice(lost, func(i, j int) bool { return lost[i].DUID < lost[j].DUID })
	return len(last), lost, moved
}

func (s *dhcpLoad) leases(t *testing.T) []api.Lease {
	t.Helper()
	var list []api.Lease
	if err := json.Unmarshal([]byte(s.d.mustCtl("net-dhcp-leases", s.net, "--json")), &list); err != nil {
		t.Fatalf("net-dhcp-leases --json: %v", err)
	}
	return list
}

// TestCrashDurabilityUnderLoad: under perfdhcp load, vnetd is SIGKILLed and
// restarted at 5 points per family; every lease whose DHCPACK (DHCPv6
// Reply) reached the client namespace is in net-dhcp-leases afterwards.
func TestCrashDurabilityUnderLoad(t *testing.T) {
	t.Parallel()
	cfg := crashConfig(t)
	s := newDHCPLoad(t)

	var mu sync.Mutex
	var acks []ack4
	var replies []reply6
	var ackTimes, replyTimes []time.Time
	c, err := startCapture(s.cli, "eth0", func(frame []byte, at time.Time) {
		if a, ok := parseAck4(frame); ok {
			mu.Lock()
			acks, ackTimes = append(acks, a), append(ackTimes, at)
			mu.Unlock()
		} else if rs, ok := parseReply6(frame); ok {
			mu.Lock()
			replies, replyTimes = append(replies, rs...), append(replyTimes, at)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() uint32 {
		if stopped {
			return 0
		}
		stopped = true
		drops, err := c.stop()
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		return drops
	}
	t.Cleanup(func() { stop() })

	// -g single: perfdhcp busy-polls; in multi-thread mode it would take
	// both cores from vnetd.
	common := []string{"-g", "single", "-l", "eth0", "-r", strconv.Itoa(cfg.rate), "-R", strconv.Itoa(cfg.clients), "-p", "3600"}
	points4, report4 := s.loadAndKill(t, append([]string{"-4", "-B"}, common...), cfg.kills, cfg.interval)
	points6, report6 := s.loadAndKill(t, append([]string{"-6"}, common...), cfg.kills, cfg.interval)
	drops := stop()

	// The crash the checks are about is the last: stop, restart, look.
	s.d.kill()
	s.d.start()
	list := s.leases(t)

	mu.Lock()
	defer mu.Unlock()
	if drops > 0 {
		t.Logf("the capture missed %d frames (socket buffer full): the counts below are a lower bound", drops)
	}
	check := func(family string, points, answers []time.Time, report string, answered, clients int, lost []string, moved int) {
		t.Helper()
		before := answersBefore(points, answers)
		// bench/crash.sh reads this line.
		t.Logf("crash DHCPv%s: %d kill points, %d answers seen by clients, %d clients, %d listed, %d lost; answers in the second before each kill %v; %d clients given more than one address",
			family, len(points), answered, clients, clients-len(lost), len(lost), before, moved)
		if clients < 1000 {
			t.Errorf("DHCPv%s: only %d clients got an answer: the load did not run\nperfdhcp:\n%s", family, clients, report)
		}
		for i, n := range before {
			if n == 0 {
				t.Errorf("DHCPv%s: kill point %d hit an idle server (no answer in the second before it)\nperfdhcp:\n%s", family, i+1, report)
			}
		}
		if len(lost) > 0 {
			if len(lost) > 10 {
				lost = append(lost[:10], "...")
			}
			t.Errorf("DHCPv%s: %d acknowledged leases lost across SIGKILL:\n%s", family, len(lost), strings.Join(lost, "\n"))
		}
	}
	clients4, lost4, moved4 := lostLeases4(acks, list)
	var l4 []string
	for _, a := range lost4 {
		l4 = append(l4, a.MAC+" "+a.IP.String())
	}
	check("4", points4, ackTimes, report4, len(acks), clients4, l4, moved4)
	clients6, lost6, moved6 := lostLeases6(replies, list)
	var l6 []string
	for _, r := range lost6 {
		l6 = append(l6, fmt.Sprintf("%s iaid %d %s", r.DUID, r.IAID, r.IP))
	}
	check("6", points6, replyTimes, report6, len(replies), clients6, l6, moved6)
}

// floorXML is a port without a device (the hypervisor plugs it) whose only
// bandwidth is an inbound floor, in kB/s.
func floorXML(id uuid.UUID, mac string, floor uint64) []byte {
	return []byte(fmt.Sprintf(`<networkport><uuid>%s</uuid>
  <owner><name>guest1</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner>
  <mac address='%s'/><bandwidth><inbound floor='%d'/></bandwidth></networkport>`, id, mac, floor))
}

// Port states as the client that created (and maybe deleted) a port
// knows them; "maybe" states are calls that got no answer because vnetd
// died, before or after doing the work.
const (
	portCreated      = "created"
	portRefused      = "refused"
	portMaybeCreated = "maybe created"
	portDeleted      = "deleted"
	portMaybeDeleted = "maybe deleted"
	portNotSent      = "not sent" // vnetd was down: the call never reached it
)

// portChurn is what a client learnt from its net-port-create and
// net-port-delete calls.
type portChurn struct {
	floor map[uuid.UUID]uint64 // kB/s
	state map[uuid.UUID]string
	odd   []string // errors other than a floor refusal or a dead vnetd
	calls map[string]int
}

// churnPorts creates ports with floors on network, deleting one for
// every two creations so that the network stays near its limit (some
// creations accepted, some refused), until stop closes, through vnetd
// restarts.
func churnPorts(socket, network string, stop <-chan struct{}) *portChurn {
	c := &portChurn{floor: map[uuid.UUID]uint64{}, state: map[uuid.UUID]string{}, calls: map[string]int{}}
	var live []uuid.UUID // created, not deleted
	for i := 0; ; i++ {
		select {
		case <-stop:
			return c
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		// A fresh client each time: no keep-alive connection to a killed vnetd.
		cl := client.New(socket)
		var err error
		var id uuid.UUID
		deleting := i%3 == 2 && len(live) > 0
		if deleting {
			j := (i * 7919) % len(live)
			id = live[j]
			live = append(live[:j], live[j+1:]...)
			err = cl.DeletePort(ctx, network, id.String())
		} else {
			id = uuid.New()
			c.floor[id] = uint64(100 + (i*37)%400)
			mac := fmt.Sprintf("52:54:00:f1:%02x:%02x", i>>8&0xff, i&0xff)
			_, err = cl.CreatePort(ctx, network, floorXML(id, mac, c.floor[id]), client.PortOptions{TapOwner: -1})
		}
		cancel()
		var apiErr *api.Error
		var opErr *net.OpError
		notSent := errors.As(err, &opErr) && opErr.Op == "dial"
		switch {
		case notSent && deleting:
			live = append(live, id) // still there: try again later
			c.calls[portNotSent]++
			time.Sleep(10 * time.Millisecond)
			continue
		case notSent:
			c.state[id] = portNotSent
		case err == nil && deleting:
			c.state[id] = portDeleted
		case err == nil:
			c.state[id] = portCreated
			live = append(live, id)
		case deleting:
			// Whether it answered or not, the port may still be there.
			c.state[id] = portMaybeDeleted
			if errors.As(err, &apiErr) {
				c.odd = append(c.odd, "delete "+id.String()+": "+apiErr.Error())
			}
		case errors.As(err, &apiErr):
			c.state[id] = portRefused
			if !strings.Contains(apiErr.Error(), "floor") {
				c.odd = append(c.odd, "create "+id.String()+": "+apiErr.Error())
			}
		default:
			c.state[id] = portMaybeCreated
		}
		c.calls[c.state[id]]++
		if notSent {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestPortsAndFloorsSurviveCrashes: ports with floors are created and
// deleted in a loop while vnetd is SIGKILLed and restarted; afterwards every
// port whose creation succeeded (and deletion did not) is listed, no port
// whose creation was refused or whose deletion succeeded is, and the floor
// accounting is the sum of the listed ports' floors: the remainder fits,
// one kB/s more is refused, and each port has its tc class.
func TestPortsAndFloorsSurviveCrashes(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	cfg := crashConfig(t)
	host := crashNS(t, "crport")
	bridge := nettest.Unique("vbrf", 12)
	dir := t.TempDir()
	d := &daemon{t: t, ns: host, dir: dir, socket: filepath.Join(dir, "vnetd.sock"), logLevel: "warn"}
	d.start()
	const limit = 20000 // kB/s, the network's inbound average: ~70 floors
	file := filepath.Join(t.TempDir(), "net.xml")
	os.WriteFile(file, []byte(fmt.Sprintf(`<network><name>f</name><forward mode='nat'/><bridge name='%s' stp='off'/>
  <bandwidth><inbound average='%d'/></bandwidth><ip address='192.168.73.1' prefix='24'/></network>`, bridge, limit)), 0o600)
	d.mustCtl("net-define", file)
	d.mustCtl("net-start", "f")

	stop := make(chan struct{})
	result := make(chan *portChurn)
	go func() { result <- churnPorts(d.socket, "f", stop) }()
	for range cfg.kills {
		time.Sleep(700 * time.Millisecond)
		d.kill()
		d.start()
	}
	time.Sleep(700 * time.Millisecond)
	close(stop)
	c := <-result
	d.kill()
	d.start()

	cl := client.New(d.socket)
	listed, err := cl.ListPorts(context.Background(), "f")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.odd) > 0 {
		t.Errorf("errors other than floor refusals:\n%s", strings.Join(c.odd, "\n"))
	}
	if c.calls[portCreated] == 0 || c.calls[portRefused] == 0 || c.calls[portDeleted] == 0 {
		t.Fatalf("the churn did not create, refuse and delete ports: %v\nvnetd log:\n%s", c.calls, d.logText())
	}
	present := map[uuid.UUID]bool{}
	var sum uint64
	for _, p := range listed {
		id, err := uuid.Parse(p.UUID)
		if err != nil {
			t.Fatalf("listed port %q: %v", p.UUID, err)
		}
		present[id] = true
		switch st := c.state[id]; st {
		case portCreated, portMaybeCreated, portMaybeDeleted:
			sum += c.floor[id]
		default:
			t.Errorf("port %s is listed after the restart, but its client saw it %q", id, st)
		}
	}
	acked, lost := 0, 0
	for id, st := range c.state {
		if st == portCreated {
			acked++
			if !present[id] {
				lost++
				t.Errorf("port %s was created (net-port-create succeeded) but is gone after the restart", id)
			}
		}
	}
	accounting := "ok"
	// bench/crash.sh reads this line.
	defer func() {
		t.Logf("crash ports: %d kill points, %d acknowledged, %d listed, %d lost; floors %d of %d kB/s, accounting %s; calls %v",
			cfg.kills, acked, len(listed), lost, sum, limit, accounting, c.calls)
	}()
	if sum > limit {
		accounting = "FAIL"
		t.Fatalf("the listed ports' floors sum to %d kB/s, over the network's %d", sum, limit)
	}

	// The accounting after the crashes is exactly the listed floors.
	free := limit - sum
	_, err = cl.CreatePort(context.Background(), "f", floorXML(uuid.New(), "52:54:00:f2:00:01", free+1), client.PortOptions{TapOwner: -1})
	if err == nil || !strings.Contains(err.Error(), "floor") {
		accounting = "FAIL"
		t.Errorf("a floor of %d kB/s (1 more than the %d free) was not refused: %v", free+1, free, err)
	}
	if free > 0 {
		fits := uuid.New()
		if _, err := cl.CreatePort(context.Background(), "f", floorXML(fits, "52:54:00:f2:00:02", free), client.PortOptions{TapOwner: -1}); err != nil {
			accounting = "FAIL"
			t.Errorf("a floor of the %d kB/s free was refused: %v", free, err)
		} else {
			present[fits] = true
		}
	}
	// Each port's floor is one class under 1:1 besides 1:2 (the traffic of
	// no port); a class without a port would guarantee bandwidth to nobody.
	classes := 0
	for _, l := range strings.Split(tcShow(t, host, "class", bridge), "\n") {
		if strings.Contains(l, "parent 1:1 ") && !strings.Contains(l, "class htb 1:2 ") {
			classes++
		}
	}
	if classes != len(present) {
		accounting = "FAIL"
		t.Errorf("%d floor classes on %s for %d ports:\n%s", classes, bridge, len(present), tcShow(t, host, "class", bridge))
	}
}
