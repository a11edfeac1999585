package daemon

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/vnetd/vnetd/conf"
)

// checkTFTPRoots refuses a network whose <tftp root> is not base or a
// directory below it once symlinks are resolved (--tftp-root-base): the
// operator bounds what anyone allowed to define networks can serve to
// guests. base "" allows any root.
func checkTFTPRoots(n *conf.Network, base string) error {
	if base == "" {
		return nil
	}
	for i := range n.IPs {
		root := n.IPs[i].TFTPRoot
		if root == "" {
			continue
		}
		if err := underBase(root, base); err != nil {
			return fmt.Errorf("network %q: <tftp root='%s'>: %w", n.Name, root, err)
		}
	}
	return nil
}

// underBase checks that path, resolved, is base, resolved, or below it.
func underBase(path, base string) error {
	b, err := resolve(base)
	if err != nil {
		return fmt.Errorf("resolving --tftp-root-base %s: %w", base, err)
	}
	p, err := resolve(path)
	if err != nil {
		// A path that cannot be resolved cannot be shown to stay under the
		// base, and the server would resolve it later, maybe elsewhere.
		return fmt.Errorf("cannot be checked against --tftp-root-base %s: %w", base, err)
	}
	rel, err := filepath.Rel(b, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("resolves to %s, outside --tftp-root-base %s", p, base)
	}
	return nil
}

func resolve(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}
