package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vnetd/vnetd/api"
)

func netXML(name, uuid, extra string) string {
	u := ""
	if uuid != "" {
		u = "<uuid>" + uuid + "</uuid>"
	}
	return "<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\nOVERWRITTEN AND LOST.\n-->\n" +
		"<network><name>" + name + "</name>" + u + "<forward/>" + extra + "<ip address='192.168.9.1' prefix='24'/></network>\n"
}

const (
	uuidA = "81ff0d90-c91e-6742-64da-4a736edb9a9b"
	uuidB = "81ff0d90-c91e-6742-64da-4a736edb9a9c"
	uuidC = "81ff0d90-c91e-6742-64da-4a736edb9a9d"
)

// libvirtDir writes files (name → content; content "->TARGET" is a symlink)
// into a fresh directory.
func libvirtDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(content, "->"); ok {
			err = os.Symlink(target, path)
		} else {
			err = os.WriteFile(path, []byte(content), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// scanned is the comparable part of an importItem.
type scanned struct {
	File, Name, UUID string
	Autostart        bool
	Action           importAction
	Why              string // Reason, Err or Note, whichever is set
}

func summarize(items []importItem) []scanned {
	var out []scanned
	for _, it := range items {
		s := scanned{File: it.File, Name: it.Name, UUID: it.UUID, Autostart: it.Autostart, Action: it.Action, Why: it.Reason + it.Note}
		if it.Err != nil {
			s.Why = it.Err.Error()
		}
		out = append(out, s)
	}
	return out
}

func TestScanLibvirtDir(t *testing.T) {
	opts := `<dnsmasq:options xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'><dnsmasq:option value='foo=bar'/></dnsmasq:options>`
	tests := []struct {
		name  string
		files map[string]string
		want  []scanned
		// wantWhy are substrings of Why, by file, checked instead of Why.
		wantWhy map[string]string
	}{
		{
			name: "libvirt's absolute links dangle in a copied directory and still count",
			files: map[string]string{
				"default.xml":           netXML("default", uuidA, ""),
				"autostart/default.xml": "->/etc/libvirt/qemu/networks/default.xml",
				"isolated.xml":          netXML("isolated", uuidB, ""),
			},
			want: []scanned{
				{File: "default.xml", Name: "default", UUID: uuidA, Autostart: true},
				{File: "isolated.xml", Name: "isolated", UUID: uuidB},
			},
		},
		{
			name: "relative link, plain file marker, other files ignored",
			files: map[string]string{
				"a.xml":           netXML("a", "", ""),
				"b.xml":           netXML("b", uuidB, ""),
				"autostart/a.xml": "->../a.xml",
				"autostart/b.xml": "",
				"README":          "not a network",
				".tmp.xml":        "half-written",
				"sub/c.xml":       netXML("c", "", ""),
			},
			want: []scanned{
				{File: "a.xml", Name: "a", Autostart: true},
				{File: "b.xml", Name: "b", UUID: uuidB, Autostart: true},
			},
		},
		{
			name: "what cannot be imported, and why",
			files: map[string]string{
				"wrong.xml":               netXML("other", "", ""),
				"bad.xml":                 "<network><name>bad</name><bogus/></network>",
				"autostart/gone.xml":      "->/etc/libvirt/qemu/networks/gone.xml",
				"elsewhere.xml":           netXML("elsewhere", "", ""),
				"autostart/elsewhere.xml": "->/etc/libvirt/qemu/networks/default.xml",
				"opts.xml":                netXML("opts", "", opts),
			},
			want: []scanned{
				{File: "autostart/gone.xml", Name: "gone", Action: actionSkip},
				{File: "bad.xml", Action: actionFail},
				{File: "elsewhere.xml", Name: "elsewhere"},
				{File: "opts.xml", Name: "opts"},
				{File: "wrong.xml", Name: "other", Action: actionSkip},
			},
			wantWhy: map[string]string{
				"autostart/gone.xml": "autostart link without a definition gone.xml",
				"bad.xml":            "bogus",
				"elsewhere.xml":      "points to /etc/libvirt/qemu/networks/default.xml, not to elsewhere.xml: not marked to autostart",
				"opts.xml":           "vnetd will refuse to start it",
				"wrong.xml":          `libvirt ignores it: network/name is "other", so the file would be other.xml`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			items, err := scanLibvirtDir(libvirtDir(t, tc.files))
			if err != nil {
				t.Fatal(err)
			}
			got := summarize(items)
			for i := range got {
				if want, ok := tc.wantWhy[got[i].File]; ok {
					if !strings.Contains(got[i].Why, want) {
						t.Errorf("%s: %q lacks %q", got[i].File, got[i].Why, want)
					}
					got[i].Why = ""
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("scan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScanLibvirtDirMissing(t *testing.T) {
	_, err := scanLibvirtDir(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "libvirt network directory") {
		t.Fatalf("err = %v", err)
	}
}

func TestPlanImport(t *testing.T) {
	existing := []api.NetworkInfo{
		{Name: "default", UUID: uuidA},
		{Name: "taken", UUID: uuidB},
	}
	item := func(file, name, uuid string) importItem {
		return importItem{File: file, Name: name, UUID: uuid}
	}
	items := []importItem{
		item("default.xml", "default", strings.ToUpper(uuidA)), // same network, uuid spelt otherwise
		item("taken.xml", "taken", uuidC),                      // name taken by another network
		item("renamed.xml", "renamed", uuidB),                  // uuid taken under another name
		item("new.xml", "new", uuidC),
		item("twin.xml", "twin", uuidC), // same uuid as new.xml
		item("nouuid.xml", "nouuid", ""),
		{File: "bad.xml", Action: actionFail, Err: errors.New("broken")},
		{File: "wrong.xml", Name: "default", Action: actionSkip, Reason: "libvirt ignores it"},
	}
	got := summarize(planImport(items, existing))
	want := []scanned{
		{File: "default.xml", Name: "default", UUID: strings.ToUpper(uuidA), Action: actionSkip, Why: "already defined in vnetd"},
		{File: "taken.xml", Name: "taken", UUID: uuidC, Action: actionSkip, Why: `vnetd already has a network "taken", with uuid ` + uuidB},
		{File: "renamed.xml", Name: "renamed", UUID: uuidB, Action: actionSkip, Why: "uuid " + uuidB + ` is already vnetd's network "taken"`},
		{File: "new.xml", Name: "new", UUID: uuidC},
		{File: "twin.xml", Name: "twin", UUID: uuidC, Action: actionSkip, Why: "uuid " + uuidC + " is also the uuid of new.xml"},
		{File: "nouuid.xml", Name: "nouuid"},
		{File: "bad.xml", Action: actionFail, Why: "broken"},
		{File: "wrong.xml", Name: "default", Action: actionSkip, Why: "libvirt ignores it"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if got := summarize(planImport(items[:1], nil)); got[0].Action != actionDefine {
		t.Errorf("without existing networks: %+v", got[0])
	}
}

// fakeDaemon records what import-libvirt asks of vnetd.
type fakeDaemon struct {
	calls     []string
	defineErr map[string]error // by name
	autoErr   error
}

func (f *fakeDaemon) Define(_ context.Context, xml []byte) (api.NetworkInfo, error) {
	name := between(string(xml), "<name>", "</name>")
	f.calls = append(f.calls, "define "+name)
	if err := f.defineErr[name]; err != nil {
		return api.NetworkInfo{}, err
	}
	return api.NetworkInfo{Name: name}, nil
}

func (f *fakeDaemon) SetAutostart(_ context.Context, id string, on bool) error {
	f.calls = append(f.calls, "autostart "+id)
	return f.autoErr
}

func between(s, a, b string) string {
	_, s, _ = strings.Cut(s, a)
	s, _, _ = strings.Cut(s, b)
	return s
}

func TestRunImport(t *testing.T) {
	invalid := []byte("<network><name>inv</name><forward/><ip address='192.168.9.1' prefix='24'><dhcp><range start='10.0.0.1' end='10.0.0.2'/></dhcp></ip></network>")
	items := []importItem{
		{File: "a.xml", Name: "a", XML: []byte(netXML("a", "", "")), Autostart: true},
		{File: "b.xml", Name: "b", XML: []byte(netXML("b", "", "")), Note: "vnetd will refuse to start it: x"},
		{File: "inv.xml", Name: "inv", XML: invalid},
		{File: "s.xml", Name: "s", Action: actionSkip, Reason: "already defined in vnetd"},
		{File: "f.xml", Action: actionFail, Err: errors.New("line 1\n  line 2")},
	}
	tests := []struct {
		name   string
		fake   *fakeDaemon
		dryRun bool
		want   []importResult
		calls  []string
	}{
		{
			name: "import",
			fake: &fakeDaemon{defineErr: map[string]error{"inv": &api.Error{Code: api.CodeInvalidDefinition,
				Message: "network/ip[1]/dhcp/range[1] (line 1): range is not within the network\nsecond problem"}}},
			want: []importResult{
				{"a.xml", "a", "yes", "imported", false},
				{"b.xml", "b", "no", "imported (vnetd will refuse to start it: x)", false},
				{"inv.xml", "inv", "no", "failed: network/ip[1]/dhcp/range[1] (line 1): range is not within the network; second problem", true},
				{"s.xml", "s", "no", "skipped: already defined in vnetd", false},
				{"f.xml", "-", "no", "failed: line 1; line 2", true},
			},
			calls: []string{"define a", "autostart a", "define b", "define inv"},
		},
		{
			name: "autostart refused",
			fake: &fakeDaemon{autoErr: &api.Error{Message: "no"}},
			want: []importResult{
				{"a.xml", "a", "yes", "failed: defined, but not marked to autostart: no", true},
				{"b.xml", "b", "no", "imported (vnetd will refuse to start it: x)", false},
				{"inv.xml", "inv", "no", "imported", false},
				{"s.xml", "s", "no", "skipped: already defined in vnetd", false},
				{"f.xml", "-", "no", "failed: line 1; line 2", true},
			},
			calls: []string{"define a", "autostart a", "define b", "define inv"},
		},
		{
			name:   "dry run validates and defines nothing",
			fake:   &fakeDaemon{},
			dryRun: true,
			want: []importResult{
				{"a.xml", "a", "yes", "would import", false},
				{"b.xml", "b", "no", "would import (vnetd will refuse to start it: x)", false},
				{"inv.xml", "inv", "no", "", true},
				{"s.xml", "s", "no", "skipped: already defined in vnetd", false},
				{"f.xml", "-", "no", "failed: line 1; line 2", true},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runImport(context.Background(), tc.fake, items, tc.dryRun)
			if tc.dryRun {
				// The validation message is conf's; that it names the element is enough here.
				if !strings.HasPrefix(got[2].Result, "failed: network/ip[1]/dhcp/range[1]") {
					t.Errorf("dry run of an invalid definition: %q", got[2].Result)
				}
				got[2].Result = ""
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.calls, tc.fake.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestImportLibvirtArguments(t *testing.T) {
	for _, args := range [][]string{{"import-libvirt", "a", "b"}, {"import-libvirt", "--bogus"}} {
		var stdout, stderr strings.Builder
		if got := run(args, &stdout, &stderr); got != 2 {
			t.Errorf("%v: status %d, want 2", args, got)
		}
		if !strings.Contains(stderr.String(), "usage: vnetctl import-libvirt") {
			t.Errorf("%v: stderr %q lacks the usage", args, stderr.String())
		}
	}
	// A dry run works without a daemon: it only cannot check for conflicts.
	dir := libvirtDir(t, map[string]string{"default.xml": netXML("default", uuidA, "")})
	var stdout, stderr strings.Builder
	got := run([]string{"--socket", filepath.Join(t.TempDir(), "none.sock"), "import-libvirt", "--dry-run", dir}, &stdout, &stderr)
	if got != 0 || !strings.Contains(stdout.String(), "would import") || !strings.Contains(stderr.String(), "not checked against vnetd's networks") {
		t.Errorf("dry run without daemon: status %d\nstdout %s\nstderr %s", got, stdout.String(), stderr.String())
	}
}
