package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/client"
)

func init() {
	for name, c := range map[string]command{
		"net-define":    {"net-define FILE", "define a persistent network from XML", netDefine},
		"net-create":    {"net-create FILE", "create and start a transient network", netCreate},
		"net-undefine":  {"net-undefine NAME", "remove a persistent definition", simpleVerb("net-undefine", "Network %s has been undefined", (*client.Client).Undefine)},
		"net-start":     {"net-start NAME", "start a defined network", simpleVerb("net-start", "Network %s started", (*client.Client).Start)},
		"net-destroy":   {"net-destroy NAME", "stop a running network", simpleVerb("net-destroy", "Network %s destroyed", (*client.Client).Destroy)},
		"net-autostart": {"net-autostart NAME [--disable]", "start the network with vnetd (or not)", netAutostart},
		"net-list":      {"net-list [--all] [--name] [--json]", "list networks", netList},
		"net-info":      {"net-info NAME [--json]", "show a network", netInfo},
		"net-dumpxml":   {"net-dumpxml NAME [--inactive]", "print a network's XML", netDumpXML},
		"net-uuid":      {"net-uuid NAME", "print a network's UUID", netField("net-uuid", func(i api.NetworkInfo) string { return i.UUID })},
		"net-name":      {"net-name UUID", "print a network's name", netField("net-name", func(i api.NetworkInfo) string { return i.Name })},
		"net-update":    {"net-update NAME COMMAND SECTION XML|FILE [--parent-index N] [--live] [--config]", "change part of a network", netUpdate},
	} {
		commands[name] = c
	}
}

// session is what every daemon verb starts from: its flags and a client.
type session struct {
	fs     *flag.FlagSet
	socket string
	stdout io.Writer
	stderr io.Writer
}

func newSession(name string, stdout, stderr io.Writer) *session {
	s := &session{fs: flag.NewFlagSet(name, flag.ContinueOnError), stdout: stdout, stderr: stderr}
	s.fs.SetOutput(stderr)
	// parseN prints the help or a short usage itself: flag's default usage
	// would go to stderr, also for --help.
	s.fs.Usage = func() {}
	def := globalSocket
	if def == "" {
		def = os.Getenv("VNETD_SOCKET")
	}
	if def == "" {
		def = client.DefaultSocket
	}
	s.fs.StringVar(&s.socket, "socket", def, "vnetd control socket (or $VNETD_SOCKET)")
	return s
}

// parse accepts flags before, between and after the positional arguments,
// as virsh does, and checks their number.
func (s *session) parse(args []string, positional int) ([]string, bool) {
	return s.parseN(args, positional, positional)
}

// parseN is parse for a verb taking min to max positional arguments. On
// --help it prints the verb's help and returns false; run then exits 0.
func (s *session) parseN(args []string, min, max int) ([]string, bool) {
	var pos []string
	for {
		if err := s.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				verbHelp(s.stdout, s.fs.Name(), s.fs)
				helpShown = true
			} else {
				shortUsage(s.stderr, s.fs.Name())
			}
			return nil, false
		}
		args = s.fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < min || len(pos) > max {
		want := fmt.Sprint(min)
		if max > min {
			want = fmt.Sprintf("%d to %d", min, max)
		}
		fmt.Fprintf(s.stderr, "error: %s takes %s argument(s), got %d\n", s.fs.Name(), want, len(pos))
		shortUsage(s.stderr, s.fs.Name())
		return nil, false
	}
	return pos, true
}

func (s *session) client() *client.Client { return client.New(s.socket) }

// fail prints the daemon's error the way virsh does and returns the status.
func (s *session) fail(err error) int {
	var apiErr *api.Error
	if errors.As(err, &apiErr) {
		fmt.Fprintf(s.stderr, "error: %s\n", apiErr.Message)
		return 1
	}
	fmt.Fprintf(s.stderr, "error: %v\n", err)
	return 1
}

func readXMLFile(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return data, nil
}

func netDefine(args []string, stdout, stderr io.Writer) int {
	return defineOrCreate("net-define", "Network %s defined from %s", (*client.Client).Define, args, stdout, stderr)
}

func netCreate(args []string, stdout, stderr io.Writer) int {
	return defineOrCreate("net-create", "Network %s created from %s", (*client.Client).Create, args, stdout, stderr)
}

func defineOrCreate(name, done string, op func(*client.Client, context.Context, []byte) (api.NetworkInfo, error), args []string, stdout, stderr io.Writer) int {
	s := newSession(name, stdout, stderr)
	pos, ok := s.parse(args, 1)
	if !ok {
		return 2
	}
	data, err := readXMLFile(pos[0])
	if err != nil {
		return s.fail(err)
	}
	info, err := op(s.client(), context.Background(), data)
	if err != nil {
		return s.fail(err)
	}
	fmt.Fprintf(stdout, done+"\n\n", info.Name, pos[0])
	return 0
}

func simpleVerb(name, done string, op func(*client.Client, context.Context, string) error) func([]string, io.Writer, io.Writer) int {
	return func(args []string, stdout, stderr io.Writer) int {
		s := newSession(name, stdout, stderr)
		pos, ok := s.parse(args, 1)
		if !ok {
			return 2
		}
		if err := op(s.client(), context.Background(), pos[0]); err != nil {
			return s.fail(err)
		}
		fmt.Fprintf(stdout, done+"\n\n", pos[0])
		return 0
	}
}

