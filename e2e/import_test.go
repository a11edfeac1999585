package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/client"
	"github.com/vnetd/vnetd/internal/nettest"
)

// libvirtCorpus is libvirt's conformance corpus ($VNETD_LIBVIRT_TESTDATA,
// else ../../shared/conformance/libvirt), or "" when it is not there. It is
// read in place.
func libvirtCorpus() string {
	dir := os.Getenv("VNETD_LIBVIRT_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "conformance", "libvirt")
	}
	if _, err := os.Stat(filepath.Join(dir, "tests", "networkxml2xmlout")); err != nil {
		return ""
	}
	return dir
}

// TestImportLibvirt imports a libvirt network directory laid out as
// /etc/libvirt/qemu/networks is, with libvirt's absolute autostart links
// (dangling in the copy), and checks what the daemon then has.
func TestImportLibvirt(t *testing.T) {
	nettest.SkipUnlessRoot(t)
	host := nettest.NewNS(t, "imp")
	d := startDaemon(t, host, t.TempDir())

	dir := t.TempDir()
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := func(name string) {
		t.Helper()
		os.MkdirAll(filepath.Join(dir, "autostart"), 0o755)
		if err := os.Symlink("/etc/libvirt/qemu/networks/"+name, filepath.Join(dir, "autostart", name)); err != nil {
			t.Fatal(err)
		}
	}
	def, err := os.ReadFile("../testdata/networks/default.xml")
	if err != nil {
		t.Fatal(err)
	}
	write("default.xml", def)
	// libvirt's persistent files start with its warning comment.
	write("isolated.xml", []byte(`<!--
WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE
OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:
  virsh net-edit isolated
or other application using the libvirt API.
-->

<network>
  <name>isolated</name>
  <uuid>5b2b2d28-7a0a-4c3e-9d38-2f7c8f4a0c11</uuid>
  <bridge name='virbr7' stp='on' delay='0'/>
  <ip address='192.168.150.1' netmask='255.255.255.0'/>
</network>
`))
	link("isolated.xml")
	want := map[string]bool{"default": false, "isolated": true} // name → autostart
	if corpus := libvirtCorpus(); corpus != "" {
		data, err := os.ReadFile(filepath.Join(corpus, "tests", "networkxml2xmlout", "isolated-network.xml"))
		if err != nil {
			t.Fatal(err)
		}
		write("private.xml", data)
		link("private.xml")
		want["private"] = true
	} else {
		t.Log("libvirt corpus not found: importing vnetd's own files only")
	}
	write("broken.xml", []byte(`<network><name>broken</name><forward/>
<ip address='192.168.9.1' prefix='24'><dhcp><range start='10.0.0.1' end='10.0.0.2'/></dhcp></ip></network>`))

	// lineOf is the table row of a file.
	lineOf := func(out, file string) string {
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == file {
				return l
			}
		}
		t.Fatalf("no row for %s in\n%s", file, out)
		return ""
	}

	// A dry run defines nothing, and finds the broken file all the same.
	out, status := importCtl(d, "--dry-run", dir)
	if status != 1 {
		t.Errorf("dry run: status %d, want 1\n%s", status, out)
	}
	for name := range want {
		if l := lineOf(out, name+".xml"); !strings.Contains(l, "would import") {
			t.Errorf("dry run: %s", l)
		}
	}
	if l := lineOf(out, "broken.xml"); !strings.Contains(l, "failed: network/ip[1]/dhcp/range[1]") {
		t.Errorf("dry run: %s", l)
	}
	if got := listed(t, d); len(got) != 0 {
		t.Fatalf("a dry run defined %v", got)
	}

	out, status = importCtl(d, dir)
	if status != 1 {
		t.Errorf("import: status %d, want 1 (broken.xml failed)\n%s", status, out)
	}
	for name := range want {
		if l := lineOf(out, name+".xml"); !strings.Contains(l, "imported") {
			t.Errorf("import: %s", l)
		}
	}
	// The daemon's validation, naming the element and why.
	if l := lineOf(out, "broken.xml"); !strings.Contains(l, "failed: network/ip[1]/dhcp/range[1]") || !strings.Contains(l, "192.168.9.0/24") {
		t.Errorf("import: %s", l)
	}
	got := listed(t, d)
	if len(got) != len(want) {
		t.Errorf("networks after import: %v, want %v", got, want)
	}
	for name, auto := range want {
		if a, ok := got[name]; !ok || a != auto {
			t.Errorf("network %s: defined %v, autostart %v; want autostart %v", name, ok, a, auto)
		}
	}
	if u := strings.TrimSpace(d.mustCtl("net-uuid", "isolated")); u != "5b2b2d28-7a0a-4c3e-9d38-2f7c8f4a0c11" {
		t.Errorf("isolated kept uuid %q, not libvirt's", u)
	}
	// What shell completion offers.
	names := strings.Fields(d.mustCtl("net-list", "--all", "--name"))
	if len(names) != len(want) || !slices.IsSorted(names) {
		t.Errorf("net-list --all --name: %q, want the names of %v", names, want)
	}

	// Importing again overwrites nothing: every network is skipped.
	os.Remove(filepath.Join(dir, "broken.xml"))
	out, status = importCtl(d, dir)
	if status != 0 {
		t.Errorf("second import: status %d\n%s", status, out)
	}
	for name := range want {
		if l := lineOf(out, name+".xml"); !strings.Contains(l, "skipped: already defined in vnetd") {
			t.Errorf("second import: %s", l)
		}
	}
}

func importCtl(d *daemon, args ...string) (string, int) {
	out, err := d.vnetctl(append([]string{"import-libvirt"}, args...)...)
	if err == nil {
		return out, 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return out, ee.ExitCode()
	}
	d.t.Fatalf("vnetctl import-libvirt: %v\n%s", err, out)
	return "", 0
}

func listed(t *testing.T, d *daemon) map[string]bool {
	t.Helper()
	list, err := client.New(d.socket).List(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, n := range list {
		got[n.Name] = n.Autostart
	}
	return got
}
