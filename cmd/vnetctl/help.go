package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// helpShown is set when a verb printed its help for --help: run then exits
// 0 whatever the verb returned.
var helpShown bool

func init() {
	commands["help"] = command{"help [COMMAND]", "list the commands, or describe one", helpVerb}
}

// isHelp reports whether args ask for help, for verbs that parse their
// arguments without a session.
func isHelp(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool {
		return a == "-h" || a == "-help" || a == "--help"
	})
}

// verbDetails says more about verbs whose one-line help leaves questions.
var verbDetails = map[string]string{
	"import-libvirt": `Reads DIR/NAME.xml (libvirt's persistent definitions) and DIR/autostart/NAME.xml
(libvirt's autostart links; dangling links count, as a copied directory has them)
and defines each network through vnetd, as net-define does, marking it to
autostart when linked. Nothing is started. A network vnetd already has (same
name or UUID) is skipped, never overwritten; so is a file libvirt itself would
not load. One line per file says what happened and why; the exit status is 1
if any file failed. --dry-run validates without defining anything.`,
	"completion": `bash: source <(vnetctl completion bash), or write it to
      /etc/bash_completion.d/vnetctl
zsh:  source <(vnetctl completion zsh) in ~/.zshrc
fish: vnetctl completion fish > ~/.config/fish/completions/vnetctl.fish
Network names are completed by asking vnetd (vnetctl net-list --all --name).`,
}

// verbHelp prints a verb's help as virsh's `help VERB` does: synopsis,
// description, options. fs is nil for a verb without options.
func verbHelp(w io.Writer, name string, fs *flag.FlagSet) {
	c := commands[name]
	fmt.Fprintf(w, "usage: vnetctl %s\n\n  %s\n", c.usage, c.help)
	if d := verbDetails[name]; d != "" {
		fmt.Fprintf(w, "\n%s\n", indent(d, "  "))
	}
	if fs == nil {
		fmt.Fprintln(w)
		return
	}
	// Value placeholders as the usage line spells them (--mac MAC), not
	// as flag would (--mac string).
	placeholder := map[string]string{"socket": "PATH"}
	flags, _ := parseUsage(c.usage)
	for _, f := range flags {
		if f.value != "" {
			placeholder[f.name] = f.value
		}
	}
	type opt struct{ name, usage string }
	var opts []opt
	width := 0
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		o := opt{name: "--" + f.Name, usage: usage}
		if p, ok := placeholder[f.Name]; ok && arg != "" {
			o.name += " " + p
		} else if arg != "" {
			o.name += " " + strings.ToUpper(arg)
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			o.usage += " (default " + f.DefValue + ")"
		}
		width = max(width, len(o.name))
		opts = append(opts, o)
	})
	fmt.Fprintln(w, "\noptions:")
	for _, o := range opts {
		fmt.Fprintf(w, "  %-*s  %s\n", width, o.name, o.usage)
	}
	fmt.Fprintln(w)
}

// shortUsage follows an argument error: the synopsis and where the rest is.
func shortUsage(w io.Writer, name string) {
	fmt.Fprintf(w, "usage: vnetctl %s\n(vnetctl %s --help for the options)\n", commands[name].usage, name)
}

// helpVerb is `vnetctl help [VERB]`.
func helpVerb(args []string, stdout, stderr io.Writer) int {
	switch {
	case isHelp(args):
		verbHelp(stdout, "help", nil)
		return 0
	case len(args) == 0:
		usage(stdout)
		return 0
	case len(args) > 1:
		fmt.Fprintln(stderr, "usage: vnetctl help [COMMAND]")
		return 2
	}
	if _, ok := commands[args[0]]; !ok {
		fmt.Fprintf(stderr, "vnetctl: unknown command %q\n", args[0])
		return 2
	}
	return run([]string{args[0], "--help"}, stdout, stderr)
}
