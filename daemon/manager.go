// Package daemon is vnetd's orchestration: it keeps the persistent
// definitions and the live state, turns definitions into running networks
// through the dataplane and the firewall, adopts networks left running by a
// previous vnetd, and serves the control API.
//
// # Embedding
//
// cmd/vnetd is flag parsing around NewHost and Run, so a program that embeds
// vnetd instead of running the daemon (a hypervisor image, say) calls the
// same two and has all of it: the control socket, the autostart networks,
// their DHCP, DNS and RA servers, firewall rules kept in place. It manages
// networks over the socket with package client, or ships definitions in
// Options.ConfigDir marked to autostart (conf.Store's layout). Open gives a
// Manager to drive directly, without the socket and, unless Config.Services
// is set, without the servers. See Example and ExampleOpen.
//
// Running networks outlive the process either way: Run's return and
// Manager.Close leave them up, and the next Run or Open adopts them; only
// Manager.Destroy takes a network down.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/dataplane"
	"github.com/vnetd/vnetd/dataplane/ovs"
	"github.com/vnetd/vnetd/leases"
	"github.com/vnetd/vnetd/shaping"
)

// Host is the link layer of the namespace vnetd manages: bridges, addresses,
// routes and sysctls (dataplane.Dataplane). An interface because the
// orchestration is tested without root against a fake.
type Host interface {
	LinkExists(name string) (bool, error)
	Start(n *conf.Network) (ifindex int, err error)
	Stop(n *conf.Network) error
	// Deactivate takes the bridge down; Stop then deletes it.
	Deactivate(n *conf.Network) error
	Adopt(n *conf.Network, ifindex int) error
	LinkIndex(name string) (int, error)

	// Port devices.
	CreateTap(name string, o dataplane.TapOptions) error
	AttachPort(pl dataplane.PortLink) (ifindex int, err error)
	DetachPort(pl dataplane.PortLink, deleteLink bool) error
	CreateMacvtap(name, parent string, mode conf.MacvtapMode, mac net.HardwareAddr, mtu int) (ifindex int, err error)
	DeleteLink(name string) error
	// SetVF gives an SR-IOV VF the guest's MAC and VLAN through its PF.
	SetVF(pf string, vf int, mac net.HardwareAddr, vlan int) error
}

// Firewall installs a network's forwarding and NAT rules (firewall.Firewall
// over nftables).
type Firewall interface {
	Apply(n *conf.Network, ifindex int) error
	Remove(n *conf.Network) error
	// Check reports whether the network's rules are installed unchanged.
	Check(n *conf.Network, ifindex int) (bool, error)
}

// Config is what a Manager needs.
type Config struct {
	ConfigDir string // persistent definitions (conf.Store)
	StateDir  string // live state (embedded database)
	Host      Host
	Firewall  Firewall
	Log       *slog.Logger
	// SysfsRoot is where <pf> virtual functions are read ("/sys").
	SysfsRoot string
	// OVS adds ports to Open vSwitch bridges; nil: networks with
	// <virtualport type='openvswitch'> cannot plug ports.
	OVS OVS
	// Services starts each network's servers (DHCP, ...); nil: none.
	Services Services
	// Leases is the lease store the servers write; nil: no leases.
	Leases LeaseStore
	// Events receives the lifecycle, port and lease events; nil: the
	// Manager makes its own (Events).
	Events *EventBus
	// Shaper applies <bandwidth> with tc; nil: networks and ports with
	// bandwidth are refused (they must not run unshaped).
	Shaper Shaper
	// Firewalld puts bridges into firewalld zones; nil: firewalld is not
	// running, and a network with <bridge zone> cannot start.
	Firewalld Firewalld
	// Resolved registers <domain register='yes'> networks with
	// systemd-resolved; nil: it is not running, and those cannot start.
	Resolved Resolved
	// TFTPRootBase, if set, is the directory every <tftp root> must
	// resolve to or below (--tftp-root-base); net-define and net-start
	// refuse the others.
	TFTPRootBase string
}

// LeaseStore is what the daemon reads and cleans of the DHCP leases.
type LeaseStore interface {
	List(network string) ([]leases.Lease, error)
	DeleteNetwork(network string) error
	Sweep(now time.Time) (int, error)
}

// OVS is the Open vSwitch database (ovs.Client over OVSDB).
type OVS interface {
	AddPort(ctx context.Context, p ovs.PortSpec) error
	DelPort(ctx context.Context, bridge, name string) error
}

