package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/internal/nettest"
)

func portXML(t *testing.T, uuid, mac string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "port.xml")
	os.WriteFile(file, []byte(fmt.Sprintf(`<networkport>
  <uuid>%s</uuid>
  <owner>
    <name>guest1</name>
    <uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid>
  </owner>
  <mac address='%s'/>
</networkport>`, uuid, mac)), 0o600)
	return file
}

const (
	port1 = "5d744f21-ba4a-4d6e-bdb2-30a35ff3207d"
	port2 = "6e855032-cb5b-4e7f-8ec3-41b46004318e"
)

func TestAttachedPortCarriesTraffic(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	host, guest := nettest.NewNS(t, "phost"), nettest.NewNS(t, "pguest")
	d := startDaemon(t, host, t.TempDir())
	file := filepath.Join(t.TempDir(), "net.xml")
	os.WriteFile(file, []byte(`<network><name>p</name><bridge name='vbrp' stp='off'/><mtu size='1400'/>
  <ip address='192.168.70.1' prefix='24'/></network>`), 0o600)
	d.mustCtl("net-create", file)
	nettest.Veth(t, guest, "eth0", host, "vnet0")
	nettest.Must(t, "ip", "-n", guest, "addr", "add", "192.168.70.10/24", "dev", "eth0")
	if out := d.mustCtl("net-port-create", "p", portXML(t, port1, "52:54:00:aa:00:01"), "--attach", "vnet0"); strings.TrimSpace(out) != port1 {
		t.Fatalf("port uuid: %q", out)
	}
	link := nettest.Must(t, "ip", "-n", host, "-d", "link", "show", "vnet0")
	if !strings.Contains(link, "master vbrp") || !strings.Contains(link, "mtu 1400") {
		t.Fatalf("port not enslaved with the network's MTU:\n%s", link)
	}
	if out, err := nettest.In(guest, "ping", "-c", "1", "-W", "2", "192.168.70.1"); err != nil {
		t.Fatalf("guest on an attached port cannot reach the bridge: %v\n%s", err, out)
	}
	if xml := d.mustCtl("net-dumpxml", "p"); !strings.Contains(xml, "<network connections='1'>") {
		t.Fatalf("live XML lacks the connection count:\n%s", xml)
	}
	if list := d.mustCtl("net-port-list", "p"); !strings.Contains(list, port1) || !strings.Contains(list, "vnet0") {
		t.Fatalf("net-port-list:\n%s", list)
	}
	if out, err := d.vnetctl("net-port-create", "p", portXML(t, port1, "52:54:00:aa:00:01")); err == nil || !strings.Contains(out, "already has port") {
		t.Fatalf("duplicate port: %v %s", err, out)
	}
	d.mustCtl("net-port-delete", "p", port1)
	if link := nettest.Must(t, "ip", "-n", host, "link", "show", "vnet0"); strings.Contains(link, "master") {
		t.Fatalf("port still enslaved after delete:\n%s", link)
	}
	if xml := d.mustCtl("net-dumpxml", "p"); strings.Contains(xml, "connections=") {
		t.Fatalf("connection count not released:\n%s", xml)
	}
}

func TestTapPortAndReclaimAfterRestart(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	host := nettest.NewNS(t, "ptap")
	d := startDaemon(t, host, t.TempDir())
	file := filepath.Join(t.TempDir(), "net.xml")
	os.WriteFile(file, []byte(`<network><name>t</name><bridge name='vbrt' stp='off' macTableManager='libvirt'/><port isolated='yes'/>
  <ip address='192.168.71.1' prefix='24'/></network>`), 0o600)
	d.mustCtl("net-define", file)
	d.mustCtl("net-start", "t")
	d.mustCtl("net-port-create", "t", portXML(t, port1, "52:54:00:aa:00:02"), "--tap", "vtap0", "--tap-owner", "4711", "--multi-queue")
	link := nettest.Must(t, "ip", "-n", host, "-d", "link", "show", "vtap0")
	for _, want := range []string{"tun type tap", "user 4711", "multi_queue", "master vbrt", "isolated on", "learning off", "flood off"} {
		if !strings.Contains(link, want) {
			t.Errorf("tap lacks %q:\n%s", want, link)
		}
	}
	if fdb := nettest.Must(t, "bridge", "-n", host, "fdb", "show", "dev", "vtap0"); !strings.Contains(fdb, "52:54:00:aa:00:02") {
		t.Errorf("no static FDB entry for the guest MAC:\n%s", fdb)
	}

	d.kill()
	d.start()
	if list := d.mustCtl("net-port-list", "t"); !strings.Contains(list, port1) {
		t.Fatalf("port not reclaimed after restart:\n%s\n%s", list, d.logText())
	}
	if xml := d.mustCtl("net-dumpxml", "t"); !strings.Contains(xml, "<network connections='1'>") {
		t.Fatalf("connections not re-counted exactly once after restart:\n%s", xml)
	}
	d.mustCtl("net-port-delete", "t", port1)
	if _, err := nettest.In(host, "ip", "link", "show", "vtap0"); err == nil {
		t.Fatal("the tap vnetd created survived its port")
	}
}

func TestMacvtapPool(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	host, peer := nettest.NewNS(t, "pmv"), nettest.NewNS(t, "pmvpeer")
	// veths stand in for physical NICs
	nettest.Veth(t, host, "nic0", peer, "p0")
	nettest.Veth(t, host, "nic1", peer, "p1")
	d := startDaemon(t, host, t.TempDir())
	file := filepath.Join(t.TempDir(), "net.xml")
	os.WriteFile(file, []byte(`<network><name>pt</name><forward mode='passthrough'>
  <interface dev='nic0'/><interface dev='nic1'/></forward></network>`), 0o600)
	d.mustCtl("net-create", file)
	d.mustCtl("net-port-create", "pt", portXML(t, port1, "52:54:00:aa:00:03"))
	d.mustCtl("net-port-create", "pt", portXML(t, port2, "52:54:00:aa:00:04"))
	links := nettest.Must(t, "ip", "-n", host, "-d", "link", "show", "type", "macvtap")
	if strings.Count(links, "macvtap mode passthru") != 2 || !strings.Contains(links, "@nic0") || !strings.Contains(links, "@nic1") {
		t.Fatalf("want one passthrough macvtap on each NIC:\n%s", links)
	}
	third := "7f966143-dc6c-4f80-9fd4-52c57115429f"
	if out, err := d.vnetctl("net-port-create", "pt", portXML(t, third, "52:54:00:aa:00:05")); err == nil || !strings.Contains(out, "exclusive access") {
		t.Fatalf("third passthrough port: %v %s", err, out)
	}
	if xml := d.mustCtl("net-dumpxml", "pt"); !strings.Contains(xml, "<interface dev='nic0' connections='1'/>") {
		t.Fatalf("pool counters missing:\n%s", xml)
	}
	d.mustCtl("net-destroy", "pt")
	if links := nettest.Must(t, "ip", "-n", host, "link", "show", "type", "macvtap"); strings.TrimSpace(links) != "" {
		t.Fatalf("macvtaps left after destroy:\n%s", links)
	}
}
