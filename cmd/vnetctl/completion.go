package main

import (
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/vnetd/vnetd/conf"
)

func init() {
	commands["completion"] = command{"completion SHELL", "print the shell completion script (SHELL: bash, zsh or fish)", completion}
}

// usageFlag is an option in a verb's usage line: "--mac MAC" has the value
// placeholder MAC, "--event lifecycle|port" a choice of values, "--json"
// none.
type usageFlag struct{ name, value string }

var usageFlagRE = regexp.MustCompile(`--([a-z][a-z0-9-]*)( [A-Z][^ |]*| [a-z0-9-]+(?:\|[a-z0-9-]+)+)?`)

// choices are the values of an option that takes one of a list.
func (f usageFlag) choices() []string {
	if !strings.Contains(f.value, "|") || strings.ToLower(f.value) != f.value {
		return nil
	}
	return strings.Split(f.value, "|")
}

// parseUsage reads a verb's usage line ("net-dhcp-leases NET [--mac MAC]
// [--json]") into its options and positional placeholders: the usage line
// is the one description of a verb's arguments, which the help, the
// completions and the tests share.
func parseUsage(usage string) (flags []usageFlag, args []string) {
	_, rest, _ := strings.Cut(usage, " ")
	for _, m := range usageFlagRE.FindAllStringSubmatch(rest, -1) {
		value := strings.TrimSpace(m[2])
		// "[--mac MAC]": the bracket closing the option is not the value's.
		for strings.HasSuffix(value, "]") && strings.Count(value, "]") > strings.Count(value, "[") {
			value = strings.TrimSuffix(value, "]")
		}
		flags = append(flags, usageFlag{name: m[1], value: value})
	}
	for _, tok := range strings.Fields(usageFlagRE.ReplaceAllString(rest, " ")) {
		tok = strings.Trim(tok, "[]")
		if tok != "" && tok != "|" {
			args = append(args, tok)
		}
	}
	return flags, args
}

// argKind is how a positional placeholder completes: "network", "file",
// "dir", "words:a,b,c", or "" for nothing. A trailing "..." repeats it.
func argKind(verb, placeholder string) string {
	repeat := ""
	if p, ok := strings.CutSuffix(placeholder, "..."); ok {
		placeholder, repeat = p, "..."
	}
	kind := ""
	switch {
	case placeholder == "NAME" || placeholder == "NET" || placeholder == "NETWORK":
		kind = "network"
	case placeholder == "FILE" || placeholder == "XML|FILE":
		kind = "file"
	case placeholder == "DIR":
		kind = "dir"
	case placeholder == "SHELL":
		kind = "words:bash,zsh,fish"
	case verb == "help" && placeholder == "COMMAND":
		kind = "words:" + strings.Join(verbNames(), ",")
	case verb == "net-update" && placeholder == "COMMAND":
		kind = "words:" + strings.Join(enumNames(func(i int) fmt.Stringer { return conf.UpdateCommand(i) }), ",") + ",add"
	case verb == "net-update" && placeholder == "SECTION":
		kind = "words:" + strings.Join(enumNames(func(i int) fmt.Stringer { return conf.UpdateSection(i) }), ",")
	}
	if kind == "" {
		return ""
	}
	return kind + repeat
}

// enumNames lists an enum's spellings: values 1, 2, ... until String falls
// back to its Go form.
func enumNames(v func(int) fmt.Stringer) []string {
	var names []string
	for i := 1; i < 256; i++ {
		s := v(i).String()
		if strings.Contains(s, "(") {
			break
		}
		names = append(names, s)
	}
	return names
}

