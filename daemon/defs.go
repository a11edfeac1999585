package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/vnetd/vnetd/conf"
)

// definitions are the persistent definitions the Manager works from: read
// from the config dir at start and on Reload, and written through to it on
// every change. Serving them from memory is what lets a reload keep the old
// set when the files on disk are broken, and keeps a file being edited by
// hand from changing anything before a reload has checked it (libvirt too
// reads its config dir only at start and on SIGHUP). Reads return copies.
type definitions struct {
	store *conf.Store

	mu        sync.Mutex
	nets      map[string]*conf.Network
	autostart map[string]bool
}

// defSet is one reading of the config dir.
type defSet struct {
	nets      map[string]*conf.Network
	autostart map[string]bool
	// completed are the definitions that lacked a uuid, bridge name or MAC
	// and got one: they are written back, as libvirt does.
	completed []*conf.Network
}

// checkContext is what checking definitions needs besides the files: the
// running networks (whose bridges they must not take) and the host's links.
type checkContext struct {
	running    []*conf.Network
	linkExists func(string) (bool, error)
}

// openDefinitions reads the config dir. A definition that cannot be read or
// fails the checks is left out and reported in skipped: vnetd still starts,
// and the other networks work.
func openDefinitions(dir string, cc checkContext) (defs *definitions, skipped error, err error) {
	store, err := conf.OpenStore(dir)
	if err != nil {
		return nil, nil, err
	}
	set, skipped := readDefinitions(store, cc)
	d := &definitions{store: store}
	if err := d.install(set); err != nil {
		return nil, nil, err
	}
	return d, skipped, nil
}

// readDefinitions reads and checks every definition file, as net-define
// checks a definition: it parses, validates, has a valid name matching its
// file, a uuid no other file has, and a bridge name no other network has;
// a missing uuid, bridge name or MAC is filled in. The set holds the
// definitions that passed; problems has one error per failing file, naming
// it.
func readDefinitions(store *conf.Store, cc checkContext) (set *defSet, problems error) {
	set = &defSet{nets: map[string]*conf.Network{}, autostart: map[string]bool{}}
	entries, err := os.ReadDir(store.Dir())
	if err != nil {
		return set, fmt.Errorf("reading %s: %w", store.Dir(), err)
	}
	var errs []error
	var loaded []*conf.Network
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".xml")
		if !ok || strings.HasPrefix(e.Name(), ".") || e.IsDir() {
			continue
		}
		file := filepath.Join(store.Dir(), e.Name())
		n, err := store.Lookup(name)
		if err == nil {
			err = n.Validate()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		on, err := store.Autostart(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		loaded = append(loaded, n)
		set.autostart[name] = on
	}
	sort.Slice(loaded, func(i, j int) bool { return loaded[i].Name < loaded[j].Name })
	byUUID := map[uuid.UUID]string{}
	for _, n := range loaded {
		file := filepath.Join(store.Dir(), n.Name+".xml")
		before := n.Format(conf.FormatInactive)
		others := append(otherDefs(loaded, n), otherDefs(cc.running, n)...)
		if err := n.ApplyDefaults(conf.DefineContext{Others: others, LinkExists: cc.linkExists}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			delete(set.autostart, n.Name)
			continue
		}
		if prev, dup := byUUID[n.UUID]; dup {
			errs = append(errs, fmt.Errorf("%s: uuid %s is already the uuid of network %q", file, n.UUID, prev))
			delete(set.autostart, n.Name)
			continue
		}
		byUUID[n.UUID] = n.Name
		set.nets[n.Name] = n
		if !bytes.Equal(before, n.Format(conf.FormatInactive)) {
			set.completed = append(set.completed, n)
		}
	}
	return set, errors.Join(errs...)
}

// otherDefs is list without n's own entry.
func otherDefs(list []*conf.Network, n *conf.Network) []*conf.Network {
	var out []*conf.Network
	for _, o := range list {
		if o != n && o.Name != n.Name {
			out = append(out, o)
		}
	}
	return out
}

// install writes the completed definitions back and makes set current.
// They are written as they are (libvirt's virNetworkSaveConfig): the set was
// checked as a whole, which conf.Store.Define, comparing with the files,
// cannot do for a file that lacked its uuid or while another one is broken.
func (d *definitions) install(set *defSet) error {
	for _, n := range set.completed {
		path := filepath.Join(d.store.Dir(), n.Name+".xml")
		if err := conf.WriteFileAtomic(path, n.Format(conf.FormatInactive), 0o600); err != nil {
			return fmt.Errorf("writing back the completed definition %s: %w", path, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nets, d.autostart = set.nets, set.autostart
	return nil
}

// Dir is the config dir.
func (d *definitions) Dir() string { return d.store.Dir() }

// Define stores n (see conf.Store.Define) and returns the definition it
// replaced, if any.
func (d *definitions) Define(n *conf.Network) (*conf.Network, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.store.Define(n); err != nil {
		return nil, err
	}
	prev := d.nets[n.Name]
	d.nets[n.Name] = n.Clone()
	if prev == nil {
		d.autostart[n.Name] = false
	}
	return prev, nil
}

// Undefine removes the definition of name and its autostart mark.
func (d *definitions) Undefine(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	// A file already removed by hand is forgotten all the same.
	if err := d.store.Undefine(name); err != nil && !errors.Is(err, conf.ErrNotFound) {
		return err
	}
	delete(d.nets, name)
	delete(d.autostart, name)
	return nil
}

// Lookup returns a copy of the definition of name; its error wraps
// conf.ErrNotFound for a network that is not defined.
func (d *definitions) Lookup(name string) (*conf.Network, error) {
	if err := conf.ValidateName(name); err != nil {
		return nil, fmt.Errorf("lookup network: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.nets[name]
	if !ok {
		return nil, fmt.Errorf("network %q: %w", name, conf.ErrNotFound)
	}
	return n.Clone(), nil
}

// LookupUUID returns a copy of the definition with that uuid.
func (d *definitions) LookupUUID(id uuid.UUID) (*conf.Network, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.nets {
		if n.UUID == id {
			return n.Clone(), nil
		}
	}
	return nil, fmt.Errorf("network with uuid %s: %w", id, conf.ErrNotFound)
}

// List returns copies of every definition, sorted by name.
func (d *definitions) List() ([]*conf.Network, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*conf.Network, 0, len(d.nets))
	for _, n := range d.nets {
		out = append(out, n.Clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// SetAutostart marks the defined network name to autostart, or not.
func (d *definitions) SetAutostart(name string, on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.nets[name]; !ok {
		return fmt.Errorf("set autostart of network %q: %w", name, conf.ErrNotFound)
	}
	if err := d.store.SetAutostart(name, on); err != nil {
		return err
	}
	d.autostart[name] = on
	return nil
}

// Autostart reports whether the defined network name autostarts.
func (d *definitions) Autostart(name string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.nets[name]; !ok {
		return false, fmt.Errorf("get autostart of network %q: %w", name, conf.ErrNotFound)
	}
	return d.autostart[name], nil
}

// diff reports which networks set defines anew or differently from the
// current definitions, and which it no longer defines.
func (d *definitions) diff(set *defSet) (defined, undefined []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, n := range set.nets {
		old, ok := d.nets[name]
		if !ok || !bytes.Equal(old.Format(conf.FormatInactive), n.Format(conf.FormatInactive)) {
			defined = append(defined, name)
		}
	}
	for name := range d.nets {
		if _, ok := set.nets[name]; !ok {
			undefined = append(undefined, name)
		}
	}
	sort.Strings(defined)
	sort.Strings(undefined)
	return defined, undefined
}
