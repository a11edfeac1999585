package ports

import "github.com/vnetd/vnetd/conf"

// InboundFloor is port p's inbound floor in kB/s (0 if none).
func InboundFloor(p *conf.Port) uint64 {
	if p == nil || p.Bandwidth == nil || p.Bandwidth.Inbound == nil {
		return 0
	}
	return p.Bandwidth.Inbound.Floor
}

// CheckFloor admits port p's inbound floor on network n, as libvirt's
// networkCheckBandwidth (libvirt-behavior.md §1c, §5): a port without a floor
// always passes; a floor needs a network with forward mode nat, route, open or
// none that has an inbound average; and floorSum (the floors of the network's
// other ports) plus p's floor must fit the network's inbound peak if it has
// one, else its inbound average. Class IDs are not assigned here.
func CheckFloor(n *conf.Network, p *conf.Port, floorSum uint64) error {
	if err := checkArgs(n, p); err != nil {
		return err
	}
	floor := InboundFloor(p)
	if floor == 0 {
		return nil
	}
	if !n.Forward.Mode.Managed() {
		return errf(n, p, "<bandwidth><inbound floor='%d'>: floor is only supported for networks with forward mode nat, route, open or none, not mode '%s'", floor, n.Forward.Mode)
	}
	nb := n.Bandwidth
	if nb == nil || nb.Inbound == nil || nb.Inbound.Average == 0 {
		return errf(n, p, "<bandwidth><inbound floor='%d'>: the network has no inbound QoS set, required by a floor", floor)
	}
	limit, which := nb.Inbound.Average, "average"
	if nb.Inbound.Peak != 0 {
		limit, which = nb.Inbound.Peak, "peak"
	}
	var free uint64
	if floorSum < limit {
		free = limit - floorSum
	}
	if floor > free {
		return errf(n, p, "<bandwidth><inbound floor='%d'>: cannot plug port: the network's inbound bandwidth limit (%d kB/s, its %s) cannot take a floor of %d kB/s (%d kB/s free)", floor, limit, which, floor, free)
	}
	return nil
}
