package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/vnetd/vnetd/leases"
	bolt "go.etcd.io/bbolt"
)

// damagedStateEnv runs a defined network and a transient one, stops vnetd,
// damages vnetd.db with damage, and reopens: Open must succeed whatever the
// damage. It returns the env and the running network's bridge ifindex.
func damagedStateEnv(t *testing.T, damage func(t *testing.T, path string)) (*testEnv, int) {
	t.Helper()
	e := newEnv(t)
	if _, err := e.m.Define([]byte(natXML)); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	idle := strings.NewReplacer("default", "idle", "122", "125").Replace(natXML)
	if _, err := e.m.Define([]byte(idle)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Create([]byte(strings.NewReplacer("default", "scratch", "122", "123").Replace(natXML))); err != nil {
		t.Fatal(err)
	}
	ifindex := e.host.bridges["virbr0"]
	e.m.Close()
	damage(t, filepath.Join(e.dir, "state", "vnetd.db"))
	e.open(t)
	return e, ifindex
}

// overwrite writes garbage over the given pages of the database.
func overwrite(t *testing.T, path string, pages func(n int) []int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	rng := rand.New(rand.NewPCG(uint64(len(data)), 9))
	for _, p := range pages(len(data) / page) {
		for i := p * page; i < (p+1)*page && i < len(data); i++ {
			data[i] = byte(rng.Uint32())
		}
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func pageRange(from int) func(n int) []int {
	return func(n int) []int {
		var out []int
		for p := from; p < n; p++ {
			out = append(out, p)
		}
		return out
	}
}

// A damaged vnetd.db used to stop every start (an error, or a panic in
// bbolt: a crash loop). Now it is moved aside, an empty one takes its
// place, the definitions are untouched, and the network still running on
// the host is adopted, bridge and all, as after any restart.
func TestDamagedStateDBIsMovedAsideAndRebuilt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"both meta pages", func(t *testing.T, path string) { overwrite(t, path, func(int) []int { return []int{0, 1} }) }},
		{"every page after the metas", func(t *testing.T, path string) { overwrite(t, path, pageRange(2)) }},
		{"every page", func(t *testing.T, path string) { overwrite(t, path, pageRange(0)) }},
		{"cut to half a page", func(t *testing.T, path string) {
			if err := os.Truncate(path, 2048); err != nil {
				t.Fatal(err)
			}
		}},
		// The tree's pages are past the end of the file but inside
		// bbolt's memory map: reading them faults (SIGBUS).
		{"cut after four pages", func(t *testing.T, path string) {
			if err := os.Truncate(path, 4*4096); err != nil {
				t.Fatal(err)
			}
		}},
		{"a record that does not decode", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketNetworks).Put([]byte("default"), []byte("{\x00garbage"))
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ifindex := damagedStateEnv(t, tc.damage)
			copies, _ := filepath.Glob(filepath.Join(e.dir, "state", "vnetd.db.corrupt-*"))
			if len(copies) != 1 {
				t.Fatalf("copies of the damaged database: %q", copies)
			}
			if !e.m.stateDamaged {
				t.Error("damage not recorded for the metric")
			}
			checkRebuilt(t, e, ifindex, true)
		})
	}
}

// checkRebuilt checks the networks after a restart on a damaged database;
// exact: the damage was found (or there was none).
func checkRebuilt(t *testing.T, e *testEnv, ifindex int, exact bool) {
	t.Helper()
	infos, err := e.m.List()
	if err != nil {
		t.Fatal(err)
	}
	state := map[string]bool{}
	for _, in := range infos {
		state[in.Name] = in.Active
	}
	// The transient network's definition was only in the database: lost
	// with it when it was damaged.
	want := 3
	if e.m.stateDamaged {
		want = 2
	}
	if !exact && !e.m.stateDamaged {
		// bbolt fell back on its other meta page: the state of the
		// transaction before the last, whose record of the transient
		// network may not be there yet.
		want = len(infos)
	}
	if len(infos) != want || !state["default"] || state["idle"] || want == 3 && !state["scratch"] {
		t.Fatalf("after the restart (database damaged: %v): %+v", e.m.stateDamaged, infos)
	}
	if e.host.bridges["virbr0"] != ifindex {
		t.Error("the running network's bridge was recreated, not adopted")
	}
	if got, ok := e.fw.applied["default"]; !ok || got != ifindex {
		t.Error("the adopted network's firewall rules are not in place")
	}
	// What was rebuilt is in the new database: the next restart adopts it
	// as usual.
	e.m.Close()
	e.open(t)
	if info, err := e.m.Info("default"); err != nil || !info.Active {
		t.Errorf("after a second restart: %+v %v", info, err)
	}
	if e.m.stateDamaged {
		t.Error("a clean database reported as damaged")
	}
}

