// Package firewall is the nftables firewall of vnetd's managed networks: the
// rules libvirt 11.3's nftables backend (network_nftables.c) installs for an
// isolated, nat or route network, rule for rule, written through netlink. It
// never runs nft.
//
// The package has two halves. Build turns a *conf.Network into a Plan, a pure
// value: tables, chains and rules in evaluation order, which renders as
// libvirt's rule text (Rule.String) or as an `nft -f` file (Plan.NFT). Firewall
// is the thin shell that puts a Plan into the kernel over a
// *github.com/google/nftables.Conn the caller owns, checks that it is still
// there, and watches for it being deleted.
//
// # Tables: libvirt_network → vnetd_<bridge>
//
// libvirt keeps every network's rules in one shared table per family, `ip
// libvirt_network` and `ip6 libvirt_network`, created once per host
// (base.nftables), and records each network's rules so it can delete them
// one by one. vnetd gives each network a table pair of its own instead, named
// TableName(bridge) = "vnetd_" + bridge name (bridge names are interface
// names, unique on the host):
//
//	libvirt                          vnetd
//	ip  libvirt_network (shared)     ip  vnetd_<bridge>   (one per network)
//	ip6 libvirt_network (shared)     ip6 vnetd_<bridge>   (only with IPv6 addresses or ipv6='yes')
//
// Each table has libvirt's chains with libvirt's names: forward (type filter
// hook forward priority 0; policy accept) jumping to guest_cross, guest_input
// and guest_output in that order, and guest_nat (type nat hook postrouting
// priority 100; policy accept). Removing a network is deleting its tables:
// exactly what was added, in one transaction, with nothing to remember and
// nothing left behind; and networks applied in parallel (as tests do) never
// touch each other's rules.
//
// One consequence of separate tables: a forwarded packet goes through every
// network's forward chain, where libvirt's shared chain stops at the first
// rule that matches across all networks. For traffic between two networks
// vnetd is therefore at least as strict as libvirt: a reject in either
// network's table wins, where libvirt could accept first. Traffic between a
// network and the outside world meets only its own network's rules and is
// handled exactly as libvirt does.
//
// # Rule order
//
// libvirt inserts every rule at the head of its chain (`nft -ae insert
// rule`), so a chain evaluates rules in the reverse of the order libvirt
// emits them. Build follows libvirt's emission order and reverses per chain;
// Table.Rules is in evaluation order, which is also the order Apply appends
// them in.
//
// # What is left out
//
// libvirt also adds a tc u32 filter with a csum action on the bridge (udp
// dport 68), to fill in the checksums of DHCP replies that dnsmasq sends with
// checksum offload to guests that do not finish them. vnetd's own DHCP server
// computes UDP checksums in software, so there is nothing to fix up and no tc
// filter. libvirt's firewalld zone handling is not part of this package.
//
// # Encoding
//
// Rules are encoded in the same bytecode nft generates for their text (checked
// against `nft --debug=netlink` in the kernel tests), so `nft list ruleset`
// shows them as Plan.NFT writes them. One expression needs care: the kernel's
// masq applies a port range (`masquerade to :1024-65535`) only with the
// NF_NAT_RANGE_PROTO_SPECIFIED flag, which nft sets and google/nftables v0.3.0
// cannot; see marshalExpr. That is why Apply sends its batch itself rather
// than through nftables.Conn.Flush.
package firewall
