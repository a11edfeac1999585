package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/conf"
	"github.com/vnetd/vnetd/dataplane"
	"github.com/vnetd/vnetd/dataplane/ovs"
	"github.com/vnetd/vnetd/ports"
)

// PortOptions say how vnetd plugs a port's device on the host.
type PortOptions struct {
	// Attach enslaves an existing link (a veth end, a tap a hypervisor made).
	Attach string
	// Tap makes a persistent tap of that name (for hypervisors that open taps
	// by name); for a direct (macvtap) plug it names the macvtap device.
	Tap        string
	TapOwner   int // -1: none
	MultiQueue bool
}

// portRecord is what vnetd remembers of a port across restarts.
type portRecord struct {
	Network string `json:"network"`
	UUID    string `json:"uuid"`
	XML     string `json:"xml"`
	// Device is the host link that carries the port ("" when the hypervisor
	// plugs it itself); Created says vnetd made it and deletes it with the port.
	Device  string `json:"device,omitempty"`
	Created bool   `json:"created,omitempty"`
}

// livePort is a port of a running network.
type livePort struct {
	port    *conf.Port
	device  string
	created bool
}

var bucketPorts = []byte("ports")

func portKey(network string, id uuid.UUID) []byte { return []byte(network + "\x00" + id.String()) }

func (s *stateDB) putPort(r *portRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	id, err := uuid.Parse(r.UUID)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketPorts)
		if err != nil {
			return err
		}
		return b.Put(portKey(r.Network, id), data)
	})
}

func (s *stateDB) deletePort(network string, id uuid.UUID) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPorts)
		if b == nil {
			return nil
		}
		return b.Delete(portKey(network, id))
	})
}

func (s *stateDB) ports() ([]*portRecord, error) {
	var out []*portRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPorts)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			r := &portRecord{}
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("port record %q: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// floorSum is the inbound floors of a network's ports but skip.
func floorSum(r *running, skip uuid.UUID) uint64 {
	var sum uint64
	for id, lp := range r.ports {
		if id != skip {
			sum += ports.InboundFloor(lp.port)
		}
	}
	return sum
}

// CreatePort allocates a port on a running network and plugs its device.
func (m *Manager) CreatePort(netID string, xml []byte, opt PortOptions) (*conf.Port, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, r, _, err := m.lookup(netID)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, failf(api.CodeNotActive, n.Name, "network %q is not active: ports need a running network", n.Name)
	}
	p, err := conf.ParsePort(xml)
	if err != nil {
		return nil, fail(api.CodeInvalidDefinition, n.Name, err)
	}
	if _, dup := r.ports[p.UUID]; dup {
		return nil, failf(api.CodeConflict, n.Name, "network %q already has port %s", n.Name, p.UUID)
	}
	if opt.Attach != "" && opt.Tap != "" {
		return nil, failf(api.CodeInvalidRequest, n.Name, "give --attach or --tap, not both")
	}
	for what, name := range map[string]string{"attach": opt.Attach, "tap": opt.Tap} {
		if name != "" {
			if err := dataplane.CheckLinkName(what, name); err != nil {
				return nil, fail(api.CodeInvalidRequest, n.Name, fmt.Errorf("network %q: %w", n.Name, err))
			}
		}
	}
	next, port, err := ports.Allocate(r.net, p, floorSum(r, p.UUID))
	if err != nil {
		return nil, fail(api.CodeConflict, n.Name, err)
	}
	lp := &livePort{port: port}
	if err := m.plug(next, lp, opt); err != nil {
		return nil, fail(api.CodeOperationFailed, n.Name, fmt.Errorf("network %q: port %s: %w", n.Name, port.UUID, err))
	}
	if err := m.shapePort(r, next, lp); err != nil {
		m.unplug(next, lp)
		return nil, fail(api.CodeOperationFailed, n.Name, err)
	}
	if err := m.hook(next, hookPortCreated, port); err != nil {
		m.unshapePort(r, next, lp)
		m.unplug(next, lp)
		return nil, fail(api.CodeOperationFailed, n.Name, err)
	}
	rec := &portRecord{Network: n.Name, UUID: port.UUID.String(), XML: string(port.Format()), Device: lp.device, Created: lp.created}
	if err := m.state.putPort(rec); err != nil {
		m.unshapePort(r, next, lp)
		m.unplug(next, lp)
		return nil, fail(api.CodeOperationFailed, n.Name, err)
	}
	old := r.net
	r.net = next
	r.ports[port.UUID] = lp
	if err := m.saveRunning(r); err != nil {
		r.net = old
		delete(r.ports, port.UUID)
		m.state.deletePort(n.Name, port.UUID)
		m.unshapePort(r, next, lp)
		m.unplug(next, lp)
		return nil, err
	}
	m.log.Info("port created", "network", n.Name, "port", port.UUID, "plug", port.Plug.Type.String(), "device", lp.device)
	m.emitPort(api.EventPortCreated, n.Name, port.UUID.String())
	return port, nil
}

