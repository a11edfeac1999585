package firewall

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// Helpers for the kernel tests: every test works in network namespaces of its
// own, named vnetd-fw-<random>-<role>, and never touches the host's ruleset.

// requireKernel skips unless the test can create namespaces and the tools the
// assertions use are there.
func requireKernel(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("kernel test: %s not installed", tool)
		}
	}
}

type netNS struct {
	name string
	fd   netns.NsHandle
}

func newNetNS(t *testing.T, role string) *netNS {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "vnetd-fw-" + hex.EncodeToString(b) + "-" + role
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("kernel test: cannot create a network namespace: %v: %s", err, out)
	}
	// Registered at once, so that the namespace goes even when the test
	// fails right after.
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	fd, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	t.Cleanup(func() { fd.Close() })
	ns := &netNS{name: name, fd: fd}
	ns.ip(t, "link", "set", "lo", "up")
	return ns
}

// ip runs `ip -n NS args…`.
func (ns *netNS) ip(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"-n", ns.name}, args...)...)
}

// run runs a command inside the namespace.
func (ns *netNS) run(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", ns.name}, args...)...)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// conn is an nftables connection into the namespace; without nftables in the
// kernel the test is skipped.
func (ns *netNS) conn(t *testing.T) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.fd)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListTables(); err != nil {
		t.Skipf("kernel test: nftables unavailable: %v", err)
	}
	return c
}

func (ns *netNS) ifindex(t *testing.T, dev string) int {
	t.Helper()
	out := ns.ip(t, "-o", "link", "show", "dev", dev)
	i, err := strconv.Atoi(strings.SplitN(out, ":", 2)[0])
	if err != nil {
		t.Fatalf("ifindex of %s in %q: %v", dev, out, err)
	}
	return i
}

// do runs fn on a thread that has entered the namespace; sockets fn opens stay
// in it. The thread is locked and never unlocked, so Go discards it with the
// goroutine instead of reusing it in the wrong namespace.
func (ns *netNS) do(t *testing.T, fn func()) {
	t.Helper()
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err = netns.Set(ns.fd); err != nil {
			return
		}
		fn()
	}()
	<-done
	if err != nil {
		t.Fatalf("enter %s: %v", ns.name, err)
	}
}
