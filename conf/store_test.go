package conf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
)

const (
	storeUUIDA = "11111111-2222-3333-4444-555555555555"
	storeUUIDB = "66666666-7777-8888-9999-aaaaaaaaaaaa"
)

// storeTestNetwork is a minimal valid network named name with uuid id.
func storeTestNetwork(t *testing.T, name, id string) *Network {
	t.Helper()
	n, err := Parse([]byte(`<network><name>placeholder</name><uuid>` + id + `</uuid>` +
		`<bridge name='virbr9'/><ip address='192.168.50.1' netmask='255.255.255.0'/></network>`))
	if err != nil {
		t.Fatalf("parse test network: %v", err)
	}
	n.Name = name
	return n
}

func storeOpenTest(t *testing.T) *Store {
	t.Helper()
	s, err := OpenStore(filepath.Join(t.TempDir(), "networks"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func storeMustDefine(t *testing.T, s *Store, n *Network) {
	t.Helper()
	if _, err := s.Define(n); err != nil {
		t.Fatalf("Define(%q): %v", n.Name, err)
	}
}

// storeDirNames lists the entries of dir.
func storeDirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		want string // substring of the error; "" means valid
	}{
		{"default", ""},
		{"net-1_x.y", ""},
		{"with space", ""},
		{`quo"te`, ""},
		{"it's", ""},
		{"<&>", ""},
		{"réseau", ""},
		{"a..b", ""},
		{"trailing.", ""},
		{"autostart", ""},
		{strings.Repeat("n", 200), ""},
		{"", "must not be empty"},
		{"a/b", "must not contain '/'"},
		{"/", "must not contain '/'"},
		{"../x", "must not start with '.'"},
		{"..", "must not start with '.'"},
		{".", "must not start with '.'"},
		{".hidden", "must not start with '.'"},
		{"a\x00b", "must not contain NUL"},
		{"a\nb", "control characters"},
		{"a\tb", "control characters"},
		{"a\x7fb", "control characters"},
		{"a\u0085b", "control characters"},
		{"bad\xffutf8", "valid UTF-8"},
		{strings.Repeat("n", 201), "at most 200"},
		{strings.Repeat("x", 10000), "at most 200"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20q", tt.name), func(t *testing.T) {
			err := ValidateName(tt.name)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ValidateName(%q) = %v, want nil", tt.name, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ValidateName(%.40q) = %v, want error containing %q", tt.name, err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "network name ") {
				t.Errorf("error %q does not start with \"network name \"", err)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error is %d bytes long", len(err.Error()))
			}
		})
	}
	if err := ValidateName("a/b"); err.Error() != `network name "a/b": must not contain '/'` {
		t.Errorf("ValidateName(a/b) = %q", err)
	}
}

func TestStoreOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", s.Dir(), dir)
	}
	for _, d := range []string{dir, filepath.Join(dir, "autostart")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want a 0700 directory", d, fi.Mode())
		}
	}
	// Opening again is fine.
	if _, err := OpenStore(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(""); err == nil {
		t.Error("OpenStore(\"\") succeeded")
	}
}

