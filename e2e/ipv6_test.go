package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vnetd/vnetd/internal/nettest"
)

// dhclient6Hook applies the address only (see dhclientHook).
const dhclient6Hook = `#!/bin/sh
case "$reason" in
BOUND6|RENEW6|REBIND6|REBOOT6) ip -6 addr add "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" 2>/dev/null ;;
esac
`

// TestStatefulIPv6Network: the daemon's router advertisement tells the
// guest to use DHCPv6 (Managed) and gives it a default route; dhclient -6
// then gets its address from the range; vnetd's exit leaves the route, and
// net-destroy withdraws it.
func TestStatefulIPv6Network(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	host, guest := nettest.NewNS(t, "v6host"), nettest.NewNS(t, "v6guest")
	bridge := nettest.Unique("vbr6", 12)
	d := startDaemon(t, host, t.TempDir())
	dir := t.TempDir()
	file := filepath.Join(dir, "net.xml")
	os.WriteFile(file, []byte(`<network><name>six</name><forward mode='nat'/><bridge name='`+bridge+`' stp='off'/>
  <ip family='ipv6' address='fd00:81::1' prefix='64'><dhcp><range start='fd00:81::100' end='fd00:81::1ff'/></dhcp></ip></network>`), 0o600)
	for _, ns := range []string{guest} {
		nettest.MustIn(t, ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
			"net.ipv6.conf.default.accept_ra=1")
	}
	d.mustCtl("net-define", file)
	d.mustCtl("net-start", "six")
	nettest.Veth(t, guest, "eth0", host, "vnet0")
	nettest.Must(t, "ip", "-n", host, "link", "set", "vnet0", "master", bridge)

	ra := nettest.MustIn(t, guest, "rdisc6", "-1", "-w", "3000", "-m", "eth0")
	for _, want := range []string{"Stateful address conf.    :          Yes", "Stateful other conf.      :          Yes", "fd00:81::/64"} {
		if !strings.Contains(ra, want) {
			t.Fatalf("router advertisement lacks %q:\n%s\n%s", want, ra, d.logText())
		}
	}
	waitRoute6 := func(want bool) string {
		t.Helper()
		var out string
		for range 100 {
			out = nettest.MustIn(t, guest, "ip", "-6", "route", "show", "default")
			if strings.Contains(out, "via fe80:") == want {
				return out
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("guest default route present=%v wanted: %q\n%s", !want, out, d.logText())
		return out
	}
	waitRoute6(true)

	hook := filepath.Join(dir, "hook6")
	os.WriteFile(hook, []byte(dhclient6Hook), 0o755)
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "pid6")); err == nil {
			nettest.In(guest, "kill", strings.TrimSpace(string(b)))
		}
	})
	nettest.MustIn(t, guest, "timeout", "30", "dhclient", "-6", "-1", "-sf", hook, "-lf", filepath.Join(dir, "leases6"),
		"-pf", filepath.Join(dir, "pid6"), "eth0")
	if addr := nettest.MustIn(t, guest, "ip", "-6", "-br", "addr", "show", "eth0"); !strings.Contains(addr, "fd00:81::1") {
		t.Fatalf("no DHCPv6 address from the range:\n%s\n%s", addr, d.logText())
	}

	d.stop() // SIGTERM: the network and the guest's route stay
	time.Sleep(500 * time.Millisecond)
	waitRoute6(true)
	d.start()
	d.mustCtl("net-destroy", "six")
	waitRoute6(false)
}
