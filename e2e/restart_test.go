package e2e

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/internal/nettest"
)

// echoTCP is a TCP connection from the guest to an echo server upstream,
// through the NAT network, kept busy: a sequence number every 20 ms, each
// echoed back before the next is sent.
type echoTCP struct {
	conn    net.Conn
	stop    chan struct{}
	done    chan struct{}
	echoes  int
	maxWait time.Duration // the longest a round trip took
	err     error
}

func startEchoTCP(t *testing.T, guest, upstream, upstreamIP string) *echoTCP {
	t.Helper()
	var ln net.Listener
	if err := nettest.Do(upstream, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(upstreamIP, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	e := &echoTCP{stop: make(chan struct{}), done: make(chan struct{})}
	if err := nettest.Do(guest, func() (err error) {
		e.conn, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("guest cannot open a TCP connection upstream: %v", err)
	}
	t.Cleanup(func() { e.conn.Close() })
	go e.run()
	return e
}

func (e *echoTCP) run() {
	defer close(e.done)
	out, in := make([]byte, 8), make([]byte, 8)
	for seq := uint64(1); ; seq++ {
		select {
		case <-e.stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		start := time.Now()
		binary.BigEndian.PutUint64(out, seq)
		e.conn.SetDeadline(start.Add(10 * time.Second))
		if _, err := e.conn.Write(out); err != nil {
			e.err = fmt.Errorf("write %d: %w", seq, err)
			return
		}
		if _, err := io.ReadFull(e.conn, in); err != nil {
			e.err = fmt.Errorf("echo of %d: %w", seq, err)
			return
		}
		if got := binary.BigEndian.Uint64(in); got != seq {
			e.err = fmt.Errorf("echo of %d came back as %d", seq, got)
			return
		}
		e.echoes++
		e.maxWait = max(e.maxWait, time.Since(start))
	}
}

// finish stops the exchange and returns its first error.
func (e *echoTCP) finish() error {
	close(e.stop)
	<-e.done
	return e.err
}

// pinger is a ping from the guest every 50 ms; its summary says what was lost.
type pinger struct {
	cmd     *exec.Cmd
	summary chan string
}

func startPing(t *testing.T, ns, dst string) *pinger {
	t.Helper()
	p := &pinger{cmd: exec.Command("ip", "netns", "exec", ns, "ping", "-i", "0.05", "-W", "1", dst), summary: make(chan string, 1)}
	stdout, _ := p.cmd.StdoutPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill() })
	go func() {
		var summary string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "packets transmitted") {
				summary = sc.Text()
			}
		}
		p.summary <- summary
	}()
	return p
}

// finish stops ping and returns how many it sent and got back.
func (p *pinger) finish(t *testing.T) (sent, got int) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	summary := <-p.summary
	p.cmd.Wait()
	m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(summary)
	if m == nil {
		t.Fatalf("no ping summary: %q", summary)
	}
	fmt.Sscan(m[1], &sent)
	fmt.Sscan(m[2], &got)
	return sent, got
}

// renew4 sends a DHCPREQUEST in the RENEWING state from the guest (ciaddr
// = the lease, unicast from its address to the server, RFC 2131 4.3.2) and
// returns the server's answer.
func renew4(t *testing.T, guest string, mac net.HardwareAddr, lease netip.Addr, clientID string, server netip.Addr) *dhcpv4.DHCPv4 {
	t.Helper()
	var conn *net.UDPConn
	if err := nettest.Do(guest, func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: lease.AsSlice(), Port: dhcpv4.ClientPort})
		return err
	}); err != nil {
		t.Fatalf("renew from %s: %v", lease, err)
	}
	defer conn.Close()
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(mac), dhcpv4.WithClientIP(lease.AsSlice())}
	if clientID != "" {
		id, err := hex.DecodeString(strings.ReplaceAll(clientID, ":", ""))
		if err != nil {
			t.Fatalf("client id %q: %v", clientID, err)
		}
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(id)))
	}
	req, err := dhcpv4.New(mods...)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	// A lost packet is retransmitted, as a client would.
	for try := 0; try < 3; try++ {
		if _, err := conn.WriteToUDP(req.ToBytes(), &net.UDPAddr{IP: server.AsSlice(), Port: dhcpv4.ServerPort}); err != nil {
			t.Fatalf("sending the renewal: %v", err)
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				break
			}
			resp, err := dhcpv4.FromBytes(buf[:n])
			if err == nil && resp.TransactionID == req.TransactionID {
				return resp
			}
		}
	}
	t.Fatalf("no answer to a renewal of %s from %s", lease, server)
	return nil
}