// Manager owns every network of one vnetd. Its methods are safe for
// concurrent use; lifecycle operations are serialised, as they change the
// host.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	store *definitions
	state *stateDB
	hooks hookState

	mu     sync.Mutex
	active map[string]*running // by network name

	// reaping holds the bridges being deleted after net-destroy, by name;
	// the channel closes when the bridge is gone.
	reapMu  sync.Mutex
	reaping map[string]chan struct{}
	reapers sync.WaitGroup

	// reconcileNext is where the next Reconcile batch starts.
	reconcileNext int

	// ctx lives as long as the Manager: the servers run under it.
	ctx    context.Context
	cancel context.CancelFunc

	metrics *metrics
	// stateDamaged: vnetd.db was found damaged at Open and started afresh
	// (vnetd_storage_damage_total).
	stateDamaged bool
}

// running is a network that is up on the host.
type running struct {
	net       *conf.Network // the live definition, with connection counters
	ifindex   int           // the bridge's; 0 for device pools
	transient bool
	started   time.Time
	ports     map[uuid.UUID]*livePort
	service   Service // the network's servers; nil when none run
	// classIDs are the tc class ids of the ports' floors on the bridge.
	classIDs shaping.ClassIDs
	// fwRestores counts the times its firewall rules were found changed
	// and put back (vnetd_firewall_restores_total).
	fwRestores uint64
}

// Open loads the definitions and adopts the networks a previous vnetd left
// running; it does not start autostart networks (Autostart does).
func Open(cfg Config) (*Manager, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.SysfsRoot == "" {
		cfg.SysfsRoot = "/sys"
	}
	if cfg.Events == nil {
		cfg.Events = NewEventBus()
	}
	store, skipped, err := openDefinitions(cfg.ConfigDir, checkContext{linkExists: cfg.Host.LinkExists})
	if err != nil {
		return nil, err
	}
	if skipped != nil {
		cfg.Log.Error("definitions left out; fix them and reload (SIGHUP)", "err", skipped)
	}
	state, damage, err := openState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, log: cfg.Log, store: store, state: state, active: map[string]*running{}, reaping: map[string]chan struct{}{}}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.metrics = newMetrics(m)
	m.metrics.registry.MustRegister(&damageCollector{m: m})
	if damage != nil {
		m.stateDamaged = true
		m.log.Error("state database damaged: moved aside and replaced by an empty one; rebuilding the live state from the host and the definitions",
			"copy", damage.quarantine, "err", damage.why)
		m.rebuildState()
	}
	m.finishReaping()
	if err := m.adopt(); err != nil {
		state.close()
		return nil, err
	}
	if err := m.reclaimPorts(); err != nil {
		// A port that cannot be reclaimed is reported, the rest keep working.
		m.log.Error("reclaiming ports", "err", err)
	}
	for _, r := range m.active {
		if err := checkTFTPRoots(r.net, cfg.TFTPRootBase); err != nil {
			m.log.Warn("adopted network serves TFTP outside the root base until it is restarted", "network", r.net.Name, "err", err)
		}
		if err := m.startServices(r); err != nil {
			// The network keeps forwarding; its guests lack DHCP until fixed.
			m.log.Error("starting the servers of an adopted network", "network", r.net.Name, "err", err)
		}
	}
	return m, nil
}

// Close stops the servers, waits for bridges being deleted and releases the
// state database. Running networks stay up: the kernel keeps forwarding.
func (m *Manager) Close() error {
	m.mu.Lock()
	for _, r := range m.active {
		m.detachServices(r)
	}
	m.mu.Unlock()
	m.cancel()
	m.reapers.Wait()
	return m.state.close()
}

// startServices starts a running network's servers.
func (m *Manager) startServices(r *running) error {
	if m.cfg.Services == nil || !r.net.Forward.Mode.Managed() {
		return nil
	}
	svc, err := m.cfg.Services.Start(m.ctx, r.net)
	if err != nil {
		return err
	}
	r.service = svc
	return nil
}

// detachServices stops a network's servers as vnetd exits; the network
// stays up for the next vnetd.
func (m *Manager) detachServices(r *running) {
	if r.service == nil {
		return
	}
	if err := r.service.Detach(); err != nil {
		m.log.Warn("stopping servers", "network", r.net.Name, "err", err)
	}
	r.service = nil
}

func (m *Manager) stopServices(r *running) {
	if r.service == nil {
		return
	}
	if err := r.service.Close(); err != nil {
		m.log.Warn("stopping servers", "network", r.net.Name, "err", err)
	}
	r.service = nil
}

