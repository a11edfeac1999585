package daemon

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/conf"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// hookNetXML is natXML with everything define would fill in given, so the
// hook input is the same on every run.
const hookNetXML = `<network connections='1'>
  <name>default</name>
  <uuid>81ff0d90-c91e-6742-64da-4a736edb9a9b</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:0a:cd:21'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>`

const hookPortXML = `<networkport>
  <uuid>5d744f21-ba4a-4d6e-bdb2-30a35ff3207d</uuid>
  <owner><name>vm</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner>
  <mac address='52:54:00:7b:35:93'/>
  <plug type='network' bridge='virbr0'/>
</networkport>`

func TestHookInputGolden(t *testing.T) {
	n, err := conf.Parse([]byte(hookNetXML))
	if err != nil {
		t.Fatal(err)
	}
	p, err := conf.ParsePort([]byte(hookPortXML))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		golden string
		port   *conf.Port
	}{
		{"network.golden", nil},
		{"network-port.golden", p},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			got := hookInput(n, tc.port)
			path := filepath.Join("testdata", "hooks", tc.golden)
			if *update {
				os.MkdirAll(filepath.Dir(path), 0o755)
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("hook input (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHookArgsAndEnv(t *testing.T) {
	args := []struct {
		op   string
		want string
	}{
		{hookStart, "net start begin -"},
		{hookStarted, "net started begin -"},
		{hookStopped, "net stopped end -"},
		{hookPortCreated, "net port-created begin -"},
		{hookPortDeleted, "net port-deleted begin -"},
		{hookUpdated, "net updated begin -"},
	}
	for _, tc := range args {
		if got := strings.Join(hookArgs("net", tc.op), " "); got != tc.want {
			t.Errorf("%s: args %q, want %q", tc.op, got, tc.want)
		}
	}

	envs := []struct {
		name string
		vars map[string]string
		want []string
	}{
		{"empty", nil, []string{"LC_ALL=C", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		{"passes the common ones only", map[string]string{"PATH": "/bin", "HOME": "/root", "NOTIFY_SOCKET": "/run/systemd/notify", "USER": "root", "LANG": "de_DE"},
			[]string{"LC_ALL=C", "PATH=/bin", "HOME=/root", "USER=root"}},
	}
	for _, tc := range envs {
		got := hookEnv(func(k string) string { return tc.vars[k] })
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: env (-want +got):\n%s", tc.name, diff)
		}
	}
}

func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestHookRunner(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		script  string
		timeout time.Duration
		wantErr string // "" means success
	}{
		{"success reads stdin", `test "$(cat)" = "<hookData/>" || exit 9`, time.Minute, ""},
		{"failure carries stderr", "echo 'Could not find required XYZZY' >&2\nexit 1", time.Minute, "exit status 1: Could not find required XYZZY"},
		{"stderr is bounded", "head -c 100000 /dev/zero | tr '\\0' x >&2\nexit 2", time.Minute, "xxx [...]"},
		{"hung hook is killed", "sleep 30 &\nsleep 30", 200 * time.Millisecond, "killed after 200ms"},
		{"environment is minimal", `test -z "$NOTIFY_SOCKET" && test "$LC_ALL" = C || exit 5`, time.Minute, ""},
	}
	t.Setenv("NOTIFY_SOCKET", "/nonexistent")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			writeScript(t, path, tc.script)
			h := hookRunner{path: path, timeout: tc.timeout, env: hookEnv(os.Getenv)}
			if !h.present() {
				t.Fatal("executable hook not present")
			}
			began := time.Now()
			err := h.run(hookArgs("net", hookStart), []byte("<hookData/>"))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("hook failed: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if err != nil && len(err.Error()) > hookStderrMax+100 {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
			if took := time.Since(began); took > 5*time.Second {
				t.Errorf("took %v", took)
			}
		})
	}
	plain := filepath.Join(dir, "not-executable")
	os.WriteFile(plain, []byte("#!/bin/sh\nexit 1\n"), 0o644)
	for _, path := range []string{plain, filepath.Join(dir, "missing"), dir} {
		if (hookRunner{path: path}).present() {
			t.Errorf("%s counts as a hook", path)
		}
	}
}

// recordingHook installs a network hook in e's config dir that logs each
// call's arguments (one line each in calls) and stdin (in OP.stdin), and
// fails the operations in failOps with a message on stderr.
func recordingHook(t *testing.T, e *testEnv, failOps ...string) (calls func() []string, stdin func(op string) string) {
	t.Helper()
	logDir := t.TempDir()
	fail := "none"
	if len(failOps) > 0 {
		fail = strings.Join(failOps, "|")
	}
	writeScript(t, hookPath(e.m.cfg.ConfigDir), `echo "$*" >> `+logDir+`/calls
cat > `+logDir+`/"$2".stdin
case "$2" in `+fail+`) echo "hook says no to $2" >&2; exit 1;; esac
`)
	calls = func() []string {
		data, _ := os.ReadFile(filepath.Join(logDir, "calls"))
		return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(data)), " ", "_"))
	}
	stdin = func(op string) string {
		data, _ := os.ReadFile(filepath.Join(logDir, op+".stdin"))
		return string(data)
	}
	return calls, stdin
}

