package dataplane

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vnetd/vnetd/conf"
)

// fakeSysfs builds files and symlinks under a temporary root, laid out as
// the kernel's sysfs is (only what the code reads).
type fakeSysfs struct {
	t    *testing.T
	root string
}

func newFakeSysfs(t *testing.T) *fakeSysfs {
	return &fakeSysfs{t: t, root: t.TempDir()}
}

func (f *fakeSysfs) path(rel string) string { return filepath.Join(f.root, filepath.FromSlash(rel)) }

func (f *fakeSysfs) file(rel, content string) {
	f.t.Helper()
	p := f.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeSysfs) dir(rel string) {
	f.t.Helper()
	if err := os.MkdirAll(f.path(rel), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

// link makes rel a symlink to target (relative, as sysfs's are).
func (f *fakeSysfs) link(rel, target string) {
	f.t.Helper()
	p := f.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	os.Remove(p)
	if err := os.Symlink(target, p); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeSysfs) read(rel string) string {
	f.t.Helper()
	b, err := os.ReadFile(f.path(rel))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

const pfDevDir = "devices/pci0000:00/0000:00:02.0"

// pf adds the network device pf backed by PCI device pciPF, with
// sriov_totalvfs (if total >= 0) and the VFs given as address -> netdev ("":
// bound to vfio-pci, no net/ directory), in virtfn order.
func (f *fakeSysfs) pf(pf, pciPF string, total int, vfs [][2]string) {
	dev := pfDevDir + "/" + pciPF
	f.dir(dev + "/net/" + pf)
	// class/net/PF is a symlink to the device's net/PF, and PF/device a
	// symlink back to the PCI device, as on a real system.
	f.link("class/net/"+pf, "../../"+dev+"/net/"+pf)
	f.link(dev+"/net/"+pf+"/device", "../../../"+pciPF)
	if total >= 0 {
		f.file(dev+"/sriov_totalvfs", fmt.Sprintf("%d\n", total))
		f.file(dev+"/sriov_numvfs", fmt.Sprintf("%d\n", len(vfs)))
	}
	for i, vf := range vfs {
		addr, netdev := vf[0], vf[1]
		f.dir(pfDevDir + "/" + addr)
		f.link(fmt.Sprintf("%s/virtfn%d", dev, i), "../"+addr)
		f.link(pfDevDir+"/"+addr+"/physfn", "../"+pciPF)
		if netdev != "" {
			f.dir(pfDevDir + "/" + addr + "/net/" + netdev)
		}
	}
}

func pciAddr(dom uint32, bus, slot, fn uint8) conf.PCIAddress {
	return conf.PCIAddress{Domain: dom, Bus: bus, Slot: slot, Function: fn}
}

func TestVirtualFunctions(t *testing.T) {
	f := newFakeSysfs(t)
	f.pf("enp3s0f0", "0000:03:00.0", 8, [][2]string{
		{"0000:03:10.0", "enp3s0f0v0"},
		{"0000:03:10.2", ""}, // bound to vfio-pci: no net/ directory
		{"0000:03:10.4", "enp3s0f0v2"},
	})
	got, err := VirtualFunctions(f.root, "enp3s0f0")
	if err != nil {
		t.Fatal(err)
	}
	want := []VF{
		{Index: 0, Netdev: "enp3s0f0v0", PCI: pciAddr(0, 3, 0x10, 0)},
		{Index: 1, Netdev: "", PCI: pciAddr(0, 3, 0x10, 2)},
		{Index: 2, Netdev: "enp3s0f0v2", PCI: pciAddr(0, 3, 0x10, 4)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("VirtualFunctions =\n%+v\nwant\n%+v", got, want)
	}
}

func TestVirtualFunctionsNumericOrder(t *testing.T) {
	f := newFakeSysfs(t)
	var vfs [][2]string
	for i := range 12 {
		vfs = append(vfs, [2]string{fmt.Sprintf("0001:81:%02x.%d", 2+i/8, i%8), fmt.Sprintf("ens1f1v%d", i)})
	}
	f.pf("ens1f1", "0001:81:00.1", 64, vfs)
	got, err := VirtualFunctions(f.root, "ens1f1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 12 {
		t.Fatalf("got %d VFs, want 12", len(got))
	}
	for i, vf := range got {
		if vf.Index != i || vf.Netdev != fmt.Sprintf("ens1f1v%d", i) || vf.PCI != pciAddr(1, 0x81, uint8(2+i/8), uint8(i%8)) {
			t.Errorf("VF[%d] = %+v (virtfn10 must come after virtfn9)", i, vf)
		}
	}
}

func TestVirtualFunctionsErrors(t *testing.T) {
	f := newFakeSysfs(t)
	f.pf("eno1", "0000:00:19.0", -1, nil)  // a PCI NIC without SR-IOV
	f.pf("enp5s0", "0000:05:00.0", 7, nil) // SR-IOV capable, none enabled
	f.dir("devices/virtual/net/veth0")     // no PCI device behind it
	f.link("class/net/veth0", "../../devices/virtual/net/veth0")
	for _, tc := range []struct {
		pf   string
		is   error
		text string
	}{
		{"eno1", ErrNoSRIOV, "PF eno1: device has no SR-IOV capability"},
		{"enp5s0", ErrNoSRIOV, "PF enp5s0: SR-IOV capable (sriov_totalvfs 7) but no VFs are enabled (sriov_numvfs 0)"},
		{"veth0", ErrNoSRIOV, "PF veth0: not a PCI device"},
		{"nothere", ErrNoSuchLink, "PF nothere: no such network device"},
		{"../etc", nil, "contains '/'"},
		{"", nil, "no PF name"},
	} {
		_, err := VirtualFunctions(f.root, tc.pf)
		if err == nil || !strings.Contains(err.Error(), tc.text) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("VirtualFunctions(%q) = %v, want an error %q (is %v)", tc.pf, err, tc.text, tc.is)
		}
	}
}

func TestParsePCIAddress(t *testing.T) {
	for s, want := range map[string]conf.PCIAddress{
		"0000:03:00.1":  pciAddr(0, 3, 0, 1),
		"0001:81:1f.7":  pciAddr(1, 0x81, 0x1f, 7),
		"10000:00:02.0": pciAddr(0x10000, 0, 2, 0),
	} {
		got, err := parsePCIAddress(s)
		if err != nil || got != want {
			t.Errorf("parsePCIAddress(%q) = %v, %v; want %v", s, got, err, want)
		}
		if err == nil && len(s) == 12 && got.String() != s {
			t.Errorf("%q does not round-trip: %s", s, got)
		}
	}
	for _, s := range []string{"", "03:00.1", "0000:03:00", "0000:03:20.0", "0000:03:00.8", "000:03:00.1", "0000:3:00.1", "0000:03:00.1a", "zzzz:03:00.1", "0000:03:00:1"} {
		if got, err := parsePCIAddress(s); err == nil {
			t.Errorf("parsePCIAddress(%q) = %v, want an error", s, got)
		}
	}
}

// recordingVFSetter is a VFSetter that records its calls.
type recordingVFSetter struct {
	links map[string]int // name -> ifindex
	calls []string
	fail  map[string]error // by method name
}

func (r *recordingVFSetter) LinkByName(name string) (netlink.Link, error) {
	r.calls = append(r.calls, "LinkByName "+name)
	idx, ok := r.links[name]
	if !ok {
		return nil, netlink.LinkNotFoundError{}
	}
	a := netlink.NewLinkAttrs()
	a.Name, a.Index = name, idx
	return &netlink.Device{LinkAttrs: a}, nil
}

func (r *recordingVFSetter) LinkSetVfHardwareAddr(link netlink.Link, vf int, mac net.HardwareAddr) error {
	r.calls = append(r.calls, fmt.Sprintf("LinkSetVfHardwareAddr %s(%d) vf %d %s", link.Attrs().Name, link.Attrs().Index, vf, mac))
	return r.fail["LinkSetVfHardwareAddr"]
}

func (r *recordingVFSetter) LinkSetVfVlan(link netlink.Link, vf, vlan int) error {
	r.calls = append(r.calls, fmt.Sprintf("LinkSetVfVlan %s(%d) vf %d vlan %d", link.Attrs().Name, link.Attrs().Index, vf, vlan))
	return r.fail["LinkSetVfVlan"]
}

func TestConfigureVF(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	newFake := func() *recordingVFSetter {
		return &recordingVFSetter{links: map[string]int{"enp3s0f0": 4}, fail: map[string]error{}}
	}

	r := newFake()
	if err := ConfigureVF(r, "enp3s0f0", 2, mac, 42); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"LinkByName enp3s0f0",
		"LinkSetVfHardwareAddr enp3s0f0(4) vf 2 52:54:00:12:34:56",
		"LinkSetVfVlan enp3s0f0(4) vf 2 vlan 42",
	}
	if !reflect.DeepEqual(r.calls, want) {
		t.Errorf("calls = %q, want %q", r.calls, want)
	}

	// No VLAN: 0 is still written, clearing the previous guest's tag; no
	// MAC: left alone.
	r = newFake()
	if err := ConfigureVF(r, "enp3s0f0", 0, nil, 0); err != nil {
		t.Fatal(err)
	}
	want = []string{"LinkByName enp3s0f0", "LinkSetVfVlan enp3s0f0(4) vf 0 vlan 0"}
	if !reflect.DeepEqual(r.calls, want) {
		t.Errorf("calls = %q, want %q", r.calls, want)
	}

	// A failing MAC stops before the VLAN and names PF, VF and MAC.
	r = newFake()
	r.fail["LinkSetVfHardwareAddr"] = errors.New("operation not supported")
	err := ConfigureVF(r, "enp3s0f0", 3, mac, 7)
	if err == nil || err.Error() != "PF enp3s0f0 VF 3: set MAC 52:54:00:12:34:56: operation not supported" {
		t.Errorf("err = %v", err)
	}
	if len(r.calls) != 2 {
		t.Errorf("calls after a MAC failure = %q", r.calls)
	}

	// Refused before any call.
	for _, tc := range []struct {
		pf   string
		vf   int
		mac  net.HardwareAddr
		vlan int
		text string
	}{
		{"enp3s0f0", -1, mac, 0, "VF index -1 is negative"},
		{"enp3s0f0", 0, mac, 4096, "VLAN 4096 out of range"},
		{"enp3s0f0", 0, mac, -1, "VLAN -1 out of range"},
		{"enp3s0f0", 0, net.HardwareAddr{0x01, 0, 0, 0, 0, 1}, 0, "multicast"},
		{"enp3s0f0", 0, net.HardwareAddr{1, 2, 3}, 0, "not a 6-byte"},
		{"", 0, mac, 0, "no PF name"},
	} {
		r := newFake()
		err := ConfigureVF(r, tc.pf, tc.vf, tc.mac, tc.vlan)
		if err == nil || !strings.Contains(err.Error(), tc.text) || len(r.calls) != 0 {
			t.Errorf("ConfigureVF(%q, %d, %v, %d) = %v after %q, want %q before any call", tc.pf, tc.vf, tc.mac, tc.vlan, err, r.calls, tc.text)
		}
	}
	if err := ConfigureVF(newFake(), "eth9", 0, mac, 0); !errors.Is(err, ErrNoSuchLink) {
		t.Errorf("missing PF: %v, want ErrNoSuchLink", err)
	}
	if err := ConfigureVF(nil, "eth9", 0, mac, 0); err == nil {
		t.Errorf("nil handle accepted")
	}
}

// fakeKernel is a pciSysfs over a fake tree whose writes are recorded and,
// like the kernel, act: unbind removes the device's driver link,
// drivers_probe binds an unbound device to its driver_override (when that
// driver "is loaded": has a directory under bus/pci/drivers) or else to its
// host driver.
type fakeKernel struct {
	f          *fakeSysfs
	hostDriver string
	writes     []string // "rel/path=value"
}

func (k *fakeKernel) sysfs() pciSysfs {
	return pciSysfs{root: k.f.root, write: k.write}
}

func (k *fakeKernel) write(path, value string) error {
	rel, err := filepath.Rel(k.f.root, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("write outside the sysfs root: %s", path)
	}
	k.writes = append(k.writes, filepath.ToSlash(rel)+"="+strings.ReplaceAll(value, "\n", `\n`))
	if err := writeSysfs(path, value); err != nil {
		return err
	}
	switch {
	case strings.HasSuffix(rel, "/driver/unbind"):
		// path resolved through the driver link; the device is in value.
		return os.Remove(filepath.Join(k.f.root, "bus/pci/devices", value, "driver"))
	case rel == "bus/pci/drivers_probe":
		dev := filepath.Join(k.f.root, "bus/pci/devices", value)
		if _, err := os.Lstat(filepath.Join(dev, "driver")); err == nil {
			return nil // already bound: probing does nothing
		}
		drv := strings.TrimSpace(k.f.read("bus/pci/devices/" + value + "/driver_override"))
		if drv == "" {
			drv = k.hostDriver
		}
		if _, err := os.Stat(k.f.path("bus/pci/drivers/" + drv)); err != nil {
			return nil // driver not loaded: the device stays unbound
		}
		return os.Symlink("../../../../bus/pci/drivers/"+drv, filepath.Join(dev, "driver"))
	}
	return nil
}

// newFakePCI makes bus/pci with the VF addr bound to driver ("" for none),
// the drivers in loaded having a directory with an unbind file.
func newFakePCI(t *testing.T, addr, driver string, loaded ...string) *fakeKernel {
	f := newFakeSysfs(t)
	f.file("bus/pci/drivers_probe", "")
	for _, d := range loaded {
		f.file("bus/pci/drivers/"+d+"/unbind", "")
	}
	dev := pfDevDir + "/" + addr
	f.file(dev+"/driver_override", "(null)\n")
	f.link("bus/pci/devices/"+addr, "../../../"+dev)
	if driver != "" {
		f.link(dev+"/driver", "../../../../bus/pci/drivers/"+driver)
	}
	return &fakeKernel{f: f, hostDriver: "iavf"}
}

func (k *fakeKernel) driver(t *testing.T, addr string) string {
	t.Helper()
	d, err := k.sysfs().driver(k.f.path("bus/pci/devices/" + addr))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBindVFIO(t *testing.T) {
	const addr = "0000:03:10.2"
	pci := pciAddr(0, 3, 0x10, 2)
	k := newFakePCI(t, addr, "iavf", "iavf", "vfio-pci")
	if err := k.sysfs().bindVFIO(pci); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bus/pci/devices/" + addr + "/driver_override=vfio-pci",
		"bus/pci/devices/" + addr + "/driver/unbind=" + addr,
		"bus/pci/drivers_probe=" + addr,
	}
	if !reflect.DeepEqual(k.writes, want) {
		t.Errorf("writes =\n%q\nwant\n%q", k.writes, want)
	}
	if got := k.f.read("bus/pci/drivers/iavf/unbind"); got != addr {
		t.Errorf("iavf's unbind got %q, want %q", got, addr)
	}
	if d := k.driver(t, addr); d != "vfio-pci" {
		t.Errorf("bound to %q after BindVFIO", d)
	}

	// Again: already vfio-pci's, only the override is (re)written.
	k.writes = nil
	if err := k.sysfs().bindVFIO(pci); err != nil {
		t.Fatal(err)
	}
	if want := []string{"bus/pci/devices/" + addr + "/driver_override=vfio-pci"}; !reflect.DeepEqual(k.writes, want) {
		t.Errorf("second BindVFIO writes %q, want %q", k.writes, want)
	}

	// And back.
	k.writes = nil
	if err := k.sysfs().unbindVFIO(pci); err != nil {
		t.Fatal(err)
	}
	want = []string{
		"bus/pci/devices/" + addr + "/driver_override=\\n",
		"bus/pci/devices/" + addr + "/driver/unbind=" + addr,
		"bus/pci/drivers_probe=" + addr,
	}
	if !reflect.DeepEqual(k.writes, want) {
		t.Errorf("UnbindVFIO writes =\n%q\nwant\n%q", k.writes, want)
	}
	if d := k.driver(t, addr); d != "iavf" {
		t.Errorf("bound to %q after UnbindVFIO, want the host driver iavf", d)
	}

	// A device on its host driver is left there by UnbindVFIO.
	k.writes = nil
	if err := k.sysfs().unbindVFIO(pci); err != nil {
		t.Fatal(err)
	}
	if want := []string{"bus/pci/devices/" + addr + "/driver_override=\\n"}; !reflect.DeepEqual(k.writes, want) {
		t.Errorf("UnbindVFIO of a host-bound device writes %q, want %q", k.writes, want)
	}
}

func TestBindVFIOUnboundDevice(t *testing.T) {
	const addr = "0000:03:10.4"
	k := newFakePCI(t, addr, "", "vfio-pci")
	if err := k.sysfs().bindVFIO(pciAddr(0, 3, 0x10, 4)); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bus/pci/devices/" + addr + "/driver_override=vfio-pci",
		"bus/pci/drivers_probe=" + addr,
	}
	if !reflect.DeepEqual(k.writes, want) {
		t.Errorf("writes = %q, want %q (no unbind for a device without a driver)", k.writes, want)
	}
}

func TestBindVFIONotLoaded(t *testing.T) {
	const addr = "0000:03:10.0"
	k := newFakePCI(t, addr, "iavf", "iavf") // no vfio-pci
	err := k.sysfs().bindVFIO(pciAddr(0, 3, 0x10, 0))
	if err == nil || !strings.Contains(err.Error(), "PCI device 0000:03:10.0: bind to vfio-pci: reprobe: device has no driver, not vfio-pci: is the vfio-pci module loaded?") {
		t.Fatalf("err = %v", err)
	}
	// Rolled back: override cleared, reprobed, the host driver has it again.
	want := []string{
		"bus/pci/devices/" + addr + "/driver_override=vfio-pci",
		"bus/pci/devices/" + addr + "/driver/unbind=" + addr,
		"bus/pci/drivers_probe=" + addr,
		"bus/pci/devices/" + addr + "/driver_override=\\n",
		"bus/pci/drivers_probe=" + addr,
	}
	if !reflect.DeepEqual(k.writes, want) {
		t.Errorf("writes =\n%q\nwant\n%q", k.writes, want)
	}
	if d := k.driver(t, addr); d != "iavf" {
		t.Errorf("bound to %q after a failed BindVFIO, want iavf back", d)
	}
}

func TestBindVFIOErrors(t *testing.T) {
	f := newFakeSysfs(t)
	err := BindVFIO(f.root, pciAddr(0, 9, 0, 0))
	if err == nil || !strings.Contains(err.Error(), "PCI device 0000:09:00.0: bind to vfio-pci: look up") {
		t.Errorf("BindVFIO of a missing device = %v", err)
	}
	err = UnbindVFIO(f.root, pciAddr(0, 9, 0, 0))
	if err == nil || !strings.Contains(err.Error(), "PCI device 0000:09:00.0: unbind from vfio-pci: look up") {
		t.Errorf("UnbindVFIO of a missing device = %v", err)
	}
	// A kernel without driver_override: the write fails, nothing else is
	// touched.
	k := newFakePCI(t, "0000:03:10.0", "iavf", "iavf", "vfio-pci")
	os.Remove(k.f.path(pfDevDir + "/0000:03:10.0/driver_override"))
	err = BindVFIO(k.f.root, pciAddr(0, 3, 0x10, 0))
	if err == nil || !strings.Contains(err.Error(), "set driver_override") {
		t.Errorf("BindVFIO without driver_override = %v", err)
	}
	if d := k.driver(t, "0000:03:10.0"); d != "iavf" {
		t.Errorf("driver = %q after a refused bind", d)
	}
}

// The real writer: whole value, truncating, never creating.
func TestWriteSysfs(t *testing.T) {
	f := newFakeSysfs(t)
	f.file("attr", "(null)\n")
	if err := writeSysfs(f.path("attr"), "vfio-pci"); err != nil {
		t.Fatal(err)
	}
	if got := f.read("attr"); got != "vfio-pci" {
		t.Errorf("attr = %q", got)
	}
	if err := writeSysfs(f.path("missing"), "x"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("write to a missing attribute = %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(f.path("missing")); err == nil {
		t.Errorf("writeSysfs created a file")
	}
}