// adopt takes over the networks recorded as running: the bridge must still be
// there with the same ifindex; addresses, routes and firewall rules are
// repaired where they drifted, never recreated blindly. A start that a crash
// interrupted is rolled back.
func (m *Manager) adopt() error {
	records, err := m.state.all()
	if err != nil {
		return err
	}
	for _, r := range records {
		log := m.log.With("network", r.Name)
		n, err := conf.Parse([]byte(r.XML))
		if err != nil {
			log.Error("live state unreadable; forgetting the network", "err", err)
			m.state.delete(r.Name)
			continue
		}
		if r.Phase != PhaseRunning {
			log.Warn("rolling back a start interrupted by a crash")
			m.teardown(n)
			m.state.delete(r.Name)
			continue
		}
		if !n.Forward.Mode.Managed() {
			m.active[n.Name] = &running{net: n, transient: r.Transient, started: r.Started, ports: map[uuid.UUID]*livePort{}}
			log.Info("adopted running device pool")
			continue
		}
		if err := m.cfg.Host.Adopt(n, r.IfIndex); err != nil {
			log.Warn("network no longer running on the host; cleaning up and forgetting it", "err", err)
			m.teardown(n)
			m.state.delete(r.Name)
			continue
		}
		var restores uint64
		if ok, err := m.cfg.Firewall.Check(n, r.IfIndex); err != nil || !ok {
			if err := m.cfg.Firewall.Apply(n, r.IfIndex); err != nil {
				log.Error("restoring firewall rules of an adopted network", "err", err)
			} else {
				restores = 1
				log.Info("firewall rules of an adopted network restored")
			}
		}
		m.readoptHostServices(n, r.IfIndex, log)
		m.active[n.Name] = &running{net: n, ifindex: r.IfIndex, transient: r.Transient, started: r.Started, ports: map[uuid.UUID]*livePort{}, fwRestores: restores}
		log.Info("adopted running network", "bridge", n.Bridge.Name, "ifindex", r.IfIndex)
	}
	return nil
}

// rebuildState records as running, in the empty state database that
// replaced a damaged one, every defined network whose bridge is on the
// host, so that adopt takes it over as after any restart: same bridge,
// addresses, routes and firewall rules checked and repaired, servers
// started. The persistent definition stands in for the live one. What only
// the damaged database knew is lost: transient networks (their definition
// was kept nowhere else; their bridges stay up, unmanaged), live changes
// not in the definition (net-update --live), the ports (their UUIDs and
// XML came from the hypervisor; their devices stay plugged and forwarding,
// but vnetd neither counts nor shapes them until they are created again),
// their floors' tc class ids, and the bridges of destroyed networks still
// to be deleted. Device pools (no bridge of vnetd's) are left inactive:
// autostart starts the ones marked so.
func (m *Manager) rebuildState() {
	defs, err := m.store.List()
	if err != nil {
		m.log.Error("rebuilding the live state: reading the definitions", "err", err)
		return
	}
	for _, n := range defs {
		if !n.Forward.Mode.Managed() || n.Bridge.Name == "" {
			continue
		}
		ifindex, err := m.cfg.Host.LinkIndex(n.Bridge.Name)
		if err != nil {
			continue // not running; autostart starts it if it should
		}
		rec := &liveRecord{Name: n.Name, Phase: PhaseRunning, XML: string(n.Format(0)), Bridge: n.Bridge.Name, IfIndex: ifindex, Started: time.Now()}
		if err := m.state.put(rec); err != nil {
			m.log.Error("rebuilding the live state", "network", n.Name, "err", err)
			continue
		}
		m.log.Warn("network found running after the state database was lost; adopting it from its definition",
			"network", n.Name, "bridge", n.Bridge.Name, "ifindex", ifindex)
	}
}

// teardown removes whatever a network may have on the host; errors are
// logged, as this runs on paths that are already failing.
func (m *Manager) teardown(n *conf.Network) {
	if !n.Forward.Mode.Managed() {
		return
	}
	m.unshapeNetwork(n)
	m.leaveZone(n)
	if err := m.cfg.Firewall.Remove(n); err != nil {
		m.log.Warn("removing firewall rules", "network", n.Name, "err", err)
	}
	if err := m.cfg.Host.Stop(n); err != nil {
		m.log.Warn("removing bridge", "network", n.Name, "err", err)
	}
}

// Autostart starts the autostart networks that are not running. One failing
// network does not keep the others down.
func (m *Manager) Autostart() error {
	defs, err := m.store.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range defs {
		on, err := m.store.Autostart(n.Name)
		if err != nil || !on {
			continue
		}
		m.mu.Lock()
		_, up := m.active[n.Name]
		m.mu.Unlock()
		if up {
			continue
		}
		if err := m.Start(n.Name); err != nil {
			m.log.Error("autostart failed", "network", n.Name, "err", err)
			errs = append(errs, err)
		} else {
			m.log.Info("autostarted", "network", n.Name)
		}
	}
	return errors.Join(errs...)
}

