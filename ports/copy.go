package ports

import (
	"slices"

	"github.com/google/uuid"
	"github.com/vnetd/vnetd/conf"
)

// The deep copies conf keeps unexported (conf.Network has Clone, the port
// parts do not).

func copyPort(p *conf.Port) *conf.Port {
	c := *p
	c.MAC = slices.Clone(p.MAC)
	c.VirtualPort = copyVirtualPort(p.VirtualPort)
	c.Bandwidth = copyBandwidth(p.Bandwidth)
	c.VLAN = copyVLAN(p.VLAN)
	if p.Plug.Driver != nil {
		d := *p.Plug.Driver
		c.Plug.Driver = &d
	}
	return &c
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func copyVirtualPort(vp *conf.VirtualPort) *conf.VirtualPort {
	if vp == nil {
		return nil
	}
	c := *vp
	c.ManagerID = copyPtr(vp.ManagerID)
	c.TypeID = copyPtr(vp.TypeID)
	c.TypeIDVersion = copyPtr(vp.TypeIDVersion)
	c.InstanceID = copyPtr[uuid.UUID](vp.InstanceID)
	c.InterfaceID = copyPtr[uuid.UUID](vp.InterfaceID)
	return &c
}

func copyBandwidth(b *conf.Bandwidth) *conf.Bandwidth {
	if b == nil {
		return nil
	}
	c := *b
	c.Inbound = copyPtr(b.Inbound)
	c.Outbound = copyPtr(b.Outbound)
	return &c
}

func copyVLAN(v *conf.VLAN) *conf.VLAN {
	if v == nil {
		return nil
	}
	return &conf.VLAN{Trunk: v.Trunk, Tags: slices.Clone(v.Tags)}
}