// plug makes or attaches the port's device as its plug says.
func (m *Manager) plug(n *conf.Network, lp *livePort, opt PortOptions) error {
	p := lp.port
	switch p.Plug.Type {
	case conf.PlugNetwork, conf.PlugBridge:
		dev := opt.Attach
		if opt.Tap != "" {
			tap := dataplane.TapOptions{Owner: opt.TapOwner, MultiQueue: opt.MultiQueue, VnetHdr: true, MAC: dataplane.HostTapMAC(p.MAC)}
			if err := m.cfg.Host.CreateTap(opt.Tap, tap); err != nil {
				return err
			}
			dev, lp.created = opt.Tap, true
		}
		if dev == "" {
			return nil // the hypervisor plugs the device itself
		}
		lp.device = dev
		if isOVS(p) {
			if err := m.ovsAdd(n, p, dev); err != nil {
				if lp.created {
					m.cfg.Host.DeleteLink(dev)
				}
				return err
			}
			return nil
		}
		if _, err := m.cfg.Host.AttachPort(portLink(n, p, dev)); err != nil {
			if lp.created {
				m.cfg.Host.DeleteLink(dev)
			}
			return err
		}
	case conf.PlugDirect:
		name := opt.Tap
		if name == "" {
			var err error
			if name, err = m.freeLinkName("macvtap"); err != nil {
				return err
			}
		}
		if _, err := m.cfg.Host.CreateMacvtap(name, p.Plug.Dev, p.Plug.MacvtapMode, p.MAC, int(n.MTU)); err != nil {
			return err
		}
		lp.device, lp.created = name, true
	case conf.PlugHostdevPCI:
		return m.plugVF(p)
	}
	return nil
}

// plugVF readies an SR-IOV VF for device assignment: the guest's MAC and VLAN
// set through the PF (the guest cannot be trusted to), and with
// managed='yes' the VF handed to vfio-pci.
func (m *Manager) plugVF(p *conf.Port) error {
	vlan, err := vfVLAN(p.VLAN)
	if err != nil {
		return err
	}
	pf, idx, err := dataplane.PFOfVF(m.cfg.SysfsRoot, p.Plug.PCI)
	if err != nil {
		return err
	}
	if err := m.cfg.Host.SetVF(pf, idx, p.MAC, vlan); err != nil {
		return err
	}
	if p.Plug.Managed == conf.TristateYes {
		if err := dataplane.BindVFIO(m.cfg.SysfsRoot, p.Plug.PCI); err != nil {
			m.cfg.Host.SetVF(pf, idx, nil, 0)
			return err
		}
	}
	return nil
}

func (m *Manager) unplugVF(p *conf.Port) error {
	var errs []error
	if p.Plug.Managed == conf.TristateYes {
		errs = append(errs, dataplane.UnbindVFIO(m.cfg.SysfsRoot, p.Plug.PCI))
	}
	if pf, idx, err := dataplane.PFOfVF(m.cfg.SysfsRoot, p.Plug.PCI); err != nil {
		errs = append(errs, err)
	} else {
		// The next guest must not inherit this one's VLAN.
		errs = append(errs, m.cfg.Host.SetVF(pf, idx, nil, 0))
	}
	return errors.Join(errs...)
}

// vfVLAN is the VLAN a VF can carry: one tag, untagged to the guest.
func vfVLAN(v *conf.VLAN) (int, error) {
	switch {
	case v == nil || len(v.Tags) == 0:
		return 0, nil
	case v.Trunk || len(v.Tags) > 1:
		return 0, errors.New("an SR-IOV VF carries a single VLAN tag; trunks are not supported")
	}
	return int(v.Tags[0].ID), nil
}

