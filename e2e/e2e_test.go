// Package e2e runs the real vnetd and vnetctl binaries inside throw-away
// network namespaces, with guest and upstream namespaces as peers.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vnetd/vnetd/client"
	"github.com/vnetd/vnetd/internal/nettest"
)

var bin string // directory with the built vnetd and vnetctl

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // every test skips
	}
	dir, err := os.MkdirTemp("", "vnetd-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, cmd := range []string{"vnetd", "vnetctl"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "../cmd/"+cmd).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", cmd, err, out)
			os.Exit(1)
		}
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is one vnetd running inside a namespace.
type daemon struct {
	t      *testing.T
	ns     string
	dir    string
	socket string
	cmd    *exec.Cmd
	log    *os.File
	// exe, when set, is the vnetd binary start runs instead of the one
	// TestMain built (an upgrade restarts with a new binary).
	exe string
	// logLevel, when set, replaces debug: under DHCP load, logging every
	// exchange would slow vnetd down and bloat failure messages.
	logLevel string
	// env is added to vnetd's environment (NOTIFY_SOCKET, ...).
	env []string
}

func startDaemon(t *testing.T, ns, dir string) *daemon {
	t.Helper()
	d := &daemon{t: t, ns: ns, dir: dir, socket: filepath.Join(dir, "vnetd.sock")}
	d.start()
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	logf, err := os.OpenFile(filepath.Join(d.dir, "vnetd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	d.log = logf
	exe, level := filepath.Join(bin, "vnetd"), "debug"
	if d.exe != "" {
		exe = d.exe
	}
	if d.logLevel != "" {
		level = d.logLevel
	}
	d.cmd = exec.Command("ip", "netns", "exec", d.ns, exe,
		"--config-dir", filepath.Join(d.dir, "etc"), "--state-dir", filepath.Join(d.dir, "state"),
		"--run-dir", filepath.Join(d.dir, "run"), "--socket", d.socket, "--reconcile-interval", "500ms", "--log-level", level)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if d.env != nil {
		d.cmd.Env = append(os.Environ(), d.env...)
	}
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { d.kill() })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := client.New(d.socket).List(context.Background(), true); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.t.Fatalf("vnetd did not come up; log:\n%s", d.logText())
}

func (d *daemon) logText() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "vnetd.log"))
	return string(b)
}

// kill stops vnetd at once, as a crash would.
func (d *daemon) kill() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	// ip netns exec execs vnetd, so this is vnetd itself.
	d.cmd.Process.Signal(syscall.SIGKILL)
	d.cmd.Wait()
	d.cmd = nil
	d.log.Close()
}

// stop ends vnetd the polite way (SIGTERM) and waits for it.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	d.cmd = nil
	d.log.Close()
}

