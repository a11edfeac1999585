package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vnetd/vnetd/internal/nettest"
)

// lines delivers what r prints, line by line, until it closes.
func lines(t *testing.T, cmd *exec.Cmd) <-chan string {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := make(chan string, 100)
	go func() {
		defer close(c)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c <- sc.Text()
		}
	}()
	return c
}

// expectLine waits for a line containing want, skipping others.
func expectLine(t *testing.T, c <-chan string, want string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-c:
			if !ok {
				t.Fatalf("output ended before %q", want)
			}
			if strings.Contains(l, want) {
				return
			}
		case <-deadline:
			t.Fatalf("no line with %q", want)
		}
	}
}

// netEventLoop runs `vnetctl net-event --loop` against d and returns once
// it listens, which it proves by printing the definition of the network in
// file (named name), defined again until it does.
func netEventLoop(t *testing.T, d *daemon, file, name string) (*exec.Cmd, <-chan string) {
	t.Helper()
	listener := exec.Command(filepath.Join(bin, "vnetctl"), "--socket", d.socket, "net-event", "--loop", "--timeout", "120")
	out := lines(t, listener)
	if err := listener.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Process.Kill(); listener.Wait() })
	for i := 0; i < 100; i++ {
		d.mustCtl("net-define", file)
		select {
		case l := <-out:
			if strings.Contains(l, "event 'lifecycle' for network "+name+": Defined") {
				return listener, out
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("net-event never saw a definition; vnetd log:\n%s", d.logText())
	return nil, nil
}

func TestNetEventLoopSeesStartAndStop(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	ns := nettest.NewNS(t, "evt")
	d := startDaemon(t, ns, t.TempDir())
	file := filepath.Join(t.TempDir(), "net.xml")
	os.WriteFile(file, []byte(fmt.Sprintf(`<network><name>ev</name><bridge name='%s' stp='off'/>
  <ip address='192.168.61.1' prefix='24'/></network>`, nettest.Unique("vbre", 12))), 0o600)
	listener, out := netEventLoop(t, d, file, "ev")
	d.mustCtl("net-start", "ev")
	expectLine(t, out, "event 'lifecycle' for network ev: Started")
	d.mustCtl("net-destroy", "ev")
	expectLine(t, out, "event 'lifecycle' for network ev: Stopped")
	d.mustCtl("net-undefine", "ev")
	expectLine(t, out, "event 'lifecycle' for network ev: Undefined")

	listener.Process.Signal(syscall.SIGINT)
	expectLine(t, out, "event loop interrupted")
	expectLine(t, out, "events received:")
	if err := listener.Wait(); err != nil {
		t.Fatalf("net-event exit: %v", err)
	}
}

// notifySocket is systemd's end of NOTIFY_SOCKET.
func notifySocket(t *testing.T) (path string, msgs <-chan string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			c <- string(buf[:n])
		}
	}()
	return path, c
}

// expectNotify waits for a notification starting with want, skipping
// watchdog pings unless those are wanted.
func expectNotify(t *testing.T, msgs <-chan string, want string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-msgs:
			if strings.HasPrefix(m, want) {
				return
			}
			if m != "WATCHDOG=1" {
				t.Fatalf("systemd got %q, want %q", m, want)
			}
		case <-deadline:
			t.Fatalf("systemd never got %q", want)
		}
	}
}

