package conf

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var expectHeader = regexp.MustCompile(`(?s)^<!--\nerror-path: ([^\n]*)\nerror: ([^\n]*)\n-->`)

// TestInvalidDefinitions runs one invalid network per validation rule from
// testdata/invalid: each file's header names the element path the error must
// carry and a phrase of its message.
func TestInvalidDefinitions(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.xml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test cases: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".xml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			m := expectHeader.FindSubmatch(data)
			if m == nil {
				t.Fatalf("%s: missing error-path/error header", file)
			}
			wantPath, wantMsg := string(m[1]), string(m[2])
			err = parseAndValidate(data)
			if err == nil {
				t.Fatalf("accepted; want an error at %q containing %q", wantPath, wantMsg)
			}
			for _, e := range Problems(err) {
				var fe *FieldError
				if errors.As(e, &fe) {
					if fe.Path == wantPath && strings.Contains(fe.Msg, wantMsg) {
						return
					}
				} else if wantPath == "" && strings.Contains(e.Error(), wantMsg) {
					return
				}
			}
			t.Fatalf("no error at %q containing %q; got:\n%v", wantPath, wantMsg, err)
		})
	}
}

func parseAndValidate(data []byte) error {
	n, err := Parse(data)
	if err != nil {
		return err
	}
	return n.Validate()
}

func TestErrorsCarryLines(t *testing.T) {
	data := []byte("<network>\n  <name>t</name>\n  <forward mode='nat'/>\n  <ip address='192.168.50.1' prefix='24'>\n    <dhcp>\n      <range start='10.0.0.300' end='192.168.50.9'/>\n    </dhcp>\n  </ip>\n</network>\n")
	_, err := Parse(data)
	want := `network/ip[1]/dhcp/range[1] (line 6): attribute start: "10.0.0.300" is not an IP address`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestAllProblemsReported(t *testing.T) {
	data := []byte(`<network>
  <name>t</name>
  <mtu size='x'/>
  <bridge name='virbr9' stp='sometimes'/>
  <ip address='192.168.50.1' prefix='24'>
    <dhcp>
      <range start='192.168.60.2' end='192.168.60.9'/>
      <host ip='192.168.50.5'/>
    </dhcp>
  </ip>
  <route address='10.1.0.0' prefix='16' gateway='172.16.0.1'/>
</network>`)
	_, err := Parse(data)
	if got := len(Problems(err)); got != 2 {
		t.Fatalf("decode problems: got %d, want 2 (mtu, stp):\n%v", got, err)
	}
	data = []byte(strings.NewReplacer("size='x'", "size='1500'", "stp='sometimes'", "stp='on'").Replace(string(data)))
	n, err := Parse(data)
	if got := len(Problems(err)); got != 3 || n != nil {
		t.Fatalf("rule problems: got %d, want 3 (range, host, route):\n%v", got, err)
	}
}

func TestValidateGoBuiltNetwork(t *testing.T) {
	var n Network
	err := n.Validate()
	if err == nil || !strings.Contains(err.Error(), "network/name: missing network name") || !strings.Contains(err.Error(), "forward mode is not set") {
		t.Fatalf("zero Network: %v", err)
	}
}

func TestCorpusValidates(t *testing.T) {
	dir := libvirtTestdata(t)
	// Networks libvirt parses but its driver (or newer libvirt) refuses to
	// define: pools have no addresses, only hostdev pools take PCI addresses,
	// and macvtap private mode cannot carry a VLAN configuration.
	rejected := map[string]string{
		"passthrough-pf":            "network/ip[1]",
		"passthrough-address-crash": "network/forward",
		"8021Qbh-net":               "network/vlan",
	}
	for _, tc := range networkxml2xmlCases {
		if tc.parseFail {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, "tests", "networkxml2xmlin", tc.name+".xml"))
		if err != nil {
			t.Fatal(err)
		}
		n, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		err = n.Validate()
		if path, ok := rejected[tc.name]; ok {
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Errorf("%s: want an error at %s, got %v", tc.name, path, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestCheckDnsmasqOptions(t *testing.T) {
	base := "<network xmlns:dnsmasq='" + DnsmasqNamespace + "'><name>x</name>%s<dnsmasq:options>%s</dnsmasq:options></network>"
	tests := []struct {
		dns, opts string
		problems  int
	}{
		{"", "<dnsmasq:option value='dhcp-authoritative'/><dnsmasq:option value='strict-order'/>", 0},
		{"", "<dnsmasq:option value='foo=bar'/><dnsmasq:option value='cname=a,b'/>", 2},
		{"", "<dnsmasq:option value='domain-needed'/>", 1},
		{"<dns forwardPlainNames='no'/>", "<dnsmasq:option value='domain-needed'/>", 0},
	}
	for _, tc := range tests {
		n := mustParse(t, strings.Replace(strings.Replace(base, "%s", tc.dns, 1), "%s", tc.opts, 1))
		err := n.CheckDnsmasqOptions()
		if got := len(Problems(err)); got != tc.problems {
			t.Errorf("%s %s: %d problems, want %d: %v", tc.dns, tc.opts, got, tc.problems, err)
		}
	}
}
