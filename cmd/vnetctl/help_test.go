package main

import (
	"regexp"
	"strings"
	"testing"
)

var optionLine = regexp.MustCompile(`(?m)^  --([a-z][a-z0-9-]*)`)

// TestVerbHelp checks that every verb explains itself: --help exits 0 with
// the usage line and description, every option it accepts appears in its
// usage line (which the completions are built from), and `help VERB` says
// the same.
func TestVerbHelp(t *testing.T) {
	for _, name := range verbNames() {
		t.Run(name, func(t *testing.T) {
			c := commands[name]
			if c.help == "" || !strings.HasPrefix(c.usage, name) {
				t.Fatalf("command %q: usage %q, help %q", name, c.usage, c.help)
			}
			var stdout, stderr strings.Builder
			if got := run([]string{name, "--help"}, &stdout, &stderr); got != 0 {
				t.Fatalf("%s --help: status %d, stderr %s", name, got, stderr.String())
			}
			out := stdout.String()
			if !strings.HasPrefix(out, "usage: vnetctl "+c.usage+"\n") || !strings.Contains(out, c.help) {
				t.Errorf("%s --help:\n%s", name, out)
			}
			usageFlags, _ := parseUsage(c.usage)
			listed := map[string]bool{}
			for _, f := range usageFlags {
				listed[f.name] = true
			}
			socket := false
			for _, m := range optionLine.FindAllStringSubmatch(out, -1) {
				if m[1] == "socket" {
					socket = true
					continue
				}
				if !listed[m[1]] {
					t.Errorf("%s: option --%s missing from the usage line %q", name, m[1], c.usage)
				}
			}
			if socket != daemonVerb(name) {
				t.Errorf("%s: takes --socket: %v, daemonVerb says %v", name, socket, daemonVerb(name))
			}
			var again strings.Builder
			if got := run([]string{"help", name}, &again, &stderr); got != 0 || again.String() != out {
				t.Errorf("help %s: status %d, output %q, want %q", name, got, again.String(), out)
			}
		})
	}
}

func TestTopLevelHelp(t *testing.T) {
	for _, args := range [][]string{nil, {"help"}, {"--help"}, {"-h"}} {
		var stdout, stderr strings.Builder
		if got := run(args, &stdout, &stderr); got != 0 {
			t.Errorf("%v: status %d", args, got)
		}
		for _, name := range verbNames() {
			if !strings.Contains(stdout.String(), "  "+name+" ") {
				t.Errorf("%v: %s missing from\n%s", args, name, stdout.String())
			}
		}
	}
	var stdout, stderr strings.Builder
	if got := run([]string{"help", "net-bogus"}, &stdout, &stderr); got != 2 {
		t.Errorf("help net-bogus: status %d", got)
	}
	// An argument error is not a help request.
	if got := run([]string{"net-start"}, &stdout, &stderr); got != 2 || !strings.Contains(stderr.String(), "usage: vnetctl net-start NAME") {
		t.Errorf("net-start without a name: status %d, stderr %q", got, stderr.String())
	}
}
