package dataplane

// SR-IOV virtual functions for hostdev networks (<forward mode='hostdev'>
// with a <pf>, and hostdev-pci plugs): finding a PF's VFs in sysfs, setting a
// VF's MAC and VLAN through the PF, and handing a VF to vfio-pci and back
// (managed='yes').
//
// NOT VERIFIED ON HARDWARE: there is no SR-IOV device where this was written.
// The sysfs paths were checked only against a fake sysfs tree built in tests
// (vf_test.go) that follows the kernel's layout as documented in
// Documentation/ABI/testing/sysfs-bus-pci and as libvirt reads it (virpci.c,
// virnetdev.c), and the VF netlink calls only against a recording fake of
// VFSetter. Run it on a real NIC before relying on it.

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/vnetd/vnetd/conf"
)

// DefaultSysfsRoot is where the kernel's sysfs is mounted.
const DefaultSysfsRoot = "/sys"

// vfioDriver is the PCI driver a VF is given to for device assignment.
const vfioDriver = "vfio-pci"

// ErrNoSRIOV is returned (wrapped) by VirtualFunctions for a device that is
// not an SR-IOV physical function or has no VFs enabled.
var ErrNoSRIOV = errors.New("no SR-IOV virtual functions")

// VF is one virtual function of a PF.
type VF struct {
	// Index is the VF number on its PF (virtfnN), the vf argument of the PF's
	// IFLA_VF_* calls.
	Index int
	// Netdev is the VF's network device, "" when it has none: bound to
	// vfio-pci (or no driver at all).
	Netdev string
	// PCI is the VF's PCI address.
	PCI conf.PCIAddress
}

func sysfsRootOr(root string) string {
	if root == "" {
		return DefaultSysfsRoot
	}
	return root
}

// VirtualFunctions lists the VFs of the physical function pf (a network
// device name), sorted by index, from sysfsRoot (normally "/sys"; "" means
// that): the symlinks class/net/PF/device/virtfnN to the VFs' PCI devices,
// and each VF's network device in virtfnN/net/. A pf that does not exist is
// ErrNoSuchLink; one that is not an SR-IOV PF, or has no VFs enabled, is
// ErrNoSRIOV (both wrapped).
func VirtualFunctions(sysfsRoot, pf string) ([]VF, error) {
	if err := CheckLinkName("PF", pf); err != nil {
		return nil, err
	}
	netdir := filepath.Join(sysfsRootOr(sysfsRoot), "class", "net", pf)
	if _, err := os.Stat(netdir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("PF %s: %w", pf, ErrNoSuchLink)
	} else if err != nil {
		return nil, fmt.Errorf("PF %s: %w", pf, err)
	}
	dev := filepath.Join(netdir, "device")
	entries, err := os.ReadDir(dev)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("PF %s: not a PCI device (no %s): %w", pf, dev, ErrNoSRIOV)
	}
	if err != nil {
		return nil, fmt.Errorf("PF %s: %w", pf, err)
	}
	var vfs []VF
	for _, e := range entries {
		idx, ok := virtfnIndex(e.Name())
		if !ok {
			continue
		}
		link := filepath.Join(dev, e.Name())
		target, err := os.Readlink(link)
		if err != nil {
			return nil, fmt.Errorf("PF %s: VF %d: %w", pf, idx, err)
		}
		pci, err := parsePCIAddress(filepath.Base(target))
		if err != nil {
			return nil, fmt.Errorf("PF %s: VF %d: %s points to %s: %w", pf, idx, link, target, err)
		}
		netdev, err := vfNetdev(filepath.Join(link, "net"))
		if err != nil {
			return nil, fmt.Errorf("PF %s: VF %d (%s): %w", pf, idx, pci, err)
		}
		vfs = append(vfs, VF{Index: idx, Netdev: netdev, PCI: pci})
	}
	if len(vfs) == 0 {
		return nil, fmt.Errorf("PF %s: %w", pf, noVFsReason(dev))
	}
	slices.SortFunc(vfs, func(a, b VF) int { return a.Index - b.Index })
	return vfs, nil
}

// noVFsReason explains a PCI device without virtfn links.
func noVFsReason(dev string) error {
	total, err := os.ReadFile(filepath.Join(dev, "sriov_totalvfs"))
	if err != nil {
		return fmt.Errorf("device has no SR-IOV capability (no sriov_totalvfs): %w", ErrNoSRIOV)
	}
	num, _ := os.ReadFile(filepath.Join(dev, "sriov_numvfs"))
	n := strings.TrimSpace(string(num))
	if n == "" {
		n = "?"
	}
	return fmt.Errorf("SR-IOV capable (sriov_totalvfs %s) but no VFs are enabled (sriov_numvfs %s): %w",
		strings.TrimSpace(string(total)), n, ErrNoSRIOV)
}