func (d *daemon) vnetctl(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(bin, "vnetctl"), append([]string{"--socket", d.socket}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *daemon) mustCtl(args ...string) string {
	d.t.Helper()
	out, err := d.vnetctl(args...)
	if err != nil {
		d.t.Fatalf("vnetctl %s: %v\n%s\nvnetd log:\n%s", strings.Join(args, " "), err, out, d.logText())
	}
	return out
}

// natSetup is a vnetd namespace with a NAT network, a guest on its bridge
// and an upstream host behind the vnetd namespace's uplink.
type natSetup struct {
	host, guest, upstream string
	d                     *daemon
	bridge                string
}

func newNATSetup(t *testing.T, forward string) *natSetup {
	nettest.SkipUnlessRoot(t)
	s := &natSetup{
		host:     nettest.NewNS(t, "host"),
		guest:    nettest.NewNS(t, "guest"),
		upstream: nettest.NewNS(t, "up"),
		bridge:   nettest.Unique("vbr", 12),
	}
	// uplink: host 10.77.0.1 <-> upstream 10.77.0.2
	nettest.Veth(t, s.host, "uplink", s.upstream, "eth0")
	nettest.Must(t, "ip", "-n", s.host, "addr", "add", "10.77.0.1/24", "dev", "uplink")
	nettest.Must(t, "ip", "-n", s.upstream, "addr", "add", "10.77.0.2/24", "dev", "eth0")
	s.d = startDaemon(t, s.host, t.TempDir())
	xml := fmt.Sprintf(`<network>
  <name>default</name>
  %s
  <bridge name='%s'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>`, forward, s.bridge)
	file := filepath.Join(t.TempDir(), "net.xml")
	os.WriteFile(file, []byte(xml), 0o600)
	s.d.mustCtl("net-define", file)
	s.d.mustCtl("net-start", "default")
	// the guest: a veth whose host end is a port of the bridge
	nettest.Veth(t, s.guest, "eth0", s.host, "vnet0")
	nettest.Must(t, "ip", "-n", s.host, "link", "set", "vnet0", "master", s.bridge)
	nettest.Must(t, "ip", "-n", s.guest, "addr", "add", "192.168.122.10/24", "dev", "eth0")
	nettest.Must(t, "ip", "-n", s.guest, "route", "add", "default", "via", "192.168.122.1")
	waitForwarding(t, s.host, "vnet0")
	return s
}

// waitForwarding waits for a bridge port to leave STP's listening and
// learning states (twice the forward delay, which the kernel raises to 2 s
// when STP is on, as it is by default for libvirt networks).
func waitForwarding(t *testing.T, ns, port string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("bridge", "-n", ns, "link", "show", "dev", port).CombinedOutput()
		if strings.Contains(string(out), "state forwarding") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, _ := exec.Command("bridge", "-n", ns, "link", "show", "dev", port).CombinedOutput()
	t.Fatalf("bridge port %s never reached forwarding: %s", port, out)
}

func ifindex(t *testing.T, ns, link string) int {
	t.Helper()
	out := nettest.Must(t, "ip", "-n", ns, "-o", "link", "show", link)
	i, err := strconv.Atoi(strings.SplitN(out, ":", 2)[0])
	if err != nil {
		t.Fatalf("ifindex of %s: %q", link, out)
	}
	return i
}

func TestNATNetworkReachesUpstreamMasqueraded(t *testing.T) {
	t.Parallel()
	s := newNATSetup(t, "<forward mode='nat'/>")
	// The upstream host has no route to 192.168.122.0/24: its replies come
	// back only if the guest's packets left with the uplink's address.
	out, err := nettest.In(s.guest, "ping", "-c", "2", "-W", "2", "10.77.0.2")
	if err != nil {
		t.Fatalf("guest cannot reach upstream through NAT: %v\n%s\nvnetd log:\n%s", err, out, s.d.logText())
	}
	ruleset := nettest.MustIn(t, s.host, "nft", "list", "ruleset")
	if !strings.Contains(ruleset, "masquerade") {
		t.Fatalf("no masquerade rule in:\n%s", ruleset)
	}
}

func TestIsolatedNetworkCannotReachUpstream(t *testing.T) {
	t.Parallel()
	s := newNATSetup(t, "")
	if out, err := nettest.In(s.guest, "ping", "-c", "1", "-W", "1", "192.168.122.1"); err != nil {
		t.Fatalf("guest cannot reach its bridge: %v\n%s", err, out)
	}
	if out, err := nettest.In(s.guest, "ping", "-c", "2", "-W", "1", "10.77.0.2"); err == nil {
		t.Fatalf("isolated guest reached upstream:\n%s", out)
	}
}

func TestDestroyLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	ns := nettest.NewNS(t, "clean")
	snapshot := func() string {
		links := nettest.Must(t, "ip", "-n", ns, "-o", "link")
		routes := nettest.Must(t, "ip", "-n", ns, "route", "show", "table", "all")
		rules := nettest.MustIn(t, ns, "nft", "list", "ruleset")
		// link counters and ids vary; keep names
		re := regexp.MustCompile(`^\d+: ([^:@]+)`)
		var names []string
		for _, l := range strings.Split(strings.TrimSpace(links), "\n") {
			if m := re.FindStringSubmatch(l); m != nil {
				names = append(names, m[1])
			}
		}
		return strings.Join(names, ",") + "\n" + routes + rules
	}
	before := snapshot()
	d := startDaemon(t, ns, t.TempDir())
	file := filepath.Join(t.TempDir(), "net.xml")
	os.WriteFile(file, []byte(`<network><name>t</name><forward/><bridge name='vbrclean'/>
  <ip address='192.168.50.1' prefix='24'/><ip family='ipv6' address='fd00:50::1' prefix='64'/>
  <route address='10.50.0.0' prefix='16' gateway='192.168.50.9'/></network>`), 0o600)
	d.mustCtl("net-create", file)
	during := snapshot()
	if !strings.Contains(during, "vbrclean") || !strings.Contains(during, "masquerade") {
		t.Fatalf("network not up:\n%s", during)
	}
	d.mustCtl("net-destroy", "t")
	// The network stops carrying traffic before net-destroy returns; the
	// kernel's deletion of the bridge device finishes in the background
	// within tens of milliseconds.
	after := snapshot()
	for deadline := time.Now().Add(2 * time.Second); after != before && time.Now().Before(deadline); after = snapshot() {
		time.Sleep(20 * time.Millisecond)
	}
	if after != before {
		t.Fatalf("destroy left things behind:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestRestartWithoutDisruption(t *testing.T) {
	t.Parallel()
	s := newNATSetup(t, "<forward mode='nat'/>")
	before := ifindex(t, s.host, s.bridge)

	// Continuous ping through the NAT network while vnetd is SIGKILLed and
	// started again.
	ping := exec.Command("ip", "netns", "exec", s.guest, "ping", "-i", "0.05", "-W", "1", "10.77.0.2")
	stdout, _ := ping.StdoutPipe()
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	s.d.kill()
	time.Sleep(300 * time.Millisecond)
	s.d.start()
	time.Sleep(500 * time.Millisecond)
	ping.Process.Signal(syscall.SIGINT)
	var summary string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "packets transmitted") {
			summary = sc.Text()
		}
	}
	ping.Wait()
	m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(summary)
	if m == nil {
		t.Fatalf("no ping summary: %q", summary)
	}
	sent, got := m[1], m[2]
	t.Logf("ping through restart: %s sent, %s received", sent, got)
	if sent != got {
		t.Fatalf("lost pings across the restart: %s\nvnetd log:\n%s", summary, s.d.logText())
	}
	if after := ifindex(t, s.host, s.bridge); after != before {
		t.Fatalf("bridge ifindex changed: %d -> %d", before, after)
	}
	if out := s.d.mustCtl("net-list"); !strings.Contains(out, "default") || !strings.Contains(out, "active") {
		t.Fatalf("network not adopted:\n%s", out)
	}
}

