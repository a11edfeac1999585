package daemon

import (
	"fmt"

	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/dataplane"
)

// startPool readies a device-pool network (bridge, private, vepa,
// passthrough, hostdev): nothing is created on the host; a <pf> is expanded
// into its virtual functions, the pool ports are drawn from.
func (m *Manager) startPool(n *conf.Network) error {
	f := &n.Forward
	if f.Mode == conf.ForwardBridge && n.Bridge.Name != "" {
		exists, err := m.cfg.Host.LinkExists(n.Bridge.Name)
		if err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("network %q: host bridge %q does not exist (vnetd does not create bridges for forward mode='bridge')", n.Name, n.Bridge.Name)
		}
		return nil
	}
	if f.PF == "" || len(f.Interfaces) > 0 || len(f.Addresses) > 0 {
		return nil
	}
	vfs, err := dataplane.VirtualFunctions(m.cfg.SysfsRoot, f.PF)
	if err != nil {
		return fmt.Errorf("network %q: <pf dev='%s'>: %w", n.Name, f.PF, err)
	}
	for _, vf := range vfs {
		if f.Mode == conf.ForwardHostdev {
			f.Addresses = append(f.Addresses, conf.ForwardAddress{PCI: vf.PCI})
			continue
		}
		if vf.Netdev == "" {
			return fmt.Errorf("network %q: virtual function %d of %s has no network device (bound to vfio?)", n.Name, vf.Index, f.PF)
		}
		f.Interfaces = append(f.Interfaces, conf.ForwardInterface{Dev: vf.Netdev})
	}
	return nil
}