// virtfnIndex parses "virtfnN".
func virtfnIndex(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "virtfn")
	if !ok || s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// vfNetdev is the one entry of a VF's net/ directory; "" when the directory
// does not exist (no network driver bound).
func vfNetdev(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if len(entries) == 0 {
		return "", nil
	}
	return entries[0].Name(), nil // ReadDir sorts; a VF has one netdev
}

// parsePCIAddress parses sysfs's "DDDD:BB:SS.F" (domain four or more hex
// digits).
func parsePCIAddress(s string) (conf.PCIAddress, error) {
	bad := fmt.Errorf("%q is not a PCI address DDDD:BB:SS.F", s)
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return conf.PCIAddress{}, bad
	}
	slotFn := strings.Split(parts[2], ".")
	if len(slotFn) != 2 || len(parts[0]) < 4 || len(parts[1]) != 2 || len(slotFn[0]) != 2 || len(slotFn[1]) != 1 {
		return conf.PCIAddress{}, bad
	}
	dom, err1 := strconv.ParseUint(parts[0], 16, 32)
	bus, err2 := strconv.ParseUint(parts[1], 16, 8)
	slot, err3 := strconv.ParseUint(slotFn[0], 16, 8)
	fn, err4 := strconv.ParseUint(slotFn[1], 16, 8)
	if err := errors.Join(err1, err2, err3, err4); err != nil || slot > 0x1f || fn > 7 {
		return conf.PCIAddress{}, bad
	}
	return conf.PCIAddress{Domain: uint32(dom), Bus: uint8(bus), Slot: uint8(slot), Function: uint8(fn)}, nil
}

// VFSetter is the part of *netlink.Handle that configures VFs through their
// PF; tests substitute a recording fake.
type VFSetter interface {
	LinkSetVfHardwareAddr(link netlink.Link, vf int, hwaddr net.HardwareAddr) error
	LinkSetVfVlan(link netlink.Link, vf, vlan int) error
	LinkByName(name string) (netlink.Link, error)
}

var _ VFSetter = (*netlink.Handle)(nil)

// maxVLAN is the largest VLAN ID the kernel's IFLA_VF_VLAN takes.
const maxVLAN = 4095

// ConfigureVF sets the MAC (nil: left as it is) and the VLAN (0: none, which
// clears a VLAN a previous user left) of VF vf of the PF pf, through the PF
// (`ip link set PF vf N mac M vlan V`), MAC first as libvirt does
// (virNetDevSetVfConfig). The VLAN is always written so that a VF never keeps
// the tag of its previous guest.
func ConfigureVF(h VFSetter, pf string, vf int, mac net.HardwareAddr, vlan int) error {
	if h == nil {
		return fmt.Errorf("PF %s VF %d: no netlink handle", pf, vf)
	}
	if err := CheckLinkName("PF", pf); err != nil {
		return fmt.Errorf("VF %d: %w", vf, err)
	}
	if vf < 0 {
		return fmt.Errorf("PF %s: VF index %d is negative", pf, vf)
	}
	if vlan < 0 || vlan > maxVLAN {
		return fmt.Errorf("PF %s VF %d: VLAN %d out of range 0-%d", pf, vf, vlan, maxVLAN)
	}
	if mac != nil {
		if err := checkMAC(mac); err != nil {
			return fmt.Errorf("PF %s VF %d: %w", pf, vf, err)
		}
	}
	link, err := h.LinkByName(pf)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return fmt.Errorf("PF %s VF %d: %w", pf, vf, ErrNoSuchLink)
	}
	if err != nil {
		return fmt.Errorf("PF %s VF %d: look up PF: %w", pf, vf, err)
	}
	if mac != nil {
		if err := h.LinkSetVfHardwareAddr(link, vf, mac); err != nil {
			return fmt.Errorf("PF %s VF %d: set MAC %s: %w", pf, vf, mac, err)
		}
	}
	if err := h.LinkSetVfVlan(link, vf, vlan); err != nil {
		return fmt.Errorf("PF %s VF %d: set VLAN %d: %w", pf, vf, vlan, err)
	}
	return nil
}

// pciSysfs is sysfs's PCI side, with its writes injectable: the test's fake
// records them and plays the kernel's part (a write to unbind removes the
// driver link, one to drivers_probe binds the device).
type pciSysfs struct {
	root  string
	write func(path, value string) error
}

func newPCISysfs(root string) pciSysfs {
	return pciSysfs{root: sysfsRootOr(root), write: writeSysfs}
}

