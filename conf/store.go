package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// ErrNotFound is wrapped by the Store's errors for a network it does not hold.
var ErrNotFound = errors.New("network not found")

// maxNameLen bounds a network name so that NAME.xml fits a file name (255
// bytes on common file systems) with room for the temp file's decorations.
const maxNameLen = 200

// ValidateName checks that name can be a definition file name: non-empty, at
// most 200 bytes of valid UTF-8, no '/' and no control characters (NUL,
// newline, ...), and not starting with '.' (which also rules out "." and "..",
// and keeps names apart from the Store's temp files).
func ValidateName(name string) error {
	var problem string
	switch {
	case name == "":
		problem = "must not be empty"
	case len(name) > maxNameLen:
		problem = fmt.Sprintf("is %d bytes long, at most %d are allowed", len(name), maxNameLen)
	case !utf8.ValidString(name):
		problem = "must be valid UTF-8"
	case name[0] == '.':
		problem = "must not start with '.'"
	case strings.Contains(name, "/"):
		problem = "must not contain '/'"
	case strings.ContainsRune(name, 0):
		problem = "must not contain NUL"
	case strings.ContainsFunc(name, unicode.IsControl):
		problem = "must not contain control characters"
	default:
		return nil
	}
	return fmt.Errorf("network name %q: %s", truncate(name, 40), problem)
}

// Store keeps persistent network definitions in a directory, the way libvirt
// keeps /etc/libvirt/qemu/networks:
//
//	DIR/NAME.xml          the definition, formatted with FormatInactive
//	DIR/autostart/NAME    autostart marker
//
// vnetd writes autostart markers as empty files; any entry named NAME in
// DIR/autostart counts, so libvirt's symlinks (even dangling ones) are
// honoured too. Every write is atomic (see WriteFileAtomic); files whose names
// start with '.' are temp files and are ignored, as are files not ending in
// ".xml".
//
// A Store serialises its own operations; it does not lock against other
// processes using the same directory.
type Store struct {
	dir string
	mu  sync.Mutex
}

