package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vnetd/vnetd/api"
)

func tftpXML(name, root string) []byte {
	return []byte(`<network><name>` + name + `</name><forward mode='nat'/>
  <ip address='192.168.150.1' prefix='24'><tftp root='` + root + `'/></ip>
</network>`)
}

// TestTFTPRootBase: with --tftp-root-base, a <tftp root> must resolve to
// the base or below it, at net-define, net-create and net-start; without
// it any directory is served.
func TestTFTPRootBase(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{filepath.Join(base, "pxe"), outside, filepath.Join(dir, "basement")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		filepath.Join(base, "out"):     outside,                    // a way out of the base
		filepath.Join(outside, "in"):   filepath.Join(base, "pxe"), // a way into it
		filepath.Join(dir, "baselink"): base,                       // the base under another name
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}

	e := &testEnv{dir: t.TempDir(), host: newFakeHost(), fw: newFakeFirewall()}
	m, err := Open(Config{ConfigDir: filepath.Join(e.dir, "etc"), StateDir: filepath.Join(e.dir, "state"),
		Host: e.host, Firewall: e.fw, TFTPRootBase: filepath.Join(dir, "baselink")})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i, tc := range []struct {
		name, root string
		ok         bool
	}{
		{"the base", base, true},
		{"below", filepath.Join(base, "pxe"), true},
		{"symlink into the base", filepath.Join(outside, "in"), true},
		{"outside", outside, false},
		{"root", "/", false},
		{"symlink out of the base", filepath.Join(base, "out"), false},
		{"dotdot out of the base", filepath.Join(base, "pxe") + "/../../outside", false},
		{"sibling with the base as prefix", filepath.Join(dir, "basement"), false},
		{"missing", filepath.Join(base, "nosuch"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "t" + string(rune('a'+i))
			_, defErr := m.Define(tftpXML(name, tc.root))
			_, createErr := m.Create(tftpXML(name+"c", tc.root))
			for op, err := range map[string]error{"define": defErr, "create": createErr} {
				if tc.ok {
					if err != nil {
						t.Errorf("%s: %v", op, err)
					}
					continue
				}
				if err == nil {
					t.Errorf("%s of <tftp root='%s'> accepted", op, tc.root)
				} else if msg := err.Error(); code(err) != api.CodeInvalidDefinition ||
					!strings.Contains(msg, "<tftp root='"+tc.root+"'>") || !strings.Contains(msg, "--tftp-root-base "+filepath.Join(dir, "baselink")) {
					t.Errorf("%s: %s error %q, want %s naming <tftp root> and the base", op, code(err), msg, api.CodeInvalidDefinition)
				}
			}
		})
	}
	m.Close()

	// A definition stored without a base does not start under one.
	e2 := &testEnv{dir: t.TempDir(), host: newFakeHost(), fw: newFakeFirewall()}
	e2.open(t)
	if _, err := e2.m.Define(tftpXML("old", outside)); err != nil {
		t.Fatalf("no base: %v", err)
	}
	e2.m.Close()
	m2, err := Open(Config{ConfigDir: filepath.Join(e2.dir, "etc"), StateDir: filepath.Join(e2.dir, "state"),
		Host: e2.host, Firewall: e2.fw, TFTPRootBase: base})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := m2.Start("old"); err == nil || !strings.Contains(err.Error(), "<tftp root='"+outside+"'>") {
		t.Errorf("start of a definition outside the base: %v", err)
	}
	if e2.host.bridges["virbr0"] != 0 {
		t.Error("refused network was started on the host")
	}
}