// writeSysfs writes value to an existing sysfs attribute in one write.
func writeSysfs(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(value)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("write %q to %s: %w", value, path, werr)
	}
	if cerr != nil {
		return fmt.Errorf("write %q to %s: %w", value, path, cerr)
	}
	return nil
}

func (s pciSysfs) device(pci conf.PCIAddress) string {
	return filepath.Join(s.root, "bus", "pci", "devices", pci.String())
}

func (s pciSysfs) probe() string {
	return filepath.Join(s.root, "bus", "pci", "drivers_probe")
}

// driver is the name of the driver dev is bound to, "" for none.
func (s pciSysfs) driver(dev string) (string, error) {
	target, err := os.Readlink(filepath.Join(dev, "driver"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return filepath.Base(target), nil
}

// BindVFIO hands the PCI device pci (a VF) to vfio-pci for assignment to a
// guest (managed='yes'; libvirt's virPCIDeviceBindToStub): "vfio-pci" into
// its driver_override, its address into its current driver's unbind (if it
// has a driver), then into bus/pci/drivers_probe, and it checks that vfio-pci
// took it. A device already bound to vfio-pci only gets the override. If
// vfio-pci does not take it (the module is not loaded: vnetd does not run
// modprobe), the override is cleared and the device reprobed so that its
// host driver gets it back, and an error returned.
func BindVFIO(sysfsRoot string, pci conf.PCIAddress) error {
	return newPCISysfs(sysfsRoot).bindVFIO(pci)
}

func (s pciSysfs) bindVFIO(pci conf.PCIAddress) (err error) {
	addr := pci.String()
	wrap := func(what string, err error) error {
		return fmt.Errorf("PCI device %s: bind to %s: %s: %w", addr, vfioDriver, what, err)
	}
	dev := s.device(pci)
	if _, err := os.Stat(dev); err != nil {
		return wrap("look up", err)
	}
	cur, err := s.driver(dev)
	if err != nil {
		return wrap("current driver", err)
	}
	if err := s.write(filepath.Join(dev, "driver_override"), vfioDriver); err != nil {
		return wrap("set driver_override", err)
	}
	if cur == vfioDriver {
		return nil
	}
	defer func() {
		if err == nil {
			return
		}
		// Give the device back to whatever driver wants it without the
		// override, as libvirt does when binding to the stub fails.
		rerr := errors.Join(
			s.write(filepath.Join(dev, "driver_override"), "\n"),
			s.write(s.probe(), addr))
		if rerr != nil {
			err = errors.Join(err, wrap("roll back", rerr))
		}
	}()
	if cur != "" {
		if err := s.write(filepath.Join(dev, "driver", "unbind"), addr); err != nil {
			return wrap("unbind from "+cur, err)
		}
	}
	if err := s.write(s.probe(), addr); err != nil {
		return wrap("reprobe", err)
	}
	now, err := s.driver(dev)
	if err != nil {
		return wrap("driver after reprobe", err)
	}
	if now != vfioDriver {
		if now == "" {
			now = "no driver"
		}
		return wrap("reprobe", fmt.Errorf("device has %s, not %s: is the vfio-pci module loaded?", now, vfioDriver))
	}
	return nil
}

// UnbindVFIO gives the PCI device pci back to the host after assignment
// (libvirt's virPCIDeviceUnbindFromStub): its driver_override is cleared; if
// it is bound to vfio-pci it is unbound, and if it is then without a driver
// its address goes to bus/pci/drivers_probe so that its host driver takes it
// again. A device bound to another driver keeps it.
func UnbindVFIO(sysfsRoot string, pci conf.PCIAddress) error {
	return newPCISysfs(sysfsRoot).unbindVFIO(pci)
}

func (s pciSysfs) unbindVFIO(pci conf.PCIAddress) error {
	addr := pci.String()
	wrap := func(what string, err error) error {
		return fmt.Errorf("PCI device %s: unbind from %s: %s: %w", addr, vfioDriver, what, err)
	}
	dev := s.device(pci)
	if _, err := os.Stat(dev); err != nil {
		return wrap("look up", err)
	}
	cur, err := s.driver(dev)
	if err != nil {
		return wrap("current driver", err)
	}
	// A newline clears the override (the kernel drops the trailing newline
	// and an empty name means none).
	if err := s.write(filepath.Join(dev, "driver_override"), "\n"); err != nil {
		return wrap("clear driver_override", err)
	}
	switch cur {
	case vfioDriver:
		if err := s.write(filepath.Join(dev, "driver", "unbind"), addr); err != nil {
			return wrap("unbind", err)
		}
	case "":
	default:
		return nil
	}
	if err := s.write(s.probe(), addr); err != nil {
		return wrap("reprobe", err)
	}
	return nil
}
