package conf

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func mustParse(t *testing.T, xml string) *Network {
	t.Helper()
	n, err := Parse([]byte(xml))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return n
}

func TestApplyDefaultsBridgeName(t *testing.T) {
	others := []*Network{
		{Name: "a", UUID: uuid.New(), Bridge: Bridge{Name: "virbr0"}},
		{Name: "b", UUID: uuid.New(), Bridge: Bridge{Name: "virbr2"}},
	}
	hostLinks := map[string]bool{"virbr1": true, "lab3": true}
	linkExists := func(name string) (bool, error) { return hostLinks[name], nil }
	tests := []struct {
		name, bridge, want, wantErr string
		mode                        string
	}{
		{name: "first free skips networks and host links", want: "virbr3"},
		{name: "template", bridge: "lab%d", want: "lab0"},
		{name: "explicit kept", bridge: "virbr7", want: "virbr7"},
		{name: "explicit in use", bridge: "virbr2", wantErr: `bridge name "virbr2" is already in use`},
		{name: "pool mode gets none", mode: "<forward mode='bridge' dev='eth0'/>", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bridge := ""
			if tc.bridge != "" {
				bridge = "<bridge name='" + tc.bridge + "'/>"
			}
			forward, ip := tc.mode, "<ip address='10.9.0.1' prefix='24'/>"
			if forward == "" {
				forward = "<forward/>"
			} else {
				ip = ""
			}
			n := mustParse(t, "<network><name>new</name>"+forward+bridge+ip+"</network>")
			err := n.ApplyDefaults(DefineContext{Others: others, LinkExists: linkExists})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want error %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Bridge.Name != tc.want {
				t.Fatalf("bridge %q, want %q", n.Bridge.Name, tc.want)
			}
			if tc.mode == "" && (len(n.MAC) != 6 || !bytes.HasPrefix(n.MAC, []byte{0x52, 0x54, 0x00})) {
				t.Fatalf("mac %s: want a 52:54:00 MAC", n.MAC)
			}
			if tc.mode != "" && n.MAC != nil {
				t.Fatalf("pool network got a MAC %s", n.MAC)
			}
		})
	}
}

func TestApplyDefaultsKeepsGivenValues(t *testing.T) {
	n := mustParse(t, "<network><name>x</name><uuid>81ff0d90-c91e-6742-64da-4a736edb9a9b</uuid><bridge name='br5'/><mac address='52:54:00:aa:bb:cc'/></network>")
	if err := n.ApplyDefaults(DefineContext{}); err != nil {
		t.Fatal(err)
	}
	got := string(n.Format(FormatInactive))
	for _, want := range []string{"<uuid>81ff0d90-c91e-6742-64da-4a736edb9a9b</uuid>", "<bridge name='br5' stp='on' delay='0'/>", "<mac address='52:54:00:aa:bb:cc'/>"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in\n%s", want, got)
		}
	}
}

func TestApplyDefaultsRedefineKeepsOwnBridge(t *testing.T) {
	old := mustParse(t, "<network><name>x</name><bridge name='virbr0'/></network>")
	n := mustParse(t, "<network><name>x</name><bridge name='virbr0'/></network>")
	if err := n.ApplyDefaults(DefineContext{Others: []*Network{old}}); err != nil {
		t.Fatalf("redefining a network with its own bridge: %v", err)
	}
}

func TestApplyDefaultsLinkLookupError(t *testing.T) {
	n := mustParse(t, "<network><name>x</name></network>")
	boom := errors.New("netlink: permission denied")
	err := n.ApplyDefaults(DefineContext{LinkExists: func(string) (bool, error) { return false, boom }})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the lookup error wrapped", err)
	}
}

func TestApplyDefaultsUUID(t *testing.T) {
	n := &Network{Name: "x", Forward: Forward{Mode: ForwardBridge}, Bridge: Bridge{Name: "br0"}}
	if err := n.ApplyDefaults(DefineContext{Rand: bytes.NewReader(bytes.Repeat([]byte{7}, 64))}); err != nil {
		t.Fatal(err)
	}
	if n.UUID == (uuid.UUID{}) || n.UUID.Version() != 4 {
		t.Fatalf("uuid %s: want a random v4 UUID", n.UUID)
	}
}

func TestIPPrefixDefaults(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"<ip address='10.24.10.1'/>", "10.0.0.0/8"},
		{"<ip address='172.16.3.1'/>", "172.16.0.0/16"},
		{"<ip address='192.168.3.1'/>", "192.168.3.0/24"},
		{"<ip address='192.168.3.1' netmask='255.255.255.128'/>", "192.168.3.0/25"},
		{"<ip address='192.168.3.1' prefix='20'/>", "192.168.0.0/20"},
		{"<ip family='ipv6' address='2001:db8:1:2::1'/>", "2001:db8:1:2::/64"},
	}
	for _, tc := range tests {
		n := mustParse(t, "<network><name>x</name>"+tc.ip+"</network>")
		p, err := n.IPs[0].Subnet()
		if err != nil || p.Masked().String() != tc.want {
			t.Errorf("%s: subnet %v (%v), want %s", tc.ip, p.Masked(), err, tc.want)
		}
	}
}
