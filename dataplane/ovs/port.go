package ovs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/vnetd/vnetd/conf"
)

// PortSpec is a port to plug into an Open vSwitch bridge: the arguments of
// libvirt's virNetDevOpenvswitchAddPort.
type PortSpec struct {
	// Bridge is the Open vSwitch bridge (<bridge name>); it must exist.
	Bridge string
	// Name is the host device (tap) and so the name of both the Port and
	// its single Interface row.
	Name string
	// MAC is the guest's MAC (external_ids:attached-mac); nil omits it.
	MAC net.HardwareAddr
	// InterfaceID is <virtualport><parameters interfaceid> (iface-id);
	// empty omits it.
	InterfaceID string
	// VMID is the owner's UUID (vm-id); empty omits it.
	VMID string
	// ProfileID is <parameters profileid> (port-profile); empty omits it.
	ProfileID string
	// VLAN is the port's or network's <vlan>; nil or without tags leaves
	// the port an untagged access port on all VLANs (no tag, no trunks).
	VLAN *conf.VLAN
}

// BridgeNotFoundError is returned by AddPort when the bridge has no row in
// the Bridge table.
type BridgeNotFoundError struct{ Bridge string }

func (e *BridgeNotFoundError) Error() string {
	return fmt.Sprintf("open vswitch bridge %s not found", e.Bridge)
}

// PortInUseError is returned by AddPort when a port of that name exists on
// another bridge, or exists without an interface of its own name (ovs-vsctl
// --may-exist refuses both too).
type PortInUseError struct {
	Port   string
	Bridge string // the bridge it is on; empty if on none
	Reason string
}

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("open vswitch port %s already exists: %s", e.Port, e.Reason)
}

// Named rows in the insert transaction.
const (
	ifaceRowName = "vnetd_iface"
	portRowName  = "vnetd_port"
)

// attempts bounds how often AddPort and DelPort start over when the rows
// they read change before their write commits.
const attempts = 5

// vlanColumns are the Port columns a <vlan> maps to.
type vlanColumns struct {
	tag    int // -1: none
	trunks []int
	mode   string // vlan_mode; "": none
}

// vlanSettings maps a <vlan> as libvirt's virNetDevOpenvswitchConstructVlans
// does: a native tag gives vlan_mode native-tagged or native-untagged and
// tag=native id; a trunk gives trunks=[all tag ids]; otherwise the single
// tag is tag=N.
func vlanSettings(v *conf.VLAN) (vlanColumns, error) {
	cols := vlanColumns{tag: -1}
	if v == nil || len(v.Tags) == 0 {
		return cols, nil
	}
	native := -1
	for i, t := range v.Tags {
		if t.ID > 4095 {
			return cols, fmt.Errorf("vlan id %d is over 4095", t.ID)
		}
		if t.NativeMode == conf.NativeNone {
			continue
		}
		if native >= 0 {
			return cols, errors.New("only one vlan tag can be the native VLAN")
		}
		native = i
	}
	if !v.Trunk {
		if len(v.Tags) > 1 {
			return cols, errors.New("more than one vlan tag needs trunk='yes'")
		}
		if native >= 0 {
			return cols, errors.New("a native vlan needs trunk='yes'")
		}
		cols.tag = int(v.Tags[0].ID)
		return cols, nil
	}
	if native >= 0 {
		t := v.Tags[native]
		switch t.NativeMode {
		case conf.NativeTagged:
			cols.mode = "native-tagged"
		case conf.NativeUntagged:
			cols.mode = "native-untagged"
		default:
			return cols, fmt.Errorf("unknown vlan native mode %d", t.NativeMode)
		}
		cols.tag = int(t.ID)
	}
	// OVSDB sets are sorted and must not repeat an element.
	for _, t := range v.Tags {
		cols.trunks = append(cols.trunks, int(t.ID))
	}
	slices.Sort(cols.trunks)
	cols.trunks = slices.Compact(cols.trunks)
	return cols, nil
}

