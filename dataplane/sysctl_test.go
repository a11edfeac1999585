package dataplane

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestSysctl(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "net", "ipv6", "conf", "eth0.100")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "accept_ra"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := Sysctl{Root: root}

	key := "net/ipv6/conf/eth0.100/accept_ra"
	if v, err := s.Get(key); err != nil || v != "1" {
		t.Fatalf("Get = %q, %v; want 1", v, err)
	}
	if err := s.Set(key, "2"); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(key); err != nil || v != "2" {
		t.Fatalf("Get after Set = %q, %v; want 2", v, err)
	}

	// A missing key is the kernel lacking the parameter: never created.
	missing := "net/ipv6/conf/eth0.100/forwarding"
	if err := s.Set(missing, "1"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Set of a missing key: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "forwarding")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Set created %s", missing)
	}
	if _, err := s.Get(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Get of a missing key: %v, want fs.ErrNotExist", err)
	}
}

func TestSysctlKeys(t *testing.T) {
	s := Sysctl{Root: "/proc/sys"}
	for _, key := range []string{"", "/net/ipv4/ip_forward", "net/../../etc/passwd", "net/./x", "net//x", "net/ipv4/"} {
		if _, err := s.path(key); err == nil {
			t.Errorf("path(%q) accepted", key)
		}
	}
	if p, err := (Sysctl{}).path("net/ipv4/ip_forward"); err != nil || p != "/proc/sys/net/ipv4/ip_forward" {
		t.Errorf("default root: %q, %v", p, err)
	}
}
