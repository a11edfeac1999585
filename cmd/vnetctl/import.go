package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/uuid"
	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/conf"
)

// libvirtNetworkDir is where libvirt's QEMU driver keeps persistent network
// definitions, with an autostart/ directory of symlinks beside them.
const libvirtNetworkDir = "/etc/libvirt/qemu/networks"

func init() {
	commands["import-libvirt"] = command{"import-libvirt [--dry-run] [DIR]",
		"define libvirt's persistent networks and autostart links (DIR: " + libvirtNetworkDir + ")", importLibvirt}
}

// importAction is what import-libvirt does with one file.
type importAction int

const (
	actionDefine importAction = iota // define it, and set autostart if linked
	actionSkip                       // leave it: reason says why
	actionFail                       // cannot be imported: err says why
)

// importItem is one definition file of a libvirt directory, or an autostart
// link without one.
type importItem struct {
	File      string // relative to the directory
	Name      string // <name>, empty when the file does not parse
	UUID      string // <uuid>, empty when absent
	XML       []byte
	Autostart bool
	Action    importAction
	Reason    string // for actionSkip
	Err       error  // for actionFail
	// Note is something the operator should know about an importable
	// network: an autostart link that is ignored, options vnetd will refuse
	// to start with.
	Note string
}

// scanLibvirtDir reads the definitions of a libvirt network directory as
// libvirt's virNetworkObjLoadAllConfigs would: DIR/NAME.xml must define NAME,
// and DIR/autostart/NAME.xml marks it to autostart. It only reads; what is
// imported is decided by planImport.
func scanLibvirtDir(dir string) ([]importItem, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("libvirt network directory: %w", err)
	}
	links, err := autostartLinks(dir)
	if err != nil {
		return nil, err
	}
	var items []importItem
	seen := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".xml") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		seen[e.Name()] = true
		items = append(items, scanFile(dir, e.Name(), links))
	}
	// An autostart link whose definition is gone would start nothing in
	// libvirt either; say so rather than leave it unmentioned.
	for link := range links {
		if !seen[link] {
			items = append(items, importItem{File: filepath.Join("autostart", link), Name: strings.TrimSuffix(link, ".xml"),
				Action: actionSkip, Reason: "autostart link without a definition " + link})
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].File < items[j].File })
	return items, nil
}

// autostartLinks maps each entry of DIR/autostart to where it points (empty
// for a plain file); no autostart directory means no links.
func autostartLinks(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "autostart"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("libvirt autostart directory: %w", err)
	}
	links := map[string]string{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".xml") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, "autostart", e.Name()))
		if err != nil {
			target = "" // not a symlink
		}
		links[e.Name()] = target
	}
	return links, nil
}

func scanFile(dir, file string, links map[string]string) importItem {
	it := importItem{File: file}
	data, err := readLimited(filepath.Join(dir, file))
	if err != nil {
		it.Action, it.Err = actionFail, err
		return it
	}
	n, err := conf.Parse(data)
	if err != nil {
		it.Action, it.Err = actionFail, err
		return it
	}
	it.Name, it.XML = n.Name, data
	if n.UUID != uuid.Nil {
		it.UUID = n.UUID.String()
	}
	if want := n.Name + ".xml"; file != want {
		// libvirt refuses to load such a file, so it was never a network there.
		it.Action, it.Reason = actionSkip, fmt.Sprintf("libvirt ignores it: network/name is %q, so the file would be %s", n.Name, want)
		return it
	}
	if target, linked := links[file]; linked {
		// libvirt's links are absolute (/etc/libvirt/qemu/networks/NAME.xml),
		// so in a copied directory they dangle: the file name is what counts.
		if target == "" || filepath.Base(target) == file {
			it.Autostart = true
		} else {
			it.Note = fmt.Sprintf("autostart/%s points to %s, not to %s: not marked to autostart", file, target, file)
		}
	}
	if err := n.CheckDnsmasqOptions(); err != nil {
		it.Note = joinNotes(it.Note, "vnetd will refuse to start it: "+oneLine(err))
	}
	return it
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// One byte past the limit, so that the daemon's parser reports the size.
	return io.ReadAll(io.LimitReader(f, conf.MaxInputSize+1))
}

// planImport decides, for the importable items, whether a network vnetd
// already knows (or an earlier file of the same directory) stands in the
// way: such a network is skipped, never overwritten.
func planImport(items []importItem, existing []api.NetworkInfo) []importItem {
	byName := map[string]api.NetworkInfo{}
	byUUID := map[string]api.NetworkInfo{}
	for _, e := range existing {
		byName[e.Name] = e
		byUUID[strings.ToLower(e.UUID)] = e
	}
	planned := map[string]string{} // uuid → file, of the items to define
	out := make([]importItem, len(items))
	for i, it := range items {
		if it.Action == actionDefine {
			it.Action, it.Reason = conflict(it, byName, byUUID, planned)
			if it.Action == actionDefine && it.UUID != "" {
				planned[strings.ToLower(it.UUID)] = it.File
			}
		}
		out[i] = it
	}
	return out
}

