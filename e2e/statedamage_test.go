package e2e

import (
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vnetd/vnetd/internal/nettest"
)

// A vnetd.db damaged while vnetd was down (garbage over its pages) used to
// stop every start: bbolt panicked or faulted reading it, a crash loop
// under systemd. Now vnetd moves it aside, starts afresh, and adopts the
// network still running on the host from its definition: same bridge, NAT
// rules in place, the guest still reaching upstream.
func TestDamagedStateDBAdoptsRunningNetwork(t *testing.T) {
	t.Parallel()
	s := newNATSetup(t, "<forward mode='nat'/>")
	before := ifindex(t, s.host, s.bridge)
	s.d.kill()

	path := filepath.Join(s.d.dir, "state", "vnetd.db")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(17, 17))
	for i := 2 * 4096; i < len(data); i++ {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	s.d.start()
	if out := s.d.mustCtl("net-list", "--all"); !strings.Contains(out, "default") || !strings.Contains(out, "active") {
		t.Fatalf("after the restart on a damaged database:\n%s\nvnetd log:\n%s", out, s.d.logText())
	}
	if got := ifindex(t, s.host, s.bridge); got != before {
		t.Errorf("bridge ifindex %d, was %d: recreated, not adopted", got, before)
	}
	if copies, _ := filepath.Glob(path + ".corrupt-*"); len(copies) != 1 {
		t.Errorf("copies of the damaged database: %q", copies)
	}
	if !strings.Contains(s.d.logText(), "state database damaged") {
		t.Errorf("damage not logged:\n%s", s.d.logText())
	}
	// The upstream host has no route back to the guest: a connection works
	// only through the network's NAT rules.
	var ln net.Listener
	if err := nettest.Do(s.upstream, func() (err error) {
		ln, err = net.Listen("tcp", "10.77.0.2:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	if err := nettest.Do(s.guest, func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("guest cannot reach upstream after the rebuild: %v\nvnetd log:\n%s", err, s.d.logText())
	}
}