// OpenStore opens the store in dir, creating dir and dir/autostart (mode
// 0700) if they are missing.
func OpenStore(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("open network store: empty directory name")
	}
	if err := os.MkdirAll(filepath.Join(dir, "autostart"), 0o700); err != nil {
		return nil, fmt.Errorf("open network store: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) xmlPath(name string) string { return filepath.Join(s.dir, name+".xml") }

func (s *Store) autostartDir() string { return filepath.Join(s.dir, "autostart") }

func (s *Store) autostartPath(name string) string { return filepath.Join(s.autostartDir(), name) }

// Define stores n as a persistent definition. A network of the same name
// must have the same UUID and is replaced (and returned as prev); a network of
// the same UUID must have the same name. A new definition (no prev) starts
// with autostart off, clearing any stale marker. n is not modified; a
// rejected Define leaves the store as it was.
func (s *Store) Define(n *Network) (prev *Network, err error) {
	if n == nil {
		return nil, errors.New("define network: nil network")
	}
	if err := ValidateName(n.Name); err != nil {
		return nil, fmt.Errorf("define network: %w", err)
	}
	if n.UUID == (uuid.UUID{}) {
		return nil, fmt.Errorf("define network %q: missing uuid", n.Name)
	}
	data := n.Format(FormatInactive)
	// Never write a file that Lookup and List could not read back.
	back, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("define network %q: formatted definition does not parse: %w", n.Name, err)
	}
	if back.Name != n.Name || back.UUID != n.UUID {
		return nil, fmt.Errorf("define network %q: formatted definition reads back as %q uuid %s", n.Name, back.Name, back.UUID)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.list()
	if err != nil {
		return nil, fmt.Errorf("define network %q: %w", n.Name, err)
	}
	for _, e := range all {
		switch {
		case e.Name == n.Name && e.UUID != n.UUID:
			return nil, fmt.Errorf("network %q is already defined with uuid %s", e.Name, e.UUID)
		case e.UUID == n.UUID && e.Name != n.Name:
			return nil, fmt.Errorf("network with uuid %s is already defined as %q", e.UUID, e.Name)
		case e.Name == n.Name:
			prev = e
		}
	}
	if prev == nil {
		if err := s.setAutostart(n.Name, false); err != nil {
			return nil, fmt.Errorf("define network %q: %w", n.Name, err)
		}
	}
	if err := WriteFileAtomic(s.xmlPath(n.Name), data, 0o600); err != nil {
		return nil, fmt.Errorf("define network %q: %w", n.Name, err)
	}
	return prev, nil
}

// Undefine removes the definition of name and its autostart marker.
func (s *Store) Undefine(name string) error {
	if err := ValidateName(name); err != nil {
		return fmt.Errorf("undefine network: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.exists(name); err != nil {
		return fmt.Errorf("undefine network %q: %w", name, err)
	}
	// The marker goes first: a crash in between leaves a defined network
	// that does not autostart rather than an orphan marker.
	if err := s.setAutostart(name, false); err != nil {
		return fmt.Errorf("undefine network %q: %w", name, err)
	}
	if err := os.Remove(s.xmlPath(name)); err != nil {
		return fmt.Errorf("undefine network %q: %w", name, err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("undefine network %q: %w", name, err)
	}
	return nil
}

// Lookup reads the definition of name. Each call returns a fresh *Network.
func (s *Store) Lookup(name string) (*Network, error) {
	if err := ValidateName(name); err != nil {
		return nil, fmt.Errorf("lookup network: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.load(name)
	if err != nil {
		return nil, fmt.Errorf("network %q: %w", name, err)
	}
	return n, nil
}

// LookupUUID finds the definition with the given UUID.
func (s *Store) LookupUUID(id uuid.UUID) (*Network, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.list()
	if err != nil {
		return nil, fmt.Errorf("lookup network with uuid %s: %w", id, err)
	}
	for _, n := range all {
		if n.UUID == id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("network with uuid %s: %w", id, ErrNotFound)
}

// List reads every definition, sorted by name. A definition that cannot be
// read or parsed makes List fail with an error naming its file.
func (s *Store) List() ([]*Network, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.list()
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	return all, nil
}

// SetAutostart turns autostart of the defined network name on or off.
func (s *Store) SetAutostart(name string, on bool) error {
	if err := ValidateName(name); err != nil {
		return fmt.Errorf("set autostart: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.exists(name); err != nil {
		return fmt.Errorf("set autostart of network %q: %w", name, err)
	}
	if err := s.setAutostart(name, on); err != nil {
		return fmt.Errorf("set autostart of network %q: %w", name, err)
	}
	return nil
}

// Autostart reports whether the defined network name is marked to autostart.
func (s *Store) Autostart(name string) (bool, error) {
	if err := ValidateName(name); err != nil {
		return false, fmt.Errorf("get autostart: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.exists(name); err != nil {
		return false, fmt.Errorf("get autostart of network %q: %w", name, err)
	}
	on, err := s.autostart(name)
	if err != nil {
		return false, fmt.Errorf("get autostart of network %q: %w", name, err)
	}
	return on, nil
}

// exists checks that name has a definition file, wrapping ErrNotFound if not.
func (s *Store) exists(name string) error {
	_, err := os.Lstat(s.xmlPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	return err
}

// load reads and parses NAME.xml, checking it defines name.
func (s *Store) load(name string) (*Network, error) {
	path := s.xmlPath(name)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	n, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if n.Name != name {
		return nil, fmt.Errorf("%s: defines network %q", path, n.Name)
	}
	return n, nil
}

// list reads every definition, sorted by name.
func (s *Store) list() ([]*Network, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []*Network
	for _, e := range entries {
		file := e.Name()
		name, ok := strings.CutSuffix(file, ".xml")
		if !ok || strings.HasPrefix(file, ".") || e.IsDir() {
			continue
		}
		if err := ValidateName(name); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(s.dir, file), err)
		}
		n, err := s.load(name)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *Store) autostart(name string) (bool, error) {
	_, err := os.Lstat(s.autostartPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// setAutostart creates or removes the marker of name.
func (s *Store) setAutostart(name string, on bool) error {
	if on {
		return WriteFileAtomic(s.autostartPath(name), nil, 0o600)
	}
	err := os.Remove(s.autostartPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(s.autostartDir())
}

// WriteFileAtomic replaces path with data so that a crash leaves either the
// old file or the new one, complete: it writes a temp file (".BASE.tmp*", so
// directory scans can skip it) in the same directory, fsyncs and closes it,
// renames it over path and fsyncs the directory. The file gets mode perm.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	if err := writeSyncClose(f, data, perm); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return syncDir(dir)
}

// writeSyncClose fills a fresh temp file, makes it durable and closes it.
func writeSyncClose(f *os.File, data []byte, perm os.FileMode) error {
	err := f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir fsyncs a directory so that renames and removals in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return d.Close()
}
