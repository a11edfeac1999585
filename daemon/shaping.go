package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/ports"
	"github.com/vnetd/vnetd/shaping"
)

// Shaper applies <bandwidth> with tc (shaping.Shaper over netlink). An
// interface because the orchestration is tested without root.
type Shaper interface {
	ApplyNetwork(ctx context.Context, bridge string, bw *conf.Bandwidth, floorSum uint64) error
	ClearNetwork(ctx context.Context, bridge string) error
	ApplyPort(ctx context.Context, dev string, bw *conf.Bandwidth) error
	ClearPort(ctx context.Context, dev string) error
	PlugFloor(ctx context.Context, bridge string, n *conf.Network, p *conf.Port, others uint64, ids *shaping.ClassIDs) (uint16, error)
	UnplugFloor(ctx context.Context, bridge string, n *conf.Network, classID uint16, others uint64, ids *shaping.ClassIDs) error
	UpdateFloor(ctx context.Context, bridge string, n *conf.Network, p *conf.Port, others uint64, ids *shaping.ClassIDs) (uint16, error)
	Stats(ctx context.Context, dev string) ([]shaping.ClassStats, error)
}

// shapingTimeout bounds one network's or port's tc work: a handful of
// netlink round trips.
const shapingTimeout = 10 * time.Second

func (m *Manager) shapingContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(m.ctx, shapingTimeout)
}

// errNoShaper says why <bandwidth> cannot be honoured: a network or port that
// asks for rates must not silently run unshaped.
func (m *Manager) errNoShaper(what string) error {
	return fmt.Errorf("%s: <bandwidth> needs traffic control (tc), which vnetd could not open on this host", what)
}

// shapesNetwork: the network's own <bandwidth> goes on a bridge vnetd made.
func shapesNetwork(n *conf.Network) bool {
	return n.Bandwidth != nil && n.Forward.Mode.Managed() && n.Bridge.Name != ""
}

// shapeNetwork puts the network's rates on its bridge; floorSum is what the
// plugged ports' floors take (0 at start).
func (m *Manager) shapeNetwork(n *conf.Network, floorSum uint64) error {
	if !shapesNetwork(n) {
		return nil
	}
	if m.cfg.Shaper == nil {
		return m.errNoShaper(fmt.Sprintf("network %q", n.Name))
	}
	ctx, cancel := m.shapingContext()
	defer cancel()
	if err := m.cfg.Shaper.ApplyNetwork(ctx, n.Bridge.Name, n.Bandwidth, floorSum); err != nil {
		return fmt.Errorf("network %q: bandwidth on %s: %w", n.Name, n.Bridge.Name, err)
	}
	return nil
}

// unshapeNetwork removes the bridge's qdiscs, floor classes and IFB; errors
// are logged, as the network is going anyway.
func (m *Manager) unshapeNetwork(n *conf.Network) {
	if !shapesNetwork(n) || m.cfg.Shaper == nil {
		return
	}
	ctx, cancel := m.shapingContext()
	defer cancel()
	if err := m.cfg.Shaper.ClearNetwork(ctx, n.Bridge.Name); err != nil {
		m.log.Warn("removing the bandwidth of a network", "network", n.Name, "bridge", n.Bridge.Name, "err", err)
	}
}

// shapedDevice is the host device that carries a port's rates, if vnetd
// knows one and tc on it means what the XML means. Taps have the guest's
// directions swapped (the guest's inbound is the tap's egress), which is
// what shaping.ApplyPort assumes; macvtaps have them as they are, so the
// rates are passed swapped. Open vSwitch ports are left to OVS QoS, and
// hostdev has no host device.
func shapedDevice(lp *livePort) (dev string, bw *conf.Bandwidth) {
	p := lp.port
	if lp.device == "" || p.Bandwidth == nil || isOVS(p) {
		return "", nil
	}
	switch p.Plug.Type {
	case conf.PlugNetwork, conf.PlugBridge:
		return lp.device, p.Bandwidth
	case conf.PlugDirect:
		return lp.device, &conf.Bandwidth{Inbound: p.Bandwidth.Outbound, Outbound: p.Bandwidth.Inbound}
	}
	return "", nil
}

// shapePort applies a new port's rates to its device and plugs its floor
// into the bridge, recording the floor's class id in the port. On failure
// nothing of it is left.
func (m *Manager) shapePort(r *running, n *conf.Network, lp *livePort) error {
	p := lp.port
	dev, bw := shapedDevice(lp)
	floor := ports.InboundFloor(p) != 0
	if dev == "" && !floor {
		return nil
	}
	if m.cfg.Shaper == nil {
		return m.errNoShaper(fmt.Sprintf("network %q: port %s", n.Name, p.UUID))
	}
	ctx, cancel := m.shapingContext()
	defer cancel()
	if dev != "" {
		if err := m.cfg.Shaper.ApplyPort(ctx, dev, bw); err != nil {
			return fmt.Errorf("network %q: port %s: bandwidth on %s: %w", n.Name, p.UUID, dev, err)
		}
	}
	if floor {
		id, err := m.cfg.Shaper.PlugFloor(ctx, n.Bridge.Name, n, p, floorSum(r, p.UUID), &r.classIDs)
		if err != nil {
			if dev != "" {
				m.clearPortDevice(n, p.UUID, dev)
			}
			return fmt.Errorf("network %q: port %s: floor: %w", n.Name, p.UUID, err)
		}
		p.Bandwidth.ClassID = uint(id)
	}
	return nil
}