// TestTrafficAndLeaseSurviveCrashAndUpgrade: a guest on a NAT network keeps
// pinging upstream and keeps an open TCP connection through a SIGKILL and
// restart of vnetd and through an upgrade-style restart (SIGTERM, then a new
// vnetd binary); the bridge keeps its ifindex, and the guest's DHCP lease
// renews to the same address after each restart.
func TestTrafficAndLeaseSurviveCrashAndUpgrade(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("dhclient"); err != nil {
		t.Skip("needs dhclient (isc-dhcp-client)")
	}
	s := newNATSetup(t, "<forward mode='nat'/>")
	before := ifindex(t, s.host, s.bridge)

	// A lease for the guest, beside its static address.
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook")
	os.WriteFile(hook, []byte(dhclientHook), 0o755)
	dhclient := func(args ...string) {
		t.Helper()
		base := []string{"20", "dhclient", "-4", "-sf", hook, "-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid")}
		nettest.MustIn(t, s.guest, "timeout", append(base, args...)...)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
			nettest.In(s.guest, "kill", strings.TrimSpace(string(b)))
		}
	})
	dhclient("-1", "eth0")
	// dhclient would renew only after half the hour-long lease: stop it
	// without a release; the renewals are sent below.
	dhclient("-x", "eth0")
	mac := guestMAC(t, s.guest)
	lease := func() api.Lease {
		t.Helper()
		var list []api.Lease
		if err := json.Unmarshal([]byte(s.d.mustCtl("net-dhcp-leases", "default", "--mac", mac.String(), "--json")), &list); err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 {
			t.Fatalf("want one lease of %s, have %+v\nvnetd log:\n%s", mac, list, s.d.logText())
		}
		return list[0]
	}
	first := lease()
	addr := netip.MustParseAddr(first.IP)
	server := netip.MustParseAddr("192.168.122.1")
	checkRenewal := func(when string) {
		t.Helper()
		resp := renew4(t, s.guest, mac, addr, first.ClientID, server)
		got, _ := netip.AddrFromSlice(resp.YourIPAddr.To4())
		if resp.MessageType() != dhcpv4.MessageTypeAck || got != addr {
			t.Fatalf("renewal of %s %s: %s for %s\nvnetd log:\n%s", addr, when, resp.MessageType(), got, s.d.logText())
		}
		if l := lease(); l.IP != first.IP {
			t.Fatalf("lease %s %s, want %s", l.IP, when, first.IP)
		}
	}

	tcp := startEchoTCP(t, s.guest, s.upstream, "10.77.0.2")
	ping := startPing(t, s.guest, "10.77.0.2")
	time.Sleep(500 * time.Millisecond)

	s.d.kill()
	time.Sleep(300 * time.Millisecond)
	s.d.start()
	time.Sleep(500 * time.Millisecond)
	checkRenewal("after SIGKILL and restart")

	// The upgrade: the old vnetd is told to stop, and a new binary (another
	// file, as a package upgrade installs) takes over.
	next := filepath.Join(t.TempDir(), "vnetd-next")
	if out, err := exec.Command("cp", filepath.Join(bin, "vnetd"), next).CombinedOutput(); err != nil {
		t.Fatalf("copying vnetd: %v\n%s", err, out)
	}
	s.d.stop()
	time.Sleep(300 * time.Millisecond)
	s.d.exe = next
	s.d.start()
	time.Sleep(500 * time.Millisecond)
	checkRenewal("after the upgrade")

	sent, got := ping.finish(t)
	if err := tcp.finish(); err != nil {
		t.Errorf("TCP connection through the restarts: %v after %d echoes\nvnetd log:\n%s", err, tcp.echoes, s.d.logText())
	}
	t.Logf("through SIGKILL + restart and an upgrade: pings %d sent, %d received; TCP %d echoes, slowest %v", sent, got, tcp.echoes, tcp.maxWait)
	if sent != got {
		t.Errorf("lost pings across the restarts: %d sent, %d received", sent, got)
	}
	if after := ifindex(t, s.host, s.bridge); after != before {
		t.Errorf("bridge ifindex changed: %d -> %d", before, after)
	}
	// A client that restarts asks for its address again (INIT-REBOOT). It
	// comes up without it: the hook would fail to add it again, and
	// dhclient would decline it.
	nettest.Must(t, "ip", "-n", s.guest, "addr", "del", addr.String()+"/24", "dev", "eth0")
	dhclient("-v", "-1", "eth0")
	if l := lease(); l.IP != first.IP {
		t.Errorf("dhclient restarted got %s, had %s", l.IP, first.IP)
	}
	if a := nettest.Must(t, "ip", "-n", s.guest, "-br", "addr", "show", "eth0"); !strings.Contains(a, addr.String()+"/24") {
		t.Errorf("the guest did not get %s back:\n%s", addr, a)
	}
}

// guestMAC is the MAC address of the guest's eth0.
func guestMAC(t *testing.T, ns string) net.HardwareAddr {
	t.Helper()
	out := nettest.Must(t, "ip", "-n", ns, "-o", "link", "show", "eth0")
	m := regexp.MustCompile(`link/ether ([0-9a-f:]{17})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no MAC in %q", out)
	}
	mac, _ := net.ParseMAC(m[1])
	return mac
}
