package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vnetd/vnetd/internal/nettest"
)

func floorPortXML(t *testing.T, uuid, mac, inbound string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "port.xml")
	os.WriteFile(file, []byte(`<networkport>
  <uuid>`+uuid+`</uuid>
  <owner><name>guest1</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner>
  <mac address='`+mac+`'/>
  <bandwidth><inbound `+inbound+`/><outbound average='500' peak='1000'/></bandwidth>
</networkport>`), 0o600)
	return file
}

// tcShow lists a device's tc objects of one kind (qdisc, class, filter).
func tcShow(t *testing.T, ns, kind, dev string) string {
	t.Helper()
	return nettest.Must(t, "tc", "-n", ns, kind, "show", "dev", dev)
}

// TestBandwidthThroughTheDaemon: network <bandwidth> on the bridge at start,
// a port's rates on its tap and its floor class on the bridge, a live rate
// change in place, the accounting back after a SIGKILL restart, and nothing
// left after delete and destroy. (Throughput is measured by bench/shaping.sh
// and the shaping package's iperf3 test.)
func TestBandwidthThroughTheDaemon(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	host := nettest.NewNS(t, "shape")
	d := startDaemon(t, host, t.TempDir())
	file := filepath.Join(t.TempDir(), "net.xml")
	os.WriteFile(file, []byte(`<network><name>s</name><forward mode='nat'/><bridge name='vbrs' stp='off'/>
  <bandwidth><inbound average='12500' peak='25000'/><outbound average='12500'/></bandwidth>
  <ip address='192.168.72.1' prefix='24'/></network>`), 0o600)
	d.mustCtl("net-create", file)

	if q := tcShow(t, host, "qdisc", "vbrs"); !strings.Contains(q, "htb 1: root") || !strings.Contains(q, "ingress") {
		t.Fatalf("bridge qdiscs:\n%s", q)
	}
	if c := tcShow(t, host, "class", "vbrs"); !strings.Contains(c, "class htb 1:1 root") || !strings.Contains(c, "class htb 1:2 parent 1:1") {
		t.Fatalf("bridge classes:\n%s", c)
	}

	d.mustCtl("net-port-create", "s", floorPortXML(t, port1, "52:54:00:aa:00:07", "average='2500' floor='10000'"), "--tap", "vtaps0")
	if q := tcShow(t, host, "qdisc", "vtaps0"); !strings.Contains(q, "htb 1: root") || !strings.Contains(q, "ingress") {
		t.Fatalf("tap qdiscs:\n%s", q)
	}
	if c := tcShow(t, host, "class", "vbrs"); !strings.Contains(c, "class htb 1:3 parent 1:1") || !strings.Contains(c, "rate 80Mbit") {
		t.Fatalf("floor class 1:3 (80 Mbit/s) missing:\n%s", c)
	}
	if x := d.mustCtl("net-port-dumpxml", "s", port1); !strings.Contains(x, "floor='10000'") {
		t.Fatalf("port XML:\n%s", x)
	}
	// 10000 + 20000 > peak 25000: refused.
	if out, err := d.vnetctl("net-port-create", "s", floorPortXML(t, port2, "52:54:00:aa:00:08", "average='2500' floor='20000'")); err == nil || !strings.Contains(out, "floor") {
		t.Fatalf("overcommitted floor accepted: %v\n%s", err, out)
	}

	d.kill()
	d.start()
	// The accounting survived: a 16000 floor would now overcommit too.
	if out, err := d.vnetctl("net-port-create", "s", floorPortXML(t, port2, "52:54:00:aa:00:08", "average='2500' floor='16000'")); err == nil || !strings.Contains(out, "floor") {
		t.Fatalf("floor accounting lost in the restart: %v\n%s", err, out)
	}

	// Live change, in place: same class, new rate.
	d.mustCtl("net-port-set-bandwidth", "s", port1, "--inbound", "5000,0,0,5000", "--outbound", "1000")
	if c := tcShow(t, host, "class", "vbrs"); !strings.Contains(c, "class htb 1:3 parent 1:1") || !strings.Contains(c, "rate 40Mbit") {
		t.Fatalf("floor class not re-rated to 40 Mbit/s:\n%s", c)
	}
	if c := tcShow(t, host, "class", "vtaps0"); !strings.Contains(c, "rate 40Mbit") {
		t.Fatalf("tap class not re-rated:\n%s", c)
	}

	d.mustCtl("net-port-delete", "s", port1)
	if c := tcShow(t, host, "class", "vbrs"); strings.Contains(c, "1:3") {
		t.Fatalf("floor class left after port delete:\n%s", c)
	}
	d.mustCtl("net-destroy", "s")
	// The bridge is deleted in the background after destroy.
	var links string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if links = nettest.Must(t, "ip", "-n", host, "link", "show"); !strings.Contains(links, "vnifb") && !strings.Contains(links, "vbrs") {
			return
		}
	}
	t.Fatalf("left after destroy:\n%s", links)
}
