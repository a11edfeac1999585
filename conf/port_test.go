package conf

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// portCorpus lists libvirt's virnetworkportxml2xmldata files; every one
// parses and formats back to itself.
func portCorpus(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "tests", "virnetworkportxml2xmldata", "*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestConformanceNetworkPort(t *testing.T) {
	files := portCorpus(t, libvirtTestdata(t))
	if len(files) == 0 {
		t.Fatalf("no files in virnetworkportxml2xmldata")
	}
	ok := 0
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".xml")
		if t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			p, err := ParsePort(in)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			got := p.Format()
			if !bytes.Equal(got, in) {
				t.Fatalf("formatted output differs from libvirt's\n--- got\n%s\n--- want\n%s", got, in)
			}
		}) {
			ok++
		}
	}
	if len(files) != 9 {
		t.Errorf("libvirt v11.3.0 has 9 networkport files, found %d", len(files))
	}
	reportLine(t, "networkport: %d/%d round-trip", ok, len(files))
}

const portDoc = `<networkport>
  <uuid>5d744f21-ba4a-4d6e-bdb2-30a35ff3207d</uuid>
  <owner>
    <name>memtest</name>
    <uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid>
  </owner>
  <mac address='52:54:00:7b:35:93'/>
  PLUG
</networkport>
`

