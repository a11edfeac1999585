package firewall

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
)

// The traffic test's addresses: private, and only ever inside its namespaces.
const (
	trafficRouterIn = "10.200.1.1"
	trafficGuest    = "10.200.1.2"
	trafficRouterUp = "10.200.2.1"
	trafficUpstream = "10.200.2.2"
)

const trafficNATXML = `<network>
  <name>traffic</name>
  <bridge name='br0'/>
  <forward mode='nat' dev='up0'/>
  <ip address='10.200.1.1' netmask='255.255.255.0'/>
</network>`

const trafficIsolatedXML = `<network>
  <name>traffic</name>
  <bridge name='br0'/>
  <ip address='10.200.1.1' netmask='255.255.255.0'/>
</network>`

// trafficLab is client ── br0 [router] up0 ── upstream. The upstream has no
// route back to the guest network, so an answer proves masquerading, and it
// reports the source address and port it saw.
type trafficLab struct {
	client, router, upstream *netNS
	bridgeIndex              int
	server                   string // the upstream's echo-the-peer server
}

func newTrafficLab(t *testing.T) *trafficLab {
	t.Helper()
	l := &trafficLab{
		client:   newNetNS(t, "client"),
		router:   newNetNS(t, "router"),
		upstream: newNetNS(t, "upstream"),
	}
	r := l.router
	r.ip(t, "link", "add", "br0", "type", "bridge")
	r.ip(t, "link", "add", "port0", "type", "veth", "peer", "name", "eth0", "netns", l.client.name)
	r.ip(t, "link", "set", "port0", "master", "br0")
	r.ip(t, "addr", "add", trafficRouterIn+"/24", "dev", "br0")
	r.ip(t, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", l.upstream.name)
	r.ip(t, "addr", "add", trafficRouterUp+"/24", "dev", "up0")
	for _, dev := range []string{"br0", "port0", "up0"} {
		r.ip(t, "link", "set", dev, "up")
	}
	// Forwarding is the daemon's job (dataplane), not this package's.
	r.run(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	l.bridgeIndex = r.ifindex(t, "br0")

	l.client.ip(t, "addr", "add", trafficGuest+"/24", "dev", "eth0")
	l.client.ip(t, "link", "set", "eth0", "up")
	l.client.ip(t, "route", "add", "default", "via", trafficRouterIn)
	l.upstream.ip(t, "addr", "add", trafficUpstream+"/24", "dev", "eth0")
	l.upstream.ip(t, "link", "set", "eth0", "up")

	var ln net.Listener
	var err error
	l.upstream.do(t, func() { ln, err = net.Listen("tcp4", trafficUpstream+":0") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(c.RemoteAddr().String()))
			c.Close()
		}
	}()
	l.server = ln.Addr().String()
	return l
}

// connect opens a TCP connection from the client, from srcPort (0: any), and
// returns the source address the upstream saw.
func (l *trafficLab) connect(t *testing.T, srcPort int) (netip.AddrPort, error) {
	return l.connectWithin(t, srcPort, 3*time.Second)
}

func (l *trafficLab) connectWithin(t *testing.T, srcPort int, timeout time.Duration) (netip.AddrPort, error) {
	t.Helper()
	var peer netip.AddrPort
	var err error
	l.client.do(t, func() {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(trafficGuest), Port: srcPort}}
		var c net.Conn
		if c, err = d.Dial("tcp4", l.server); err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		var b []byte
		if b, err = io.ReadAll(c); err != nil {
			return
		}
		peer, err = netip.ParseAddrPort(string(b))
	})
	return peer, err
}

