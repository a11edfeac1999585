// Package nettest gives root tests throw-away network namespaces and veth
// links, uniquely named per test and removed when the test ends, pass or
// fail. Tests may drive iproute2 here; product code never does.
package nettest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// SkipUnlessRoot skips tests that need to create namespaces.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
}

// Unique returns prefix plus random hex, at most max characters.
func Unique(prefix string, max int) string {
	b := make([]byte, 8)
	rand.Read(b)
	s := prefix + hex.EncodeToString(b)
	if len(s) > max {
		s = s[:max]
	}
	return s
}

// NewNS creates a network namespace with loopback up and deletes it when the
// test ends.
func NewNS(t testing.TB, prefix string) string {
	t.Helper()
	name := Unique("vnt-"+prefix+"-", 40)
	Must(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		// Processes left in the namespace would keep its links alive.
		if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
			for _, pid := range strings.Fields(string(out)) {
				exec.Command("kill", "-9", pid).Run()
			}
		}
		exec.Command("ip", "netns", "del", name).Run()
	})
	Must(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// Veth links namespace a (interface ifA) with namespace b (interface ifB),
// both up.
func Veth(t testing.TB, a, ifA, b, ifB string) {
	t.Helper()
	tmp := Unique("vt", 15)
	Must(t, "ip", "-n", a, "link", "add", ifA, "type", "veth", "peer", "name", tmp)
	Must(t, "ip", "-n", a, "link", "set", tmp, "netns", b)
	Must(t, "ip", "-n", b, "link", "set", tmp, "name", ifB)
	Must(t, "ip", "-n", a, "link", "set", ifA, "up")
	Must(t, "ip", "-n", b, "link", "set", ifB, "up")
}

// Must runs a command and fails the test when it fails.
func Must(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// In runs a command inside namespace ns and returns its combined output.
func In(ns string, name string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip netns exec %s %s %s: %w\n%s", ns, name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// MustIn is In that fails the test.
func MustIn(t testing.TB, ns string, name string, args ...string) string {
	t.Helper()
	out, err := In(ns, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Do runs f on a thread switched into namespace ns, so that sockets and
// netlink handles f opens belong to ns, then switches the thread back. A
// thread that cannot be switched back stays locked and is discarded with
// its goroutine, rather than leaving anyone in the wrong namespace.
func Do(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("namespace %s: %w", ns, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering namespace %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leaving namespace %s: %w", ns, err))
			return // still locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