// insertRow is the Port columns of a new port: unset columns are left out.
func (v vlanColumns) insertRow(r row) {
	if v.tag >= 0 {
		r["tag"] = v.tag
	}
	if len(v.trunks) > 0 {
		r["trunks"] = intSet(v.trunks)
	}
	if v.mode != "" {
		r["vlan_mode"] = v.mode
	}
}

// updateRow is the Port columns of an existing port: all three are set, the
// unset ones to the empty set, so that no earlier VLAN setting stays.
func (v vlanColumns) updateRow() row {
	r := row{"tag": ovsSet{}, "trunks": intSet(v.trunks), "vlan_mode": ovsSet{}}
	if v.tag >= 0 {
		r["tag"] = v.tag
	}
	if v.mode != "" {
		r["vlan_mode"] = v.mode
	}
	return r
}

func intSet(ids []int) ovsSet {
	s := make(ovsSet, 0, len(ids))
	for _, id := range ids {
		s = append(s, id)
	}
	return s
}

// externalIDs is the Interface external_ids libvirt sets, in its order.
func (p PortSpec) externalIDs() ovsMap {
	var m ovsMap
	if p.MAC != nil {
		m = append(m, [2]string{"attached-mac", p.MAC.String()})
	}
	if p.InterfaceID != "" {
		m = append(m, [2]string{"iface-id", p.InterfaceID})
	}
	if p.VMID != "" {
		m = append(m, [2]string{"vm-id", p.VMID})
	}
	if p.ProfileID != "" {
		m = append(m, [2]string{"port-profile", p.ProfileID})
	}
	return append(m, [2]string{"iface-status", "active"})
}

func (p PortSpec) check() (vlanColumns, error) {
	if p.Bridge == "" {
		return vlanColumns{}, errors.New("no bridge name")
	}
	if p.Name == "" {
		return vlanColumns{}, errors.New("no port name")
	}
	if p.MAC != nil && len(p.MAC) != 6 {
		return vlanColumns{}, fmt.Errorf("mac %s is not 6 bytes", p.MAC.String())
	}
	return vlanSettings(p.VLAN)
}

// Indexes of the guards in the operations below, which map a "timed out"
// failure to its meaning.
const (
	insertBridgeGuard = 0 // the bridge exists
	insertPortGuard   = 1 // no port of that name exists
	updatePortGuard   = 0 // the port is still on the bridge
	updateIfaceGuard  = 1 // the port still has the interface
	deletePortGuard   = 0 // the port of that name is still the one read
)

// insertOps adds a new port: ovs-vsctl add-port BR NAME [vlan] -- set
// Interface NAME external-ids:…, with the bridge's existence and the port's
// absence asserted first.
func insertOps(p PortSpec, v vlanColumns) []operation {
	port := row{
		"name":       p.Name,
		"interfaces": namedRef(ifaceRowName),
	}
	v.insertRow(port)
	bridge := []condition{eq("name", p.Bridge)}
	return []operation{
		insertBridgeGuard: opAssert("Bridge", bridge, []string{"name"}, row{"name": p.Bridge}),
		insertPortGuard:   opAssert("Port", []condition{eq("name", p.Name)}, []string{"name"}),
		2: opInsert("Interface", row{
			"name":         p.Name,
			"external_ids": p.externalIDs(),
		}, ifaceRowName),
		3: opInsert("Port", port, portRowName),
		4: opMutate("Bridge", bridge,
			mutation{"ports", "insert", ovsSet{namedRef(portRowName)}}),
	}
}

// updateOps brings an existing port (portUUID, on the bridge, with the
// interface ifaceUUID of the same name) to p: its VLAN columns replaced,
// the managed external_ids keys of its interface replaced.
func updateOps(p PortSpec, v vlanColumns, portUUID, ifaceUUID string) []operation {
	// The external_ids keys AddPort owns: an update replaces exactly these
	// and keeps the others (ovn-controller's ovn-installed, …).
	keys := ovsSet{"attached-mac", "iface-id", "vm-id", "port-profile", "iface-status"}
	return []operation{
		updatePortGuard: opAssert("Bridge",
			[]condition{eq("name", p.Bridge), includes("ports", uuidRef(portUUID))},
			[]string{"name"}, row{"name": p.Bridge}),
		updateIfaceGuard: opAssert("Port",
			[]condition{eq("_uuid", uuidRef(portUUID)), includes("interfaces", uuidRef(ifaceUUID))},
			[]string{"name"}, row{"name": p.Name}),
		2: opUpdate("Port", []condition{eq("_uuid", uuidRef(portUUID))}, v.updateRow()),
		3: opMutate("Interface", []condition{eq("_uuid", uuidRef(ifaceUUID))},
			mutation{"external_ids", "delete", keys},
			mutation{"external_ids", "insert", p.externalIDs()}),
	}
}

