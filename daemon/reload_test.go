package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vnetd/vnetd/api"
)

func (e *testEnv) writeDef(t *testing.T, name, xml string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.m.cfg.ConfigDir, name+".xml"), []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
}

const isolatedXML = `<network><name>lab</name><bridge name='vbrlab'/><ip address='10.9.0.1' prefix='24'/></network>`

func TestReloadKeepsEverythingWhenAFileIsBad(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Define([]byte(natXML)); err != nil {
		t.Fatal(err)
	}
	before, _ := e.m.XML("default", true)
	sub := e.m.Events().Subscribe("")
	defer sub.Close()

	changed := strings.Replace(string(before), "192.168.122.254", "192.168.122.200", 1)
	e.writeDef(t, "default", changed)
	bad := []struct {
		name, xml, want string
	}{
		{"syntax", "<network><name>lab</name>", "lab.xml"},
		{"semantics", strings.Replace(isolatedXML, "<ip address='10.9.0.1' prefix='24'/>",
			"<ip address='10.9.0.1' prefix='24'><dhcp><range start='10.8.0.2' end='10.8.0.9'/></dhcp></ip>", 1), "network/ip[1]/dhcp/range[1]"},
		{"name differs from the file", strings.Replace(isolatedXML, "<name>lab</name>", "<name>other</name>", 1), `defines network "other"`},
		{"bridge of another network", strings.Replace(isolatedXML, "vbrlab", "virbr0", 1), `bridge name "virbr0" is already in use`},
		{"uuid of another network", strings.Replace(isolatedXML, "<name>lab</name>", "<name>lab</name><uuid>"+defUUID(t, e)+"</uuid>", 1), "is already the uuid of network"},
	}
	for _, tc := range bad {
		e.writeDef(t, "lab", tc.xml)
		err := e.m.Reload()
		if code(err) != api.CodeInvalidDefinition || !strings.Contains(err.Error(), tc.want) ||
			!strings.Contains(err.Error(), filepath.Join(e.m.cfg.ConfigDir, "lab.xml")) {
			t.Errorf("%s: reload: %v", tc.name, err)
		}
		if after, _ := e.m.XML("default", true); string(after) != string(before) {
			t.Fatalf("%s: a rejected reload changed default:\n%s", tc.name, after)
		}
		if _, err := e.m.Info("lab"); code(err) != api.CodeNotFound {
			t.Fatalf("%s: lab after a rejected reload: %v", tc.name, err)
		}
	}
	if got := drain(sub); len(got) != 0 {
		t.Fatalf("events of rejected reloads: %v", got)
	}

	e.writeDef(t, "lab", isolatedXML)
	if err := e.m.Reload(); err != nil {
		t.Fatal(err)
	}
	if after, _ := e.m.XML("default", true); string(after) != changed {
		t.Fatalf("default after reload:\n%s", after)
	}
	lab, err := e.m.XML("lab", true)
	if err != nil || !strings.Contains(string(lab), "<uuid>") || !strings.Contains(string(lab), "<mac address='52:54:00:") {
		t.Fatalf("lab not completed: %s %v", lab, err)
	}
	if onDisk, _ := os.ReadFile(filepath.Join(e.m.cfg.ConfigDir, "lab.xml")); string(onDisk) != string(lab) {
		t.Fatalf("completed definition not written back:\n%s", onDisk)
	}
	if diff := cmp.Diff([]string{"defined default", "defined lab"}, drain(sub)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if err := e.m.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := drain(sub); len(got) != 0 {
		t.Fatalf("events of a reload that changed nothing: %v", got)
	}
}

func defUUID(t *testing.T, e *testEnv) string {
	t.Helper()
	info, err := e.m.Info("default")
	if err != nil {
		t.Fatal(err)
	}
	return info.UUID
}

func TestReloadKeepsRunningNetworksRunning(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(natXML))
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	live, _ := e.m.XML("default", false)
	if _, err := e.m.Create([]byte(isolatedXML)); err != nil {
		t.Fatal(err)
	}
	sub := e.m.Events().Subscribe("")
	defer sub.Close()

	// default's file goes, lab (running, transient) gains one.
	os.Remove(filepath.Join(e.m.cfg.ConfigDir, "default.xml"))
	e.writeDef(t, "lab", isolatedXML)
	if err := e.m.Reload(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"undefined default", "defined lab"}, drain(sub)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	info, _ := e.m.Info("default")
	if !info.Active || info.Persistent {
		t.Fatalf("default after its file went: %+v", info)
	}
	if after, _ := e.m.XML("default", false); string(after) != string(live) {
		t.Fatalf("live definition changed by a reload:\n%s", after)
	}
	if info, _ := e.m.Info("lab"); !info.Active || !info.Persistent {
		t.Fatalf("lab after gaining a file: %+v", info)
	}
	// Both survive a restart with what the reload made of them.
	e.m.Close()
	e.open(t)
	if info, _ := e.m.Info("default"); !info.Active || info.Persistent {
		t.Fatalf("default after restart: %+v", info)
	}
	if err := e.m.Destroy("default"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Info("default"); code(err) != api.CodeNotFound {
		t.Fatalf("transient default after destroy: %v", err)
	}
}

func TestOpenLeavesOutBadFiles(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(natXML))
	e.m.Close()
	dir := filepath.Join(e.dir, "etc")
	os.WriteFile(filepath.Join(dir, "broken.xml"), []byte("<network>"), 0o600)
	os.WriteFile(filepath.Join(dir, "lab.xml"), []byte(isolatedXML), 0o600)
	e.open(t)
	list, err := e.m.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range list {
		names = append(names, n.Name)
	}
	if diff := cmp.Diff([]string{"default", "lab"}, names); diff != "" {
		t.Errorf("networks (-want +got):\n%s", diff)
	}
	// A file edited by hand counts only after a reload.
	e.writeDef(t, "lab", strings.Replace(isolatedXML, "10.9.0.1", "10.9.1.1", 1))
	if xml, _ := e.m.XML("lab", true); strings.Contains(string(xml), "10.9.1.1") {
		t.Fatal("edit on disk seen before a reload")
	}
}

func BenchmarkReload(b *testing.B) {
	for _, n := range []int{10, 200} {
		b.Run(fmt.Sprintf("networks=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			m, err := Open(Config{ConfigDir: filepath.Join(dir, "etc"), StateDir: filepath.Join(dir, "state"), Host: newFakeHost(), Firewall: newFakeFirewall()})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			for i := range n {
				xml := strings.NewReplacer("default", fmt.Sprintf("net%d", i), "192.168.122", fmt.Sprintf("10.%d.%d", i/250, i%250)).Replace(natXML)
				if _, err := m.Define([]byte(xml)); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				if err := m.Reload(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
