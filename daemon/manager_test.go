package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/client"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/dataplane"
)

// fakeHost records bridges instead of creating them.
type fakeHost struct {
	mu       sync.Mutex
	bridges  map[string]int // name -> ifindex
	next     int
	failNext error
	links    map[string]bool // host links that are not bridges of ours
	attached []string        // links enslaved as ports
	vfs      []string        // SetVF calls
}

func newFakeHost() *fakeHost {
	return &fakeHost{bridges: map[string]int{}, next: 10, links: map[string]bool{}}
}

func (h *fakeHost) LinkExists(name string) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.bridges[name]
	return ok || h.links[name], nil
}

func (h *fakeHost) Start(n *conf.Network) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.failNext; err != nil {
		h.failNext = nil
		return 0, err
	}
	h.next++
	h.bridges[n.Bridge.Name] = h.next
	return h.next, nil
}

func (h *fakeHost) Stop(n *conf.Network) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.bridges, n.Bridge.Name)
	return nil
}

func (h *fakeHost) Deactivate(n *conf.Network) error { return nil }

func (h *fakeHost) SetVF(pf string, vf int, mac net.HardwareAddr, vlan int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.vfs = append(h.vfs, fmt.Sprintf("%s/%d mac=%s vlan=%d", pf, vf, mac, vlan))
	return nil
}

func (h *fakeHost) LinkIndex(name string) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if i, ok := h.bridges[name]; ok {
		return i, nil
	}
	return 0, errors.New("no such link")
}

func (h *fakeHost) CreateTap(name string, o dataplane.TapOptions) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.links[name] = true
	return nil
}

func (h *fakeHost) AttachPort(pl dataplane.PortLink) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.links[pl.Name] {
		return 0, errors.New("no such link " + pl.Name)
	}
	h.attached = append(h.attached, pl.Name)
	return 99, nil
}

func (h *fakeHost) DetachPort(pl dataplane.PortLink, deleteLink bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, a := range h.attached {
		if a == pl.Name {
			h.attached = append(h.attached[:i], h.attached[i+1:]...)
			break
		}
	}
	if deleteLink {
		delete(h.links, pl.Name)
	}
	return nil
}

func (h *fakeHost) CreateMacvtap(name, parent string, mode conf.MacvtapMode, mac net.HardwareAddr, mtu int) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.links[name] = true
	return 98, nil
}

func (h *fakeHost) DeleteLink(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.links, name)
	return nil
}

func (h *fakeHost) Adopt(n *conf.Network, ifindex int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if got, ok := h.bridges[n.Bridge.Name]; !ok || got != ifindex {
		return errors.New("bridge gone")
	}
	return nil
}

// fakeFirewall keeps the applied networks' rule sets as names.
type fakeFirewall struct {
	mu        sync.Mutex
	applied   map[string]int // network -> ifindex
	applies   int
	failApply error
}

func newFakeFirewall() *fakeFirewall { return &fakeFirewall{applied: map[string]int{}} }

func (f *fakeFirewall) Apply(n *conf.Network, ifindex int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failApply != nil {
		return f.failApply
	}
	f.applies++
	f.applied[n.Name] = ifindex
	return nil
}

func (f *fakeFirewall) Remove(n *conf.Network) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.applied, n.Name)
	return nil
}

func (f *fakeFirewall) Check(n *conf.Network, ifindex int) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	got, ok := f.applied[n.Name]
	return ok && got == ifindex, nil
}

func (f *fakeFirewall) flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = map[string]int{}
}

const natXML = `<network>
  <name>default</name>
  <forward mode='nat'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>`

type testEnv struct {
	dir  string
	host *fakeHost
	fw   *fakeFirewall
	m    *Manager
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	e := &testEnv{dir: t.TempDir(), host: newFakeHost(), fw: newFakeFirewall()}
	e.open(t)
	return e
}

func (e *testEnv) open(t *testing.T) {
	t.Helper()
	m, err := Open(Config{ConfigDir: filepath.Join(e.dir, "etc"), StateDir: filepath.Join(e.dir, "state"), Host: e.host, Firewall: e.fw})
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	t.Cleanup(func() { m.Close() })
}