func TestStoreRoundTrip(t *testing.T) {
	s := storeOpenTest(t)
	names := []string{"zeta", "default", `odd "name" with spaces`, "réseau"}
	for _, name := range names {
		n := storeTestNetwork(t, name, uuid.NewString())
		n.Connections = 3 // status: must not be stored
		prev, err := s.Define(n)
		if err != nil {
			t.Fatalf("Define(%q): %v", name, err)
		}
		if prev != nil {
			t.Errorf("Define(%q) returned prev %v for a new network", name, prev.Name)
		}
		got, err := s.Lookup(name)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", name, err)
		}
		if got.Name != name || got.UUID != n.UUID || got.Connections != 0 {
			t.Errorf("Lookup(%q) = %q %s connections=%d", name, got.Name, got.UUID, got.Connections)
		}
		if want := n.Format(FormatInactive); !bytes.Equal(got.Format(FormatInactive), want) {
			t.Errorf("Lookup(%q) formats as\n%s\nwant\n%s", name, got.Format(FormatInactive), want)
		}
		file, err := os.ReadFile(filepath.Join(s.Dir(), name+".xml"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(file, n.Format(FormatInactive)) {
			t.Errorf("%s.xml is\n%s", name, file)
		}
		byID, err := s.LookupUUID(n.UUID)
		if err != nil || byID.Name != name {
			t.Errorf("LookupUUID(%s) = %v, %v", n.UUID, byID, err)
		}
	}

	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range list {
		got = append(got, n.Name)
	}
	want := slices.Clone(names)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("List() = %q, want %q", got, want)
	}

	fi, err := os.Stat(filepath.Join(s.Dir(), "zeta.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("zeta.xml mode %v, want 0600", fi.Mode())
	}
}

func TestStoreDefineDoesNotModifyArgument(t *testing.T) {
	s := storeOpenTest(t)
	n := storeTestNetwork(t, "net", storeUUIDA)
	n.Connections = 7
	before := n.Format(0)
	storeMustDefine(t, s, n)
	if after := n.Format(0); !bytes.Equal(before, after) || n.Connections != 7 {
		t.Errorf("Define modified its argument:\n%s\nwas\n%s", after, before)
	}
}

func TestStoreLookupNotFound(t *testing.T) {
	s := storeOpenTest(t)
	if _, err := s.Lookup("nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Lookup(nope) = %v, want ErrNotFound naming the network", err)
	}
	if _, err := s.LookupUUID(uuid.MustParse(storeUUIDA)); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), storeUUIDA) {
		t.Errorf("LookupUUID = %v, want ErrNotFound naming the uuid", err)
	}
	if err := s.Undefine("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Undefine(nope) = %v, want ErrNotFound", err)
	}
	if err := s.SetAutostart("nope", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetAutostart(nope) = %v, want ErrNotFound", err)
	}
	if _, err := s.Autostart("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Autostart(nope) = %v, want ErrNotFound", err)
	}
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Errorf("List() of an empty store = %v, %v", list, err)
	}
}

func TestStoreBadNames(t *testing.T) {
	base := t.TempDir()
	s, err := OpenStore(filepath.Join(base, "networks"))
	if err != nil {
		t.Fatal(err)
	}
	// A valid definition just outside the store that "../x" would reach.
	outside := storeTestNetwork(t, "x", storeUUIDA)
	if err := os.WriteFile(filepath.Join(base, "x.xml"), outside.Format(FormatInactive), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../x", "a/b", "", "a\nb", "/etc/passwd"} {
		check := func(op string, err error) {
			t.Helper()
			if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "network name") {
				t.Errorf("%s(%q) = %v, want a name error", op, name, err)
			}
		}
		_, err := s.Lookup(name)
		check("Lookup", err)
		check("Undefine", s.Undefine(name))
		check("SetAutostart", s.SetAutostart(name, true))
		_, err = s.Autostart(name)
		check("Autostart", err)
		_, err = s.Define(storeTestNetwork(t, name, storeUUIDB))
		check("Define", err)
	}
	if got := storeDirNames(t, base); !slices.Equal(got, []string{"networks", "x.xml"}) {
		t.Errorf("%s holds %q", base, got)
	}
	if got := storeDirNames(t, s.Dir()); !slices.Equal(got, []string{"autostart"}) {
		t.Errorf("store holds %q", got)
	}
}

func TestStoreDuplicates(t *testing.T) {
	tests := []struct {
		desc    string
		name    string
		uuid    string
		wantErr string
	}{
		{"same name, other uuid", "one", storeUUIDB, `network "one" is already defined with uuid ` + storeUUIDA},
		{"same uuid, other name", "two", storeUUIDA, `network with uuid ` + storeUUIDA + ` is already defined as "one"`},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s := storeOpenTest(t)
			storeMustDefine(t, s, storeTestNetwork(t, "one", storeUUIDA))
			path := filepath.Join(s.Dir(), "one.xml")
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SetAutostart("one", true); err != nil {
				t.Fatal(err)
			}

			prev, err := s.Define(storeTestNetwork(t, tt.name, tt.uuid))
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Define = %v, want %q", err, tt.wantErr)
			}
			if prev != nil {
				t.Errorf("rejected Define returned prev %q", prev.Name)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Errorf("rejected Define changed one.xml:\n%s\nwas\n%s", after, before)
			}
			if got := storeDirNames(t, s.Dir()); !slices.Equal(got, []string{"autostart", "one.xml"}) {
				t.Errorf("store holds %q after a rejected Define", got)
			}
			if on, err := s.Autostart("one"); err != nil || !on {
				t.Errorf("Autostart(one) = %v, %v after a rejected Define", on, err)
			}
		})
	}
}

