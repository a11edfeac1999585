package dataplane

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/vnetd/vnetd/conf"
)

// PFOfVF finds the physical function of the VF at pci: the network device of
// the PF (bus/pci/devices/VF/physfn/net/*) and the VF's index among the PF's
// virtfnN links. Setting a VF's MAC and VLAN goes through its PF. Like the
// rest of the SR-IOV code it was checked against a fake sysfs tree only.
func PFOfVF(sysfsRoot string, pci conf.PCIAddress) (pf string, index int, err error) {
	s := newPCISysfs(sysfsRootOr(sysfsRoot))
	vf := s.device(pci)
	physfn := filepath.Join(vf, "physfn")
	target, err := os.Readlink(physfn)
	if err != nil {
		return "", 0, fmt.Errorf("PCI device %s: not an SR-IOV virtual function (no physfn): %w", pci, err)
	}
	pfDir := filepath.Join(filepath.Dir(physfn), target)
	pf, err = vfNetdev(filepath.Join(pfDir, "net"))
	if err != nil || pf == "" {
		return "", 0, fmt.Errorf("PCI device %s: its PF %s has no network device", pci, filepath.Base(target))
	}
	entries, err := os.ReadDir(pfDir)
	if err != nil {
		return "", 0, fmt.Errorf("PCI device %s: PF %s: %w", pci, pf, err)
	}
	for _, e := range entries {
		idx, ok := virtfnIndex(e.Name())
		if !ok {
			continue
		}
		t, err := os.Readlink(filepath.Join(pfDir, e.Name()))
		if err != nil {
			continue
		}
		if a, err := parsePCIAddress(filepath.Base(t)); err == nil && a == pci {
			return pf, idx, nil
		}
	}
	return "", 0, fmt.Errorf("PCI device %s: not among the virtual functions of PF %s", pci, pf)
}