// portXML is portDoc with the first replacement of each old/new pair made
// (PLUG is the place for extra elements).
func portXML(t *testing.T, pairs ...string) []byte {
	t.Helper()
	s := portDoc
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("portDoc has no %q", pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return []byte(strings.Replace(s, "PLUG", "", 1))
}

func TestParsePortErrors(t *testing.T) {
	const ownerUUID = "    <uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid>\n"
	tests := []struct {
		name  string
		pairs []string
		path  string // the path the error must name
		msg   string // and a part of its message
	}{
		{"missing uuid", []string{"  <uuid>5d744f21-ba4a-4d6e-bdb2-30a35ff3207d</uuid>\n", ""}, "networkport (line 1)", "missing <uuid>"},
		{"bad uuid", []string{"5d744f21-ba4a", "xx744f21-ba4a"}, "networkport/uuid (line 2)", "malformed uuid"},
		{"missing owner", []string{"  <owner>\n    <name>memtest</name>\n" + ownerUUID + "  </owner>\n", ""}, "networkport (line 1)", "missing <owner>"},
		{"missing owner name", []string{"    <name>memtest</name>\n", ""}, "networkport/owner (line 3)", "missing <name>"},
		{"empty owner name", []string{"<name>memtest</name>", "<name></name>"}, "networkport/owner/name (line 4)", "empty owner name"},
		{"missing owner uuid", []string{ownerUUID, ""}, "networkport/owner (line 3)", "missing <uuid>"},
		{"missing mac", []string{"  <mac address='52:54:00:7b:35:93'/>\n", ""}, "networkport (line 1)", "missing <mac>"},
		{"multicast mac", []string{"52:54:00", "01:54:00"}, "networkport/mac (line 7)", "multicast"},
		{"short mac", []string{"52:54:00:7b:35:93", "52:54:00:7b:35"}, "networkport/mac (line 7)", "not a MAC address"},
		{"bad plug type", []string{"PLUG", "<plug type='tap' bridge='virbr0'/>"}, "networkport/plug (line 8)", `unknown plug type "tap"`},
		{"plug type none", []string{"PLUG", "<plug type='none'/>"}, "networkport/plug (line 8)", "leave <plug> out"},
		{"plug without type", []string{"PLUG", "<plug bridge='virbr0'/>"}, "networkport/plug (line 8)", "missing attribute type"},
		{"bridge plug without bridge", []string{"PLUG", "<plug type='bridge'/>"}, "networkport/plug (line 8)", "missing attribute bridge"},
		{"network plug with dev", []string{"PLUG", "<plug type='network' bridge='virbr0' dev='eth0'/>"}, "networkport/plug (line 8)", `unknown attribute "dev"`},
		{"bad macTableManager", []string{"PLUG", "<plug type='network' bridge='virbr0' macTableManager='ovs'/>"}, "networkport/plug (line 8)", "macTableManager"},
		{"bad bridge name", []string{"PLUG", "<plug type='bridge' bridge='vir br0'/>"}, "networkport/plug (line 8)", "bridge name"},
		{"direct without mode", []string{"PLUG", "<plug type='direct' dev='eth0'/>"}, "networkport/plug (line 8)", "missing attribute mode"},
		{"direct without dev", []string{"PLUG", "<plug type='direct' mode='vepa'/>"}, "networkport/plug (line 8)", "missing attribute dev"},
		{"direct bad mode", []string{"PLUG", "<plug type='direct' dev='eth0' mode='vepa2'/>"}, "networkport/plug (line 8)", "attribute mode"},
		{"hostdev without address", []string{"PLUG", "<plug type='hostdev-pci'/>"}, "networkport/plug (line 8)", "missing <address>"},
		{"hostdev address with type", []string{"PLUG", "<plug type='hostdev-pci'>\n<address type='pci' bus='1'/>\n</plug>"}, "networkport/plug/address[1] (line 9)", `unknown attribute "type"`},
		{"hostdev bad slot", []string{"PLUG", "<plug type='hostdev-pci'>\n<address slot='0x20'/>\n</plug>"}, "networkport/plug/address[1] (line 9)", "attribute slot"},
		{"hostdev bad driver", []string{"PLUG", "<plug type='hostdev-pci'>\n<driver name='uio'/>\n<address/>\n</plug>"}, "networkport/plug/driver (line 9)", "attribute name"},
		{"hostdev bad managed", []string{"PLUG", "<plug type='hostdev-pci' managed='on'>\n<address/>\n</plug>"}, "networkport/plug (line 8)", "attribute managed"},
		{"floor on outbound", []string{"PLUG", "<bandwidth>\n<outbound average='10' floor='5'/>\n</bandwidth>"}, "networkport/bandwidth/outbound (line 9)", "floor is only allowed in <inbound>"},
		{"peak without average", []string{"PLUG", "<bandwidth>\n<inbound peak='10' floor='5'/>\n</bandwidth>"}, "networkport/bandwidth/inbound (line 9)", "peak and burst need average"},
		{"vlan id over 4095", []string{"PLUG", "<vlan>\n<tag id='4096'/>\n</vlan>"}, "networkport/vlan/tag[1] (line 9)", "over 4095"},
		{"virtualport extra parameter", []string{"PLUG", "<virtualport type='openvswitch'>\n<parameters managerid='1'/>\n</virtualport>"}, "networkport/virtualport/parameters (line 9)", "managerid is not a parameter"},
		{"unknown element", []string{"PLUG", "<filterref filter='clean-traffic'/>"}, "networkport/filterref (line 8)", "unknown element <filterref>"},
		{"unknown attribute", []string{"<networkport>", "<networkport connections='1'>"}, "networkport (line 1)", `unknown attribute "connections"`},
		{"unknown owner child", []string{ownerUUID, ownerUUID + "    <title>x</title>\n"}, "networkport/owner/title (line 6)", "unknown element <title>"},
		{"dnsmasq element", []string{"PLUG", "<dnsmasq:options xmlns:dnsmasq='" + DnsmasqNamespace + "'/>"}, "networkport/dnsmasq:options (line 8)", "unknown element"},
		{"rxfilters without trustGuest", []string{"PLUG", "<rxfilters/>"}, "networkport/rxfilters (line 8)", "missing attribute trustGuest"},
		{"duplicate mac", []string{"PLUG", "<mac address='52:54:00:7b:35:94'/>"}, "networkport/mac (line 8)", "may appear only once"},
		{"bad group", []string{"PLUG", "<group>web 1</group>"}, "networkport/group (line 8)", "portgroup name"},
		{"owner name with newline", []string{"<name>memtest</name>", "<name>mem&#13;test</name>"}, "networkport/owner/name (line 4)", "newlines"},
		{"bad isolated", []string{"PLUG", "<port isolated='true'/>"}, "networkport/port (line 8)", "attribute isolated"},
		{"wrong root", []string{"<networkport>", "<network>", "</networkport>", "</network>"}, "line 1", "root element is <network>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := portXML(t, tc.pairs...)
			_, err := ParsePort(in)
			if err == nil {
				t.Fatalf("parse succeeded:\n%s", in)
			}
			for _, e := range Problems(err) {
				if strings.Contains(e.Error(), tc.path) && strings.Contains(e.Error(), tc.msg) {
					return
				}
			}
			t.Fatalf("no error naming %q with %q; got:\n%v", tc.path, tc.msg, err)
		})
	}
}

// TestParsePortAllProblems checks that independent problems are all reported.
func TestParsePortAllProblems(t *testing.T) {
	in := portXML(t, "  <uuid>5d744f21-ba4a-4d6e-bdb2-30a35ff3207d</uuid>\n", "",
		"PLUG", "<bogus/>\n<plug type='tap'/>")
	_, err := ParsePort(in)
	if n := len(Problems(err)); n != 3 {
		t.Fatalf("want 3 problems (uuid, bogus, plug type), got %d: %v", n, err)
	}
}

// portVariants are port elements (in portDoc's PLUG place) beyond libvirt's
// corpus, written canonically: they round-trip and are networkport.rng-valid.
var portVariants = []string{
	"<plug type='direct' dev='ens3' mode='bridge'/>",
	"<plug type='direct' dev='ens3' mode='private'/>",
	"<plug type='direct' dev='ens3' mode='passthrough'/>",
	"<plug type='network' bridge='virbr0' macTableManager='kernel'/>",
	"<plug type='hostdev-pci'>\n    <driver name='vfio'/>\n    <address domain='0x0000' bus='0x00' slot='0x1f' function='0x7'/>\n  </plug>",
	"<plug type='hostdev-pci' managed='yes'>\n    <driver name='vfio' model='virtio_1'/>\n    <address domain='0x0000' bus='0x00' slot='0x00' function='0x0'/>\n  </plug>",
	"<port isolated='no'/>\n  <rxfilters trustGuest='no'/>",
	"<virtualport type='openvswitch'>\n    <parameters interfaceid='09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f' profileid='gold'/>\n  </virtualport>",
	"<vlan>\n    <tag id='42'/>\n  </vlan>",
	"<bandwidth>\n    <inbound floor='100'/>\n  </bandwidth>",
}