// Garbage over any single page, one at a time: Open never fails or
// panics, and the running network stays adopted whether or not that page
// was in use.
func TestStateDBAnyPageDamaged(t *testing.T) {
	probe, _ := damagedStateEnv(t, func(*testing.T, string) {})
	st, err := os.Stat(filepath.Join(probe.dir, "state", "vnetd.db"))
	if err != nil {
		t.Fatal(err)
	}
	for p := range int(st.Size() / 4096) {
		t.Run(fmt.Sprintf("page %d", p), func(t *testing.T) {
			e, ifindex := damagedStateEnv(t, func(t *testing.T, path string) {
				overwrite(t, path, func(int) []int { return []int{p} })
			})
			// A meta page bbolt finds invalid is one it recovers from
			// with the other, as from a torn commit.
			checkRebuilt(t, e, ifindex, p > 1)
		})
	}
}

func TestStateDamageMetric(t *testing.T) {
	e, _ := damagedStateEnv(t, func(t *testing.T, path string) { overwrite(t, path, pageRange(0)) })
	rec := httptest.NewRecorder()
	e.m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if want := `vnetd_storage_damage_total{file="vnetd.db",kind="unreadable"} 1`; !strings.Contains(string(body), want) {
		t.Errorf("metrics lack %s:\n%s", want, body)
	}
}

// A database another vnetd holds is not damage: Open fails as before and
// leaves the file alone.
func TestStateDBLockedIsNotDamage(t *testing.T) {
	dir := t.TempDir()
	s, _, err := openState(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if _, _, err := openState(dir); err == nil {
		t.Fatal("a second open of a locked database succeeded")
	}
	if copies, _ := filepath.Glob(filepath.Join(dir, "vnetd.db.corrupt-*")); len(copies) != 0 {
		t.Errorf("a locked database was moved aside: %q", copies)
	}
}

// A lease log damaged before its end is logged at Error (with the records
// lost and the copy kept) and counted; a torn tail stays a warning.
func TestLeaseLogDamageLoggedAndCounted(t *testing.T) {
	dir := t.TempDir()
	s, err := leases.Open(filepath.Join(dir, "leases.log"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		l := leases.Lease{Network: "default", Kind: leases.V4, IP: netip.AddrFrom4([4]byte{192, 168, 122, byte(10 + i)}), Prefix: 24}
		if err := s.Put(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	path := filepath.Join(dir, "leases.log")
	data, _ := os.ReadFile(path)
	data[len("VNLEASE1")+12] ^= 0x55 // inside the first record
	os.WriteFile(path, data, 0o600)

	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := newNetServices(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.leases.Close()
	if got := logged.String(); !strings.Contains(got, "level=ERROR") || !strings.Contains(got, "records_lost=1") || !strings.Contains(got, "leases.log.corrupt-") {
		t.Errorf("log:\n%s", got)
	}
	if ls, _ := svc.leases.List("default"); len(ls) != 2 {
		t.Errorf("%d leases kept, want the 2 intact ones", len(ls))
	}

	e := &testEnv{dir: t.TempDir(), host: newFakeHost(), fw: newFakeFirewall()}
	m, err := Open(Config{ConfigDir: filepath.Join(e.dir, "etc"), StateDir: filepath.Join(e.dir, "state"), Host: e.host, Firewall: e.fw, Leases: svc.leases})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rec := httptest.NewRecorder()
	m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`vnetd_storage_damage_total{file="leases.log",kind="mid_file"} 1`,
		`vnetd_storage_damage_total{file="leases.log",kind="torn_tail"} 0`,
		`vnetd_storage_damage_total{file="vnetd.db",kind="unreadable"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// BenchmarkOpenState opens a vnetd.db holding 256 running networks and
// 1000 ports, as at a start of the scale benchmark.
func BenchmarkOpenState(b *testing.B) {
	dir := b.TempDir()
	s, _, err := openState(dir)
	if err != nil {
		b.Fatal(err)
	}
	xml := strings.Repeat("x", 1200)
	for i := range 256 {
		if err := s.put(&liveRecord{Name: fmt.Sprintf("net%d", i), Phase: PhaseRunning, XML: xml, Bridge: fmt.Sprintf("virbr%d", i), IfIndex: i}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 1000 {
		if err := s.putPort(&portRecord{Network: fmt.Sprintf("net%d", i%256), UUID: uuid.New().String(), XML: xml[:600], Device: fmt.Sprintf("vnet%d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	s.close()
	for b.Loop() {
		s, _, err := openState(dir)
		if err != nil {
			b.Fatal(err)
		}
		s.close()
	}
}