func TestSIGTERMLeavesNetworksRunning(t *testing.T) {
	t.Parallel()
	s := newNATSetup(t, "<forward mode='nat'/>")
	before := ifindex(t, s.host, s.bridge)
	s.d.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.d.cmd.Wait(); err != nil {
		t.Fatalf("vnetd exit after SIGTERM: %v\n%s", err, s.d.logText())
	}
	s.d.cmd = nil
	s.d.log.Close()
	if out, err := nettest.In(s.guest, "ping", "-c", "1", "-W", "2", "10.77.0.2"); err != nil {
		t.Fatalf("NAT stopped working while vnetd is down: %v\n%s", err, out)
	}
	s.d.start()
	if after := ifindex(t, s.host, s.bridge); after != before {
		t.Fatalf("bridge ifindex changed: %d -> %d", before, after)
	}
	if out := s.d.mustCtl("net-info", "default"); !strings.Contains(out, "Active:         yes") {
		t.Fatalf("not adopted after SIGTERM restart:\n%s", out)
	}
}

func TestFlushedRulesetIsRestored(t *testing.T) {
	t.Parallel()
	s := newNATSetup(t, "<forward mode='nat'/>")
	nettest.MustIn(t, s.host, "nft", "flush", "ruleset")
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if out, _ := nettest.In(s.host, "nft", "list", "ruleset"); strings.Contains(out, "masquerade") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("rules not restored after a flush\nvnetd log:\n%s", s.d.logText())
}

func TestSecondDaemonRefused(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	ns := nettest.NewNS(t, "lock")
	dir := t.TempDir()
	startDaemon(t, ns, dir)
	cmd := exec.Command("ip", "netns", "exec", ns, filepath.Join(bin, "vnetd"),
		"--config-dir", filepath.Join(dir, "etc"), "--state-dir", filepath.Join(dir, "state2"),
		"--run-dir", filepath.Join(dir, "run"), "--socket", filepath.Join(dir, "other.sock"))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another vnetd is already running") {
		t.Fatalf("second vnetd: %v\n%s", err, out)
	}
}

func TestVnetctlVerbs(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	ns := nettest.NewNS(t, "ctl")
	d := startDaemon(t, ns, t.TempDir())
	file := filepath.Join(t.TempDir(), "net.xml")
	os.WriteFile(file, []byte(`<network><name>lab</name><forward mode='route'/>
  <ip address='192.168.60.1' prefix='24'><dhcp><range start='192.168.60.10' end='192.168.60.20'/></dhcp></ip></network>`), 0o600)
	if out := d.mustCtl("net-define", file); !strings.Contains(out, "Network lab defined from") {
		t.Fatal(out)
	}
	d.mustCtl("net-autostart", "lab")
	d.mustCtl("net-start", "lab")
	info := d.mustCtl("net-info", "lab")
	for _, want := range []string{"Active:         yes", "Autostart:      yes", "Bridge:         virbr0"} {
		if !strings.Contains(info, want) {
			t.Errorf("net-info lacks %q:\n%s", want, info)
		}
	}
	uuid := strings.TrimSpace(d.mustCtl("net-uuid", "lab"))
	if name := strings.TrimSpace(d.mustCtl("net-name", uuid)); name != "lab" {
		t.Errorf("net-name %s = %q", uuid, name)
	}
	d.mustCtl("net-update", "lab", "add-last", "ip-dhcp-host", "<host mac='52:54:00:00:00:09' ip='192.168.60.9'/>", "--live", "--config")
	if xml := d.mustCtl("net-dumpxml", "lab", "--inactive"); !strings.Contains(xml, "192.168.60.9") {
		t.Errorf("update not in the definition:\n%s", xml)
	}
	if out, err := d.vnetctl("net-start", "lab"); err == nil || !strings.Contains(out, "already active") {
		t.Errorf("second start: %v %s", err, out)
	}
	if out, err := d.vnetctl("net-update", "lab", "modify", "bridge", "<bridge name='x'/>"); err == nil || !strings.Contains(out, "can't update 'bridge' section") {
		t.Errorf("bridge update: %v %s", err, out)
	}
	list := d.mustCtl("net-list", "--all", "--json")
	if !strings.Contains(list, `"name": "lab"`) {
		t.Errorf("json list: %s", list)
	}
	d.mustCtl("net-destroy", "lab")
	d.mustCtl("net-undefine", "lab")
	if out := d.mustCtl("net-list", "--all"); strings.Contains(out, "lab") {
		t.Errorf("still listed:\n%s", out)
	}
}
