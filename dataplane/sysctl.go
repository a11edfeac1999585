package dataplane

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultSysctlRoot is where the kernel exposes its parameters.
const DefaultSysctlRoot = "/proc/sys"

// Sysctl writes kernel parameters under Root (normally "/proc/sys"). It must be used
// from a thread in the target network namespace (the daemon runs inside it):
// /proc/sys/net shows the namespace of the thread that opens the file, not the
// one /proc was mounted in.
//
// Keys are in slash form ("net/ipv6/conf/virbr0/disable_ipv6"), not sysctl(8)'s
// dotted form, so interface names that contain a dot (eth0.100) need no
// escaping. An empty Root means DefaultSysctlRoot.
type Sysctl struct{ Root string }

// path turns a key into a file name under Root, refusing keys that would
// leave it: a key is built from interface names, which the kernel does not
// let contain '/', but "." and ".." must not be taken for directories either.
func (s Sysctl) path(key string) (string, error) {
	if key == "" {
		return "", fmt.Errorf("empty sysctl key")
	}
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("sysctl key %q is not a relative slash-separated path", key)
		}
	}
	root := s.Root
	if root == "" {
		root = DefaultSysctlRoot
	}
	return filepath.Join(root, filepath.FromSlash(key)), nil
}

// Get returns the value of key with surrounding white space (the kernel's
// trailing newline) removed.
func (s Sysctl) Get(key string) (string, error) {
	p, err := s.path(key)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Set writes value to key. The file must already exist: a missing key means the
// kernel has no such parameter (or no such interface), which is an error the
// caller may test with errors.Is(err, fs.ErrNotExist), never a file to create.
func (s Sysctl) Set(key, value string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", key, value, err)
	}
	// procfs takes the value in one write; a short or failed write is the
	// kernel refusing the value (EINVAL, ERANGE), reported as such.
	_, werr := f.WriteString(value)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", key, value, werr)
	}
	if cerr != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", key, value, cerr)
	}
	return nil
}
