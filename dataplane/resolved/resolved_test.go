package resolved

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/internal/fakedbus"
)

func parse(t *testing.T, xml string) *conf.Network {
	t.Helper()
	n, err := conf.Parse([]byte(xml))
	if err != nil {
		t.Fatalf("%s: %v", xml, err)
	}
	return n
}

func v4(s string) Address { return Address{Family: afInet, Address: netip.MustParseAddr(s).AsSlice()} }
func v6(s string) Address { return Address{Family: afInet6, Address: netip.MustParseAddr(s).AsSlice()} }

func TestBuild(t *testing.T) {
	const domain = "<domain name='lab.example' localOnly='yes' register='yes'/>"
	tests := []struct {
		name    string
		xml     string
		want    Registration
		wantErr string
	}{
		{
			name: "ipv4",
			xml:  "<network><name>n</name><forward mode='nat'/>" + domain + "<ip address='192.168.100.1' prefix='24'/></network>",
			want: Registration{DNS: []Address{v4("192.168.100.1")}, Domains: []Domain{{"lab.example", true}}},
		},
		{
			name: "dual stack, in <ip> order",
			xml: "<network><name>n</name>" + domain + "<ip family='ipv6' address='fd00:1::1' prefix='64'/>" +
				"<ip address='10.9.0.1' prefix='16'/><ip address='10.10.0.1' prefix='16'/></network>",
			want: Registration{DNS: []Address{v6("fd00:1::1"), v4("10.9.0.1"), v4("10.10.0.1")}, Domains: []Domain{{"lab.example", true}}},
		},
		{
			name:    "dns disabled",
			xml:     "<network><name>n</name>" + domain + "<dns enable='no'/><ip address='10.9.0.1' prefix='16'/></network>",
			wantErr: `network "n": <domain register='yes'>: DNS is disabled`,
		},
		{
			name:    "no ip",
			xml:     "<network><name>n</name><bridge name='virbr9'/>" + domain + "</network>",
			wantErr: `network "n": <domain register='yes'>: the network has no <ip>`,
		},
		{
			name:    "not registered",
			xml:     "<network><name>n</name><domain name='lab.example' localOnly='yes'/><ip address='10.9.0.1' prefix='16'/></network>",
			wantErr: `no <domain register='yes'>`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Build(parse(t, tt.xml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Build = %+v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Build (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWants(t *testing.T) {
	for xml, want := range map[string]bool{
		"<network><name>n</name><domain name='d' localOnly='yes' register='yes'/><ip address='10.9.0.1' prefix='16'/></network>": true,
		"<network><name>n</name><domain name='d' localOnly='yes' register='no'/><ip address='10.9.0.1' prefix='16'/></network>":  false,
		"<network><name>n</name><ip address='10.9.0.1' prefix='16'/></network>":                                                  false,
	} {
		if got := Wants(parse(t, xml)); got != want {
			t.Errorf("Wants(%s) = %v", xml, got)
		}
	}
}

func TestClientAgainstFakeResolved(t *testing.T) {
	addr := fakedbus.StartBus(t)
	c := New(fakedbus.Connect(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c.Running(ctx) {
		t.Fatal("Running before resolved is on the bus")
	}
	res := fakedbus.NewResolved()
	res.Serve(t, addr)
	if !c.Running(ctx) {
		t.Fatal("not Running with resolved on the bus")
	}

	n := parse(t, "<network><name>n</name><domain name='lab.example' localOnly='yes' register='yes'/>"+
		"<ip address='10.9.0.1' prefix='16'/><ip family='ipv6' address='fd00:1::1' prefix='64'/></network>")
	reg, err := Build(n)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx, 7, reg); err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx, 7, reg); err != nil {
		t.Fatalf("registering again: %v", err)
	}
	want := fakedbus.Link{DNS: []netip.Addr{netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("fd00:1::1")}, Domains: []string{"~lab.example"}}
	got, ok := res.Link(7)
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); !ok || diff != "" {
		t.Errorf("link 7 (-want +got):\n%s", diff)
	}
	if err := c.RevertLink(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Link(7); ok {
		t.Error("link 7 still configured after RevertLink")
	}

	// A link resolved does not know.
	if err := c.Register(ctx, 0, reg); err == nil || !strings.Contains(err.Error(), "setting the DNS servers of link 0") {
		t.Errorf("Register on link 0: %v", err)
	}
	res.FailNext("SetLinkDomains", "org.freedesktop.DBus.Error.AccessDenied")
	if err := c.Register(ctx, 8, reg); err == nil || !strings.Contains(err.Error(), "setting the domains of link 8") {
		t.Errorf("Register with a failing SetLinkDomains: %v", err)
	}
	// Empty lists are still well-formed calls.
	if err := c.SetLinkDNS(ctx, 9, nil); err != nil {
		t.Errorf("SetLinkDNS with no servers: %v", err)
	}
	if err := c.SetLinkDomains(ctx, 9, nil); err != nil {
		t.Errorf("SetLinkDomains with no domains: %v", err)
	}

	wantCalls := []string{
		"SetLinkDNS 7 10.9.0.1 fd00:1::1", "SetLinkDomains 7 ~lab.example",
		"SetLinkDNS 7 10.9.0.1 fd00:1::1", "SetLinkDomains 7 ~lab.example",
		"RevertLink 7",
		"SetLinkDNS 0 10.9.0.1 fd00:1::1",
		"SetLinkDNS 8 10.9.0.1 fd00:1::1", "SetLinkDomains 8 ~lab.example",
		"SetLinkDNS 9", "SetLinkDomains 9",
	}
	if diff := cmp.Diff(wantCalls, res.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}

	res.Stop()
	if c.Running(ctx) {
		t.Error("Running after resolved left the bus")
	}
}

func BenchmarkRegister(b *testing.B) {
	addr := fakedbus.StartBus(b)
	fakedbus.NewResolved().Serve(b, addr)
	c := New(fakedbus.Connect(b, addr))
	reg := Registration{DNS: []Address{{Family: afInet, Address: []byte{10, 0, 0, 1}}}, Domains: []Domain{{"lab", true}}}
	ctx := context.Background()
	for b.Loop() {
		if err := c.Register(ctx, 5, reg); err != nil {
			b.Fatal(err)
		}
	}
}