// opError carries an API error code with the error.
type opError struct {
	code    string
	network string
	err     error
}

func (e *opError) Error() string { return e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

func fail(code, network string, err error) error {
	return &opError{code: code, network: network, err: err}
}

func failf(code, network, format string, args ...any) error {
	return fail(code, network, fmt.Errorf(format, args...))
}

// APIError turns an error of the Manager into the API's error body.
func APIError(err error) *api.Error {
	var oe *opError
	if errors.As(err, &oe) {
		return &api.Error{Code: oe.code, Message: oe.err.Error(), Network: oe.network}
	}
	return &api.Error{Code: api.CodeOperationFailed, Message: err.Error()}
}

// lookup finds a network by name or UUID: the live definition if it runs,
// else the persistent one. persistent reports whether a definition is stored.
func (m *Manager) lookup(id string) (n *conf.Network, r *running, persistent bool, err error) {
	if r, ok := m.active[id]; ok {
		_, err := m.store.Lookup(id)
		return r.net, r, err == nil, nil
	}
	if u, perr := uuid.Parse(id); perr == nil {
		for _, r := range m.active {
			if r.net.UUID == u {
				_, err := m.store.Lookup(r.net.Name)
				return r.net, r, err == nil, nil
			}
		}
		def, err := m.store.LookupUUID(u)
		if err == nil {
			return def, nil, true, nil
		}
	}
	def, err := m.store.Lookup(id)
	if err != nil {
		if errors.Is(err, conf.ErrNotFound) {
			return nil, nil, false, failf(api.CodeNotFound, id, "network %q not found", id)
		}
		return nil, nil, false, fail(api.CodeInvalidRequest, id, err)
	}
	return def, nil, true, nil
}

// prepare parses, validates and completes a definition the way libvirt's
// define and create do, checking it against the known networks.
func (m *Manager) prepare(xml []byte) (*conf.Network, error) {
	n, err := conf.Parse(xml)
	if err != nil {
		return nil, fail(api.CodeInvalidDefinition, "", err)
	}
	if err := conf.ValidateName(n.Name); err != nil {
		return nil, fail(api.CodeInvalidDefinition, n.Name, err)
	}
	if err := n.Validate(); err != nil {
		return nil, fail(api.CodeInvalidDefinition, n.Name, err)
	}
	if err := checkTFTPRoots(n, m.cfg.TFTPRootBase); err != nil {
		return nil, fail(api.CodeInvalidDefinition, n.Name, err)
	}
	known, err := m.known()
	if err != nil {
		return nil, fail(api.CodeOperationFailed, n.Name, err)
	}
	var others []*conf.Network
	for _, o := range known {
		switch {
		case o.Name == n.Name && n.UUID == (uuid.UUID{}):
			n.UUID = o.UUID // a redefinition without <uuid> keeps the network's
		case o.Name == n.Name && o.UUID != n.UUID:
			return nil, failf(api.CodeConflict, n.Name, "network %q is already defined with uuid %s", n.Name, o.UUID)
		case o.Name != n.Name && o.UUID == n.UUID:
			return nil, failf(api.CodeConflict, n.Name, "network with uuid %s is already defined as %q", n.UUID, o.Name)
		}
		if o.Name != n.Name {
			others = append(others, o)
		}
	}
	if err := n.ApplyDefaults(conf.DefineContext{Others: others, LinkExists: m.cfg.Host.LinkExists}); err != nil {
		var fe *conf.FieldError
		if errors.As(err, &fe) {
			return nil, fail(api.CodeConflict, n.Name, err)
		}
		return nil, fail(api.CodeOperationFailed, n.Name, err)
	}
	return n, nil
}

// known is every network vnetd knows: the definitions and the running
// (possibly transient) networks.
func (m *Manager) known() ([]*conf.Network, error) {
	defs, err := m.store.List()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, d := range defs {
		seen[d.Name] = true
	}
	for name, r := range m.active {
		if !seen[name] {
			defs = append(defs, r.net)
		}
	}
	return defs, nil
}

// Define stores a persistent definition (virsh net-define). A running network
// keeps its live definition until it is restarted.
func (m *Manager) Define(xml []byte) (*conf.Network, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.prepare(xml)
	if err != nil {
		return nil, err
	}
	if _, err := m.store.Define(n); err != nil {
		return nil, fail(api.CodeOperationFailed, n.Name, err)
	}
	m.log.Info("defined", "network", n.Name, "uuid", n.UUID)
	m.emit(api.EventDefined, n.Name)
	return n, nil
}

// Create starts a transient network that has no persistent definition
// (virsh net-create).
func (m *Manager) Create(xml []byte) (*conf.Network, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.prepare(xml)
	if err != nil {
		return nil, err
	}
	if _, up := m.active[n.Name]; up {
		return nil, failf(api.CodeConflict, n.Name, "network %q is already active", n.Name)
	}
	if err := m.start(n, true); err != nil {
		return nil, err
	}
	return n, nil
}

// Undefine removes the persistent definition; a running network goes on as
// a transient one, as in libvirt.
func (m *Manager) Undefine(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, r, persistent, err := m.lookup(id)
	if err != nil {
		return err
	}
	if !persistent {
		return failf(api.CodeInvalidRequest, n.Name, "network %q is transient: nothing to undefine", n.Name)
	}
	if err := m.store.Undefine(n.Name); err != nil {
		return fail(api.CodeOperationFailed, n.Name, err)
	}
	if r != nil {
		r.transient = true
		if err := m.saveRunning(r); err != nil {
			return err
		}
	} else {
		m.forgetLeases(n.Name)
	}
	m.log.Info("undefined", "network", n.Name)
	m.emit(api.EventUndefined, n.Name)
	return nil
}

// Start brings a defined network up (virsh net-start).
func (m *Manager) Start(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, r, _, err := m.lookup(id)
	if err != nil {
		return err
	}
	if r != nil {
		return failf(api.CodeConflict, n.Name, "network %q is already active", n.Name)
	}
	return m.start(n, false)
}

func (m *Manager) start(n *conf.Network, transient bool) error {
	log := m.log.With("network", n.Name)
	if err := n.Validate(); err != nil {
		return fail(api.CodeInvalidDefinition, n.Name, err)
	}
	if err := n.CheckDnsmasqOptions(); err != nil {
		return fail(api.CodeInvalidDefinition, n.Name, err)
	}
	// Again at start: the definition, or a symlink on its root's path, may
	// predate the base.
	if err := checkTFTPRoots(n, m.cfg.TFTPRootBase); err != nil {
		return fail(api.CodeInvalidDefinition, n.Name, err)
	}
	if n.Forward.Mode.Managed() && n.Bridge.Name == "" {
		return failf(api.CodeInvalidDefinition, n.Name, "network %q has no bridge name", n.Name)
	}
	if err := m.checkHostServices(n); err != nil {
		return fail(api.CodeOperationFailed, n.Name, err)
	}
	if err := m.hook(n, hookStart, nil); err != nil {
		return fail(api.CodeOperationFailed, n.Name, err)
	}
	began := time.Now()
	rec := &liveRecord{Name: n.Name, Phase: PhaseStarting, XML: string(n.Format(0)), Transient: transient, Bridge: n.Bridge.Name, Started: began}
	// Recorded before the first host change: a crash from here on is rolled
	// back by the next vnetd.
	if err := m.state.put(rec); err != nil {
		return fail(api.CodeOperationFailed, n.Name, fmt.Errorf("network %q: recording start: %w", n.Name, err))
	}
	recorded := time.Now()
	ifindex, err := m.startOnHost(n)
	if err != nil {
		m.state.delete(n.Name)
		return fail(api.CodeOperationFailed, n.Name, err)
	}
	onHost := time.Now()
	r := &running{net: n, ifindex: ifindex, transient: transient, started: began, ports: map[uuid.UUID]*livePort{}}
	if err := m.startServices(r); err != nil {
		m.teardown(n)
		m.state.delete(n.Name)
		return fail(api.CodeOperationFailed, n.Name, err)
	}
	if err := m.registerResolved(n, ifindex); err != nil {
		m.stopServices(r)
		m.teardown(n)
		m.state.delete(n.Name)
		return fail(api.CodeOperationFailed, n.Name, err)
	}
	if err := m.startedThenSave(r); err != nil {
		m.stopServices(r)
		m.teardown(n)
		m.state.delete(n.Name)
		return err
	}
	m.active[n.Name] = r
	m.emit(api.EventStarted, n.Name)
	log.Info("started", "bridge", n.Bridge.Name, "ifindex", ifindex, "took", time.Since(began))
	log.Debug("start phases", "record", recorded.Sub(began), "host", onHost.Sub(recorded), "save", time.Since(onHost))
	return nil
}

// startOnHost makes the host side of a network: bridge and firewall for the
// networks vnetd routes, the device pool for the others.
func (m *Manager) startOnHost(n *conf.Network) (int, error) {
	if !n.Forward.Mode.Managed() {
		return 0, m.startPool(n)
	}
	m.awaitReaped(n.Bridge.Name)
	began := time.Now()
	ifindex, err := m.cfg.Host.Start(n)
	if err != nil {
		return 0, err
	}
	m.log.Debug("bridge up", "network", n.Name, "took", time.Since(began))
	if err := m.cfg.Firewall.Apply(n, ifindex); err != nil {
		m.teardown(n)
		return 0, err
	}
	if err := m.shapeNetwork(n, 0); err != nil {
		m.teardown(n)
		return 0, err
	}
	if err := m.enterZone(n); err != nil {
		m.teardown(n)
		return 0, err
	}
	return ifindex, nil
}

func (m *Manager) saveRunning(r *running) error {
	rec := &liveRecord{Name: r.net.Name, Phase: PhaseRunning, XML: string(r.net.Format(0)), Transient: r.transient,
		Bridge: r.net.Bridge.Name, IfIndex: r.ifindex, Started: r.started}
	if err := m.state.put(rec); err != nil {
		return fail(api.CodeOperationFailed, r.net.Name, fmt.Errorf("network %q: recording live state: %w", r.net.Name, err))
	}
	return nil
}

// Destroy takes a running network down (virsh net-destroy): rules removed,
// bridge deleted. A transient network is gone afterwards.
func (m *Manager) Destroy(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, r, _, err := m.lookup(id)
	if err != nil {
		return err
	}
	if r == nil {
		return failf(api.CodeNotActive, n.Name, "network %q is not active", n.Name)
	}
	began := time.Now()
	m.stopServices(r)
	var errs []error
	// Ports go with their network: devices vnetd made are removed.
	for id, lp := range r.ports {
		// The bridge's floor classes go with the bridge; a device's rates
		// and IFB are taken off whether or not the device stays.
		if dev, _ := shapedDevice(lp); dev != "" && m.cfg.Shaper != nil {
			m.clearPortDevice(n, id, dev)
		}
		if err := m.unplug(n, lp); err != nil {
			errs = append(errs, err)
			continue
		}
		m.state.deletePort(n.Name, id)
		delete(r.ports, id)
	}
	if n.Forward.Mode.Managed() {
		// Down is enough to stop all traffic; rules and device go in the
		// background (reap).
		if err := m.cfg.Host.Deactivate(n); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Still running in part: keep it so destroy can be retried.
		return fail(api.CodeOperationFailed, n.Name, err)
	}
	m.leaveHostServices(n, r.ifindex)
	var reap *reapRecord
	if n.Forward.Mode.Managed() {
		reap = &reapRecord{Bridge: n.Bridge.Name, IfIndex: r.ifindex, XML: string(n.Format(0))}
	}
	// One transaction: the network's record goes and its bridge is recorded
	// for deletion, so a crash cannot leave a bridge nobody deletes.
	if err := m.state.retire(n.Name, reap); err != nil {
		return fail(api.CodeOperationFailed, n.Name, err)
	}
	delete(m.active, n.Name)
	if reap != nil {
		m.reap(n)
	}
	if r.transient {
		m.forgetLeases(n.Name)
	}
	m.hookNotify(n, hookStopped, nil)
	m.emit(api.EventStopped, n.Name)
	m.log.Info("destroyed", "network", n.Name, "took", time.Since(began))
	return nil
}

// reap removes a deactivated bridge's rules and device in the background:
// the network already carries no traffic, and both deletions make the kernel
// wait for RCU grace periods (tens of milliseconds) that a destroy need not
// wait for. Rules go first, so once the bridge's name is free nothing of the
// old network is left to collide with a new one; starting a network on that
// bridge waits for that (awaitReaped).
func (m *Manager) reap(n *conf.Network) {
	done := make(chan struct{})
	m.reapMu.Lock()
	m.reaping[n.Bridge.Name] = done
	m.reapMu.Unlock()
	m.reapers.Add(1)
	go func() {
		defer m.reapers.Done()
		began := time.Now()
		m.unshapeNetwork(n)
		if err := m.cfg.Firewall.Remove(n); err != nil {
			m.log.Error("removing the rules of a destroyed network", "network", n.Name, "err", err)
		}
		if err := m.cfg.Host.Stop(n); err != nil {
			m.log.Error("deleting the bridge of a destroyed network", "network", n.Name, "bridge", n.Bridge.Name, "err", err)
		} else if err := m.state.deleteReap(n.Bridge.Name); err != nil {
			m.log.Error("forgetting a deleted bridge", "bridge", n.Bridge.Name, "err", err)
		}
		m.reapMu.Lock()
		delete(m.reaping, n.Bridge.Name)
		m.reapMu.Unlock()
		close(done)
		m.log.Debug("bridge deleted", "network", n.Name, "bridge", n.Bridge.Name, "took", time.Since(began))
	}()
}

// awaitReaped waits until a bridge being deleted has left the kernel's list
// of links, which frees its name; the kernel's own clean-up after that does
// not need waiting for.
func (m *Manager) awaitReaped(bridge string) {
	m.reapMu.Lock()
	done := m.reaping[bridge]
	m.reapMu.Unlock()
	if done == nil {
		return
	}
	for {
		select {
		case <-done:
			return
		default:
		}
		if exists, err := m.cfg.Host.LinkExists(bridge); err == nil && !exists {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// finishReaping deletes the bridges a previous vnetd destroyed but had not
// deleted yet when it stopped.
func (m *Manager) finishReaping() {
	recs, err := m.state.reaps()
	if err != nil {
		m.log.Error("reading bridges left to delete", "err", err)
		return
	}
	for bridge, rec := range recs {
		n, err := conf.Parse([]byte(rec.XML))
		if err == nil {
			// A bridge of that name with another ifindex is a network started
			// after the destroy: not ours to delete.
			idx, lerr := m.cfg.Host.LinkIndex(bridge)
			if lerr != nil || idx == rec.IfIndex {
				err = errors.Join(m.cfg.Firewall.Remove(n), m.cfg.Host.Stop(n))
			}
		}
		if err != nil {
			m.log.Error("deleting a destroyed network's bridge", "bridge", bridge, "err", err)
			continue
		}
		m.state.deleteReap(bridge)
	}
}

// SetAutostart marks a persistent network to start with vnetd.
func (m *Manager) SetAutostart(id string, on bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, _, persistent, err := m.lookup(id)
	if err != nil {
		return err
	}
	if !persistent {
		return failf(api.CodeInvalidRequest, n.Name, "network %q is transient: it cannot autostart", n.Name)
	}
	if err := m.store.SetAutostart(n.Name, on); err != nil {
		return fail(api.CodeOperationFailed, n.Name, err)
	}
	return nil
}

// List describes every known network, sorted by name.
func (m *Manager) List() ([]api.NetworkInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defs, err := m.store.List()
	if err != nil {
		return nil, fail(api.CodeOperationFailed, "", err)
	}
	var out []api.NetworkInfo
	seen := map[string]bool{}
	for _, d := range defs {
		seen[d.Name] = true
		out = append(out, m.info(d, m.active[d.Name], true))
	}
	for name, r := range m.active {
		if !seen[name] {
			out = append(out, m.info(r.net, r, false))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Info describes one network.
func (m *Manager) Info(id string) (api.NetworkInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, r, persistent, err := m.lookup(id)
	if err != nil {
		return api.NetworkInfo{}, err
	}
	return m.info(n, r, persistent), nil
}

func (m *Manager) info(n *conf.Network, r *running, persistent bool) api.NetworkInfo {
	info := api.NetworkInfo{Name: n.Name, UUID: n.UUID.String(), Active: r != nil, Persistent: persistent,
		Bridge: n.Bridge.Name, Mode: n.Forward.Mode.String()}
	if r != nil {
		info.Bridge = r.net.Bridge.Name
	}
	if persistent {
		info.Autostart, _ = m.store.Autostart(n.Name)
	}
	return info
}

// XML is the network's XML: the live view of a running network, else (or
// with inactive) the persistent definition.
func (m *Manager) XML(id string, inactive bool) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, r, persistent, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	if r != nil && inactive {
		if persistent {
			def, err := m.store.Lookup(n.Name)
			if err != nil {
				return nil, fail(api.CodeOperationFailed, n.Name, err)
			}
			return def.Format(conf.FormatInactive), nil
		}
		return n.Format(conf.FormatInactive), nil
	}
	if r != nil {
		return n.Format(0), nil
	}
	return n.Format(conf.FormatInactive), nil
}

// Update applies a net-update to the live network, the persistent
// definition, or both; the result must validate, and nothing changes unless
// every part succeeds.
func (m *Manager) Update(id string, req api.UpdateRequest) (api.UpdateResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var res api.UpdateResult
	cmd, err := conf.ParseUpdateCommand(req.Command)
	if err != nil {
		return res, fail(api.CodeInvalidRequest, id, err)
	}
	section, err := conf.ParseUpdateSection(req.Section)
	if err != nil {
		return res, fail(api.CodeInvalidRequest, id, err)
	}
	n, r, persistent, err := m.lookup(id)
	if err != nil {
		return res, err
	}
	live, config := req.Live, req.Config
	if !live && !config {
		live, config = r != nil, r == nil
	}
	if live && r == nil {
		return res, failf(api.CodeNotActive, n.Name, "network %q is not active: its live state cannot be updated", n.Name)
	}
	if config && !persistent {
		return res, failf(api.CodeInvalidRequest, n.Name, "network %q is transient: it has no persistent config to update", n.Name)
	}
	apply := func(base *conf.Network) (*conf.Network, error) {
		next := base.Clone()
		if err := next.Update(cmd, section, req.ParentIndex, []byte(req.XML)); err != nil {
			if errors.Is(err, conf.ErrUpdateUnsupported) {
				return nil, fail(api.CodeUnsupported, n.Name, err)
			}
			return nil, fail(api.CodeInvalidDefinition, n.Name, err)
		}
		if err := next.Validate(); err != nil {
			return nil, fail(api.CodeInvalidDefinition, n.Name, fmt.Errorf("network %q after %s %s: %w", n.Name, cmd, section, err))
		}
		return next, nil
	}
	var nextLive, nextConfig *conf.Network
	if live {
		if nextLive, err = apply(r.net); err != nil {
			return res, err
		}
	}
	if config {
		def, err := m.store.Lookup(n.Name)
		if err != nil {
			return res, fail(api.CodeOperationFailed, n.Name, err)
		}
		if nextConfig, err = apply(def); err != nil {
			return res, err
		}
	}
	if nextLive != nil {
		switch section {
		case conf.SectionIPDHCPHost, conf.SectionIPDHCPRange, conf.SectionForwardInterface:
			// libvirt re-applies the firewall for these sections.
			if err := m.cfg.Firewall.Apply(nextLive, r.ifindex); err != nil {
				return res, fail(api.CodeOperationFailed, n.Name, err)
			}
		}
		if r.service != nil {
			// DHCP hosts and ranges change at once, keeping every lease
			// (libvirt restarts dnsmasq for ranges; vnetd does not).
			if err := r.service.Update(nextLive); err != nil {
				return res, fail(api.CodeOperationFailed, n.Name, err)
			}
		}
		old := r.net
		r.net = nextLive
		if err := m.saveRunning(r); err != nil {
			r.net = old
			return res, err
		}
		res.Live = true
	}
	if nextConfig != nil {
		if _, err := m.store.Define(nextConfig); err != nil {
			return res, fail(api.CodeOperationFailed, n.Name, err)
		}
		res.Config = true
	}
	m.log.Info("updated", "network", n.Name, "command", cmd.String(), "section", section.String(), "live", res.Live, "config", res.Config)
	if res.Live {
		m.hookNotify(r.net, hookUpdated, nil)
	}
	m.emit(api.EventUpdated, n.Name)
	return res, nil
}

// reconcileBatch bounds how many networks one Reconcile checks. A check is
// a few netlink dumps (about 10 ms with 256 tables); checking hundreds of
// networks on every tick and on every nftables event (each net-start makes
// some) took a sixth of a CPU, and 32 per tick still 10% of an idle one.
// The batches rotate, so every network is still checked within a minute or
// two, and a restore's own events trigger the next batch at once (a
// flushed ruleset of 256 networks is back within seconds).
const reconcileBatch = 8

// Reconcile checks running networks' firewall rules, up to reconcileBatch
// of them in turn, and restores the ones changed outside vnetd (a flushed
// ruleset, a deleted rule). It returns how many networks it restored.
func (m *Manager) Reconcile() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var names []string
	for name, r := range m.active {
		if r.net.Forward.Mode.Managed() {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) > reconcileBatch {
		start := m.reconcileNext % len(names)
		names = append(names[start:], names[:start]...)[:reconcileBatch]
		m.reconcileNext = start + reconcileBatch
	}
	restored := 0
	for _, name := range names {
		r := m.active[name]
		ok, err := m.cfg.Firewall.Check(r.net, r.ifindex)
		if err == nil && ok {
			continue
		}
		if err := m.cfg.Firewall.Apply(r.net, r.ifindex); err != nil {
			m.log.Error("restoring firewall rules", "network", name, "err", err)
			continue
		}
		restored++
		r.fwRestores++
		m.log.Warn("firewall rules were changed outside vnetd; restored", "network", name)
	}
	return restored
}
