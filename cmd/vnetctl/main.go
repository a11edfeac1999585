// Command vnetctl manages vnetd's virtual networks with virsh's net-* verbs.
// net-validate works offline; the verbs that talk to the daemon arrive with it.
package main

import (
	"fmt"
	"github.com/vnetd/vnetd/client"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one verb: run returns the process exit status.
type command struct {
	usage string
	help  string
	run   func(args []string, stdout, stderr io.Writer) int
}

// commands is filled by each verb file's init: verbs print their help from
// it, which a composite literal here could not refer to.
var commands = map[string]command{}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// globalSocket is a --socket given before the command, as in
// `vnetctl --socket PATH net-list`.
var globalSocket string

func run(args []string, stdout, stderr io.Writer) int {
	globalSocket = ""
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		if name != "socket" {
			fmt.Fprintf(stderr, "vnetctl: unknown option %q before the command\n", args[0])
			return 2
		}
		args = args[1:]
		if !hasValue {
			if len(args) == 0 {
				fmt.Fprintln(stderr, "vnetctl: --socket needs a path")
				return 2
			}
			value, args = args[0], args[1:]
		}
		globalSocket = value
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "vnetctl: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	helpShown = false
	status := cmd.run(args[1:], stdout, stderr)
	if helpShown {
		return 0
	}
	return status
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: vnetctl [--socket PATH] COMMAND [ARGS]  (socket: --socket, $VNETD_SOCKET or "+client.DefaultSocket+")")
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	width := 0
	for _, name := range names {
		width = max(width, len(name))
	}
	for _, name := range names {
		fmt.Fprintf(w, "  %-*s  %s\n", width, name, commands[name].help)
	}
	fmt.Fprintln(w, "\n`vnetctl help COMMAND` or `vnetctl COMMAND --help` shows a command's arguments and options.")
}

// indent prefixes every line of a multi-line message.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
