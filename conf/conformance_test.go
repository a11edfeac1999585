package conf

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// libvirtTestdata finds libvirt's conformance corpus: $VNETD_LIBVIRT_TESTDATA,
// else ../shared/conformance/libvirt next to the repository. It is LGPL test
// data and is read in place, never copied into the repository.
func libvirtTestdata(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("VNETD_LIBVIRT_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "conformance", "libvirt")
	}
	if _, err := os.Stat(filepath.Join(dir, "tests", "networkxml2xmlin")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("libvirt conformance corpus not found at %s (set VNETD_LIBVIRT_TESTDATA): %v", dir, err)
		}
		t.Skipf("libvirt conformance corpus not found at %s (set VNETD_LIBVIRT_TESTDATA); skipping", dir)
	}
	return dir
}

// networkxml2xmlCases is libvirt v11.3.0's tests/networkxml2xmltest.c list.
var networkxml2xmlCases = []struct {
	name      string
	flags     FormatFlags
	parseFail bool
}{
	{name: "dhcp6host-routed-network"},
	{name: "empty-allow-ipv6"},
	{name: "isolated-network"},
	{name: "routed-network"},
	{name: "routed-network-no-dns"},
	{name: "routed-network-no-dns-extra-elements", parseFail: true},
	{name: "open-network"},
	{name: "open-network-with-forward-dev", parseFail: true},
	{name: "nat-network"},
	{name: "netboot-network"},
	{name: "netboot-proxy-network"},
	{name: "netboot-tftp"},
	{name: "nat-network-dns-txt-record"},
	{name: "nat-network-dns-srv-record"},
	{name: "nat-network-dns-srv-records"},
	{name: "nat-network-dns-srv-record-minimal"},
	{name: "nat-network-dns-hosts"},
	{name: "nat-network-dns-forward-plain"},
	{name: "nat-network-dns-forwarders"},
	{name: "nat-network-dns-forwarder-no-resolv"},
	{name: "nat-network-forward-nat-ipv6"},
	{name: "nat-network-forward-nat-address"},
	{name: "nat-network-forward-nat-no-address"},
	{name: "nat-network-mtu"},
	{name: "8021Qbh-net"},
	{name: "direct-net"},
	{name: "host-bridge-net"},
	{name: "vepa-net"},
	{name: "bandwidth-network"},
	{name: "openvswitch-net"},
	{name: "passthrough-pf", flags: FormatInactive},
	{name: "hostdev"},
	{name: "hostdev-pf", flags: FormatInactive},
	{name: "hostdev-pf-driver-model", flags: FormatInactive},
	{name: "passthrough-address-crash"},
	{name: "nat-network-explicit-flood"},
	{name: "host-bridge-no-flood"},
	{name: "hostdev-duplicate", parseFail: true},
	{name: "passthrough-duplicate", parseFail: true},
	{name: "metadata"},
	{name: "set-mtu"},
	{name: "dnsmasq-options"},
	{name: "leasetime-seconds"},
	{name: "leasetime-minutes"},
	{name: "leasetime-hours"},
	{name: "leasetime-infinite"},
	{name: "isolated-ports"},
}

func TestConformanceNetworkXML2XML(t *testing.T) {
	dir := libvirtTestdata(t)
	passed, identical, inactive, rejected := 0, 0, 0, 0
	for _, tc := range networkxml2xmlCases {
		ok := t.Run(tc.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join(dir, "tests", "networkxml2xmlin", tc.name+".xml"))
			if err != nil {
				t.Fatal(err)
			}
			n, err := Parse(in)
			if tc.parseFail {
				if err == nil {
					t.Fatalf("parse succeeded, libvirt rejects this input")
				}
				t.Logf("rejected as expected: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			want, err := os.ReadFile(filepath.Join(dir, "tests", "networkxml2xmlout", tc.name+".xml"))
			if err != nil {
				t.Fatal(err)
			}
			got := n.Format(tc.flags)
			if !bytes.Equal(got, want) {
				t.Fatalf("formatted output differs from libvirt's\n--- got\n%s\n--- want\n%s", got, want)
			}
			// The canonical form is a fixed point.
			again, err := Parse(got)
			if err != nil {
				t.Fatalf("reparse of formatted output: %v", err)
			}
			if !bytes.Equal(again.Format(tc.flags), got) {
				t.Fatalf("format(parse(format(x))) != format(x)")
			}
		})
		if !ok {
			continue
		}
		passed++
		switch {
		case tc.parseFail:
			rejected++
		case tc.flags&FormatInactive != 0:
			identical++
			inactive++
		default:
			identical++
		}
	}
	t.Logf("networkxml2xml: %d/%d as expected (%d byte-identical outputs, %d of them INACTIVE; %d rejected)",
		passed, len(networkxml2xmlCases), identical, inactive, rejected)
	reportLine(t, "networkxml2xml: %d/%d as expected", passed, len(networkxml2xmlCases))
}

// reportLine prints a summary line to the test output even without -v, so
// make test shows the conformance figures.
func reportLine(t *testing.T, format string, args ...any) {
	t.Helper()
	line := strings.TrimSpace(fmt.Sprintf(format, args...))
	os.Stdout.WriteString(line + "\n")
}
