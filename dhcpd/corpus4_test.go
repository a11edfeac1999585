package dhcpd

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vnetd/vnetd/conf"
)

// dnsmasqLease4 parses a dnsmasq lease time ("10m", "1h", "200s",
// "infinite") into DHCP seconds.
func dnsmasqLease4(t *testing.T, s string) uint32 {
	t.Helper()
	if s == "infinite" {
		return infiniteLease4
	}
	mult := uint64(1)
	switch s[len(s)-1] {
	case 's':
		s = s[:len(s)-1]
	case 'm':
		mult, s = 60, s[:len(s)-1]
	case 'h':
		mult, s = 3600, s[:len(s)-1]
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatalf("lease %q: %v", s, err)
	}
	return uint32(n * mult)
}

// TestCorpus4 checks the DHCPv4 configuration vnetd derives from every
// network of libvirt's networkxml2confdata corpus against the dnsmasq
// configuration and hostsfile libvirt writes for it, then serves each
// static host and an unknown client.
func TestCorpus4(t *testing.T) {
	dir := os.Getenv("VNETD_LIBVIRT_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "conformance", "libvirt")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "tests", "networkxml2confdata", "*.xml"))
	if len(files) == 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("libvirt corpus not found at %s", dir)
		}
		t.Skipf("libvirt corpus not found at %s", dir)
	}
	served := 0
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".xml")
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n, err := conf.Parse(data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, err := dhcp4IP(n); err != nil {
			continue
		}
		served++
		t.Run(name, func(t *testing.T) {
			confText, err := os.ReadFile(strings.TrimSuffix(f, ".xml") + ".conf")
			if err != nil {
				t.Fatal(err)
			}
			hostsText, _ := os.ReadFile(strings.TrimSuffix(f, ".xml") + ".hostsfile")
			c, err := newConfig4(n)
			if err != nil {
				t.Fatal(err)
			}
			checkConf4(t, n, c, string(confText), string(hostsText))
			serveCorpus4(t, n, c)
		})
	}
	if served == 0 {
		t.Fatal("no IPv4 DHCP network in the corpus")
	}
}