func code(err error) string { return APIError(err).Code }

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	n, err := e.m.Define([]byte(natXML))
	if err != nil {
		t.Fatal(err)
	}
	if n.Bridge.Name != "virbr0" || n.MAC == nil {
		t.Fatalf("define-time defaults not applied: bridge %q mac %v", n.Bridge.Name, n.MAC)
	}
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start("default"); code(err) != api.CodeConflict {
		t.Fatalf("second start: %v", err)
	}
	info, err := e.m.Info(n.UUID.String())
	if err != nil || !info.Active || !info.Persistent || info.Bridge != "virbr0" {
		t.Fatalf("info by uuid: %+v %v", info, err)
	}
	if _, ok := e.fw.applied["default"]; !ok {
		t.Fatal("firewall not applied")
	}
	if err := e.m.Destroy("default"); err != nil {
		t.Fatal(err)
	}
	e.m.awaitReaped("virbr0")
	if len(e.host.bridges) != 0 || len(e.fw.applied) != 0 {
		t.Fatalf("left behind: %v %v", e.host.bridges, e.fw.applied)
	}
	if err := e.m.Destroy("default"); code(err) != api.CodeNotActive {
		t.Fatalf("destroy of inactive: %v", err)
	}
	if err := e.m.Undefine("default"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Info("default"); code(err) != api.CodeNotFound {
		t.Fatalf("info after undefine: %v", err)
	}
}

func TestDefineRejectsAndKeepsOld(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Define([]byte(natXML)); err != nil {
		t.Fatal(err)
	}
	before, _ := e.m.XML("default", true)
	bad := strings.Replace(natXML, "192.168.122.254", "10.0.0.9", 1)
	_, err := e.m.Define([]byte(bad))
	if code(err) != api.CodeInvalidDefinition || !strings.Contains(err.Error(), "network/ip[1]/dhcp/range[1]") {
		t.Fatalf("bad define: %v", err)
	}
	after, _ := e.m.XML("default", true)
	if string(before) != string(after) {
		t.Fatal("rejected define changed the stored definition")
	}
	other := strings.Replace(natXML, "<name>default</name>", "<name>default</name><uuid>81ff0d90-c91e-6742-64da-4a736edb9a9b</uuid>", 1)
	if _, err := e.m.Define([]byte(other)); code(err) != api.CodeConflict {
		t.Fatalf("same name other uuid: %v", err)
	}
}

func TestFailedStartRollsBack(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(natXML))
	e.fw.failApply = errors.New("nftables: no such file")
	if err := e.m.Start("default"); code(err) != api.CodeOperationFailed {
		t.Fatalf("start with failing firewall: %v", err)
	}
	if len(e.host.bridges) != 0 {
		t.Fatalf("bridge left after failed start: %v", e.host.bridges)
	}
	recs, _ := e.m.state.all()
	if len(recs) != 0 {
		t.Fatalf("live state left after failed start: %v", recs)
	}
	e.fw.failApply = nil
	if err := e.m.Start("default"); err != nil {
		t.Fatalf("start after the failure cleared: %v", err)
	}
}

func TestRestartAdoptsRunningNetworks(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(natXML))
	if err := e.m.Start("default"); err != nil {
		t.Fatal(err)
	}
	ifindex := e.host.bridges["virbr0"]
	if _, err := e.m.Create([]byte(strings.NewReplacer("default", "scratch", "122", "123").Replace(natXML))); err != nil {
		t.Fatal(err)
	}
	e.m.Close()
	e.fw.flush() // someone flushed the ruleset while vnetd was down
	e.open(t)
	infos, err := e.m.List()
	if err != nil || len(infos) != 2 || !infos[0].Active || !infos[1].Active || infos[1].Persistent {
		t.Fatalf("after restart: %+v %v", infos, err)
	}
	if e.host.bridges["virbr0"] != ifindex {
		t.Fatal("bridge recreated on restart")
	}
	if got, ok := e.fw.applied["default"]; !ok || got != ifindex {
		t.Fatal("firewall not reconciled on adoption")
	}
}

func TestRestartForgetsVanishedAndRollsBackInterruptedStart(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(natXML))
	e.m.Start("default")
	// An interrupted start: recorded, bridge made, then a crash.
	n, _ := conf.Parse([]byte(strings.NewReplacer("default", "half", "122", "124").Replace(natXML)))
	n.Bridge.Name = "virbr9"
	e.host.Start(n)
	e.m.state.put(&liveRecord{Name: "half", Phase: PhaseStarting, XML: string(n.Format(0)), Bridge: "virbr9"})
	e.m.Close()
	delete(e.host.bridges, "virbr0") // the admin deleted the bridge by hand
	e.open(t)
	if infos, _ := e.m.List(); len(infos) != 1 || infos[0].Active {
		t.Fatalf("want default defined but inactive: %+v", infos)
	}
	if _, ok := e.host.bridges["virbr9"]; ok {
		t.Fatal("interrupted start not rolled back")
	}
}

func TestReconcileRestoresFlushedRules(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(natXML))
	e.m.Start("default")
	e.fw.flush()
	if got := e.m.Reconcile(); got != 1 {
		t.Fatalf("restored %d networks, want 1", got)
	}
	if got := e.m.Reconcile(); got != 0 {
		t.Fatalf("restored %d networks on a clean ruleset", got)
	}
}