func netAutostart(args []string, stdout, stderr io.Writer) int {
	s := newSession("net-autostart", stdout, stderr)
	disable := s.fs.Bool("disable", false, "do not start the network with vnetd")
	pos, ok := s.parse(args, 1)
	if !ok {
		return 2
	}
	if err := s.client().SetAutostart(context.Background(), pos[0], !*disable); err != nil {
		return s.fail(err)
	}
	if *disable {
		fmt.Fprintf(stdout, "Network %s unmarked as autostarted\n\n", pos[0])
	} else {
		fmt.Fprintf(stdout, "Network %s marked as autostarted\n\n", pos[0])
	}
	return 0
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func netList(args []string, stdout, stderr io.Writer) int {
	s := newSession("net-list", stdout, stderr)
	all := s.fs.Bool("all", false, "list inactive networks too")
	asJSON := s.fs.Bool("json", false, "print JSON")
	namesOnly := s.fs.Bool("name", false, "print only the names, one per line (as virsh net-list --name)")
	if _, ok := s.parse(args, 0); !ok {
		return 2
	}
	list, err := s.client().List(context.Background(), *all)
	if err != nil {
		return s.fail(err)
	}
	if *asJSON {
		return printJSON(stdout, list)
	}
	if *namesOnly {
		for _, n := range list {
			fmt.Fprintln(stdout, n.Name)
		}
		return 0
	}
	rows := [][]string{{"Name", "State", "Autostart", "Persistent"}}
	for _, n := range list {
		state := "inactive"
		if n.Active {
			state = "active"
		}
		rows = append(rows, []string{n.Name, state, yesNo(n.Autostart), yesNo(n.Persistent)})
	}
	printTable(stdout, rows)
	return 0
}

// printTable writes rows as virsh does: a header, a rule, left-aligned
// columns three spaces apart, a blank line.
func printTable(w io.Writer, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	total := 0
	for _, wd := range widths {
		total += wd + 3
	}
	for i, r := range rows {
		var b strings.Builder
		for j, c := range r {
			if j == len(r)-1 {
				b.WriteString(" " + c)
			} else {
				fmt.Fprintf(&b, " %-*s  ", widths[j], c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if i == 0 {
			fmt.Fprintln(w, strings.Repeat("-", total))
		}
	}
	fmt.Fprintln(w)
}

func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return 1
	}
	return 0
}

func netInfo(args []string, stdout, stderr io.Writer) int {
	s := newSession("net-info", stdout, stderr)
	asJSON := s.fs.Bool("json", false, "print JSON")
	pos, ok := s.parse(args, 1)
	if !ok {
		return 2
	}
	info, err := s.client().Info(context.Background(), pos[0])
	if err != nil {
		return s.fail(err)
	}
	if *asJSON {
		return printJSON(stdout, info)
	}
	fmt.Fprintf(stdout, "%-15s %s\n", "Name:", info.Name)
	fmt.Fprintf(stdout, "%-15s %s\n", "UUID:", info.UUID)
	fmt.Fprintf(stdout, "%-15s %s\n", "Active:", yesNo(info.Active))
	fmt.Fprintf(stdout, "%-15s %s\n", "Persistent:", yesNo(info.Persistent))
	fmt.Fprintf(stdout, "%-15s %s\n", "Autostart:", yesNo(info.Autostart))
	fmt.Fprintf(stdout, "%-15s %s\n\n", "Bridge:", info.Bridge)
	return 0
}

func netDumpXML(args []string, stdout, stderr io.Writer) int {
	s := newSession("net-dumpxml", stdout, stderr)
	inactive := s.fs.Bool("inactive", false, "the persistent definition, not the live state")
	pos, ok := s.parse(args, 1)
	if !ok {
		return 2
	}
	xml, err := s.client().XML(context.Background(), pos[0], *inactive)
	if err != nil {
		return s.fail(err)
	}
	stdout.Write(xml)
	return 0
}

func netField(name string, field func(api.NetworkInfo) string) func([]string, io.Writer, io.Writer) int {
	return func(args []string, stdout, stderr io.Writer) int {
		s := newSession(name, stdout, stderr)
		pos, ok := s.parse(args, 1)
		if !ok {
			return 2
		}
		info, err := s.client().Info(context.Background(), pos[0])
		if err != nil {
			return s.fail(err)
		}
		fmt.Fprintf(stdout, "%s\n\n", field(info))
		return 0
	}
}

func netUpdate(args []string, stdout, stderr io.Writer) int {
	s := newSession("net-update", stdout, stderr)
	parent := s.fs.Int("parent-index", -1, "which <ip> of the network (0 = first); -1: the one serving DHCP")
	live := s.fs.Bool("live", false, "change the running network")
	config := s.fs.Bool("config", false, "change the persistent definition")
	pos, ok := s.parse(args, 4)
	if !ok {
		return 2
	}
	xml := pos[3]
	// Like virsh: an argument that starts with '<' is XML, anything else a file.
	if !strings.HasPrefix(strings.TrimSpace(xml), "<") {
		data, err := readXMLFile(xml)
		if err != nil {
			return s.fail(err)
		}
		xml = string(data)
	}
	res, err := s.client().Update(context.Background(), pos[0], api.UpdateRequest{
		Command: pos[1], Section: pos[2], ParentIndex: *parent, XML: xml, Live: *live, Config: *config,
	})
	if err != nil {
		return s.fail(err)
	}
	switch {
	case res.Live && res.Config:
		fmt.Fprintf(stdout, "Updated network %s persistent config and live state\n", pos[0])
	case res.Live:
		fmt.Fprintf(stdout, "Updated network %s live state\n", pos[0])
	default:
		fmt.Fprintf(stdout, "Updated network %s persistent config\n", pos[0])
	}
	return 0
}