func TestKernelTraffic(t *testing.T) {
	requireKernel(t)
	l := newTrafficLab(t)
	conn := l.router.conn(t)
	fw := New(conn)
	nat, err := Build(parseNetwork(t, trafficNATXML))
	if err != nil {
		t.Fatal(err)
	}
	isolated, err := Build(parseNetwork(t, trafficIsolatedXML))
	if err != nil {
		t.Fatal(err)
	}

	// The lab's premise: without NAT the upstream cannot answer.
	t.Run("no firewall", func(t *testing.T) {
		if peer, err := l.connectWithin(t, 0, time.Second); err == nil {
			t.Fatalf("client reached upstream (as %v) without NAT: the test proves nothing", peer)
		}
	})

	t.Run("nat", func(t *testing.T) {
		if err := fw.Apply(nat, l.bridgeIndex); err != nil {
			t.Fatal(err)
		}
		peer, err := l.connect(t, 0)
		if err != nil {
			t.Fatalf("client → upstream through the NAT network: %v", err)
		}
		if peer.Addr().String() != trafficRouterUp {
			t.Errorf("upstream saw %v, want the router's %s (masqueraded)", peer, trafficRouterUp)
		}
	})

	// libvirt's `masquerade to :1024-65535`: a guest's privileged source
	// port must not survive NAT (NFS and others trust ports below 1024).
	t.Run("nat source port range", func(t *testing.T) {
		if err := fw.Apply(nat, l.bridgeIndex); err != nil {
			t.Fatal(err)
		}
		peer, err := l.connect(t, 600)
		if err != nil {
			t.Fatal(err)
		}
		if peer.Port() < defaultPortStart {
			t.Errorf("upstream saw source port %d, want one in %d-%d", peer.Port(), defaultPortStart, defaultPortEnd)
		}
	})

	t.Run("isolated", func(t *testing.T) {
		if err := fw.Apply(isolated, l.bridgeIndex); err != nil {
			t.Fatal(err)
		}
		peer, err := l.connect(t, 0)
		if err == nil {
			t.Fatalf("client reached upstream (as %v) from an isolated network", peer)
		}
		// Refused at once by the router's reject, not lost on the way.
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("connect: %v, want connection refused (the reject rule)", err)
		}
	})

	// Why marshalMasq exists: the same plan sent through nftables.Conn
	// (google/nftables' own masq encoding, without the flag) leaves the
	// guest's port alone. If this starts failing, upstream or the kernel
	// changed, and marshalMasq may no longer be needed.
	t.Run("google/nftables masq ignores the port range", func(t *testing.T) {
		if err := fw.Remove("br0"); err != nil {
			t.Fatal(err)
		}
		applyThroughConn(t, conn, nat, l.bridgeIndex)
		peer, err := l.connect(t, 601)
		if err != nil {
			t.Fatal(err)
		}
		if peer.Addr().String() != trafficRouterUp || peer.Port() != 601 {
			t.Errorf("upstream saw %v, want %s:601", peer, trafficRouterUp)
		}
	})

	if err := fw.Remove("br0"); err != nil {
		t.Fatal(err)
	}
}

// applyThroughConn installs a plan with nftables.Conn alone.
func applyThroughConn(t *testing.T, conn *nftables.Conn, p *Plan, bridgeIndex int) {
	t.Helper()
	for _, tb := range p.Tables {
		table := conn.AddTable(&nftables.Table{Name: tb.Name, Family: nftables.TableFamily(nfproto(tb.Family))})
		chains := map[string]*nftables.Chain{}
		for _, c := range tb.Chains {
			ch := &nftables.Chain{Name: c.Name, Table: table}
			if c.Base != nil {
				hook, prio, policy := hooks[c.Base.Hook], nftables.ChainPriority(c.Base.Priority), nftables.ChainPolicyAccept
				ch.Hooknum, ch.Priority, ch.Policy, ch.Type = &hook, &prio, &policy, nftables.ChainType(c.Base.Type)
			}
			chains[c.Name] = conn.AddChain(ch)
		}
		for _, r := range tb.Rules {
			exprs, err := r.Exprs(tb.Family, Ifindexes{p.Bridge: bridgeIndex})
			if err != nil {
				t.Fatal(err)
			}
			conn.AddRule(&nftables.Rule{Table: table, Chain: chains[r.Chain], Exprs: exprs})
		}
	}
	if err := conn.Flush(); err != nil {
		t.Fatalf("apply through nftables.Conn: %v", err)
	}
}