func TestStoreRedefine(t *testing.T) {
	s := storeOpenTest(t)
	storeMustDefine(t, s, storeTestNetwork(t, "net", storeUUIDA))
	if err := s.SetAutostart("net", true); err != nil {
		t.Fatal(err)
	}
	n := storeTestNetwork(t, "net", storeUUIDA)
	n.Bridge.Name = "virbr42"
	prev, err := s.Define(n)
	if err != nil {
		t.Fatal(err)
	}
	if prev == nil || prev.Bridge.Name != "virbr9" || prev.Name != "net" {
		t.Fatalf("Define returned prev %+v, want the old definition", prev)
	}
	got, err := s.Lookup("net")
	if err != nil {
		t.Fatal(err)
	}
	if got.Bridge.Name != "virbr42" {
		t.Errorf("Lookup after redefine has bridge %q", got.Bridge.Name)
	}
	if on, err := s.Autostart("net"); err != nil || !on {
		t.Errorf("redefine changed autostart: %v, %v", on, err)
	}
	if list, err := s.List(); err != nil || len(list) != 1 {
		t.Errorf("List() = %d networks, %v", len(list), err)
	}
}

func TestStoreDefineRejects(t *testing.T) {
	s := storeOpenTest(t)
	if _, err := s.Define(nil); err == nil {
		t.Error("Define(nil) succeeded")
	}
	n := storeTestNetwork(t, "net", storeUUIDA)
	n.UUID = uuid.UUID{}
	if _, err := s.Define(n); err == nil || !strings.Contains(err.Error(), `"net"`) {
		t.Errorf("Define without uuid = %v", err)
	}
	if got := storeDirNames(t, s.Dir()); !slices.Equal(got, []string{"autostart"}) {
		t.Errorf("store holds %q", got)
	}
}

func TestStoreUndefine(t *testing.T) {
	s := storeOpenTest(t)
	storeMustDefine(t, s, storeTestNetwork(t, "a", storeUUIDA))
	storeMustDefine(t, s, storeTestNetwork(t, "b", storeUUIDB))
	if err := s.Undefine("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup after Undefine = %v", err)
	}
	if _, err := s.LookupUUID(uuid.MustParse(storeUUIDA)); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupUUID after Undefine = %v", err)
	}
	if err := s.Undefine("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Undefine = %v", err)
	}
	if got := storeDirNames(t, s.Dir()); !slices.Equal(got, []string{"autostart", "b.xml"}) {
		t.Errorf("store holds %q", got)
	}
	// The uuid is free again.
	storeMustDefine(t, s, storeTestNetwork(t, "c", storeUUIDA))
}

func TestStoreAutostart(t *testing.T) {
	s := storeOpenTest(t)
	storeMustDefine(t, s, storeTestNetwork(t, "net", storeUUIDA))
	marker := filepath.Join(s.Dir(), "autostart", "net")
	check := func(want bool) {
		t.Helper()
		on, err := s.Autostart("net")
		if err != nil || on != want {
			t.Fatalf("Autostart = %v, %v, want %v", on, err, want)
		}
		if _, err := os.Lstat(marker); (err == nil) != want {
			t.Fatalf("marker present = %v, want %v", err == nil, want)
		}
	}
	check(false)
	for _, on := range []bool{true, true, false, false, true} {
		if err := s.SetAutostart("net", on); err != nil {
			t.Fatal(err)
		}
		check(on)
	}
	if err := s.Undefine("net"); err != nil {
		t.Fatal(err)
	}
	if got := storeDirNames(t, filepath.Join(s.Dir(), "autostart")); len(got) != 0 {
		t.Errorf("autostart holds %q after Undefine", got)
	}
	// A fresh definition starts without autostart, even over a stale marker
	// (here a libvirt-style dangling symlink).
	if err := os.Symlink("/nonexistent/net.xml", marker); err != nil {
		t.Fatal(err)
	}
	storeMustDefine(t, s, storeTestNetwork(t, "net", storeUUIDA))
	check(false)
	// libvirt's symlink markers count as autostart.
	if err := os.Symlink("../net.xml", marker); err != nil {
		t.Fatal(err)
	}
	check(true)
}