func verbNames() []string {
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func completion(args []string, stdout, stderr io.Writer) int {
	if isHelp(args) {
		verbHelp(stdout, "completion", nil)
		return 0
	}
	if len(args) != 1 {
		shortUsage(stderr, "completion")
		return 2
	}
	script, err := completionScript(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 2
	}
	io.WriteString(stdout, script)
	return 0
}

func completionScript(shell string) (string, error) {
	switch shell {
	case "bash":
		return bashCompletion(), nil
	case "zsh":
		// zsh runs bash completion functions through bashcompinit; one
		// script to keep right is worth more than native descriptions.
		return "#compdef vnetctl\n# zsh completion for vnetctl: source <(vnetctl completion zsh)\n" +
			"(( $+functions[compdef] )) || { autoload -U +X compinit && compinit }\n" +
			"autoload -U +X bashcompinit && bashcompinit\n" + bashCompletion(), nil
	case "fish":
		return fishCompletion(), nil
	}
	return "", fmt.Errorf("completion: unknown shell %q (bash, zsh or fish)", shell)
}

// bashCompletion is a completion function with each verb's options and
// arguments written in. It sticks to what zsh's bashcompinit runs too: no
// ${!x}, and compopt, which zsh lacks, may fail quietly. Network names come
// from the daemon the command line names, through `vnetctl net-list --all
// --name`.
func bashCompletion() string {
	var b strings.Builder
	b.WriteString(`# bash completion for vnetctl: source <(vnetctl completion bash)
_vnetctl_networks() {
	"$1" ${2:+--socket "$2"} net-list --all --name 2>/dev/null
}

_vnetctl() {
	local cur prev sock= verb i=1 flags valflags args kind n=0 pos=0 found= a w
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD-1]}
	COMPREPLY=()
	while [ $i -lt $COMP_CWORD ]; do
		case ${COMP_WORDS[i]} in
		--socket) sock=${COMP_WORDS[i+1]}; i=$((i+2)) ;;
		-*) i=$((i+1)) ;;
		*) break ;;
		esac
	done
	if [ $i -ge $COMP_CWORD ]; then
		if [ "$prev" = --socket ]; then
			COMPREPLY=($(compgen -f -- "$cur"))
		else
			COMPREPLY=($(compgen -W "--socket --help `)
	b.WriteString(strings.Join(verbNames(), " "))
	b.WriteString(`" -- "$cur"))
		fi
		return 0
	fi
	verb=${COMP_WORDS[i]}
	case $verb in
`)
	var choices []string // completions of option values, "verb:--option) ..."
	for _, name := range verbNames() {
		flags, args := parseUsage(commands[name].usage)
		all := []string{"--help"}
		var val []string
		for _, f := range flags {
			all = append(all, "--"+f.name)
			if f.value != "" {
				val = append(val, "--"+f.name)
			}
		}
		if daemonVerb(name) {
			all, val = append(all, "--socket"), append(val, "--socket")
		}
		var kinds []string
		for _, a := range args {
			k := argKind(name, a)
			if k == "" {
				k = "-"
			}
			kinds = append(kinds, k)
		}
		fmt.Fprintf(&b, "\t%s) flags='%s'; valflags='%s'; args='%s' ;;\n", name,
			strings.Join(all, " "), strings.Join(val, " "), strings.Join(kinds, " "))
		for _, f := range flags {
			if c := f.choices(); c != nil {
				choices = append(choices, fmt.Sprintf("\t%s:--%s) COMPREPLY=($(compgen -W '%s' -- \"$cur\")); return 0 ;;\n", name, f.name, strings.Join(c, " ")))
			}
		}
	}
	b.WriteString(`	*) return 0 ;;
	esac
	case $verb:$prev in
`)
	b.WriteString(strings.Join(choices, ""))
	b.WriteString(`	esac
	for a in $valflags; do
		if [ "$prev" = "$a" ]; then
			[ "$a" = --socket ] && COMPREPLY=($(compgen -f -- "$cur"))
			return 0
		fi
	done
	case $cur in
	-*) COMPREPLY=($(compgen -W "$flags" -- "$cur")); return 0 ;;
	esac
	i=$((i+1))
	while [ $i -lt $COMP_CWORD ]; do
		w=${COMP_WORDS[i]}
		i=$((i+1))
		case " $valflags " in
		*" $w "*) [ "$w" = --socket ] && sock=${COMP_WORDS[i]}; i=$((i+1)); continue ;;
		esac
		case $w in
		-*) ;;
		*) pos=$((pos+1)) ;;
		esac
	done
	for a in $args; do
		kind=$a
		if [ $n -eq $pos ]; then found=1; break; fi
		n=$((n+1))
	done
	case $kind in
	*...) kind=${kind%...} ;;
	*) [ -n "$found" ] || kind= ;;
	esac
	case $kind in
	network) COMPREPLY=($(compgen -W "$(_vnetctl_networks "${COMP_WORDS[0]}" "$sock")" -- "$cur")) ;;
	file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
	dir) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
	words:*) w=${kind#words:}; COMPREPLY=($(compgen -W "${w//,/ }" -- "$cur")) ;;
	esac
	return 0
}

complete -F _vnetctl vnetctl
`)
	return b.String()
}

// daemonVerb reports whether a verb talks to vnetd, and so takes --socket.
func daemonVerb(name string) bool {
	switch name {
	case "net-validate", "help", "completion":
		return false
	}
	return true
}

// fishCompletion completes verbs with their descriptions, each verb's
// options, and for its arguments whatever any of them takes (fish has no
// cheap way to count positional arguments).
func fishCompletion() string {
	var b strings.Builder
	b.WriteString(`# fish completion for vnetctl: vnetctl completion fish > ~/.config/fish/completions/vnetctl.fish
function __vnetctl_networks
    set -l words (commandline -opc)
    set -l sock
    if set -l i (contains -i -- --socket $words)
        set sock --socket $words[(math $i + 1)]
    end
    $words[1] $sock net-list --all --name 2>/dev/null
end

complete -c vnetctl -f
complete -c vnetctl -n __fish_use_subcommand -l socket -r -F -d 'vnetd control socket'
`)
	q := func(s string) string {
		return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
	}
	for _, name := range verbNames() {
		fmt.Fprintf(&b, "complete -c vnetctl -n __fish_use_subcommand -a %s -d %s\n", name, q(commands[name].help))
	}
	for _, name := range verbNames() {
		cond := q("__fish_seen_subcommand_from " + name)
		flags, args := parseUsage(commands[name].usage)
		if daemonVerb(name) {
			flags = append(flags, usageFlag{name: "socket", value: "PATH"})
		}
		for _, f := range flags {
			switch {
			case f.name == "socket":
				fmt.Fprintf(&b, "complete -c vnetctl -n %s -l socket -r -F\n", cond)
			case f.choices() != nil:
				fmt.Fprintf(&b, "complete -c vnetctl -n %s -l %s -x -a %s\n", cond, f.name, q(strings.Join(f.choices(), " ")))
			case f.value != "":
				fmt.Fprintf(&b, "complete -c vnetctl -n %s -l %s -r\n", cond, f.name)
			default:
				fmt.Fprintf(&b, "complete -c vnetctl -n %s -l %s\n", cond, f.name)
			}
		}
		seen := map[string]bool{}
		for _, a := range args {
			kind := strings.TrimSuffix(argKind(name, a), "...")
			if seen[kind] {
				continue
			}
			seen[kind] = true
			switch {
			case kind == "network":
				fmt.Fprintf(&b, "complete -c vnetctl -n %s -a '(__vnetctl_networks)'\n", cond)
			case kind == "file":
				fmt.Fprintf(&b, "complete -c vnetctl -n %s -F\n", cond)
			case kind == "dir":
				fmt.Fprintf(&b, "complete -c vnetctl -n %s -a '(__fish_complete_directories)'\n", cond)
			case strings.HasPrefix(kind, "words:"):
				fmt.Fprintf(&b, "complete -c vnetctl -n %s -a %s\n", cond, q(strings.ReplaceAll(strings.TrimPrefix(kind, "words:"), ",", " ")))
			}
		}
	}
	return b.String()
}