func TestUpdateLiveAndConfig(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(natXML))
	e.m.Start("default")
	host := api.UpdateRequest{Command: "add-last", Section: "ip-dhcp-host", ParentIndex: -1,
		XML: "<host mac='52:54:00:00:00:07' name='vm7' ip='192.168.122.7'/>", Live: true, Config: true}
	res, err := e.m.Update("default", host)
	if err != nil || !res.Live || !res.Config {
		t.Fatalf("update: %+v %v", res, err)
	}
	for _, inactive := range []bool{false, true} {
		xml, _ := e.m.XML("default", inactive)
		if !strings.Contains(string(xml), "name='vm7'") {
			t.Fatalf("inactive=%v view lacks the host:\n%s", inactive, xml)
		}
	}
	if _, err := e.m.Update("default", host); code(err) != api.CodeInvalidDefinition {
		t.Fatalf("duplicate host: %v", err)
	}
	bridge := api.UpdateRequest{Command: "modify", Section: "bridge", XML: "<bridge name='x'/>"}
	if _, err := e.m.Update("default", bridge); code(err) != api.CodeUnsupported {
		t.Fatalf("bridge section: %v", err)
	}
	// A result that does not validate changes nothing.
	outside := api.UpdateRequest{Command: "add-last", Section: "ip-dhcp-host", ParentIndex: 0,
		XML: "<host mac='52:54:00:00:00:08' name='vm8' ip='10.1.1.8'/>", Config: true}
	if _, err := e.m.Update("default", outside); err == nil {
		t.Fatal("host outside the subnet accepted")
	}
}

func TestUndefineRunningBecomesTransient(t *testing.T) {
	e := newEnv(t)
	e.m.Define([]byte(natXML))
	e.m.Start("default")
	if err := e.m.Undefine("default"); err != nil {
		t.Fatal(err)
	}
	info, err := e.m.Info("default")
	if err != nil || !info.Active || info.Persistent {
		t.Fatalf("%+v %v", info, err)
	}
	e.m.Destroy("default")
	if _, err := e.m.Info("default"); code(err) != api.CodeNotFound {
		t.Fatalf("destroyed transient network still known: %v", err)
	}
}

func TestBridgeNameAllocationAvoidsHostLinks(t *testing.T) {
	e := newEnv(t)
	e.host.links["virbr0"] = true
	n, err := e.m.Define([]byte(natXML))
	if err != nil || n.Bridge.Name != "virbr1" {
		t.Fatalf("bridge %q %v", n.Bridge.Name, err)
	}
}

func TestAPIOverSocket(t *testing.T) {
	e := newEnv(t)
	sock := filepath.Join(e.dir, "vnetd.sock")
	ln, err := listenSocket(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httpTestServer{ln: ln}
	srv.serve(Handler(e.m, e.m.log))
	defer srv.close()

	ctx := context.Background()
	c := client.New(sock)
	info, err := c.Define(ctx, []byte(natXML))
	if err != nil || info.Name != "default" {
		t.Fatalf("define: %+v %v", info, err)
	}
	if err := c.Start(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	list, err := c.List(ctx, false)
	if err != nil || len(list) != 1 || !list[0].Active {
		t.Fatalf("list: %+v %v", list, err)
	}
	xml, err := c.XML(ctx, "default", false)
	if err != nil || !strings.Contains(string(xml), "<bridge name='virbr0'") {
		t.Fatalf("xml: %s %v", xml, err)
	}
	_, err = c.Define(ctx, []byte("<network><name>x</name><bogus/></network>"))
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Code != api.CodeInvalidDefinition || !strings.Contains(apiErr.Message, "network/bogus") {
		t.Fatalf("bad define over the API: %v", err)
	}
	if err := c.Start(ctx, "nope"); !errors.As(err, &apiErr) || apiErr.Code != api.CodeNotFound {
		t.Fatalf("start of unknown network: %v", err)
	}
	if err := c.SetAutostart(ctx, "default", true); err != nil {
		t.Fatal(err)
	}
	if info, _ := c.Info(ctx, "default"); !info.Autostart {
		t.Fatal("autostart not set")
	}
	if err := c.Destroy(ctx, "default"); err != nil {
		t.Fatal(err)
	}
}

type httpTestServer struct {
	ln   net.Listener
	done chan struct{}
	srv  *http.Server
}

func (s *httpTestServer) serve(h http.Handler) {
	s.srv = &http.Server{Handler: h}
	s.done = make(chan struct{})
	go func() { defer close(s.done); s.srv.Serve(s.ln) }()
}

func (s *httpTestServer) close() {
	s.srv.Close()
	<-s.done
}
