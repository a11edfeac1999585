package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/dataplane/firewalld"
	"github.com/vnetd/vnetd/dataplane/resolved"
)

// Firewalld puts bridges into firewalld zones (firewalld.Client over the
// system bus). An interface so the orchestration is tested without D-Bus.
type Firewalld interface {
	Inventory(ctx context.Context) (firewalld.Inventory, error)
	// AddInterface binds iface to zone, moving it from any other zone;
	// binding it again is not an error.
	AddInterface(ctx context.Context, zone, iface string) error
	// RemoveInterface unbinds iface from zone ("" for any); an unbound
	// iface is not an error.
	RemoveInterface(ctx context.Context, zone, iface string) error
}

// Resolved registers networks' DNS servers and domains with
// systemd-resolved (resolved.Client over the system bus).
type Resolved interface {
	Register(ctx context.Context, ifindex int32, r resolved.Registration) error
	RevertLink(ctx context.Context, ifindex int32) error
}

var (
	_ Firewalld = (*firewalld.Client)(nil)
	_ Resolved  = (*resolved.Client)(nil)
)

// hostBusTimeout bounds one exchange with firewalld or resolved: D-Bus's
// own default for a method call. firewalld rewrites its rules when a zone
// gains an interface, which can take a second on a busy host.
const hostBusTimeout = 25 * time.Second

// systemBusSocket is where the system bus listens when there is one.
const systemBusSocket = "/run/dbus/system_bus_socket"

// checkHostServices fails a start that needs a host service that is not
// running, before anything on the host changes.
func (m *Manager) checkHostServices(n *conf.Network) error {
	if m.cfg.Firewalld == nil && firewalld.Applies(n) && n.Bridge.Zone != "" {
		return fmt.Errorf("network %q: <bridge zone='%s'>: %w", n.Name, n.Bridge.Zone, firewalld.ErrNotRunning)
	}
	if m.cfg.Resolved == nil && resolved.Wants(n) {
		return fmt.Errorf("network %q: <domain register='yes'>: %w", n.Name, resolved.ErrNotRunning)
	}
	return nil
}

// enterZone puts a network's bridge into its firewalld zone. Without
// firewalld nothing happens, unless <bridge zone> asks for one.
func (m *Manager) enterZone(n *conf.Network) error {
	if !firewalld.Applies(n) {
		return nil
	}
	if m.cfg.Firewalld == nil {
		if n.Bridge.Zone != "" {
			return fmt.Errorf("network %q: <bridge zone='%s'>: %w", n.Name, n.Bridge.Zone, firewalld.ErrNotRunning)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(m.ctx, hostBusTimeout)
	defer cancel()
	inv, err := m.cfg.Firewalld.Inventory(ctx)
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	zone, err := firewalld.ChooseZone(n, inv)
	if err != nil {
		return err
	}
	if err := m.cfg.Firewalld.AddInterface(ctx, zone, n.Bridge.Name); err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	m.log.Debug("bridge in firewalld zone", "network", n.Name, "bridge", n.Bridge.Name, "zone", zone)
	return nil
}

// leaveZone takes a network's bridge out of its zone: firewalld remembers
// the binding after the bridge is gone, and a later network on a bridge of
// the same name would land in the old zone. Errors are logged.
func (m *Manager) leaveZone(n *conf.Network) {
	if m.cfg.Firewalld == nil || !firewalld.Applies(n) {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, hostBusTimeout)
	defer cancel()
	if err := m.cfg.Firewalld.RemoveInterface(ctx, "", n.Bridge.Name); err != nil {
		m.log.Warn("taking the bridge out of its firewalld zone", "network", n.Name, "bridge", n.Bridge.Name, "err", err)
	}
}

// registerResolved tells systemd-resolved to send the network's domain to
// its DNS server on the bridge.
func (m *Manager) registerResolved(n *conf.Network, ifindex int) error {
	if !resolved.Wants(n) {
		return nil
	}
	if m.cfg.Resolved == nil {
		return fmt.Errorf("network %q: <domain register='yes'>: %w", n.Name, resolved.ErrNotRunning)
	}
	reg, err := resolved.Build(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(m.ctx, hostBusTimeout)
	defer cancel()
	if err := m.cfg.Resolved.Register(ctx, int32(ifindex), reg); err != nil {
		return fmt.Errorf("network %q: <domain register='yes'>: %w", n.Name, err)
	}
	m.log.Debug("registered with systemd-resolved", "network", n.Name, "domain", n.Domain.Name, "ifindex", ifindex)
	return nil
}

// revertResolved withdraws a network's registration. Errors are logged.
func (m *Manager) revertResolved(n *conf.Network, ifindex int) {
	if m.cfg.Resolved == nil || !resolved.Wants(n) {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, hostBusTimeout)
	defer cancel()
	if err := m.cfg.Resolved.RevertLink(ctx, int32(ifindex)); err != nil {
		m.log.Warn("withdrawing the registration with systemd-resolved", "network", n.Name, "err", err)
	}
}

// readoptHostServices makes sure an adopted network is still in its zone
// and registered: firewalld or resolved may have restarted while vnetd was
// away, and both calls are idempotent. Failures are logged; the network
// keeps running.
func (m *Manager) readoptHostServices(n *conf.Network, ifindex int, log *slog.Logger) {
	if err := m.enterZone(n); err != nil {
		log.Error("putting an adopted network's bridge in its firewalld zone", "err", err)
	}
	if err := m.registerResolved(n, ifindex); err != nil {
		log.Error("registering an adopted network with systemd-resolved", "err", err)
	}
}

// leaveHostServices undoes enterZone and registerResolved for a network
// being destroyed.
func (m *Manager) leaveHostServices(n *conf.Network, ifindex int) {
	m.revertResolved(n, ifindex)
	m.leaveZone(n)
}

// connectHostServices connects to the system bus (addr overrides where it
// is) and returns the clients of the services that run there, nil for the
// others. A host without a system bus has neither.
func connectHostServices(addr string, log *slog.Logger) (Firewalld, Resolved, func()) {
	none := func() {}
	if addr == "" && os.Getenv("DBUS_SYSTEM_BUS_ADDRESS") == "" {
		if _, err := os.Stat(systemBusSocket); err != nil {
			log.Info("no system bus: networks get no firewalld zone and no systemd-resolved registration", "socket", systemBusSocket)
			return nil, nil, none
		}
	}
	var conn *dbus.Conn
	var err error
	if addr == "" {
		conn, err = dbus.ConnectSystemBus()
	} else {
		conn, err = dbus.Connect(addr)
	}
	if err != nil {
		log.Warn("cannot connect to the system bus: networks get no firewalld zone and no systemd-resolved registration", "err", err)
		return nil, nil, none
	}
	ctx, cancel := context.WithTimeout(context.Background(), hostBusTimeout)
	defer cancel()
	var fw Firewalld
	var res Resolved
	if c := firewalld.New(conn); c.Running(ctx) {
		fw = c
		log.Info("firewalld is running: bridges go into firewalld zones")
	} else {
		log.Info("firewalld is not running: bridges get no firewalld zone")
	}
	if c := resolved.New(conn); c.Running(ctx) {
		res = c
	} else {
		log.Info("systemd-resolved is not running: networks with <domain register='yes'> cannot start")
	}
	if fw == nil && res == nil {
		conn.Close()
		return nil, nil, none
	}
	return fw, res, func() { conn.Close() }
}
