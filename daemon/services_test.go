package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/leases"
	bolt "go.etcd.io/bbolt"
)

// fakeServices records which networks have servers.
type fakeServices struct {
	mu      sync.Mutex
	running map[string]*fakeService
	fail    error
}

type fakeService struct {
	s        *fakeServices
	name     string
	updates  int
	detached bool
}

func (f *fakeServices) Start(_ context.Context, n *conf.Network) (Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	svc := &fakeService{s: f, name: n.Name}
	f.running[n.Name] = svc
	return svc, nil
}

func (s *fakeService) Update(*conf.Network) error { s.updates++; return nil }

func (s *fakeService) Detach() error {
	s.detached = true
	return s.Close()
}

func (s *fakeService) Close() error {
	s.s.mu.Lock()
	defer s.s.mu.Unlock()
	delete(s.s.running, s.name)
	return nil
}

type fakeLeases struct {
	list    map[string][]leases.Lease
	deleted []string
}

func (f *fakeLeases) List(network string) ([]leases.Lease, error) { return f.list[network], nil }
func (f *fakeLeases) DeleteNetwork(network string) error {
	f.deleted = append(f.deleted, network)
	delete(f.list, network)
	return nil
}
func (f *fakeLeases) Sweep(time.Time) (int, error) { return 0, nil }

func newServicesEnv(t *testing.T) (*testEnv, *fakeServices, *fakeLeases) {
	e := &testEnv{dir: t.TempDir(), host: newFakeHost(), fw: newFakeFirewall()}
	svcs := &fakeServices{running: map[string]*fakeService{}}
	fl := &fakeLeases{list: map[string][]leases.Lease{}}
	open := func() {
		m, err := Open(Config{ConfigDir: filepath.Join(e.dir, "etc"), StateDir: filepath.Join(e.dir, "state"),
			Host: e.host, Firewall: e.fw, Services: svcs, Leases: fl})
		if err != nil {
			t.Fatal(err)
		}
		e.m = m
	}
	open()
	t.Cleanup(func() { e.m.Close() })
	return e, svcs, fl
}

func TestServicesFollowTheNetwork(t *testing.T) {
	e, svcs, _ := newServicesEnv(t)
	e.m.Define([]byte(natXML))
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	if svcs.running["default"] == nil {
		t.Fatal("no servers for a started network")
	}
	_, err := e.m.Update("default", api.UpdateRequest{Command: "add-last", Section: "ip-dhcp-host", ParentIndex: -1,
		XML: "<host mac='52:54:00:00:00:07' ip='192.168.122.7'/>", Live: true})
	if err != nil || svcs.running["default"].updates != 1 {
		t.Fatalf("live update did not reach the servers: %v", err)
	}
	svc := svcs.running["default"]
	e.m.Close()
	if len(svcs.running) != 0 {
		t.Fatal("servers left running after Close")
	}
	if !svc.detached {
		t.Error("vnetd's exit closed the servers instead of detaching them (the RA would withdraw guests' routes)")
	}
	m, err := Open(Config{ConfigDir: filepath.Join(e.dir, "etc"), StateDir: filepath.Join(e.dir, "state"),
		Host: e.host, Firewall: e.fw, Services: svcs, Leases: &fakeLeases{}})
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	if svcs.running["default"] == nil {
		t.Fatal("servers not restarted for an adopted network")
	}
	svc = svcs.running["default"]
	if err := e.m.Destroy("default"); err != nil || len(svcs.running) != 0 {
		t.Fatalf("destroy: %v, running %v", err, svcs.running)
	}
	if svc.detached {
		t.Error("destroy detached the servers instead of closing them")
	}
}

func TestFailingServicesRollBackTheStart(t *testing.T) {
	e, svcs, _ := newServicesEnv(t)
	e.m.Define([]byte(natXML))
	svcs.fail = errors.New("dhcpv4: bind 192.168.122.1:67 on virbr0: address already in use")
	err := e.m.Start("default")
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("start: %v", err)
	}
	e.m.awaitReaped("virbr0")
	if len(e.host.bridges) != 0 || len(e.fw.applied) != 0 {
		t.Fatalf("not rolled back: %v %v", e.host.bridges, e.fw.applied)
	}
}

func TestLeasesListing(t *testing.T) {
	e, _, fl := newServicesEnv(t)
	e.m.Define([]byte(natXML))
	mac, _ := net.ParseMAC("52:54:00:00:00:01")
	fl.list["default"] = []leases.Lease{
		{Network: "default", Kind: leases.V4, IP: netip.MustParseAddr("192.168.122.9"), Prefix: 24, MAC: mac, Hostname: "vm1", Expiry: time.Now().Add(time.Hour)},
		{Network: "default", Kind: leases.V4, IP: netip.MustParseAddr("192.168.122.8"), Prefix: 24, Expiry: time.Now().Add(-time.Minute)},
	}
	list, err := e.m.Leases("default", "")
	if err != nil || len(list) != 1 || list[0].Hostname != "vm1" || list[0].Type != "ipv4" {
		t.Fatalf("leases: %+v %v", list, err)
	}
	if list, _ := e.m.Leases("default", "52:54:00:00:00:02"); len(list) != 0 {
		t.Fatalf("mac filter: %+v", list)
	}
	if err := e.m.Undefine("default"); err != nil || len(fl.deleted) != 1 {
		t.Fatalf("leases of an undefined network kept: %v %v", err, fl.deleted)
	}
}

// A state directory of an earlier vnetd has its leases in a bbolt
// database: they are imported once, and the database is set aside.
func TestLeasesImportedFromBolt(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "leases.db")
	db, err := bolt.Open(old, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("leases"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte(`{"network":"default","kind":"ipv4","ip":"192.168.122.9","prefix":24,"mac":"52:54:00:00:00:09","hostname":"vm9"}`))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second start finds nothing more to import
		s, err := newNetServices(dir, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ls, err := s.leases.List("default")
		s.leases.Close()
		if err != nil || len(ls) != 1 || ls[0].Hostname != "vm9" {
			t.Fatalf("leases after import: %+v, %v", ls, err)
		}
	}
	if _, err := os.Stat(old + ".imported"); err != nil {
		t.Error(err)
	}
}
