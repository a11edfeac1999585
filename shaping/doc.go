// Package shaping applies libvirt's <bandwidth> (average, peak, burst,
// floor) to network and port devices with tc over netlink: go-tc for the
// qdiscs, classes and filters, vishvananda/netlink for the IFB devices. It
// never runs tc or ip.
//
// The package has two halves. The plan half is pure: PlanPort,
// PlanNetwork, PlanPlug, PlanUnplug and PlanUpdate turn a bandwidth and a
// device into a Plan, a list of tc objects with a stable text rendering
// in tc's syntax, and ClassIDs is the floor class-id bitmap a network
// persists. The Shaper is the thin netlink shell that makes one network
// namespace's devices match such plans, idempotently and in place, and
// rolls back what a failed call created.
//
// Units are libvirt's and tc's: average, peak and floor in kilobytes per
// second (×1000 bytes/s), burst in kibibytes (×1024 bytes), the HTB quantum
// as libvirt computes it (Quantum). Directions are the guest's view. A
// port's inbound is shaped by HTB on the port device's egress; its
// outbound arrives on the device's ingress and is redirected (u32
// match-all, mirred) to an IFB device with the same HTB tree, so outbound
// is shaped rather than policed and keeps peak and burst (libvirt polices
// it, ignoring peak). A network's bridge gets libvirt's hierarchy (root 1:,
// class 1:1 capping the network, 1:2 for traffic without a floor) and a
// class per port floor, classified by the port's MAC for every protocol.
//
// The leaf qdisc under each class is the best the kernel offers, fq_codel,
// else sfq, else pfifo (Shaper.Probe); without fq_codel or sfq a class is
// a plain FIFO, sized by its rate.
package shaping
