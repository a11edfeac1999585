// Package ovs plugs ports into Open vSwitch bridges the way libvirt's
// virNetDevOpenvswitchAddPort and virNetDevOpenvswitchRemovePort do with
// ovs-vsctl, but by talking the OVSDB management protocol (RFC 7047) to
// ovsdb-server directly: the package never runs ovs-vsctl.
//
// The layers are:
//
//   - rpc.go: a JSON-RPC 1.0 client over a unix stream socket (concatenated
//     JSON objects, no framing), which answers the server's "echo" requests
//     and matches responses to calls by id;
//   - ovsdb.go: the OVSDB value notation (uuid, named-uuid, set, map),
//     operations and the "transact" call with its per-operation errors;
//   - port.go: PortSpec, the pure mapping of a port to transact operations
//     (VLAN columns as libvirt sets them, the Interface external_ids), and
//     AddPort, DelPort and PortExists.
//
// Only ovsdb-server is needed: rows written here are picked up by
// ovs-vswitchd on its own, and no call waits for it to apply them (as
// ovs-vsctl --no-wait).
package ovs