// lookupOps reads the port of that name and the interface of that name.
func lookupOps(name string) []operation {
	return []operation{
		opSelect("Port", []condition{eq("name", name)}, "_uuid", "interfaces"),
		opSelect("Interface", []condition{eq("name", name)}, "_uuid"),
	}
}

// deleteOps takes the port portUUID, which must still be the port named
// name, off the bridge; the Port and Interface rows are then garbage
// collected (neither table is a root table).
func deleteOps(bridge, name, portUUID string) []operation {
	return []operation{
		deletePortGuard: opAssert("Port", []condition{eq("name", name)},
			[]string{"_uuid"}, row{"_uuid": uuidRef(portUUID)}),
		1: opMutate("Bridge", []condition{eq("name", bridge)},
			mutation{"ports", "delete", ovsSet{uuidRef(portUUID)}}),
	}
}

// AddPort plugs p into its bridge like ovs-vsctl --may-exist add-port BR
// NAME [tag=N | trunks=… [vlan_mode=…]] -- set Interface NAME
// external-ids:attached-mac=… iface-id=… vm-id=… iface-status=active: one
// transaction inserts the Interface and Port rows and adds the port to the
// bridge. If the bridge already has a port of that name, AddPort updates it
// instead (its VLAN columns, and the external_ids keys above of its
// interface) — where ovs-vsctl --may-exist would leave the VLAN as it was.
// A missing bridge is a *BridgeNotFoundError; a port of that name on
// another bridge is a *PortInUseError.
func (c *Client) AddPort(ctx context.Context, p PortSpec) error {
	v, err := p.check()
	if err != nil {
		return fmt.Errorf("add open vswitch port %s to bridge %s: %w", p.Name, p.Bridge, err)
	}
	for range attempts {
		done, err := c.addPort(ctx, p, v)
		if err != nil {
			return fmt.Errorf("add open vswitch port %s to bridge %s: %w", p.Name, p.Bridge, err)
		}
		if done {
			return nil
		}
	}
	return fmt.Errorf("add open vswitch port %s to bridge %s: the database kept changing underneath, gave up after %d attempts",
		p.Name, p.Bridge, attempts)
}

// addPort makes one attempt; false without an error means a concurrent
// change got in the way and the caller should try again.
func (c *Client) addPort(ctx context.Context, p PortSpec, v vlanColumns) (bool, error) {
	_, err := c.transact(ctx, insertOps(p, v))
	switch {
	case err == nil:
		return true, nil
	case failedOp(err, insertBridgeGuard):
		return false, &BridgeNotFoundError{Bridge: p.Bridge}
	case !failedOp(err, insertPortGuard):
		return false, err
	}

	// A port of that name exists: update it if it is ours to update.
	res, err := c.transact(ctx, lookupOps(p.Name))
	if err != nil {
		return false, err
	}
	if len(res[0].Rows) == 0 {
		return false, nil // gone since: insert again
	}
	portUUID, err := decodeUUID(res[0].Rows[0]["_uuid"])
	if err != nil {
		return false, fmt.Errorf("port row: %w", err)
	}
	ifaces, err := decodeUUIDSet(res[0].Rows[0]["interfaces"])
	if err != nil {
		return false, fmt.Errorf("port row: %w", err)
	}
	if len(res[1].Rows) == 0 {
		return false, &PortInUseError{Port: p.Name, Bridge: p.Bridge,
			Reason: fmt.Sprintf("it has no interface %s", p.Name)}
	}
	ifaceUUID, err := decodeUUID(res[1].Rows[0]["_uuid"])
	if err != nil {
		return false, fmt.Errorf("interface row: %w", err)
	}
	if !slices.Contains(ifaces, ifaceUUID) {
		return false, &PortInUseError{Port: p.Name, Bridge: p.Bridge,
			Reason: fmt.Sprintf("interface %s belongs to another port", p.Name)}
	}

	_, err = c.transact(ctx, updateOps(p, v, portUUID, ifaceUUID))
	switch {
	case err == nil:
		return true, nil
	case failedOp(err, updateIfaceGuard):
		return false, nil
	case !failedOp(err, updatePortGuard):
		return false, err
	}
	// Not on this bridge: say where it is, or start over if it went away.
	owner, err := c.bridgeOf(ctx, portUUID)
	if err != nil {
		return false, err
	}
	if owner == "" || owner == p.Bridge {
		return false, nil
	}
	return false, &PortInUseError{Port: p.Name, Bridge: owner,
		Reason: fmt.Sprintf("it is on bridge %s", owner)}
}

