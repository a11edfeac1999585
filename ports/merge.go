package ports

import (
	"fmt"

	"github.com/google/uuid"
	"github.com/vnetd/vnetd/conf"
)

// findPortGroup is the portgroup port p uses: the one p.Group names, or the
// network's default portgroup when p.Group is empty (nil when there is none).
func findPortGroup(n *conf.Network, p *conf.Port) (*conf.PortGroup, error) {
	for i := range n.PortGroups {
		pg := &n.PortGroups[i]
		if p.Group == "" && pg.Default || p.Group != "" && pg.Name == p.Group {
			return pg, nil
		}
	}
	if p.Group != "" {
		return nil, errf(n, p, "<group>: portgroup '%s' not found in network '%s'", p.Group, n.Name)
	}
	return nil, nil
}

// inherit fills what q leaves unset from the portgroup and the network:
// bandwidth from the portgroup; VLAN from the portgroup, else the network;
// trustGuestRxFilters from the portgroup, else the network; <port isolated>
// from the network. q is a private copy; everything taken is deep-copied.
func inherit(n *conf.Network, pg *conf.PortGroup, q *conf.Port) {
	if q.Bandwidth == nil && pg != nil && pg.Bandwidth != nil {
		q.Bandwidth = pg.Bandwidth.Clone()
	}
	if !hasTags(q.VLAN) {
		switch {
		case pg != nil && hasTags(pg.VLAN):
			q.VLAN = pg.VLAN.Clone()
		case hasTags(n.VLAN):
			q.VLAN = n.VLAN.Clone()
		}
	}
	if q.TrustGuestRxFilters == conf.TristateAbsent {
		if pg != nil && pg.TrustGuestRxFilters != conf.TristateAbsent {
			q.TrustGuestRxFilters = pg.TrustGuestRxFilters
		} else {
			q.TrustGuestRxFilters = n.TrustGuestRxFilters
		}
	}
	if q.Isolated == conf.TristateAbsent {
		q.Isolated = n.PortIsolated
	}
}

func hasTags(v *conf.VLAN) bool { return v != nil && len(v.Tags) > 0 }

// vpTypeName is a virtualport type as libvirt spells it in messages.
func vpTypeName(vp *conf.VirtualPort) string {
	if vp.Type == conf.VirtualPortUntyped {
		return "none"
	}
	return vp.Type.String()
}

// Virtualport parameter names, as in <parameters>.
const (
	paramManagerID     = "managerid"
	paramTypeID        = "typeid"
	paramTypeIDVersion = "typeidversion"
	paramInstanceID    = "instanceid"
	paramProfileID     = "profileid"
	paramInterfaceID   = "interfaceid"
)

// takes reports whether a virtualport of type t has parameter param (an
// untyped one takes them all). This is what libvirt merges and formats.
func takes(t conf.VirtualPortType, param string) bool {
	switch t {
	case conf.VirtualPortUntyped:
		return true
	case conf.VirtualPort8021Qbg:
		return param == paramManagerID || param == paramTypeID || param == paramTypeIDVersion || param == paramInstanceID
	case conf.VirtualPort8021Qbh:
		return param == paramProfileID
	case conf.VirtualPortOpenvswitch:
		return param == paramInterfaceID || param == paramProfileID
	case conf.VirtualPortMidonet:
		return param == paramInterfaceID
	}
	return false
}

// merger accumulates virtualport profiles, remembering where each value came
// from for the conflict messages.
type merger struct {
	vp   conf.VirtualPort
	from map[string]string // "type" or a parameter name → source
}

// mergeParam takes src's value of a pointer parameter unless the result
// already has one; two different values are a conflict.
func mergeParam[T comparable](m *merger, name string, dst **T, src *T, source string) error {
	if src == nil || !takes(m.vp.Type, name) {
		return nil
	}
	if *dst != nil {
		if **dst != *src {
			return fmt.Errorf("conflicting %s in virtualport: '%v' (%s) vs '%v' (%s)", name, **dst, m.from[name], *src, source)
		}
		return nil
	}
	v := *src
	*dst = &v
	m.from[name] = source
	return nil
}

