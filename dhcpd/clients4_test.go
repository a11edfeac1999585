package dhcpd

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vnetd/vnetd/internal/nettest"
	"github.com/vnetd/vnetd/leases"
)

// Real DHCP clients (dhclient, udhcpc, dhcpcd) against Server4, each test
// in namespaces of its own: a "host" one with a bridge served by Server4
// and a "guest" one joined to it by a veth. Root only.

// lab4 is one host namespace with a served bridge.
type lab4 struct {
	t     *testing.T
	host  string
	dir   string
	store LeaseStore
}

// bridge4 is a served bridge of a lab.
type bridge4 struct {
	lab    *lab4
	name   string
	prefix string // "192.168.N"
	srv    *Server4
}

// guest4 is a guest namespace plugged into a bridge.
type guest4 struct {
	br   *bridge4
	ns   string
	ifc  string
	mac  string
	dir  string
	logf string // the hook script's log
}

func needClient4(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, d := range []string{"/usr/sbin", "/sbin"} {
			if _, err := os.Stat(filepath.Join(d, name)); err == nil {
				return filepath.Join(d, name)
			}
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

func newLab4(t *testing.T, store LeaseStore) *lab4 {
	t.Helper()
	nettest.SkipUnlessRoot(t)
	resolv, _ := os.ReadFile("/etc/resolv.conf")
	t.Cleanup(func() {
		if now, _ := os.ReadFile("/etc/resolv.conf"); !bytes.Equal(now, resolv) {
			t.Errorf("a DHCP client rewrote the host's /etc/resolv.conf")
			os.WriteFile("/etc/resolv.conf", resolv, 0o644)
		}
	})
	if store == nil {
		store = newMemStore4()
	}
	return &lab4{t: t, host: nettest.NewNS(t, "d4h"), dir: t.TempDir(), store: store}
}

// openStore4 opens a real lease store in a temp dir.
func openStore4(t *testing.T) *leases.Store {
	t.Helper()
	store, err := leases.Open(filepath.Join(t.TempDir(), "leases.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// testLog4 sends slog output to t.Log.
type testLog4 struct {
	mu sync.Mutex
	t  *testing.T
}

func (w *testLog4) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// addBridge makes bridge name with address PREFIX.1/24 and serves dhcpXML
// (the content of <dhcp>) on it.
func (l *lab4) addBridge(name, prefix, dhcpXML string) *bridge4 {
	t := l.t
	t.Helper()
	nettest.Must(t, "ip", "-n", l.host, "link", "add", name, "type", "bridge", "stp_state", "0")
	nettest.Must(t, "ip", "-n", l.host, "addr", "add", prefix+".1/24", "dev", name)
	nettest.Must(t, "ip", "-n", l.host, "link", "set", name, "up")
	xml := fmt.Sprintf(`<network><name>lab-%s</name><forward mode='nat'/><bridge name='%s' stp='off'/>
<mtu size='1400'/><domain name='lab.test'/>
<ip address='%s.1' netmask='255.255.255.0'><dhcp>%s</dhcp></ip></network>`, name, name, prefix, dhcpXML)
	log := slog.New(slog.NewTextHandler(&testLog4{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New4(Config4{Network: netXML4(t, xml), Bridge: name, Store: l.store, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := nettest.Do(l.host, func() error { return srv.Start(ctx) }); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		srv.Close()
	})
	return &bridge4{lab: l, name: name, prefix: prefix, srv: srv}
}

// addGuest plugs a new guest namespace into the bridge; mac "" keeps the
// random one.
func (b *bridge4) addGuest(mac string) *guest4 {
	t := b.lab.t
	t.Helper()
	ns := nettest.NewNS(t, "d4g")
	// A unique interface name: dhcpcd keeps its files per interface name in
	// /run and /var/lib, which namespaces share.
	ifc := nettest.Unique("g4", 15)
	port := nettest.Unique("p4", 15)
	nettest.Veth(t, b.lab.host, port, ns, ifc)
	nettest.Must(t, "ip", "-n", b.lab.host, "link", "set", port, "master", b.name)
	if mac != "" {
		nettest.Must(t, "ip", "-n", ns, "link", "set", ifc, "address", mac)
	}
	out := nettest.Must(t, "ip", "-n", ns, "-br", "link", "show", ifc)
	f := strings.Fields(out)
	if len(f) < 3 {
		t.Fatalf("ip link: %q", out)
	}
	dir := t.TempDir()
	return &guest4{br: b, ns: ns, ifc: ifc, mac: f[2], dir: dir, logf: filepath.Join(dir, "hook.log")}
}

// run runs a command in the guest namespace with a deadline.
func (g *guest4) run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", g.ns, name}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// dhclient goes to the background once bound; don't wait for it.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	return out.String(), err
}

// addr is the guest's IPv4 address ("" when none).
func (g *guest4) addr() string {
	out, err := nettest.In(g.ns, "ip", "-4", "-o", "addr", "show", "dev", g.ifc)
	if err != nil {
		g.br.lab.t.Fatal(err)
	}
	for _, f := range strings.Fields(out) {
		if p, err := netip.ParsePrefix(f); err == nil && p.Addr().Is4() {
			if p.Bits() != 24 {
				g.br.lab.t.Errorf("guest address %s: want a /24", p)
			}
			return p.Addr().String()
		}
	}
	return ""
}

// hookLog is what the guest's hook script logged so far.
func (g *guest4) hookLog() string {
	b, _ := os.ReadFile(g.logf)
	return string(b)
}

func (g *guest4) waitHook(t *testing.T, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(g.hookLog(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("hook never logged %q; log:\n%s", substr, g.hookLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeScript4(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// stored is the store's lease of ip. The client is only told of a lease
// after it is stored, so no waiting is needed.
func (b *bridge4) stored(t *testing.T, ip string) (leases.Lease, bool) {
	t.Helper()
	ls, err := b.lab.store.List(b.srv.cfg.Network.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.IP.String() == ip {
			return l, true
		}
	}
	return leases.Lease{}, false
}

func (b *bridge4) waitGone(t *testing.T, ip string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := b.stored(t, ip); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease of %s still in the store", ip)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func inRange4(ip, prefix string, lo, hi int) bool {
	var last int
	if _, err := fmt.Sscanf(ip, prefix+".%d", &last); err != nil {
		return false
	}
	return last >= lo && last <= hi
}

// dhclient: DORA with the real lease store, options, INIT-REBOOT keeps the
// address, release frees it.
func TestClientDhclient4(t *testing.T) {
	bin := needClient4(t, "dhclient")
	lab := newLab4(t, openStore4(t))
	br := lab.addBridge("br0", "192.168.51", `<range start='192.168.51.100' end='192.168.51.150'/>`)
	g := br.addGuest("")

	script := filepath.Join(g.dir, "hook.sh")
	writeScript4(t, script, `
echo "$reason ip=$new_ip_address mask=$new_subnet_mask routers=$new_routers dns=$new_domain_name_servers domain=$new_domain_name mtu=$new_interface_mtu lease=$new_dhcp_lease_time" >> `+g.logf+`
case "$reason" in
PREINIT) ip link set dev "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT)
	if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then ip -4 addr flush dev "$interface"; fi
	ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
EXPIRE|FAIL|RELEASE|STOP) ip -4 addr flush dev "$interface" ;;
esac
exit 0
`)
	cf := filepath.Join(g.dir, "dhclient.conf")
	os.WriteFile(cf, []byte(`send host-name "dhc-guest";
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, interface-mtu, host-name;
`), 0o644)
	lf, pf := filepath.Join(g.dir, "dhclient.leases"), filepath.Join(g.dir, "dhclient.pid")
	args := []string{"-cf", cf, "-sf", script, "-lf", lf, "-pf", pf, g.ifc}
	// The daemon dhclient leaves is killed with the guest namespace.

	if out, err := g.run(60*time.Second, bin, append([]string{"-4", "-v", "-1"}, args...)...); err != nil {
		t.Fatalf("dhclient: %v\n%s\nhook log:\n%s", err, out, g.hookLog())
	}
	ip := g.addr()
	if !inRange4(ip, "192.168.51", 100, 150) {
		t.Fatalf("guest address %q, want one in the range; hook log:\n%s", ip, g.hookLog())
	}
	want := "BOUND ip=" + ip + " mask=255.255.255.0 routers=192.168.51.1 dns=192.168.51.1 domain=lab.test mtu=1400 lease=3600"
	if !strings.Contains(g.hookLog(), want) {
		t.Errorf("hook log lacks %q:\n%s", want, g.hookLog())
	}
	l, ok := br.stored(t, ip)
	if !ok || l.MAC.String() != g.mac || l.Hostname != "dhc-guest" || l.Kind != leases.V4 || l.Prefix != 24 {
		t.Fatalf("stored lease %+v (found %v), want MAC %s hostname dhc-guest", l, ok, g.mac)
	}
	if d := time.Until(l.Expiry); d < 50*time.Minute || d > 61*time.Minute {
		t.Errorf("stored expiry %v", l.Expiry)
	}

	// Stop (no release), start again: INIT-REBOOT gets the same address.
	if out, err := g.run(20*time.Second, bin, append([]string{"-x"}, args...)...); err != nil {
		t.Fatalf("dhclient -x: %v\n%s", err, out)
	}
	before := br.srv.Stats()
	if out, err := g.run(60*time.Second, bin, append([]string{"-4", "-v", "-1"}, args...)...); err != nil {
		t.Fatalf("dhclient again: %v\n%s", err, out)
	}
	if again := g.addr(); again != ip {
		t.Fatalf("second run got %q, first %q; hook log:\n%s", again, ip, g.hookLog())
	}
	if st := br.srv.Stats(); st.Ack <= before.Ack {
		t.Errorf("no new ACK: %+v", st)
	}

	// Release.
	if out, err := g.run(20*time.Second, bin, append([]string{"-4", "-v", "-r"}, args...)...); err != nil {
		t.Fatalf("dhclient -r: %v\n%s", err, out)
	}
	br.waitGone(t, ip)
	if st := br.srv.Stats(); st.Release != 1 || st.Nak != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

const udhcpcScript4 = `
echo "$1 ip=$ip mask=$subnet routers=$router dns=$dns domain=$domain mtu=$mtu lease=$lease" >> LOG
case "$1" in
deconfig) ip link set dev "$interface" up; ip -4 addr flush dev "$interface" ;;
bound|renew) ip addr replace "$ip/$subnet" dev "$interface" ;;
esac
exit 0
`

// udhcpc: a static reservation by MAC, a unicast renewal (SIGUSR1) and a
// release (SIGUSR2).
func TestClientUdhcpc4(t *testing.T) {
	bin := needClient4(t, "udhcpc")
	lab := newLab4(t, openStore4(t))
	const mac = "52:54:00:4a:00:10"
	br := lab.addBridge("br0", "192.168.52", `<range start='192.168.52.100' end='192.168.52.150'><lease expiry='10'/></range>
<host mac='`+mac+`' name='fixed' ip='192.168.52.10'/>`)
	g := br.addGuest(mac)
	script := filepath.Join(g.dir, "hook.sh")
	writeScript4(t, script, strings.ReplaceAll(udhcpcScript4, "LOG", g.logf))
	pidf := filepath.Join(g.dir, "udhcpc.pid")

	cmd := exec.Command("ip", "netns", "exec", g.ns, bin, "-f", "-i", g.ifc, "-s", script, "-p", pidf, "-t", "10", "-T", "1", "-x", "hostname:udh-guest")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		t.Logf("udhcpc output:\n%s", out.String())
	})
	g.waitHook(t, "bound ip=192.168.52.10 ", 30*time.Second)
	if !strings.Contains(g.hookLog(), "bound ip=192.168.52.10 mask=255.255.255.0 routers=192.168.52.1 dns=192.168.52.1 domain=lab.test") {
		t.Errorf("options: %s", g.hookLog())
	}
	if ip := g.addr(); ip != "192.168.52.10" {
		t.Fatalf("guest address %q", ip)
	}
	l, ok := br.stored(t, "192.168.52.10")
	if !ok || l.MAC.String() != mac || l.Hostname != "fixed" || l.ClientID != "01:"+mac {
		t.Fatalf("stored lease %+v (found %v)", l, ok)
	}

	// Renew: udhcpc sends a unicast REQUEST from 192.168.52.10 (ciaddr)
	// and must accept the unicast ACK with its kernel UDP socket, which
	// checks the UDP checksum. (udhcpc sends the REQUEST from a short-lived
	// socket connected to the server, which catches a reply that comes
	// back before it is closed: had the ACK not waited for the durable
	// store, it would be lost there and udhcpc would fall back to a
	// broadcast REBIND a second later, which the request count below
	// would show.)
	pid := readPid4(t, pidf)
	time.Sleep(1100 * time.Millisecond) // a later expiry to tell the renewal by
	before := br.srv.Stats()
	syscall.Kill(pid, syscall.SIGUSR1)
	g.waitHook(t, "renew ip=192.168.52.10 ", 20*time.Second)
	l2, ok := br.stored(t, "192.168.52.10")
	if !ok || !l2.Expiry.After(l.Expiry) {
		t.Fatalf("renewal did not extend the lease: %v -> %v", l.Expiry, l2.Expiry)
	}
	if st := br.srv.Stats(); st.Request != before.Request+1 || st.Ack != before.Ack+1 {
		t.Errorf("renewal took %d requests: %+v -> %+v", st.Request-before.Request, before, st)
	}

	// Release.
	syscall.Kill(pid, syscall.SIGUSR2)
	br.waitGone(t, "192.168.52.10")
	if st := br.srv.Stats(); st.Release != 1 {
		t.Errorf("stats %+v", st)
	}
}

func readPid4(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(path)
		var pid int
		if err == nil {
			if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 0 {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dhcpcd: a lease in the range, configured by dhcpcd itself; a hook script
// of our own so that no resolv.conf hook runs.
func TestClientDhcpcd4(t *testing.T) {
	bin := needClient4(t, "dhcpcd")
	lab := newLab4(t, nil)
	br := lab.addBridge("br0", "192.168.53", `<range start='192.168.53.100' end='192.168.53.150'/>`)
	g := br.addGuest("")
	script := filepath.Join(g.dir, "hook.sh")
	writeScript4(t, script, `echo "$reason ip=$new_ip_address routers=$new_routers dns=$new_domain_name_servers domain=$new_domain_name mtu=$new_interface_mtu" >> `+g.logf+"\nexit 0\n")
	cf := filepath.Join(g.dir, "dhcpcd.conf")
	os.WriteFile(cf, []byte("clientid\noption domain_name_servers, domain_name, interface_mtu\nnohook resolv.conf\n"), 0o644)
	// dhcpcd has no option for its state directories: bind temp dirs over
	// them, in the mount namespace of its own that ip netns exec gives it.
	db, run := filepath.Join(g.dir, "db"), filepath.Join(g.dir, "run")
	os.Mkdir(db, 0o755)
	os.Mkdir(run, 0o755)
	if _, err := os.Stat("/var/lib/dhcpcd"); err != nil {
		t.Skip("no /var/lib/dhcpcd to hide dhcpcd's state under")
	}
	sh := `mount --make-rprivate / && mount --bind "$1" /var/lib/dhcpcd && mount --bind "$2" /run && shift 2 && exec "$@"`
	out, err := g.run(60*time.Second, "sh", "-c", sh, "sh", db, run, bin, "-4", "--oneshot", "--noipv4ll", "--noarp", "-B",
		"-f", cf, "-c", script, "-h", "dcd-guest", "-t", "30", g.ifc)
	t.Logf("dhcpcd output:\n%s", out)
	if err != nil {
		t.Fatalf("dhcpcd: %v\nhook log:\n%s", err, g.hookLog())
	}
	ip := g.addr()
	if !inRange4(ip, "192.168.53", 100, 150) {
		t.Fatalf("guest address %q; hook log:\n%s", ip, g.hookLog())
	}
	if !strings.Contains(g.hookLog(), "BOUND ip="+ip+" routers=192.168.53.1 dns=192.168.53.1 domain=lab.test mtu=1400") {
		t.Errorf("hook log:\n%s", g.hookLog())
	}
	l, ok := br.stored(t, ip)
	if !ok || l.MAC.String() != g.mac || l.Hostname != "dcd-guest" {
		t.Fatalf("stored lease %+v (found %v)", l, ok)
	}
	if ents, _ := os.ReadDir(db); len(ents) == 0 {
		t.Errorf("dhcpcd wrote no lease file under the temp dir (did it write to the host's?)")
	}
}

// Two networks in one host namespace each bind port 67 on their own bridge
// and serve only there.
func TestTwoBridges4(t *testing.T) {
	bin := needClient4(t, "udhcpc")
	lab := newLab4(t, nil)
	br1 := lab.addBridge("br1", "192.168.54", `<range start='192.168.54.100' end='192.168.54.150'/>`)
	br2 := lab.addBridge("br2", "192.168.55", `<range start='192.168.55.100' end='192.168.55.150'/>`)
	for _, tc := range []struct {
		br     *bridge4
		prefix string
	}{{br1, "192.168.54"}, {br2, "192.168.55"}} {
		g := tc.br.addGuest("")
		script := filepath.Join(g.dir, "hook.sh")
		writeScript4(t, script, strings.ReplaceAll(udhcpcScript4, "LOG", g.logf))
		out, err := g.run(60*time.Second, bin, "-f", "-q", "-n", "-i", g.ifc, "-s", script, "-t", "10", "-T", "1")
		if err != nil {
			t.Fatalf("udhcpc on %s: %v\n%s", tc.br.name, err, out)
		}
		if ip := g.addr(); !inRange4(ip, tc.prefix, 100, 150) {
			t.Fatalf("guest on %s got %q", tc.br.name, ip)
		}
	}
	if s1, s2 := br1.srv.Stats(), br2.srv.Stats(); s1.Ack != 1 || s2.Ack != 1 || s1.Discover != 1 || s2.Discover != 1 {
		t.Errorf("each server must serve only its own bridge: %+v / %+v", s1, s2)
	}
}