func TestStoreNoTempFiles(t *testing.T) {
	s := storeOpenTest(t)
	for i := range 3 {
		n := storeTestNetwork(t, "net", storeUUIDA)
		n.MTU = uint16(1400 + i)
		storeMustDefine(t, s, n)
	}
	if err := s.SetAutostart("net", true); err != nil {
		t.Fatal(err)
	}
	if got := storeDirNames(t, s.Dir()); !slices.Equal(got, []string{"autostart", "net.xml"}) {
		t.Errorf("store holds %q", got)
	}
	if got := storeDirNames(t, filepath.Join(s.Dir(), "autostart")); !slices.Equal(got, []string{"net"}) {
		t.Errorf("autostart holds %q", got)
	}
}

func TestStoreWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, data := range []string{"one", "two, longer", ""} {
		if err := WriteFileAtomic(path, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != data {
			t.Fatalf("read back %q, %v, want %q", got, err, data)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, %v, want 0640", fi.Mode(), err)
	}
	// A failed rename (the target is a non-empty directory) leaves no temp file.
	if err := os.MkdirAll(filepath.Join(dir, "d", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "d"), []byte("x"), 0o600); err == nil {
		t.Error("WriteFileAtomic over a directory succeeded")
	}
	if got := storeDirNames(t, dir); !slices.Equal(got, []string{"d", "f"}) {
		t.Errorf("dir holds %q", got)
	}
	// A missing directory is an error, not a panic.
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Error("WriteFileAtomic into a missing directory succeeded")
	}
}

func TestStoreListSkipsAndFails(t *testing.T) {
	s := storeOpenTest(t)
	storeMustDefine(t, s, storeTestNetwork(t, "good", storeUUIDA))
	for file, data := range map[string]string{
		".good.xml.tmp123": "garbage",
		".hidden.xml":      "garbage",
		"notes.txt":        "garbage",
		"good.xml~":        "garbage",
	} {
		if err := os.WriteFile(filepath.Join(s.Dir(), file), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(s.Dir(), "dir.xml"), 0o700); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Name != "good" {
		t.Fatalf("List() = %v, %v, want just good", list, err)
	}

	// A file that does not parse makes List fail, naming it.
	bad := filepath.Join(s.Dir(), "bad.xml")
	if err := os.WriteFile(bad, []byte("<network><name>bad"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("List() with a corrupt file = %v, want an error naming %s", err, bad)
	}
	if _, err := s.Lookup("bad"); err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), bad) {
		t.Errorf("Lookup(bad) = %v, want a parse error naming %s", err, bad)
	}

	// So does a file whose content names another network.
	if err := os.WriteFile(bad, storeTestNetwork(t, "other", storeUUIDB).Format(FormatInactive), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `"other"`) {
		t.Errorf("List() with a misnamed file = %v", err)
	}
}

func TestStoreConcurrentDefine(t *testing.T) {
	s := storeOpenTest(t)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		nw := storeTestNetwork(t, fmt.Sprintf("net%02d", i), uuid.NewString())
		wg.Go(func() { _, errs[i] = s.Define(nw) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Define net%02d: %v", i, err)
		}
	}
	list, err := s.List()
	if err != nil || len(list) != n {
		t.Fatalf("List() = %d networks, %v", len(list), err)
	}
	for i, nw := range list {
		if want := fmt.Sprintf("net%02d", i); nw.Name != want {
			t.Errorf("List()[%d] = %q, want %q", i, nw.Name, want)
		}
	}

	// Racing to define one uuid under different names: exactly one wins.
	wins := make([]bool, n)
	for i := range n {
		nw := storeTestNetwork(t, fmt.Sprintf("race%02d", i), storeUUIDA)
		wg.Go(func() {
			_, err := s.Define(nw)
			wins[i] = err == nil
		})
	}
	wg.Wait()
	if c := len(slices.DeleteFunc(wins, func(w bool) bool { return !w })); c != 1 {
		t.Errorf("%d Defines of one uuid succeeded, want 1", c)
	}
}