// add merges src (from source) into the result, as libvirt's
// virNetDevVPortProfileMerge: a type set in both must agree, a parameter set
// in both must agree, and a parameter is only taken if it belongs to the
// result's type.
func (m *merger) add(src *conf.VirtualPort, source string) error {
	if src == nil {
		return nil
	}
	if src.Type != conf.VirtualPortUntyped {
		if m.vp.Type != conf.VirtualPortUntyped && m.vp.Type != src.Type {
			return fmt.Errorf("conflicting virtualport types: '%s' (%s) vs '%s' (%s)", m.vp.Type, m.from["type"], src.Type, source)
		}
		if m.vp.Type == conf.VirtualPortUntyped {
			m.vp.Type = src.Type
			m.from["type"] = source
		}
	}
	if err := mergeParam(m, paramManagerID, &m.vp.ManagerID, src.ManagerID, source); err != nil {
		return err
	}
	if err := mergeParam(m, paramTypeID, &m.vp.TypeID, src.TypeID, source); err != nil {
		return err
	}
	if err := mergeParam(m, paramTypeIDVersion, &m.vp.TypeIDVersion, src.TypeIDVersion, source); err != nil {
		return err
	}
	if err := mergeParam(m, paramInstanceID, &m.vp.InstanceID, src.InstanceID, source); err != nil {
		return err
	}
	if err := mergeParam(m, paramInterfaceID, &m.vp.InterfaceID, src.InterfaceID, source); err != nil {
		return err
	}
	if src.ProfileID != "" && takes(m.vp.Type, paramProfileID) {
		switch {
		case m.vp.ProfileID == "":
			m.vp.ProfileID = src.ProfileID
			m.from[paramProfileID] = source
		case m.vp.ProfileID != src.ProfileID:
			return fmt.Errorf("conflicting %s in virtualport: '%s' (%s) vs '%s' (%s)", paramProfileID, m.vp.ProfileID, m.from[paramProfileID], src.ProfileID, source)
		}
	}
	return nil
}

// mergeVirtualPorts is libvirt's virNetDevVPortProfileMerge3: the port's
// profile, then the network's, then the portgroup's. Values set earlier win
// only in the sense that a different later value is an error; every
// parameter set anywhere ends up in the result (if it belongs to the
// resulting type: libvirt ignores and never formats the others, so they are
// dropped here). The result is nil when nothing is set: no profile at all,
// or only untyped ones without parameters.
func mergeVirtualPorts(port, network, portgroup *conf.VirtualPort) (*conf.VirtualPort, error) {
	m := &merger{vp: conf.VirtualPort{Type: conf.VirtualPortUntyped}, from: map[string]string{}}
	// The port's own parameters are all taken at first, whatever its type:
	// merge it as untyped, then apply its type.
	if port != nil {
		untyped := *port
		untyped.Type = conf.VirtualPortUntyped
		if err := m.add(&untyped, "port"); err != nil {
			return nil, err
		}
		if port.Type != conf.VirtualPortUntyped {
			m.vp.Type = port.Type
			m.from["type"] = "port"
		}
	}
	if err := m.add(network, "network"); err != nil {
		return nil, err
	}
	if err := m.add(portgroup, "portgroup"); err != nil {
		return nil, err
	}
	vp := &m.vp
	trim(vp)
	if vp.Type == conf.VirtualPortUntyped && !hasParams(vp) {
		return nil, nil
	}
	return vp, nil
}

// trim drops the parameters that do not belong to vp's type.
func trim(vp *conf.VirtualPort) {
	t := vp.Type
	if !takes(t, paramManagerID) {
		vp.ManagerID = nil
	}
	if !takes(t, paramTypeID) {
		vp.TypeID = nil
	}
	if !takes(t, paramTypeIDVersion) {
		vp.TypeIDVersion = nil
	}
	if !takes(t, paramInstanceID) {
		vp.InstanceID = nil
	}
	if !takes(t, paramInterfaceID) {
		vp.InterfaceID = nil
	}
	if !takes(t, paramProfileID) {
		vp.ProfileID = ""
	}
}

func hasParams(vp *conf.VirtualPort) bool {
	return vp.ManagerID != nil || vp.TypeID != nil || vp.TypeIDVersion != nil || vp.InstanceID != nil ||
		vp.InterfaceID != nil || vp.ProfileID != ""
}

// newUUID generates the instanceid/interfaceid libvirt fills in when they are
// missing.
var newUUID = uuid.NewRandom

// complete is libvirt's virNetDevVPortProfileCheckComplete with
// generateMissing: every parameter the type requires must be set, except
// 802.1Qbg's instanceid and openvswitch's interfaceid, which are generated.
// vp (the port's private copy) is completed in place.
func complete(vp *conf.VirtualPort) error {
	if vp == nil {
		return nil
	}
	missing := ""
	generate := func(dst **uuid.UUID, name string) error {
		if *dst != nil {
			return nil
		}
		u, err := newUUID()
		if err != nil {
			return fmt.Errorf("cannot generate a random uuid for %s: %v", name, err)
		}
		*dst = &u
		return nil
	}
	switch vp.Type {
	case conf.VirtualPort8021Qbg:
		switch {
		case vp.ManagerID == nil:
			missing = paramManagerID
		case vp.TypeID == nil:
			missing = paramTypeID
		case vp.TypeIDVersion == nil:
			missing = paramTypeIDVersion
		default:
			if err := generate(&vp.InstanceID, paramInstanceID); err != nil {
				return err
			}
		}
	case conf.VirtualPort8021Qbh:
		if vp.ProfileID == "" {
			missing = paramProfileID
		}
	case conf.VirtualPortOpenvswitch:
		if err := generate(&vp.InterfaceID, paramInterfaceID); err != nil {
			return err
		}
	case conf.VirtualPortMidonet:
		if vp.InterfaceID == nil {
			missing = paramInterfaceID
		}
	}
	if missing != "" {
		return fmt.Errorf("missing %s in <virtualport type='%s'>", missing, vp.Type)
	}
	return nil
}