func TestHooksFollowTheLifecycle(t *testing.T) {
	e := newEnv(t)
	calls, stdin := recordingHook(t, e)
	if _, err := e.m.Define([]byte(natXML)); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	e.host.links["vnet0"] = true
	if _, err := e.m.CreatePort("default", []byte(portXML), PortOptions{Attach: "vnet0", TapOwner: -1}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.DeletePort("default", portID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Update("default", api.UpdateRequest{Command: "add-last", Section: "ip-dhcp-host", ParentIndex: -1,
		XML: "<host mac='52:54:00:00:00:07' ip='192.168.122.7'/>"}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Destroy("default"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"default_start_begin_-",
		"default_started_begin_-",
		"default_port-created_begin_-",
		"default_port-deleted_begin_-",
		"default_updated_begin_-",
		"default_stopped_end_-",
	}
	if diff := cmp.Diff(want, calls()); diff != "" {
		t.Errorf("hook calls (-want +got):\n%s", diff)
	}
	for op, want := range map[string][]string{
		"start":        {"<hookData>\n  <network>\n    <name>default</name>", "<bridge name='virbr0'"},
		"port-created": {"<network connections='1'>", "  <networkport>\n    <uuid>" + portID, "<plug type='network' bridge='virbr0'/>", "</networkport>\n</hookData>"},
		"port-deleted": {"<networkport>"},
		"updated":      {"<host mac='52:54:00:00:00:07' ip='192.168.122.7'/>"},
	} {
		got := stdin(op)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s hook stdin lacks %q:\n%s", op, w, got)
			}
		}
	}
	if strings.Contains(stdin("port-deleted"), "connections=") {
		t.Errorf("port-deleted shows the network before the release:\n%s", stdin("port-deleted"))
	}
}

func TestFailingStartHookLeavesNothingBehind(t *testing.T) {
	for _, op := range []string{hookStart, hookStarted} {
		t.Run(op, func(t *testing.T) {
			e := newEnv(t)
			calls, _ := recordingHook(t, e, op)
			e.m.Define([]byte(natXML))
			sub := e.m.Events().Subscribe("")
			defer sub.Close()
			err := e.m.Start("default")
			if code(err) != api.CodeOperationFailed || !strings.Contains(err.Error(), "hook says no to "+op) ||
				!strings.Contains(err.Error(), "default "+op+" begin -") {
				t.Fatalf("start with a failing %s hook: %v", op, err)
			}
			e.m.awaitReaped("virbr0")
			if len(e.host.bridges) != 0 || len(e.fw.applied) != 0 {
				t.Fatalf("left behind: bridges %v rules %v", e.host.bridges, e.fw.applied)
			}
			if recs, _ := e.m.state.all(); len(recs) != 0 {
				t.Fatalf("live state left: %+v", recs)
			}
			if info, _ := e.m.Info("default"); info.Active {
				t.Fatal("network active after a failed start")
			}
			if got := calls(); got[len(got)-1] != "default_"+op+"_begin_-" {
				t.Fatalf("hooks run after the failing one: %v", got)
			}
			select {
			case ev := <-sub.C():
				t.Fatalf("event for a failed start: %+v", ev)
			default:
			}
			if op == hookStart && e.fw.applies != 0 {
				t.Fatal("the firewall was touched before the start hook")
			}
		})
	}
}

func TestFailingPortCreatedHookRollsThePortBack(t *testing.T) {
	e := newEnv(t)
	recordingHook(t, e, hookPortCreated)
	e.m.Define([]byte(natXML))
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	_, err := e.m.CreatePort("default", []byte(portXML), PortOptions{Tap: "vnet7", TapOwner: -1})
	if code(err) != api.CodeOperationFailed || !strings.Contains(err.Error(), "hook says no to port-created") {
		t.Fatalf("port with a failing hook: %v", err)
	}
	if list, _ := e.m.ListPorts("default"); len(list) != 0 {
		t.Fatalf("ports: %+v", list)
	}
	if e.host.links["vnet7"] || len(e.host.attached) != 0 {
		t.Fatalf("tap left: links %v attached %v", e.host.links, e.host.attached)
	}
	if live, _ := e.m.XML("default", false); strings.Contains(string(live), "connections") {
		t.Fatalf("connection still counted:\n%s", live)
	}
}

func TestFailingNotifyHooksChangeNothing(t *testing.T) {
	e := newEnv(t)
	recordingHook(t, e, hookStopped, hookPortDeleted, hookUpdated)
	e.m.Define([]byte(natXML))
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	e.host.links["vnet0"] = true
	if _, err := e.m.CreatePort("default", []byte(portXML), PortOptions{Attach: "vnet0", TapOwner: -1}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.DeletePort("default", portID); err != nil {
		t.Fatalf("port-deleted hook failure failed the delete: %v", err)
	}
	if _, err := e.m.Update("default", api.UpdateRequest{Command: "add-last", Section: "ip-dhcp-host", ParentIndex: -1,
		XML: "<host mac='52:54:00:00:00:07' ip='192.168.122.7'/>"}); err != nil {
		t.Fatalf("updated hook failure failed the update: %v", err)
	}
	if err := e.m.Destroy("default"); err != nil {
		t.Fatalf("stopped hook failure failed the destroy: %v", err)
	}
}

// What a hook adds to each operation that runs it: a fork and exec of the
// script, plus the script itself (here a shell that reads stdin and exits).
func BenchmarkHookRun(b *testing.B) {
	path := filepath.Join(b.TempDir(), "network")
	os.WriteFile(path, []byte("#!/bin/sh\ncat >/dev/null\n"), 0o755)
	n, err := conf.Parse([]byte(hookNetXML))
	if err != nil {
		b.Fatal(err)
	}
	h := hookRunner{path: path, timeout: time.Minute, env: hookEnv(os.Getenv)}
	for b.Loop() {
		if err := h.run(hookArgs(n.Name, hookStart), hookInput(n, nil)); err != nil {
			b.Fatal(err)
		}
	}
}