// unshapePort undoes shapePort: the floor class (its id freed) and the
// device's rates. Errors are logged and returned, but, as in libvirt, tc
// objects that are already gone are not errors.
func (m *Manager) unshapePort(r *running, n *conf.Network, lp *livePort) error {
	p := lp.port
	dev, _ := shapedDevice(lp)
	classID := classOf(p)
	if m.cfg.Shaper == nil || (dev == "" && classID == 0) {
		return nil
	}
	var errs []error
	if classID != 0 {
		ctx, cancel := m.shapingContext()
		err := m.cfg.Shaper.UnplugFloor(ctx, n.Bridge.Name, n, uint16(classID), floorSum(r, p.UUID), &r.classIDs)
		cancel()
		if err != nil {
			m.log.Warn("removing a port's floor", "network", n.Name, "port", p.UUID, "class", classID, "err", err)
			errs = append(errs, err)
		}
	}
	if dev != "" {
		if err := m.clearPortDevice(n, p.UUID, dev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) clearPortDevice(n *conf.Network, id uuid.UUID, dev string) error {
	ctx, cancel := m.shapingContext()
	defer cancel()
	err := m.cfg.Shaper.ClearPort(ctx, dev)
	if err != nil {
		m.log.Warn("removing a port's bandwidth", "network", n.Name, "port", id, "device", dev, "err", err)
	}
	return err
}

// reshapePort makes a port's shaping match p, its new definition
// (net-port-set-bandwidth): device rates changed in place, the floor class
// changed, plugged or unplugged. It sets p's class id.
func (m *Manager) reshapePort(r *running, lp *livePort, p *conf.Port) error {
	n := r.net
	dev, bw := shapedDevice(&livePort{port: p, device: lp.device, created: lp.created})
	if dev == "" {
		dev, _ = shapedDevice(lp) // rates removed: the old device is cleared
	}
	oldClass := classOf(lp.port)
	floor := ports.InboundFloor(p) != 0
	if dev == "" && !floor && oldClass == 0 {
		return nil
	}
	if m.cfg.Shaper == nil {
		return m.errNoShaper(fmt.Sprintf("network %q: port %s", n.Name, p.UUID))
	}
	ctx, cancel := m.shapingContext()
	defer cancel()
	if dev != "" {
		var err error
		if bw != nil {
			err = m.cfg.Shaper.ApplyPort(ctx, dev, bw)
		} else {
			err = m.cfg.Shaper.ClearPort(ctx, dev)
		}
		if err != nil {
			return fmt.Errorf("network %q: port %s: bandwidth on %s: %w", n.Name, p.UUID, dev, err)
		}
	}
	var err error
	switch {
	case p.Bandwidth == nil && oldClass != 0:
		err = m.cfg.Shaper.UnplugFloor(ctx, n.Bridge.Name, n, uint16(oldClass), floorSum(r, p.UUID), &r.classIDs)
	case p.Bandwidth != nil && (floor || oldClass != 0):
		p.Bandwidth.ClassID = oldClass
		var id uint16
		id, err = m.cfg.Shaper.UpdateFloor(ctx, n.Bridge.Name, n, p, floorSum(r, p.UUID), &r.classIDs)
		if err == nil {
			p.Bandwidth.ClassID = uint(id)
		}
	}
	if err != nil {
		return fmt.Errorf("network %q: port %s: floor: %w", n.Name, p.UUID, err)
	}
	return nil
}

// restoreShaping puts old's rates back after a failed change; cur is the
// port as tc may have it now.
func (m *Manager) restoreShaping(r *running, cur *livePort, old *conf.Port) {
	p := *old
	if p.Bandwidth != nil {
		bw := *p.Bandwidth
		p.Bandwidth = &bw
	}
	if err := m.reshapePort(r, cur, &p); err != nil {
		m.log.Error("restoring a port's bandwidth after a failed change", "network", r.net.Name, "port", p.UUID, "err", err)
	}
}

func classOf(p *conf.Port) uint {
	if p.Bandwidth == nil {
		return 0
	}
	return p.Bandwidth.ClassID
}

// reshapeAdopted restores the shaping of a network adopted after a restart:
// the floor class ids come back from the port records (the bitmap is
// rebuilt from them, so it can never disagree with them), and the tc objects
// are made to match in place, which also repairs what went missing while
// vnetd was away.
func (m *Manager) reshapeAdopted(r *running) {
	n := r.net
	log := m.log.With("network", n.Name)
	for id, lp := range r.ports {
		if lp.port.Bandwidth == nil || lp.port.Bandwidth.ClassID == 0 {
			continue
		}
		if lp.port.Bandwidth.ClassID > shaping.MaxClassID {
			log.Warn("port's floor class id out of range; its floor is not restored", "port", id, "class", lp.port.Bandwidth.ClassID)
			continue
		}
		if err := r.classIDs.Reserve(uint16(lp.port.Bandwidth.ClassID)); err != nil {
			log.Warn("port's floor class id taken twice", "port", id, "err", err)
		}
	}
	if m.cfg.Shaper == nil {
		return
	}
	if err := m.shapeNetwork(n, floorSum(r, uuid.Nil)); err != nil {
		log.Error("restoring the network's bandwidth", "err", err)
	}
	for id, lp := range r.ports {
		p := *lp.port
		if p.Bandwidth == nil {
			continue
		}
		bw := *p.Bandwidth
		p.Bandwidth = &bw
		cur := lp
		if dev, _ := shapedDevice(lp); dev != "" {
			if exists, _ := m.cfg.Host.LinkExists(dev); !exists {
				cur = &livePort{port: lp.port} // only the floor is left to restore
			}
		}
		if err := m.reshapePort(r, cur, &p); err != nil {
			log.Error("restoring a port's bandwidth", "port", id, "err", err)
		}
	}
}