func conflict(it importItem, byName, byUUID map[string]api.NetworkInfo, planned map[string]string) (importAction, string) {
	id := strings.ToLower(it.UUID)
	if e, ok := byName[it.Name]; ok {
		if id == "" || id == strings.ToLower(e.UUID) {
			return actionSkip, "already defined in vnetd"
		}
		return actionSkip, fmt.Sprintf("vnetd already has a network %q, with uuid %s", e.Name, e.UUID)
	}
	if id == "" {
		return actionDefine, ""
	}
	if e, ok := byUUID[id]; ok {
		return actionSkip, fmt.Sprintf("uuid %s is already vnetd's network %q", it.UUID, e.Name)
	}
	if file, ok := planned[id]; ok {
		return actionSkip, fmt.Sprintf("uuid %s is also the uuid of %s", it.UUID, file)
	}
	return actionDefine, ""
}

// definer is the part of the client import-libvirt uses; a test fakes it.
type definer interface {
	Define(ctx context.Context, xml []byte) (api.NetworkInfo, error)
	SetAutostart(ctx context.Context, id string, on bool) error
}

// importResult is one line of the table.
type importResult struct {
	File, Name, Autostart, Result string
	Failed                        bool
}

// runImport defines the planned items through vnetd, in order, and reports
// on every item. With dryRun nothing is defined: each definition is only
// validated the way the daemon would.
func runImport(ctx context.Context, c definer, items []importItem, dryRun bool) []importResult {
	var out []importResult
	for _, it := range items {
		r := importResult{File: it.File, Name: orDash(it.Name), Autostart: yesNo(it.Autostart)}
		switch it.Action {
		case actionSkip:
			r.Result = "skipped: " + it.Reason
		case actionFail:
			r.Result, r.Failed = "failed: "+oneLine(it.Err), true
		case actionDefine:
			r.Result, r.Failed = define(ctx, c, it, dryRun)
			if !r.Failed && it.Note != "" {
				r.Result += " (" + it.Note + ")"
			}
		}
		out = append(out, r)
	}
	return out
}

func define(ctx context.Context, c definer, it importItem, dryRun bool) (string, bool) {
	if dryRun {
		if err := validateDefinition(it.XML); err != nil {
			return "failed: " + oneLine(err), true
		}
		return "would import", false
	}
	info, err := c.Define(ctx, it.XML)
	if err != nil {
		return "failed: " + oneLine(apiMessage(err)), true
	}
	if it.Autostart {
		if err := c.SetAutostart(ctx, info.Name, true); err != nil {
			return "failed: defined, but not marked to autostart: " + oneLine(apiMessage(err)), true
		}
	}
	return "imported", false
}

// validateDefinition is the daemon's define-time check, for dry runs.
func validateDefinition(xml []byte) error {
	n, err := conf.Parse(xml)
	if err != nil {
		return err
	}
	if err := conf.ValidateName(n.Name); err != nil {
		return err
	}
	return n.Validate()
}

func apiMessage(err error) error {
	var apiErr *api.Error
	if errors.As(err, &apiErr) {
		return errors.New(apiErr.Message)
	}
	return err
}

// oneLine keeps a multi-problem error (one problem per line) on one table row.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

func joinNotes(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func importLibvirt(args []string, stdout, stderr io.Writer) int {
	s := newSession("import-libvirt", stdout, stderr)
	dryRun := s.fs.Bool("dry-run", false, "only report what would be imported; define nothing")
	pos, ok := s.parseN(args, 0, 1)
	if !ok {
		return 2
	}
	dir := libvirtNetworkDir
	if len(pos) == 1 {
		dir = pos[0]
	}
	items, err := scanLibvirtDir(dir)
	if err != nil {
		return s.fail(err)
	}
	if len(items) == 0 {
		fmt.Fprintf(stdout, "No network definitions in %s\n\n", dir)
		return 0
	}
	ctx := context.Background()
	c := s.client()
	existing, err := c.List(ctx, true)
	if err != nil {
		if !*dryRun {
			return s.fail(err)
		}
		fmt.Fprintf(stderr, "warning: not checked against vnetd's networks: %v\n", apiMessage(err))
	}
	results := runImport(ctx, c, planImport(items, existing), *dryRun)
	rows := [][]string{{"File", "Name", "Autostart", "Result"}}
	status := 0
	for _, r := range results {
		rows = append(rows, []string{r.File, r.Name, r.Autostart, r.Result})
		if r.Failed {
			status = 1
		}
	}
	printTable(stdout, rows)
	return status
}
