package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/internal/nettest"
)

// scrape reads /metrics over the control socket.
func (d *daemon) scrape() string {
	d.t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, "unix", d.socket)
	}}}
	resp, err := c.Get("http://vnetd/metrics")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		d.t.Fatalf("GET /metrics: %s %v\n%s", resp.Status, err, body)
	}
	return string(body)
}

// metricValue is the value of one series (name and labels as exposed, labels
// sorted by name) in a text exposition.
func metricValue(text, series string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

func TestMetricsAfterDHCPAndDNS(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	host, guest := nettest.NewNS(t, "mhost"), nettest.NewNS(t, "mguest")
	d := startDaemon(t, host, t.TempDir())
	dir := t.TempDir()
	file := filepath.Join(dir, "net.xml")
	os.WriteFile(file, []byte(`<network><name>m</name><forward mode='nat'/><bridge name='vbrm' stp='off'/>
  <domain name='m.test' localOnly='yes'/>
  <ip address='192.168.81.1' prefix='24'><dhcp><range start='192.168.81.100' end='192.168.81.150'/>
  <host mac='52:54:00:81:00:07' name='fixed' ip='192.168.81.7'/></dhcp></ip></network>`), 0o600)
	d.mustCtl("net-define", file)
	d.mustCtl("net-start", "m")
	nettest.Veth(t, guest, "eth0", host, "vnet0")
	nettest.Must(t, "ip", "-n", host, "link", "set", "vnet0", "master", "vbrm")
	nettest.Must(t, "ip", "-n", guest, "link", "set", "eth0", "address", "52:54:00:81:00:07")
	hook := filepath.Join(dir, "hook")
	os.WriteFile(hook, []byte(dhclientHook), 0o755)
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
			nettest.In(guest, "kill", strings.TrimSpace(string(b)))
		}
	})
	nettest.MustIn(t, guest, "timeout", "20", "dhclient", "-4", "-1", "-sf", hook,
		"-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), "eth0")
	answer := nettest.MustIn(t, guest, "dig", "@192.168.81.1", "+short", "+tries=1", "+time=3", "fixed.m.test", "A")

	text := d.scrape()
	for _, c := range []struct {
		series string
		min    float64
	}{
		{`vnetd_networks_active`, 1},
		{`vnetd_networks_defined`, 1},
		{`vnetd_dhcp_received_total{family="ipv4",network="m",type="discover"}`, 1},
		{`vnetd_dhcp_replies_total{family="ipv4",network="m",type="ack"}`, 1},
		{`vnetd_dhcp_leases_active{family="ipv4",network="m"}`, 1},
		{`vnetd_dhcp_pool_size{family="ipv4",network="m"}`, 52},
		{`vnetd_dns_queries_total{network="m",qtype="A"}`, 1},
		{`vnetd_dns_responses_total{network="m",rcode="NOERROR"}`, 1},
		{`vnetd_firewall_restores_total{network="m"}`, 0},
		{`vnetd_api_requests_total{code="200",method="POST /v1/networks/{id}/start"}`, 1},
		{`process_resident_memory_bytes`, 1},
	} {
		v, ok := metricValue(text, c.series)
		if !ok || v < c.min {
			t.Errorf("%s = %v (present %v), want at least %v", c.series, v, ok, c.min)
		}
	}
	if t.Failed() {
		t.Logf("dig answered %q; /metrics:\n%s\nvnetd log:\n%s", answer, text, d.logText())
	}
}
