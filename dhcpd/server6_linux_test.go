package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/internal/nettest"
	"github.com/vnetd/vnetd/leases"
	"golang.org/x/sys/unix"
)

// lab6 is a "host" namespace with a bridge served by a Server6 and a
// "guest" namespace whose eth0 is plugged into the bridge.
type lab6 struct {
	t      *testing.T
	host   string
	guest  string
	bridge string
	prefix string // "fd00:NN::"
	net    *conf.Network
	store  *leases.Store
	srv    *Server6
	dir    string
}

// lab6XML is the network of the lab: a range of 256 addresses and a
// reservation by DUID. %[1]s is the prefix, %[2]s the bridge.
const lab6XML = `<network>
  <name>%[3]s</name>
  <bridge name='%[2]s' stp='off' delay='0'/>
  <domain name='lab.test'/>
  <ip family='ipv6' address='%[1]s1' prefix='64'>
    <dhcp>
      <range start='%[1]s100' end='%[1]s1ff'>
        <lease expiry='%[4]d' unit='seconds'/>
      </range>
      <host id='0:1:0:1:18:aa:62:fe:0:16:3e:44:55:66' ip='%[1]s42'/>
      <host name='named6' ip='%[1]s43'/>
    </dhcp>
  </ip>
</network>`

// newLab6 builds the namespaces and starts the server with a lease time of
// leaseSecs (below libvirt's 120 s minimum, so that clients renew within
// the test: the <lease> is set after parsing).
func newLab6(t *testing.T, leaseSecs uint64, wrap ...func(LeaseStore) LeaseStore) *lab6 {
	t.Helper()
	nettest.SkipUnlessRoot(t)
	l := &lab6{t: t, dir: t.TempDir()}
	l.host = nettest.NewNS(t, "h6")
	l.guest = nettest.NewNS(t, "g6")
	l.bridge = "br6"
	l.prefix = fmt.Sprintf("fd00:%x::", 1+rand.IntN(0xfffe))
	nettest.Must(t, "ip", "-n", l.host, "link", "add", l.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
	nettest.Must(t, "ip", "-n", l.host, "addr", "add", l.prefix+"1/64", "dev", l.bridge, "nodad")
	nettest.Must(t, "ip", "-n", l.host, "link", "set", l.bridge, "up")
	nettest.Veth(t, l.host, "vh6", l.guest, "eth0")
	nettest.Must(t, "ip", "-n", l.host, "link", "set", "vh6", "master", l.bridge)
	l.waitLinkLocal(l.host, l.bridge)
	l.waitLinkLocal(l.guest, "eth0")

	n, err := conf.Parse([]byte(fmt.Sprintf(lab6XML, l.prefix, l.bridge, "lab6", 3600)))
	if err != nil {
		t.Fatal(err)
	}
	ip6(n).DHCP.Ranges[0].Lease = &conf.Lease{Expiry: leaseSecs, Unit: conf.LeaseSeconds}
	l.net = n
	l.store, err = leases.Open(filepath.Join(l.dir, "leases.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.store.Close() })
	var store LeaseStore = l.store
	for _, w := range wrap {
		store = w(store)
	}
	l.srv, err = New6(Config6{Network: n, Bridge: l.bridge, Store: store, Log: testLogger6(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := nettest.Do(l.host, func() error { return l.srv.Start(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.srv.Close() })
	return l
}

type testWriter6 struct{ t *testing.T }

func (w testWriter6) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger6(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter6{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitLinkLocal waits until dev in ns has a link-local address that is
// not tentative (DAD done): clients send from it, the server answers from
// the bridge's.
func (l *lab6) waitLinkLocal(ns, dev string) {
	l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := nettest.In(ns, "ip", "-6", "addr", "show", "dev", dev, "scope", "link")
		if strings.Contains(out, "fe80:") && !strings.Contains(out, "tentative") {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s in %s: no usable link-local address:\n%s", dev, ns, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// guestAddrs are the global addresses of the guest's eth0.
func (l *lab6) guestAddrs() []netip.Addr {
	out, _ := nettest.In(l.guest, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global")
	var as []netip.Addr
	for _, f := range strings.Fields(out) {
		if p, err := netip.ParsePrefix(f); err == nil {
			as = append(as, p.Addr())
		}
	}
	return as
}

// lease is the stored lease of ip, if any.
func (l *lab6) lease(ip netip.Addr) (leases.Lease, bool) {
	ls, err := l.store.List(l.net.Name)
	if err != nil {
		l.t.Fatal(err)
	}
	for _, x := range ls {
		if x.IP == ip {
			return x, true
		}
	}
	return leases.Lease{}, false
}

func (l *lab6) inRange(a netip.Addr) bool {
	lo, hi := netip.MustParseAddr(l.prefix+"100"), netip.MustParseAddr(l.prefix+"1ff")
	return a.Compare(lo) >= 0 && a.Compare(hi) <= 0
}

// waitFor polls cond for up to d.
func waitFor6(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hookScript6 is the client hook: it only applies the address (the stock
// scripts rewrite /etc/resolv.conf, which namespaces share with the host)
// and logs what the client was told.
const hookScript6 = `#!/bin/sh
{
  echo "reason=$reason"
  env | grep -E '^(new_|old_|cur_)' | sort
  echo "--"
} >> "%[1]s"
case "$reason" in
BOUND6|RENEW6|REBIND6|REBOOT6)
  if [ -n "$old_ip6_address" ] && [ "$old_ip6_address" != "$new_ip6_address" ]; then
    ip -6 addr del "$old_ip6_address/128" dev "$interface" 2>/dev/null
  fi
  ip -6 addr replace "$new_ip6_address/128" dev "$interface" valid_lft "${new_max_life:-forever}" preferred_lft "${new_preferred_life:-forever}" nodad
  ;;
EXPIRE6|RELEASE6|STOP6)
  [ -n "$old_ip6_address" ] && ip -6 addr del "$old_ip6_address/128" dev "$interface"
  ;;
esac
exit 0
`

// dhclient6 is one dhclient -6 with its own files.
type dhclient6 struct {
	l                             *lab6
	script, lf, pf, cf, log, name string
}

func (l *lab6) dhclient(name, config, duid string) *dhclient6 {
	if _, err := exec.LookPath("dhclient"); err != nil {
		l.t.Skip("needs dhclient (isc-dhcp-client)")
	}
	d := &dhclient6{l: l, name: name}
	dir := filepath.Join(l.dir, name)
	os.MkdirAll(dir, 0o755)
	d.script, d.lf, d.pf, d.cf, d.log = filepath.Join(dir, "hook"), filepath.Join(dir, "leases"), filepath.Join(dir, "pid"), filepath.Join(dir, "conf"), filepath.Join(dir, "log")
	must6(l.t, os.WriteFile(d.script, []byte(fmt.Sprintf(hookScript6, d.log)), 0o755))
	must6(l.t, os.WriteFile(d.cf, []byte(config), 0o644))
	if duid != "" {
		b, err := ParseDUID6(duid)
		must6(l.t, err)
		var sb strings.Builder
		for _, c := range b {
			fmt.Fprintf(&sb, "\\%03o", c)
		}
		must6(l.t, os.WriteFile(d.lf, []byte(fmt.Sprintf("default-duid \"%s\";\n", sb.String())), 0o644))
	}
	l.t.Cleanup(func() {
		if pid, err := os.ReadFile(d.pf); err == nil {
			exec.Command("kill", strings.TrimSpace(string(pid))).Run()
		}
	})
	return d
}

func must6(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// run runs dhclient -6 in the guest with extra flags and returns its output.
func (d *dhclient6) run(extra ...string) string {
	d.l.t.Helper()
	args := append([]string{"netns", "exec", d.l.guest, "dhclient", "-6", "-v", "-1", "-sf", d.script, "-lf", d.lf, "-pf", d.pf, "-cf", d.cf}, extra...)
	args = append(args, "eth0")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		hook, _ := os.ReadFile(d.log)
		d.l.t.Fatalf("dhclient %v: %v\n%s\nhook log:\n%s\nstats: %+v", extra, err, out, hook, d.l.srv.Stats())
	}
	return string(out)
}

// reasons are the hook reasons so far.
func (d *dhclient6) reasons() []string {
	b, _ := os.ReadFile(d.log)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if r, ok := strings.CutPrefix(line, "reason="); ok {
			out = append(out, r)
		}
	}
	return out
}

// last is the value of an env variable in the last hook call.
func (d *dhclient6) last(name string) string {
	b, _ := os.ReadFile(d.log)
	val := ""
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+"="); ok {
			val = v
		}
	}
	return val
}

// TestServer6Dhclient: dhclient -6 gets a range address with the DNS and
// domain options, renews it (the lease is 20 s, T1 10 s) keeping it, and
// releases it.
func TestServer6Dhclient(t *testing.T) {
	l := newLab6(t, 20)
	d := l.dhclient("dyn", "request dhcp6.name-servers, dhcp6.domain-search;\n", "")
	d.run()
	addrs := l.guestAddrs()
	if len(addrs) != 1 || !l.inRange(addrs[0]) {
		t.Fatalf("guest addresses %v, want one in %s100-1ff", addrs, l.prefix)
	}
	a := addrs[0]
	t.Logf("dhclient bound %s", a)
	if got := d.last("new_dhcp6_name_servers"); got != l.prefix+"1" {
		t.Errorf("name servers %q, want %s1", got, l.prefix)
	}
	if got := d.last("new_dhcp6_domain_search"); !strings.Contains(got, "lab.test") {
		t.Errorf("domain search %q, want lab.test", got)
	}
	first, ok := l.lease(a)
	if !ok {
		t.Fatalf("lease of %s not in the store", a)
	}
	if first.Kind != leases.V6 || first.DUID == "" || first.Prefix != 64 || first.MAC == nil ||
		first.Expiry.Before(time.Now().Add(10*time.Second)) {
		t.Errorf("stored lease %+v", first)
	}
	// Renew at T1 (10 s): same address, lease pushed forward.
	waitFor6(t, 30*time.Second, "dhclient to renew", func() bool {
		return strings.Contains(strings.Join(d.reasons(), ","), "RENEW6")
	})
	if got := d.last("new_ip6_address"); got != a.String() {
		t.Errorf("renewed %s, had %s", got, a)
	}
	waitFor6(t, 5*time.Second, "the renewed lease in the store", func() bool {
		l2, ok := l.lease(a)
		return ok && l2.Expiry.After(first.Expiry)
	})
	if st := l.srv.Stats(); st.Renews == 0 || st.Bound != 1 || st.StoreErrors != 0 {
		t.Errorf("stats %+v", st)
	}
	// Release: the lease leaves the store and the pool.
	d.run("-r")
	if !strings.Contains(strings.Join(d.reasons(), ","), "RELEASE6") {
		t.Errorf("hook reasons %v: no RELEASE6", d.reasons())
	}
	waitFor6(t, 5*time.Second, "the lease to leave the store", func() bool {
		_, ok := l.lease(a)
		return !ok
	})
	if st := l.srv.Stats(); st.Releases != 1 || st.Bound != 0 {
		t.Errorf("stats after release %+v", st)
	}
	if got := l.guestAddrs(); len(got) != 0 {
		t.Errorf("guest still has %v", got)
	}
}

// TestServer6DhclientReservation: a dhclient whose DUID (written into its
// lease file as default-duid) is a <host id>, written by libvirt without
// leading zeros, gets the reserved address; its FQDN lands in the lease.
func TestServer6DhclientReservation(t *testing.T) {
	l := newLab6(t, 3600)
	d := l.dhclient("res", "send fqdn.fqdn \"resguest.lab.test.\";\n", "0:1:0:1:18:aa:62:fe:0:16:3e:44:55:66")
	d.run()
	want := netip.MustParseAddr(l.prefix + "42")
	if got := l.guestAddrs(); len(got) != 1 || got[0] != want {
		t.Fatalf("guest addresses %v, want %s", got, want)
	}
	le, ok := l.lease(want)
	if !ok {
		t.Fatalf("no stored lease for %s", want)
	}
	if le.DUID != "00:01:00:01:18:aa:62:fe:00:16:3e:44:55:66" || le.Hostname != "resguest" {
		t.Errorf("stored lease %+v", le)
	}
	// A second run restarts from the lease file (Confirm, or a new
	// exchange) and keeps the reserved address.
	d.run("-r")
	d.run()
	if got := l.guestAddrs(); len(got) != 1 || got[0] != want {
		t.Fatalf("after a restart: guest addresses %v, want %s", got, want)
	}
}

// TestServer6Dhcpcd: dhcpcd -6 asks for an IA_NA without any RA (noipv6rs,
// ia_na) and gets a range address, its reservation by FQDN name (sent as a
// partial name) or by DUID (set in its config), with the DNS and domain
// options; on SIGALRM it releases the lease.
func TestServer6Dhcpcd(t *testing.T) {
	if _, err := exec.LookPath("dhcpcd"); err != nil {
		t.Skip("needs dhcpcd")
	}
	for _, tc := range []struct {
		name, conf string
		want       string // "" any range address, else the host part
		hostname   string
		duid       string // prefix of the stored DUID
	}{
		{name: "dynamic", conf: "duid ll\nhostname dhcpcdguest\n", hostname: "dhcpcdguest", duid: "00:03:00:01:"},
		{name: "by name", conf: "duid ll\nhostname named6\n", want: "43", hostname: "named6", duid: "00:03:00:01:"},
		{name: "by DUID", conf: "duid 00:01:00:01:18:aa:62:fe:00:16:3e:44:55:66\nhostname dhcpcdres\n", want: "42", hostname: "dhcpcdres",
			duid: "00:01:00:01:18:aa:62:fe:00:16:3e:44:55:66"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab6(t, 3600)
			dir := filepath.Join(l.dir, "dhcpcd")
			os.MkdirAll(dir, 0o755)
			hookLog := filepath.Join(dir, "log")
			script := filepath.Join(dir, "hook")
			cfg := filepath.Join(dir, "dhcpcd.conf")
			must6(t, os.WriteFile(script, []byte(fmt.Sprintf("#!/bin/sh\nenv | sort >> %q\necho -- >> %q\nexit 0\n", hookLog, hookLog)), 0o755))
			must6(t, os.WriteFile(cfg, []byte("ipv6only\nnoipv6rs\noption dhcp6_name_servers, dhcp6_domain_search\nfqdn both\n"+tc.conf+"interface eth0\n  ia_na 1\n"), 0o644))
			// dhcpcd keeps its DUID, leases and control socket under /var/lib
			// and /run, which the namespaces share with the host: give it a
			// mount namespace of its own with empty ones.
			sh := fmt.Sprintf(`set -e
mount -t tmpfs tmpfs /run
mkdir -p /var/lib/dhcpcd && mount -t tmpfs tmpfs /var/lib/dhcpcd
mkdir -p /run/dhcpcd
exec dhcpcd -6 -B -d -f %[1]q -c %[2]q eth0`, cfg, script)
			// ip netns exec, unshare and sh all exec: the process is dhcpcd's.
			cmd := exec.Command("ip", "netns", "exec", l.guest, "unshare", "-m", "--propagation", "private", "sh", "-c", sh)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.WaitDelay = 5 * time.Second
			must6(t, cmd.Start())
			exited := make(chan struct{})
			go func() { cmd.Wait(); close(exited) }()
			t.Cleanup(func() {
				cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					cmd.Process.Kill()
				}
				if t.Failed() {
					t.Logf("dhcpcd output:\n%s", out.String())
				}
			})
			var a netip.Addr
			waitFor6(t, 30*time.Second, "dhcpcd to get an address", func() bool {
				as := l.guestAddrs()
				if len(as) > 0 {
					a = as[0]
					return true
				}
				return false
			})
			if tc.want == "" && !l.inRange(a) || tc.want != "" && a != netip.MustParseAddr(l.prefix+tc.want) {
				t.Fatalf("dhcpcd got %s, want %q", a, tc.want)
			}
			le, ok := l.lease(a)
			if !ok {
				t.Fatalf("no stored lease for %s", a)
			}
			if !strings.HasPrefix(le.DUID, tc.duid) || le.Hostname != tc.hostname || le.IAID != 1 {
				t.Errorf("stored lease %+v", le)
			}
			t.Logf("dhcpcd bound %s: %+v", a, le)
			var hook []byte
			waitFor6(t, 10*time.Second, "dhcpcd's BOUND6 hook", func() bool {
				hook, _ = os.ReadFile(hookLog)
				return strings.Contains(string(hook), "reason=BOUND6")
			})
			for _, want := range []string{"new_dhcp6_name_servers=" + l.prefix + "1", "new_dhcp6_domain_search=lab.test"} {
				if !strings.Contains(string(hook), want) {
					t.Errorf("dhcpcd hook environment lacks %s:\n%s", want, hook)
				}
			}
			// SIGALRM: dhcpcd releases its lease and exits.
			must6(t, cmd.Process.Signal(syscall.SIGALRM))
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				t.Fatal("dhcpcd did not exit after SIGALRM")
			}
			waitFor6(t, 5*time.Second, "the lease to leave the store", func() bool {
				_, ok := l.lease(a)
				return !ok
			})
			if st := l.srv.Stats(); st.Releases != 1 || st.Bound != 0 {
				t.Errorf("stats after release %+v", st)
			}
		})
	}
}

// gatedStore6 holds every write that stores a lease until the gate opens.
type gatedStore6 struct {
	LeaseStore
	gate    chan struct{}
	waiting atomic.Int32
}

func (g *gatedStore6) Apply(c leases.Changes, done func(error)) {
	if len(c.Put) == 0 {
		g.LeaseStore.Apply(c, done)
		return
	}
	g.waiting.Add(1)
	go func() {
		<-g.gate
		g.LeaseStore.Apply(c, done)
	}()
}

// TestServer6ReplyAfterDurable: while the lease store has not made a lease
// durable, dhclient gets no Reply and configures nothing.
func TestServer6ReplyAfterDurable(t *testing.T) {
	g := &gatedStore6{gate: make(chan struct{})}
	l := newLab6(t, 3600, func(s LeaseStore) LeaseStore { g.LeaseStore = s; return g })
	t.Cleanup(func() {
		select {
		case <-g.gate:
		default:
			close(g.gate)
		}
	})
	d := l.dhclient("gated", "", "")
	done := make(chan string, 1)
	go func() {
		out, _ := exec.Command("ip", "netns", "exec", l.guest, "dhclient", "-6", "-v", "-1", "-sf", d.script, "-lf", d.lf, "-pf", d.pf, "-cf", d.cf, "eth0").CombinedOutput()
		done <- string(out)
	}()
	waitFor6(t, 30*time.Second, "the server to store a lease", func() bool { return g.waiting.Load() > 0 })
	time.Sleep(3 * time.Second) // dhclient retransmits its Request meanwhile
	if got := l.guestAddrs(); len(got) != 0 || len(d.reasons()) > 1 {
		t.Fatalf("guest configured %v (hook %v) before the lease was durable", got, d.reasons())
	}
	if st := l.srv.Stats(); st.Replies != 0 || st.Commits != 0 {
		t.Fatalf("replied before the lease was durable: %+v", st)
	}
	close(g.gate)
	select {
	case out := <-done:
		if got := l.guestAddrs(); len(got) != 1 || !l.inRange(got[0]) {
			t.Fatalf("guest addresses %v after the store caught up\n%s", got, out)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("dhclient did not finish")
	}
	if st := l.srv.Stats(); st.Replies == 0 || st.Commits == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestServer6StartErrors: a missing bridge and a port taken without
// SO_REUSEADDR give clear errors.
func TestServer6StartErrors(t *testing.T) {
	nettest.SkipUnlessRoot(t)
	ns := nettest.NewNS(t, "e6")
	nettest.Must(t, "ip", "-n", ns, "link", "add", "br6", "type", "bridge")
	nettest.Must(t, "ip", "-n", ns, "link", "set", "br6", "up")
	n, err := conf.Parse([]byte(fmt.Sprintf(lab6XML, "fd00:1::", "br6", "err6", 3600)))
	if err != nil {
		t.Fatal(err)
	}
	store, err := leases.Open(filepath.Join(t.TempDir(), "l.db"))
	must6(t, err)
	defer store.Close()

	s, err := New6(Config6{Network: n, Bridge: "nosuchbr", Store: store, Log: testLogger6(t)})
	must6(t, err)
	err = nettest.Do(ns, func() error { return s.Start(context.Background()) })
	if err == nil || !strings.Contains(err.Error(), "nosuchbr") {
		t.Errorf("start on a missing bridge: %v", err)
	}

	// Someone holds [::]:547 on the bridge without SO_REUSEADDR.
	var taken *os.File
	err = nettest.Do(ns, func() error {
		fd, err := takePort6("br6")
		taken = fd
		return err
	})
	must6(t, err)
	s, err = New6(Config6{Network: n, Bridge: "br6", Store: store, Log: testLogger6(t)})
	must6(t, err)
	err = nettest.Do(ns, func() error { return s.Start(context.Background()) })
	if err == nil || !strings.Contains(err.Error(), "cannot bind UDP [::]:547 on bridge br6") {
		t.Errorf("start with the port taken: %v", err)
	}
	s.Close()

	// Once the port is free it starts; ending its context stops it.
	taken.Close()
	s, err = New6(Config6{Network: n, Bridge: "br6", Store: store, Log: testLogger6(t)})
	must6(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	must6(t, nettest.Do(ns, func() error { return s.Start(ctx) }))
	if err := nettest.Do(ns, func() error { return s.Start(ctx) }); err == nil {
		t.Error("second Start succeeded")
	}
	cancel()
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung after the context ended")
	}

	if _, err := New6(Config6{Network: parseNet6(t, `<network><name>v4</name><ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.0.2' end='10.0.0.9'/></dhcp></ip></network>`, nil), Bridge: "br6", Store: store}); err == nil {
		t.Error("New6 accepted a network without DHCPv6")
	}
}

// takePort6 binds UDP [::]:547 on dev without SO_REUSEADDR.
func takePort6(dev string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.BindToDevice(fd, dev); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet6{Port: serverPort6}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "taken547"), nil
}

// failingStore6 fails every write that stores a lease while fail is set.
type failingStore6 struct {
	LeaseStore
	fail atomic.Bool
}

func (f *failingStore6) Apply(c leases.Changes, done func(error)) {
	if f.fail.Load() && len(c.Put) > 0 {
		done(errors.New("disk on fire"))
		return
	}
	f.LeaseStore.Apply(c, done)
}

// TestServer6Shell drives the socket shell with a Go client in the guest:
// garbage and relay messages are counted and dropped, an
// Information-request and a Rapid Commit Solicit are answered, and a lease
// the store cannot keep is not acknowledged.
func TestServer6Shell(t *testing.T) {
	fs := &failingStore6{}
	l := newLab6(t, 3600, func(s LeaseStore) LeaseStore { fs.LeaseStore = s; return fs })
	var conn *net.UDPConn
	must6(t, nettest.Do(l.guest, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), "eth0") })
			return serr
		}}
		pc, err := lc.ListenPacket(context.Background(), "udp6", "[::]:546")
		if err != nil {
			return err
		}
		conn = pc.(*net.UDPConn)
		return nil
	}))
	defer conn.Close()
	ifi := ""
	must6(t, nettest.Do(l.guest, func() error {
		i, err := net.InterfaceByName("eth0")
		if err == nil {
			ifi = fmt.Sprint(i.Index)
		}
		return err
	}))
	server := netip.AddrPortFrom(allDHCPAgents6.WithZone(ifi), serverPort6)
	send := func(b []byte) {
		t.Helper()
		if _, err := conn.WriteToUDPAddrPort(b, server); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(wait time.Duration) *dhcpv6.Message {
		t.Helper()
		buf := make([]byte, 2000)
		conn.SetReadDeadline(time.Now().Add(wait))
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil
		}
		m, err := dhcpv6.MessageFromBytes(buf[:n])
		if err != nil {
			t.Fatalf("undecodable answer: %v", err)
		}
		return m
	}
	e := &env6{t: t, now: time.Now()}

	send([]byte{1, 2})
	send([]byte{12, 0, 1, 2, 3})
	send(append([]byte{3, 1, 2, 3}, 0, 1, 0, 200, 1)) // option longer than the message
	waitFor6(t, 5*time.Second, "garbage to be counted", func() bool {
		st := l.srv.Stats()
		return st.Malformed == 2 && st.Ignored == 1
	})

	send(e.msg(cA, dhcpv6.MessageTypeInformationRequest).ToBytes())
	m := recv(5 * time.Second)
	if m == nil || m.MessageType != dhcpv6.MessageTypeReply || len(m.Options.DNS()) != 1 || m.Options.DNS()[0].String() != l.prefix+"1" {
		t.Fatalf("information-request answer %v", m)
	}

	rapid := cA
	rapid.rapid = true
	send(e.msg(rapid, dhcpv6.MessageTypeSolicit, rapid.ia()).ToBytes())
	m = recv(5 * time.Second)
	if m == nil || m.MessageType != dhcpv6.MessageTypeReply || m.GetOneOption(dhcpv6.OptionRapidCommit) == nil {
		t.Fatalf("rapid commit answer %v", m)
	}
	a, _ := netip.AddrFromSlice(m.Options.OneIANA().Options.OneAddress().IPv6Addr)
	if _, ok := l.lease(a); !ok || !l.inRange(a) {
		t.Fatalf("rapid commit of %s: not in the store", a)
	}

	// The server's DUID is the DUID-LL of the bridge.
	sid := m.Options.ServerID()
	if _, ok := sid.(*dhcpv6.DUIDLL); !ok {
		t.Errorf("server DUID %v, want a DUID-LL", sid)
	}
	req := e.msg(cB, dhcpv6.MessageTypeRequest, cB.ia())
	req.UpdateOption(dhcpv6.OptServerID(sid))
	fs.fail.Store(true)
	send(req.ToBytes())
	if m := recv(1500 * time.Millisecond); m != nil {
		t.Fatalf("answered %v although the lease is not durable", m)
	}
	if st := l.srv.Stats(); st.StoreErrors != 1 {
		t.Errorf("stats %+v", st)
	}
	fs.fail.Store(false)
	send(req.ToBytes())
	if m := recv(5 * time.Second); m == nil || m.Options.OneIANA() == nil || m.Options.OneIANA().Options.OneAddress() == nil {
		t.Fatalf("retransmitted request: %v", m)
	}
}

// TestServer6AnswersOnLink: a client is answered on the bridge whatever its
// source address, including a global one outside the network's prefix that
// the host has no route back to (the kernel refuses to send there:
// ENETUNREACH), and a link-local one.
func TestServer6AnswersOnLink(t *testing.T) {
	l := newLab6(t, 3600)
	// Off-link for the host: neither in the network's prefix nor routed.
	nettest.Must(t, "ip", "-n", l.guest, "addr", "add", "2001:db8:99::5/128", "dev", "eth0", "nodad")
	// The kernel takes packets for it once its local route is in, which
	// even without DAD comes from a work queue, a moment later.
	waitFor6(t, 5*time.Second, "the guest's local route to 2001:db8:99::5", func() bool {
		out, _ := nettest.In(l.guest, "ip", "-6", "route", "show", "table", "local", "2001:db8:99::5")
		return strings.Contains(out, "2001:db8:99::5")
	})
	for _, tc := range []struct {
		name string
		src  string // "": the kernel picks, a link-local address
	}{
		{name: "global outside the prefix", src: "2001:db8:99::5"},
		{name: "link-local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var conn *net.UDPConn
			must6(t, nettest.Do(l.guest, func() error {
				lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
					var serr error
					c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), "eth0") })
					return serr
				}}
				pc, err := lc.ListenPacket(context.Background(), "udp6", net.JoinHostPort(tc.src, "546"))
				if err != nil {
					return err
				}
				conn = pc.(*net.UDPConn)
				return nil
			}))
			defer conn.Close()
			var ifi int
			must6(t, nettest.Do(l.guest, func() error {
				i, err := net.InterfaceByName("eth0")
				if err == nil {
					ifi = i.Index
				}
				return err
			}))
			before := l.srv.Stats()
			e := &env6{t: t, now: time.Now()}
			sol := e.msg(cA, dhcpv6.MessageTypeSolicit, cA.ia()).ToBytes()
			if _, err := conn.WriteToUDPAddrPort(sol, netip.AddrPortFrom(allDHCPAgents6.WithZone(fmt.Sprint(ifi)), serverPort6)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2000)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("no answer: %v (stats %+v)", err, l.srv.Stats())
			}
			m, err := dhcpv6.MessageFromBytes(buf[:n])
			if err != nil || m.MessageType != dhcpv6.MessageTypeAdvertise {
				t.Fatalf("answer %v, %v; want an Advertise", m, err)
			}
			if !from.Addr().IsLinkLocalUnicast() || from.Port() != serverPort6 {
				t.Errorf("answer from %s, want the bridge's link-local address, port %d", from, serverPort6)
			}
			// The Reply goes from the replier, once the lease is stored.
			req := e.msg(cA, dhcpv6.MessageTypeRequest, cA.ia())
			req.UpdateOption(dhcpv6.OptServerID(m.Options.ServerID()))
			if _, err := conn.WriteToUDPAddrPort(req.ToBytes(), netip.AddrPortFrom(allDHCPAgents6.WithZone(fmt.Sprint(ifi)), serverPort6)); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, _, err = conn.ReadFromUDPAddrPort(buf); err != nil {
				t.Fatalf("no reply: %v (stats %+v)", err, l.srv.Stats())
			}
			if m, err = dhcpv6.MessageFromBytes(buf[:n]); err != nil || m.MessageType != dhcpv6.MessageTypeReply || m.Options.OneIANA() == nil {
				t.Fatalf("answer %v, %v; want a Reply with an address", m, err)
			}
			if st := l.srv.Stats(); st.SendErrors != before.SendErrors || st.Advertises != before.Advertises+1 || st.Replies != before.Replies+1 {
				t.Errorf("stats %+v, before %+v", st, before)
			}
		})
	}
}
