package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/internal/nettest"
)

// dhclientHook applies the lease only: the stock hook rewrites the host's
// /etc/resolv.conf, which network namespaces share.
const dhclientHook = `#!/bin/sh
case "$reason" in
BOUND|RENEW|REBIND|REBOOT) ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" 2>/dev/null ;;
esac
`

func TestDHCPLeaseSurvivesRestart(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	host, guest := nettest.NewNS(t, "dhost"), nettest.NewNS(t, "dguest")
	d := startDaemon(t, host, t.TempDir())
	dir := t.TempDir()
	file := filepath.Join(dir, "net.xml")
	os.WriteFile(file, []byte(`<network><name>d</name><forward mode='nat'/><bridge name='vbrd' stp='off'/>
  <ip address='192.168.80.1' prefix='24'><dhcp><range start='192.168.80.100' end='192.168.80.150'/>
  <host mac='52:54:00:80:00:07' name='fixed' ip='192.168.80.7'/></dhcp></ip></network>`), 0o600)
	d.mustCtl("net-define", file)
	d.mustCtl("net-start", "d")
	nettest.Veth(t, guest, "eth0", host, "vnet0")
	nettest.Must(t, "ip", "-n", host, "link", "set", "vnet0", "master", "vbrd")
	nettest.Must(t, "ip", "-n", guest, "link", "set", "eth0", "address", "52:54:00:80:00:07")
	hook := filepath.Join(dir, "hook")
	os.WriteFile(hook, []byte(dhclientHook), 0o755)
	dhclient := func(args ...string) string {
		t.Helper()
		base := []string{"-4", "-1", "-sf", hook, "-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid")}
		return nettest.MustIn(t, guest, "timeout", append([]string{"20", "dhclient"}, append(base, args...)...)...)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
			nettest.In(guest, "kill", strings.TrimSpace(string(b)))
		}
	})
	dhclient("eth0")
	if addr := nettest.Must(t, "ip", "-n", guest, "-br", "addr", "show", "eth0"); !strings.Contains(addr, "192.168.80.7/24") {
		t.Fatalf("static reservation by MAC not honoured:\n%s\n%s", addr, d.logText())
	}
	if leases := d.mustCtl("net-dhcp-leases", "d"); !strings.Contains(leases, "192.168.80.7/24") || !strings.Contains(leases, "52:54:00:80:00:07") {
		t.Fatalf("net-dhcp-leases:\n%s", leases)
	}

	d.kill()
	d.start()
	if leases := d.mustCtl("net-dhcp-leases", "d", "--mac", "52:54:00:80:00:07"); !strings.Contains(leases, "192.168.80.7/24") {
		t.Fatalf("lease lost across SIGKILL + restart:\n%s\n%s", leases, d.logText())
	}

	// Release frees it.
	dhclient("-r", "eth0")
	if leases := d.mustCtl("net-dhcp-leases", "d"); strings.Contains(leases, "192.168.80.7") {
		t.Fatalf("released lease still listed:\n%s", leases)
	}
}
