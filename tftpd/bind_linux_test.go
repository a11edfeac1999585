package tftpd

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vnetd/vnetd/internal/nettest"
)

// TestServesBridgeOnly: the server on the bridge address serves a guest on
// the bridge, and nothing to a neighbour on the uplink that routes to the
// bridge address through the host. The server runs in a helper process in
// the host's namespace, so that its per-transfer sockets are made there
// too.
func TestServesBridgeOnly(t *testing.T) {
	nettest.SkipUnlessRoot(t)
	host := nettest.NewNS(t, "tfh")
	guest := nettest.NewNS(t, "tfg")
	neighbour := nettest.NewNS(t, "tfn")
	bridge := nettest.Unique("tfbr", 15)
	ip := func(args ...string) { nettest.Must(t, "ip", args...) }
	ip("-n", host, "link", "add", bridge, "type", "bridge")
	ip("-n", host, "link", "set", bridge, "up")
	ip("-n", host, "addr", "add", "10.98.1.1/24", "dev", bridge)
	nettest.Veth(t, host, "port0", guest, "eth0")
	ip("-n", host, "link", "set", "port0", "master", bridge)
	ip("-n", guest, "addr", "add", "10.98.1.2/24", "dev", "eth0")
	nettest.Veth(t, host, "uplink", neighbour, "eth0")
	ip("-n", host, "addr", "add", "10.98.2.1/24", "dev", "uplink")
	ip("-n", neighbour, "addr", "add", "10.98.2.2/24", "dev", "eth0")
	ip("-n", neighbour, "route", "add", "10.98.1.0/24", "via", "10.98.2.1")

	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "boot.bin"), []byte("boot image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", host, os.Args[0], "-test.run=^TestServesBridgeOnlyServer$", "-test.v")
	cmd.Env = append(os.Environ(), "VNETD_TFTP_SERVER="+root+","+bridge)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ready := make(chan bool, 1)
	var helperOut strings.Builder
	helperDone := make(chan struct{})
	go func() {
		defer close(helperDone)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			helperOut.WriteString(sc.Text() + "\n")
			if sc.Text() == "tftp server ready" {
				ready <- true
			}
		}
		close(ready)
	}()
	if !<-ready {
		<-helperDone
		t.Fatalf("server helper did not start:\n%s", helperOut.String())
	}

	srv := netip.MustParseAddrPort("10.98.1.1:69")
	c := nsClient(t, guest)
	if got, _, err := c.get(srv, "boot.bin", "octet"); err != nil || string(got) != "boot image\n" {
		t.Errorf("guest on the bridge got %q, %v", got, err)
	}
	n := nsClient(t, neighbour)
	if _, err := n.conn.WriteToUDPAddrPort(requestPacket(opRRQ, "boot.bin", "octet"), srv); err != nil {
		t.Fatal(err)
	}
	if pkt, from, err := n.read(1500 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("neighbour on the uplink got %q from %v (err %v), want nothing", pkt, from, err)
	}
	stdin.Close()
	cmd.Wait()
	<-helperDone
	if t.Failed() {
		t.Logf("server helper:\n%s", helperOut.String())
	}
}

// nsClient is a client whose socket lives in namespace ns.
func nsClient(t *testing.T, ns string) *client {
	t.Helper()
	var conn *net.UDPConn
	err := nettest.Do(ns, func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{conn: conn}
}

// TestServesBridgeOnlyServer is the server of TestServesBridgeOnly, run in
// the host's namespace: it serves until its stdin closes.
func TestServesBridgeOnlyServer(t *testing.T) {
	spec := os.Getenv("VNETD_TFTP_SERVER")
	if spec == "" {
		t.Skip("the server of TestServesBridgeOnly")
	}
	root, bridge, _ := strings.Cut(spec, ",")
	srv, err := New(Config{
		Root:   root,
		Addr:   netip.MustParseAddrPort("10.98.1.1:69"),
		Bridge: bridge,
		Log:    slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.lim.Every = time.Nanosecond
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	os.Stdout.WriteString("tftp server ready\n")
	done := make(chan struct{})
	go func() {
		bufio.NewReader(os.Stdin).ReadString(0)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Error("not stopped within 30 s")
	}
}