// unplug undoes plug; errors are logged as this runs on failing paths too.
func (m *Manager) unplug(n *conf.Network, lp *livePort) error {
	if lp.port.Plug.Type == conf.PlugHostdevPCI {
		err := m.unplugVF(lp.port)
		if err != nil {
			m.log.Warn("releasing VF", "network", n.Name, "port", lp.port.UUID, "pci", lp.port.Plug.PCI.String(), "err", err)
		}
		return err
	}
	if lp.device == "" {
		return nil
	}
	var err error
	switch lp.port.Plug.Type {
	case conf.PlugNetwork, conf.PlugBridge:
		if isOVS(lp.port) {
			err = m.ovsDel(lp.port.Plug.Bridge, lp.device)
			if err == nil && lp.created {
				err = m.cfg.Host.DeleteLink(lp.device)
			}
			break
		}
		err = m.cfg.Host.DetachPort(portLink(n, lp.port, lp.device), lp.created)
	case conf.PlugDirect:
		err = m.cfg.Host.DeleteLink(lp.device)
	}
	if err != nil {
		m.log.Warn("unplugging port", "network", n.Name, "port", lp.port.UUID, "device", lp.device, "err", err)
	}
	return err
}

// isOVS: the port goes into an Open vSwitch bridge (libvirt plugs those with
// ovs-vsctl, vnetd over OVSDB).
func isOVS(p *conf.Port) bool {
	return p.Plug.Type == conf.PlugBridge && p.VirtualPort != nil && p.VirtualPort.Type == conf.VirtualPortOpenvswitch
}

func (m *Manager) ovsAdd(n *conf.Network, p *conf.Port, dev string) error {
	if m.cfg.OVS == nil {
		return fmt.Errorf("network %q uses Open vSwitch, but vnetd has no OVSDB connection (--ovsdb-socket)", n.Name)
	}
	spec := ovs.PortSpec{Bridge: p.Plug.Bridge, Name: dev, MAC: p.MAC, VMID: p.OwnerUUID.String(), VLAN: p.VLAN, ProfileID: p.VirtualPort.ProfileID}
	if p.VirtualPort.InterfaceID != nil {
		spec.InterfaceID = p.VirtualPort.InterfaceID.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.cfg.OVS.AddPort(ctx, spec)
}

func (m *Manager) ovsDel(bridge, dev string) error {
	if m.cfg.OVS == nil {
		return errors.New("no OVSDB connection (--ovsdb-socket)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.cfg.OVS.DelPort(ctx, bridge, dev)
}

func portLink(n *conf.Network, p *conf.Port, dev string) dataplane.PortLink {
	return dataplane.PortLink{
		Bridge:          p.Plug.Bridge,
		Name:            dev,
		MAC:             p.MAC,
		MTU:             int(n.MTU),
		Isolated:        p.Isolated == conf.TristateYes,
		MACTableLibvirt: p.Plug.MACTableManager == conf.MACTableLibvirt,
	}
}

// freeLinkName is the first prefixN that no link uses.
func (m *Manager) freeLinkName(prefix string) (string, error) {
	for i := 0; i < 4096; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		exists, err := m.cfg.Host.LinkExists(name)
		if err != nil {
			return "", err
		}
		if !exists {
			return name, nil
		}
	}
	return "", fmt.Errorf("no free %sN link name", prefix)
}

// findPort resolves a network and one of its ports.
func (m *Manager) findPort(netID, portID string) (*running, *livePort, error) {
	n, r, _, err := m.lookup(netID)
	if err != nil {
		return nil, nil, err
	}
	if r == nil {
		return nil, nil, failf(api.CodeNotActive, n.Name, "network %q is not active", n.Name)
	}
	id, err := uuid.Parse(portID)
	if err != nil {
		return nil, nil, failf(api.CodeInvalidRequest, n.Name, "port id %q is not a UUID", portID)
	}
	lp, ok := r.ports[id]
	if !ok {
		return nil, nil, failf(api.CodeNotFound, n.Name, "network %q has no port %s", n.Name, id)
	}
	return r, lp, nil
}

// DeletePort unplugs and releases a port.
func (m *Manager) DeletePort(netID, portID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, lp, err := m.findPort(netID, portID)
	if err != nil {
		return err
	}
	name := r.net.Name
	next, err := ports.Release(r.net, lp.port)
	if err != nil {
		return fail(api.CodeOperationFailed, name, err)
	}
	// As in libvirt, a floor or rate that cannot be removed does not keep
	// the port (unshapePort logs it).
	m.unshapePort(r, r.net, lp)
	if err := m.unplug(r.net, lp); err != nil {
		return fail(api.CodeOperationFailed, name, err)
	}
	r.net = next
	delete(r.ports, lp.port.UUID)
	if err := m.state.deletePort(name, lp.port.UUID); err != nil {
		return fail(api.CodeOperationFailed, name, err)
	}
	if err := m.saveRunning(r); err != nil {
		return err
	}
	m.hookNotify(next, hookPortDeleted, lp.port)
	m.log.Info("port deleted", "network", name, "port", lp.port.UUID)
	m.emitPort(api.EventPortDeleted, name, lp.port.UUID.String())
	return nil
}

// PortInfo is a line of net-port-list.
func portInfo(lp *livePort) api.PortInfo {
	p := lp.port
	info := api.PortInfo{UUID: p.UUID.String(), MAC: p.MAC.String(), Owner: p.OwnerName, Group: p.Group,
		Plug: p.Plug.Type.String(), Device: lp.device}
	switch p.Plug.Type {
	case conf.PlugNetwork, conf.PlugBridge:
		info.Target = p.Plug.Bridge
	case conf.PlugDirect:
		info.Target = p.Plug.Dev
	case conf.PlugHostdevPCI:
		info.Target = p.Plug.PCI.String()
	}
	return info
}

// ListPorts lists a running network's ports, sorted by UUID.
func (m *Manager) ListPorts(netID string) ([]api.PortInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, r, _, err := m.lookup(netID)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, failf(api.CodeNotActive, n.Name, "network %q is not active", n.Name)
	}
	out := []api.PortInfo{}
	for _, lp := range r.ports {
		out = append(out, portInfo(lp))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UUID < out[j].UUID })
	return out, nil
}