func checkConf4(t *testing.T, n *conf.Network, c *config4, confText, hostsText string) {
	var ranges []range4
	static, router, v6Size, leaseMax := false, true, 0, -1
	var mtu uint16
	bootFile, nextServer, tftp := "", "", false
	for _, line := range strings.Split(confText, "\n") {
		key, val, _ := strings.Cut(line, "=")
		switch key {
		case "dhcp-range":
			f := strings.Split(val, ",")
			if strings.Contains(f[0], ":") {
				if len(f) >= 3 && strings.Contains(f[1], ":") {
					v6Size += int(conf.RangeSize(netipMust4(f[0]), netipMust4(f[1])).Int64())
				}
				continue
			}
			if len(f) == 2 && f[1] == "static" {
				static = true
				continue
			}
			r := range4{start: a2u4(netipMust4(f[0])), end: a2u4(netipMust4(f[1]))}
			if mask := net.IPMask(net.ParseIP(f[2]).To4()); mask.String() != c.mask.String() {
				t.Errorf("netmask %s, vnetd %s", f[2], c.mask)
			}
			if len(f) > 3 {
				r.lease = dnsmasqLease4(t, f[3])
			}
			ranges = append(ranges, r)
		case "dhcp-lease-max":
			leaseMax, _ = strconv.Atoi(val)
		case "dhcp-option":
			switch {
			case val == "3":
				router = false
			case strings.HasPrefix(val, "option:mtu,"):
				m, _ := strconv.Atoi(strings.TrimPrefix(val, "option:mtu,"))
				mtu = uint16(m)
			}
		case "dhcp-boot":
			f := strings.Split(val, ",")
			bootFile = f[0]
			if len(f) == 3 {
				nextServer = f[2]
			}
		case "tftp-root":
			tftp = true
		}
	}
	if len(ranges) != len(c.ranges) {
		t.Fatalf("ranges: dnsmasq %v, vnetd %v", ranges, c.ranges)
	}
	for i := range ranges {
		if ranges[i] != c.ranges[i] {
			t.Errorf("range %d: dnsmasq %+v, vnetd %+v", i, ranges[i], c.ranges[i])
		}
	}
	if static != (len(c.ranges) == 0) {
		t.Errorf("static-only: dnsmasq %v, vnetd ranges %v", static, c.ranges)
	}
	if leaseMax >= 0 && leaseMax != c.leaseMax+v6Size {
		t.Errorf("dhcp-lease-max %d, vnetd %d (+%d IPv6)", leaseMax, c.leaseMax, v6Size)
	}
	if router != c.router {
		t.Errorf("router option: dnsmasq %v, vnetd %v", router, c.router)
	}
	if mtu != c.mtu {
		t.Errorf("mtu: dnsmasq %d, vnetd %d", mtu, c.mtu)
	}
	if c.bootFile != bootFile {
		t.Errorf("boot file: dnsmasq %q, vnetd %q", bootFile, c.bootFile)
	}
	wantNext := ""
	switch {
	case nextServer != "":
		wantNext = nextServer
	case bootFile != "" || tftp:
		wantNext = c.server.String()
	}
	if got := c.nextServer.String(); wantNext != "" && got != wantNext || wantNext == "" && c.nextServer.IsValid() {
		t.Errorf("next-server: want %q, vnetd %s", wantNext, c.nextServer)
	}
	if n.Domain != nil && c.domain != n.Domain.Name || c.dns != n.DNS.Enabled() {
		t.Errorf("domain %q dns %v", c.domain, c.dns)
	}

	// The hostsfile's IPv4 lines: MAC,IP[,NAME][,LEASE] or NAME,IP[,LEASE].
	var hosts []host4
	for _, line := range strings.Split(strings.TrimSpace(hostsText), "\n") {
		if line == "" || strings.HasPrefix(line, "id:") || strings.Contains(line, "[") {
			continue
		}
		f := strings.Split(line, ",")
		var h host4
		if mac, err := net.ParseMAC(f[0]); err == nil {
			h.mac = mac
		} else {
			h.name = f[0]
		}
		h.ip = netipMust4(f[1])
		for _, extra := range f[2:] {
			if extra == "infinite" || extra[0] >= '0' && extra[0] <= '9' {
				h.lease = dnsmasqLease4(t, extra)
			} else {
				h.name = extra
			}
		}
		hosts = append(hosts, h)
	}
	if len(hosts) != len(c.hosts) {
		t.Fatalf("hosts: hostsfile %d, vnetd %d", len(hosts), len(c.hosts))
	}
	for i, h := range hosts {
		g := c.hosts[i]
		if h.mac.String() != g.mac.String() || h.name != g.name || h.ip != g.ip || h.lease != g.lease {
			t.Errorf("host %d: hostsfile %+v, vnetd %+v", i, h, g)
		}
	}
}

// serveCorpus4 gives each static host its address and lease time, and an
// unknown client a range address iff there are ranges.
func serveCorpus4(t *testing.T, n *conf.Network, c *config4) {
	r := &rig4{t: t, now: t04}
	var err error
	if r.h, err = NewHandler4(n, nil); err != nil {
		t.Fatal(err)
	}
	for i, h := range c.hosts {
		mac := net.HardwareAddr{0x52, 0x54, 0, 0x99, 0, byte(i)}.String()
		var mods []dhcpv4.Modifier
		if h.mac != nil {
			mac = h.mac.String()
		} else {
			mods = append(mods, hostname4(h.name))
		}
		ack, l := r.dora(mac, mods...)
		if addr4(ack.YourIPAddr) != h.ip {
			t.Errorf("host %d got %v, want %s", i, ack.YourIPAddr, h.ip)
		}
		want := c.leaseFor(h.ip, &c.hosts[i])
		if lt, _ := optU32of4(ack, dhcpv4.OptionIPAddressLeaseTime); lt != want {
			t.Errorf("host %d lease %d, want %d", i, lt, want)
		}
		if h.label != "" && l.Hostname != h.label {
			t.Errorf("host %d stored hostname %q", i, l.Hostname)
		}
	}
	off := r.do(discover4("52:54:00:77:77:77"))
	if (off.resp != nil) != (len(c.ranges) > 0) {
		t.Errorf("unknown client: %s with %d ranges", typeOf4(off.resp), len(c.ranges))
	}
	if off.resp != nil && c.rangeOf(addr4(off.resp.YourIPAddr)) == nil {
		t.Errorf("offered %v outside the ranges", off.resp.YourIPAddr)
	}
}