func TestPortRoundTripVariants(t *testing.T) {
	for _, plug := range portVariants {
		in := []byte(strings.Replace(portDoc, "PLUG", plug, 1))
		p, err := ParsePort(in)
		if err != nil {
			t.Errorf("%s: %v", plug, err)
			continue
		}
		if got := p.Format(); !bytes.Equal(got, in) {
			t.Errorf("round trip differs\n--- got\n%s\n--- want\n%s", got, in)
		}
	}
}

// TestPortLibvirtSpellings: input spellings libvirt accepts and normalises.
func TestPortLibvirtSpellings(t *testing.T) {
	in := portXML(t,
		"5d744f21-ba4a-4d6e-bdb2-30a35ff3207d", "5D744F21BA4A4D6EBDB230A35FF3207D",
		"52:54:00:7b:35:93", "52:54:00:7B:35:93",
		"PLUG", "<plug type='hostdev-pci'><driver/><address bus='2' slot='3' function='4' multifunction='on'/></plug>")
	p, err := ParsePort(in)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(portDoc, "PLUG", "<plug type='hostdev-pci'>\n    <address domain='0x0000' bus='0x02' slot='0x03' function='0x4'/>\n  </plug>", 1)
	if got := string(p.Format()); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// TestPortRules covers ports built in Go rather than parsed.
func TestPortRules(t *testing.T) {
	base := func() *Port {
		p, err := ParsePort(portXML(t))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name   string
		modify func(*Port)
		path   string
	}{
		{"zero plug type", func(p *Port) { p.Plug = Plug{} }, "networkport/plug"},
		{"direct without mode", func(p *Port) { p.Plug = Plug{Type: PlugDirect, Dev: "eth0"} }, "networkport/plug"},
		{"bridge fields on direct", func(p *Port) {
			p.Plug = Plug{Type: PlugDirect, Dev: "eth0", MacvtapMode: MacvtapVEPA, Bridge: "virbr0"}
		}, "networkport/plug"},
		{"hostdev function 8", func(p *Port) { p.Plug = Plug{Type: PlugHostdevPCI, PCI: PCIAddress{Function: 8}} }, "networkport/plug/address[1]"},
		{"nil mac", func(p *Port) { p.MAC = nil }, "networkport/mac"},
		{"empty owner", func(p *Port) { p.OwnerName = "" }, "networkport/owner/name"},
		{"floor outbound", func(p *Port) { p.Bandwidth = &Bandwidth{Outbound: &Rate{Average: 1, Floor: 1}} }, "networkport/bandwidth/outbound"},
	}
	for _, tc := range tests {
		p := base()
		tc.modify(p)
		err := p.rules()
		found := false
		for _, e := range Problems(err) {
			if fe, ok := e.(*FieldError); ok && fe.Path == tc.path {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no problem at %s; got %v", tc.name, tc.path, err)
		}
	}
	if err := base().rules(); err != nil {
		t.Fatalf("base port: %v", err)
	}
}

func FuzzParsePort(f *testing.F) {
	dir := os.Getenv("VNETD_LIBVIRT_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "conformance", "libvirt")
	}
	for _, file := range portCorpus(f, dir) {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(strings.Replace(portDoc, "PLUG", "<plug type='direct' dev='eth0' mode='passthrough'/>", 1)))
	f.Add([]byte("<networkport><uuid>00000000000000000000000000000001</uuid><owner><uuid>00000000-0000-0000-0000-000000000002</uuid><name>a&amp;b</name></owner>" +
		"<plug type='hostdev-pci' managed='no'><address domain='1' bus='0x2'/><driver name='kvm' model='x'/></plug><mac address='02:00:00:00:00:01'/>" +
		"<bandwidth classID='3'><inbound floor='1'/><outbound average='2' burst='4'/></bandwidth><vlan trunk='yes'><tag id='1' nativeMode='untagged'/><tag id='2'/></vlan></networkport>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePort(data)
		if err != nil {
			return
		}
		out := p.Format()
		p2, err := ParsePort(out)
		if err != nil {
			t.Fatalf("formatted output does not parse: %v\n--- input\n%q\n--- output\n%s", err, data, out)
		}
		if again := p2.Format(); !bytes.Equal(again, out) {
			t.Fatalf("format(parse(format(x))) != format(x)\n--- first\n%s\n--- second\n%s", out, again)
		}
	})
}
