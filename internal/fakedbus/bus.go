// Package fakedbus gives tests a private D-Bus daemon and small stand-ins
// for the system services vnetd talks to over it (firewalld,
// systemd-resolved). The stand-ins speak the real services' object paths,
// interfaces, method names, signatures and error names, keep just enough
// state to answer like them, and record every call. No root is needed.
package fakedbus

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// busConfig allows everything: the bus exists for one test only.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// StartBus starts a private dbus-daemon for the test and returns its
// address; the daemon is killed when the test ends. The test is skipped
// when dbus-daemon is not installed.
func StartBus(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("needs dbus-daemon")
	}
	dir := t.TempDir()
	// A unix socket path is limited to 107 bytes and t.TempDir embeds the
	// test's name.
	if len(dir) > 80 {
		dir, err = os.MkdirTemp("", "fakedbus")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	cfg := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, busConfig, filepath.Join(dir, "bus")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+cfg, "--nofork", "--nopidfile", "--print-address=1")
	// Kept for a failing test only: dbus-daemon complains of harmless
	// things, such as not being allowed to raise its fd limit.
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("dbus-daemon stderr:\n%s", stderr.String())
		}
	})
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addr <- strings.TrimSpace(line)
	}()
	select {
	case a := <-addr:
		if a == "" {
			t.Fatal("dbus-daemon printed no address")
		}
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("dbus-daemon did not print its address within 10s")
	}
	return ""
}

// Connect opens a connection to the bus at addr, closed when the test ends.
func Connect(t testing.TB, addr string) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatalf("connecting to %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// serve exports obj's methods under the given D-Bus names on a connection
// of its own and takes the well-known name; closing the connection (at the
// end of the test, or by the returned func) gives the name up, which is
// how a service stops.
func serve(t testing.TB, addr, name string, exports []export) func() {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatalf("connecting to %s: %v", addr, err)
	}
	for _, e := range exports {
		if err := conn.ExportWithMap(e.obj, e.methods, e.path, e.iface); err != nil {
			conn.Close()
			t.Fatalf("exporting %s: %v", e.iface, err)
		}
	}
	reply, err := conn.RequestName(name, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		conn.Close()
		t.Fatalf("taking the name %s: reply %v, %v", name, reply, err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			// Released first so the bus has forgotten the owner when stop
			// returns; a bare close is noticed by the daemon a little later.
			conn.ReleaseName(name)
			conn.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

type export struct {
	obj     any
	methods map[string]string // Go method -> D-Bus member
	path    dbus.ObjectPath
	iface   string
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