func TestSystemdNotifyWatchdogAndReload(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	ns := nettest.NewNS(t, "sd")
	sock, msgs := notifySocket(t)
	dir := t.TempDir()
	d := &daemon{t: t, ns: ns, dir: dir, socket: filepath.Join(dir, "vnetd.sock"),
		env: []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=400000"}}
	d.start()
	expectNotify(t, msgs, "READY=1")
	expectNotify(t, msgs, "WATCHDOG=1")

	file := filepath.Join(t.TempDir(), "net.xml")
	os.WriteFile(file, []byte(`<network><name>keep</name><bridge name='vbrkeep' stp='off'/><ip address='192.168.62.1' prefix='24'/></network>`), 0o600)
	d.mustCtl("net-define", file)
	before := d.mustCtl("net-dumpxml", "keep", "--inactive")

	etc := filepath.Join(dir, "etc")
	os.WriteFile(filepath.Join(etc, "keep.xml"), []byte(strings.Replace(before, "192.168.62.1", "192.168.63.1", 1)), 0o600)
	os.WriteFile(filepath.Join(etc, "extra.xml"), []byte(`<network><name>extra</name><bridge name='vbrextra'/></network>`), 0o600)
	os.WriteFile(filepath.Join(etc, "bad.xml"), []byte(`<network><name>bad</name><ip address='not-an-ip'/></network>`), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	expectNotify(t, msgs, "RELOADING=1\nMONOTONIC_USEC=")
	expectNotify(t, msgs, "READY=1")
	if !strings.Contains(d.logText(), "reload failed") || !strings.Contains(d.logText(), filepath.Join(etc, "bad.xml")) {
		t.Fatalf("rejected reload not logged with the file:\n%s", d.logText())
	}
	if after := d.mustCtl("net-dumpxml", "keep", "--inactive"); after != before {
		t.Fatalf("a rejected reload changed keep:\n%s", after)
	}
	if list := d.mustCtl("net-list", "--all"); strings.Contains(list, "extra") {
		t.Fatalf("a rejected reload defined extra:\n%s", list)
	}

	os.Remove(filepath.Join(etc, "bad.xml"))
	d.cmd.Process.Signal(syscall.SIGHUP)
	expectNotify(t, msgs, "RELOADING=1")
	expectNotify(t, msgs, "READY=1")
	if after := d.mustCtl("net-dumpxml", "keep", "--inactive"); !strings.Contains(after, "192.168.63.1") {
		t.Fatalf("keep not reloaded:\n%s", after)
	}
	if list := d.mustCtl("net-list", "--all"); !strings.Contains(list, "extra") {
		t.Fatalf("extra not defined by the reload:\n%s", list)
	}
	d.stop()
	expectNotify(t, msgs, "STOPPING=1")
}

func TestNetEventSeesLeases(t *testing.T) {
	t.Parallel()
	nettest.SkipUnlessRoot(t)
	host, guest := nettest.NewNS(t, "lhost"), nettest.NewNS(t, "lguest")
	d := startDaemon(t, host, t.TempDir())
	dir := t.TempDir()
	file := filepath.Join(dir, "net.xml")
	os.WriteFile(file, []byte(`<network><name>l</name><bridge name='vbrl' stp='off'/>
  <ip address='192.168.82.1' prefix='24'><dhcp><range start='192.168.82.100' end='192.168.82.150'/></dhcp></ip></network>`), 0o600)
	_, out := netEventLoop(t, d, file, "l")
	d.mustCtl("net-start", "l")
	nettest.Veth(t, guest, "eth0", host, "vnet0")
	nettest.Must(t, "ip", "-n", host, "link", "set", "vnet0", "master", "vbrl")
	nettest.Must(t, "ip", "-n", guest, "link", "set", "eth0", "address", "52:54:00:82:00:09")
	hook := filepath.Join(dir, "hook")
	os.WriteFile(hook, []byte(dhclientHook), 0o755)
	dhclient := func(args ...string) {
		t.Helper()
		base := []string{"-4", "-1", "-sf", hook, "-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid")}
		nettest.MustIn(t, guest, "timeout", append([]string{"20", "dhclient"}, append(base, args...)...)...)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
			nettest.In(guest, "kill", strings.TrimSpace(string(b)))
		}
	})
	dhclient("eth0")
	expectLine(t, out, "event 'lease' for network l: Added 192.168.82.1")
	dhclient("-r", "eth0")
	expectLine(t, out, "event 'lease' for network l: Removed 192.168.82.1")
}
