#!/usr/bin/env bash
# make demo: vnetd with libvirt's default network inside a throw-away network
# namespace, a guest namespace on its bridge and an "upstream" namespace
# behind it. Everything is removed at exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo creates network namespaces: run it as root" >&2
  exit 1
fi

GO=${GO:-go}
id=$$
HOST=vnetd-demo-host-$id GUEST=vnetd-demo-guest-$id UP=vnetd-demo-up-$id
tmp=$(mktemp -d /tmp/vnetd-demo.XXXXXX)
sock=$tmp/vnetd.sock
vnetd_pid=

cleanup() {
  [ -f "$tmp/dhclient.pid" ] && kill "$(cat "$tmp/dhclient.pid")" 2>/dev/null || true
  [ -n "$vnetd_pid" ] && kill "$vnetd_pid" 2>/dev/null || true
  for ns in "$HOST" "$GUEST" "$UP"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ctl() { echo "\$ vnetctl $*"; "$tmp/vnetctl" --socket "$sock" "$@"; }

step "building vnetd and vnetctl"
$GO build -o "$tmp/vnetd" ./cmd/vnetd
$GO build -o "$tmp/vnetctl" ./cmd/vnetctl

step "namespaces: $HOST runs vnetd, $GUEST is a guest, $UP is the outside world"
for ns in "$HOST" "$GUEST" "$UP"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
# The guest takes router advertisements like a VM would (a fresh namespace
# already does; said here for the reader).
ip netns exec "$GUEST" sysctl -qw net.ipv6.conf.default.accept_ra=1
ip -n "$HOST" link add uplink type veth peer name eth0 netns "$UP"
ip -n "$HOST" addr add 10.77.0.1/24 dev uplink && ip -n "$HOST" link set uplink up
ip -n "$UP" addr add 10.77.0.2/24 dev eth0 && ip -n "$UP" link set eth0 up
echo "uplink 10.77.0.1 <-> upstream 10.77.0.2 (the upstream has no route back to the guests)"

step "starting vnetd inside $HOST"
ip netns exec "$HOST" "$tmp/vnetd" --config-dir "$tmp/etc" --state-dir "$tmp/state" \
  --run-dir "$tmp/run" --socket "$sock" >"$tmp/vnetd.log" 2>&1 &
vnetd_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { cat "$tmp/vnetd.log"; exit 1; }
grep -m1 'vnetd ready' "$tmp/vnetd.log" || true

step "libvirt's default network, plus an IPv6 subnet for router advertisements"
# libvirt's default network is IPv4 only; one IPv6 <ip> without <dhcp>
# makes vnetd advertise it for SLAAC.
sed "s|</network>|  <ip family='ipv6' address='fd00:122::1' prefix='64'/>\n</network>|" \
  testdata/networks/default.xml >"$tmp/default.xml"
cat "$tmp/default.xml"
ctl net-define "$tmp/default.xml"
ctl net-autostart default
ctl net-start default
ctl net-list --all
ctl net-info default

step "the bridge vnetd made"
ip -n "$HOST" -br addr show virbr0

step "a guest on the bridge gets its address from vnetd's DHCP server"
ip -n "$HOST" link add vnet0 type veth peer name eth0 netns "$GUEST"
ip -n "$HOST" link set vnet0 master virbr0 up
ip -n "$GUEST" link set eth0 up
echo "waiting for the new bridge port to pass STP's listening and learning states (STP is on, as in libvirt)"
for _ in $(seq 150); do bridge -n "$HOST" link show dev vnet0 | grep -q 'state forwarding' && break; sleep 0.1; done
bridge -n "$HOST" link show dev vnet0
# Our own dhclient hook: the stock one would rewrite the host's
# /etc/resolv.conf (network namespaces share /etc).
cat >"$tmp/dhclient-hook" <<'HOOK'
#!/bin/sh
case "$reason" in
BOUND|RENEW|REBIND|REBOOT)
  ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" 2>/dev/null
  for r in $new_routers; do ip route replace default via "$r" dev "$interface"; break; done
  echo "lease: $new_ip_address/$new_subnet_mask router $new_routers dns $new_domain_name_servers lease ${new_dhcp_lease_time}s"
  ;;
esac
HOOK
chmod +x "$tmp/dhclient-hook"
echo "\$ dhclient -4 -1 eth0   (in the guest)"
ip netns exec "$GUEST" dhclient -4 -1 -sf "$tmp/dhclient-hook" -lf "$tmp/dhclient.leases" -pf "$tmp/dhclient.pid" eth0
ip -n "$GUEST" -br addr show eth0
ctl net-dhcp-leases default
echo "\$ ping the gateway from the guest"
ip netns exec "$GUEST" ping -c 2 -W 2 192.168.122.1 | tail -2
echo "\$ ping the upstream host through NAT from the guest"
ip netns exec "$GUEST" ping -c 2 -W 2 10.77.0.2 | tail -2

step "the guest hears vnetd's router advertisement and configures itself (SLAAC)"
echo "\$ rdisc6 eth0   (in the guest)"
ip netns exec "$GUEST" rdisc6 -1 -w 3000 eth0
for _ in $(seq 50); do ip -n "$GUEST" -6 addr show dev eth0 scope global | grep -q fd00:122 && break; sleep 0.1; done
ip -n "$GUEST" -6 -br addr show dev eth0
ip -n "$GUEST" -6 route show default

step "vnetd's DNS server answers the guest"
ctl net-update default add-last dns-host "<host ip='192.168.122.10'><hostname>web</hostname></host>" --live
echo "\$ dig @192.168.122.1 web   (in the guest)"
ip netns exec "$GUEST" dig +norecurse +time=2 +tries=2 @192.168.122.1 web | grep -E '^web|status:'
echo "\$ dig @192.168.122.1 -x 192.168.122.10   (in the guest)"
ip netns exec "$GUEST" dig +short +time=2 +tries=2 @192.168.122.1 -x 192.168.122.10

step "vnetd's nftables rules (one table pair per network)"
# Read it whole before cutting it: with pipefail, head closing the pipe
# early failed the demo with nft's SIGPIPE (exit 141) now and then.
ruleset=$(ip netns exec "$HOST" nft list ruleset)
sed -n 1,40p <<<"$ruleset"

step "net-destroy takes it all down"
ctl net-destroy default
ip -n "$HOST" link show virbr0 2>&1 | head -1 || true
echo
echo "demo done; namespaces and files are removed on exit"
