package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseUsage(t *testing.T) {
	tests := []struct {
		usage string
		flags []usageFlag
		args  []string
	}{
		{"net-list [--all] [--name] [--json]", []usageFlag{{"all", ""}, {"name", ""}, {"json", ""}}, nil},
		{"net-dhcp-leases NET [--mac MAC] [--json]", []usageFlag{{"mac", "MAC"}, {"json", ""}}, []string{"NET"}},
		{"import-libvirt [--dry-run] [DIR]", []usageFlag{{"dry-run", ""}}, []string{"DIR"}},
		{"net-port-create NET FILE [--attach IFNAME | --tap IFNAME [--tap-owner UID] [--multi-queue]]",
			[]usageFlag{{"attach", "IFNAME"}, {"tap", "IFNAME"}, {"tap-owner", "UID"}, {"multi-queue", ""}}, []string{"NET", "FILE"}},
		{"net-port-set-bandwidth NET UUID [--inbound AVG[,PEAK[,BURST[,FLOOR]]]] [--outbound AVG[,PEAK[,BURST]]]",
			[]usageFlag{{"inbound", "AVG[,PEAK[,BURST[,FLOOR]]]"}, {"outbound", "AVG[,PEAK[,BURST]]"}}, []string{"NET", "UUID"}},
		{"net-update NAME COMMAND SECTION XML|FILE [--parent-index N] [--live] [--config]",
			[]usageFlag{{"parent-index", "N"}, {"live", ""}, {"config", ""}}, []string{"NAME", "COMMAND", "SECTION", "XML|FILE"}},
		{"net-validate FILE...", nil, []string{"FILE..."}},
		{"net-event [NETWORK] [--event lifecycle|port|lease] [--loop] [--timeout N]",
			[]usageFlag{{"event", "lifecycle|port|lease"}, {"loop", ""}, {"timeout", "N"}}, []string{"NETWORK"}},
	}
	for _, tc := range tests {
		flags, args := parseUsage(tc.usage)
		if diff := cmp.Diff(tc.flags, flags, cmp.AllowUnexported(usageFlag{})); diff != "" {
			t.Errorf("%s: flags (-want +got):\n%s", tc.usage, diff)
		}
		if diff := cmp.Diff(tc.args, args); diff != "" {
			t.Errorf("%s: args (-want +got):\n%s", tc.usage, diff)
		}
	}
}

func TestArgKind(t *testing.T) {
	tests := []struct{ verb, placeholder, want string }{
		{"net-start", "NAME", "network"},
		{"net-port-list", "NET", "network"},
		{"net-validate", "FILE...", "file..."},
		{"net-update", "XML|FILE", "file"},
		{"import-libvirt", "DIR", "dir"},
		{"net-update", "COMMAND", "words:modify,delete,add-last,add-first,add"},
		{"net-update", "SECTION", "words:bridge,domain,ip,ip-dhcp-host,ip-dhcp-range,forward,forward-interface,forward-pf,portgroup,dns-host,dns-txt,dns-srv"},
		{"net-port-delete", "UUID", ""},
	}
	for _, tc := range tests {
		if got := argKind(tc.verb, tc.placeholder); got != tc.want {
			t.Errorf("argKind(%s, %s) = %q, want %q", tc.verb, tc.placeholder, got, tc.want)
		}
	}
	if got := argKind("help", "COMMAND"); !strings.Contains(got, ",net-list,") {
		t.Errorf("help COMMAND completes %q", got)
	}
}

// TestCompletionSyntax runs each shell's parser over its script, when the
// shell is installed (bash always is here).
func TestCompletionSyntax(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		script, err := completionScript(shell)
		if err != nil {
			t.Fatal(err)
		}
		path, err := exec.LookPath(shell)
		if err != nil {
			if shell == "bash" {
				t.Fatal("bash not found")
			}
			t.Logf("%s not installed: its script is not checked", shell)
			continue
		}
		file := filepath.Join(t.TempDir(), "vnetctl."+shell)
		os.WriteFile(file, []byte(script), 0o600)
		if out, err := exec.Command(path, "-n", file).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", shell, err, out)
		}
	}
	if _, err := completionScript("tcsh"); err == nil {
		t.Error("tcsh: no error")
	}
}

// TestBashCompletion drives the completion function as bash would, with a
// fake vnetctl that knows two networks and records its arguments.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "vnetctl.bash")
	os.WriteFile(script, []byte(bashCompletion()), 0o600)
	fake := filepath.Join(dir, "vnetctl")
	os.WriteFile(fake, []byte("#!/bin/sh\necho \"$*\" >>"+filepath.Join(dir, "calls")+"\nprintf 'default\\nisolated\\n'\n"), 0o755)
	for _, d := range []string{"nets", "notes"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "net.xml"), nil, 0o600)

	tests := []struct {
		line string // the words; the last one is being completed
		want []string
	}{
		{"vnetctl net-l", []string{"net-list"}},
		{"vnetctl --", []string{"--help", "--socket"}},
		{"vnetctl net-start ", []string{"default", "isolated"}},
		{"vnetctl net-start i", []string{"isolated"}},
		{"vnetctl net-start default ", nil},
		{"vnetctl net-list --a", []string{"--all"}},
		{"vnetctl net-dhcp-leases --mac 52:54:00:00:00:01 d", []string{"default"}},
		{"vnetctl net-dhcp-leases default --mac ", nil},
		{"vnetctl net-update default a", []string{"add-last", "add-first", "add"}},
		{"vnetctl net-update --live default add ip-dhcp-h", []string{"ip-dhcp-host"}},
		{"vnetctl net-update default add ip-dhcp-host n", []string{"net.xml", "nets", "notes"}},
		{"vnetctl net-validate net.xml n", []string{"net.xml", "nets", "notes"}},
		{"vnetctl import-libvirt n", []string{"nets", "notes"}},
		{"vnetctl completion ", []string{"bash", "zsh", "fish"}},
		{"vnetctl net-event --event l", []string{"lifecycle", "lease"}},
		{"vnetctl net-event --event lease ", []string{"default", "isolated"}},
		{"vnetctl help net-port-l", []string{"net-port-list"}},
		{"vnetctl --socket /x/vnetd.sock net-info ", []string{"default", "isolated"}},
	}
	for _, tc := range tests {
		words := strings.Split(tc.line, " ")
		words[0] = fake
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, "'"+w+"'")
		}
		prog := "source " + script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
			strconv.Itoa(len(words)-1) + "\n_vnetctl\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		cmd := exec.Command(bash, "-c", prog)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%q: %v\n%s", tc.line, err, out)
			continue
		}
		got := strings.Fields(string(out))
		if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.line, diff)
		}
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	if !strings.Contains(string(calls), "--socket /x/vnetd.sock net-list --all --name") {
		t.Errorf("the socket on the command line was not passed on: %s", calls)
	}
}
