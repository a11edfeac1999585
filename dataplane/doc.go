// Package dataplane builds the kernel side of vnetd's managed networks (libvirt's
// isolated, nat, route and open modes): the bridge with its MAC, MTU, STP
// settings, IPv6 sysctls, addresses and static routes, and the global IP
// forwarding switches, in libvirt's order (libvirt-behavior.md §10).
//
// Everything goes through netlink and /proc/sys: the package never runs ip, tc,
// nft or sysctl. Decisions are pure functions of a *conf.Network and of plain
// route lists (plan.go); the kernel calls are a thin shell over a
// *netlink.Handle the caller owns (dataplane_linux.go). Firewall rules live in
// dataplane/firewall.
package dataplane