// bridgeOf returns the name of the bridge that has the port portUUID, or
// "" if none has.
func (c *Client) bridgeOf(ctx context.Context, portUUID string) (string, error) {
	res, err := c.transact(ctx, []operation{
		opSelect("Bridge", []condition{includes("ports", uuidRef(portUUID))}, "name"),
	})
	if err != nil {
		return "", err
	}
	if len(res[0].Rows) == 0 {
		return "", nil
	}
	var name string
	if err := json.Unmarshal(res[0].Rows[0]["name"], &name); err != nil {
		return "", fmt.Errorf("bridge row: name: %w", err)
	}
	return name, nil
}

// portUUID returns the uuid of the port named name, or "" if there is none.
func (c *Client) portUUID(ctx context.Context, name string) (string, error) {
	res, err := c.transact(ctx, []operation{
		opSelect("Port", []condition{eq("name", name)}, "_uuid"),
	})
	if err != nil {
		return "", err
	}
	if len(res[0].Rows) == 0 {
		return "", nil
	}
	u, err := decodeUUID(res[0].Rows[0]["_uuid"])
	if err != nil {
		return "", fmt.Errorf("port row: %w", err)
	}
	return u, nil
}

// DelPort takes the port name off the bridge, like ovs-vsctl --if-exists
// del-port BR NAME; the server then garbage-collects its Port and Interface
// rows. A port that does not exist, or is not on that bridge, or a bridge
// that does not exist, is not an error.
func (c *Client) DelPort(ctx context.Context, bridge, name string) error {
	if bridge == "" || name == "" {
		return fmt.Errorf("delete open vswitch port %q from bridge %q: empty name", name, bridge)
	}
	for range attempts {
		portUUID, err := c.portUUID(ctx, name)
		if err != nil {
			return fmt.Errorf("delete open vswitch port %s from bridge %s: %w", name, bridge, err)
		}
		if portUUID == "" {
			return nil
		}
		_, err = c.transact(ctx, deleteOps(bridge, name, portUUID))
		if err == nil {
			return nil
		}
		if !failedOp(err, deletePortGuard) {
			return fmt.Errorf("delete open vswitch port %s from bridge %s: %w", name, bridge, err)
		}
	}
	return fmt.Errorf("delete open vswitch port %s from bridge %s: the database kept changing underneath, gave up after %d attempts",
		name, bridge, attempts)
}

// PortExists reports whether the bridge has a port named name. A missing
// bridge has none.
func (c *Client) PortExists(ctx context.Context, bridge, name string) (bool, error) {
	portUUID, err := c.portUUID(ctx, name)
	if err != nil {
		return false, fmt.Errorf("look up open vswitch port %s on bridge %s: %w", name, bridge, err)
	}
	if portUUID == "" {
		return false, nil
	}
	res, err := c.transact(ctx, []operation{
		opSelect("Bridge", []condition{eq("name", bridge), includes("ports", uuidRef(portUUID))}, "name"),
	})
	if err != nil {
		return false, fmt.Errorf("look up open vswitch port %s on bridge %s: %w", name, bridge, err)
	}
	return len(res[0].Rows) > 0, nil
}