// PortXML is a port's <networkport>.
func (m *Manager) PortXML(netID, portID string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, lp, err := m.findPort(netID, portID)
	if err != nil {
		return nil, err
	}
	return lp.port.Format(), nil
}

// SetPortBandwidth changes a port's rates live, without replugging it: the
// floor is admitted against the network like at creation, then the device's
// rates and the floor class change in place.
func (m *Manager) SetPortBandwidth(netID, portID string, bw *conf.Bandwidth) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, lp, err := m.findPort(netID, portID)
	if err != nil {
		return err
	}
	name := r.net.Name
	p := *lp.port
	if bw != nil {
		classID := uint(0)
		if p.Bandwidth != nil {
			classID = p.Bandwidth.ClassID
		}
		b := *bw
		b.ClassID = classID
		p.Bandwidth = &b
	} else {
		p.Bandwidth = nil
	}
	if err := ports.CheckFloor(r.net, &p, floorSum(r, p.UUID)); err != nil {
		return fail(api.CodeConflict, name, err)
	}
	if err := m.reshapePort(r, lp, &p); err != nil {
		m.restoreShaping(r, lp, lp.port)
		return fail(api.CodeOperationFailed, name, err)
	}
	rec := &portRecord{Network: name, UUID: p.UUID.String(), XML: string(p.Format()), Device: lp.device, Created: lp.created}
	if err := m.state.putPort(rec); err != nil {
		// The record keeps the old rates (and class id): put them back.
		m.restoreShaping(r, &livePort{port: &p, device: lp.device, created: lp.created}, lp.port)
		return fail(api.CodeOperationFailed, name, err)
	}
	lp.port = &p
	m.log.Info("port bandwidth changed", "network", name, "port", p.UUID)
	return nil
}

// reclaimPorts re-counts the ports of the adopted networks after a restart,
// starting from zero counters so nothing is counted twice.
func (m *Manager) reclaimPorts() error {
	recs, err := m.state.ports()
	if err != nil {
		return err
	}
	for _, r := range m.active {
		resetCounters(r.net)
	}
	var errs []error
	for _, rec := range recs {
		log := m.log.With("network", rec.Network, "port", rec.UUID)
		r, ok := m.active[rec.Network]
		p, perr := conf.ParsePort([]byte(rec.XML))
		if !ok || perr != nil {
			log.Warn("forgetting a port of a network that is not running", "err", perr)
			if perr == nil {
				m.state.deletePort(rec.Network, p.UUID)
			}
			continue
		}
		next, err := ports.Reclaim(r.net, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.net = next
		r.ports[p.UUID] = &livePort{port: p, device: rec.Device, created: rec.Created}
		if rec.Device != "" {
			if exists, _ := m.cfg.Host.LinkExists(rec.Device); !exists {
				log.Warn("the port's device is gone", "device", rec.Device)
			}
		}
	}
	for _, r := range m.active {
		m.reshapeAdopted(r)
		if err := m.saveRunning(r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func resetCounters(n *conf.Network) {
	n.Connections = 0
	for i := range n.Forward.Interfaces {
		n.Forward.Interfaces[i].Connections = 0
	}
	for i := range n.Forward.Addresses {
		n.Forward.Addresses[i].Connections = 0
	}
}
