#!/usr/bin/env bash
# bench/scale.sh: one vnetd with many running networks (DHCPv4 + DNS + IPv6
# RA each) and many ports, against libvirt's approach of one dnsmasq per
# network, measured in the same run.
#
#   sudo bench/scale.sh                          # 256 networks, 1000 ports
#   sudo NETWORKS=64 PORTS=200 DNSMASQ=32 bench/scale.sh
#
# Prints: the time from starting vnetd to its API answering with every
# autostart network up (a cold start in a fresh namespace: bridges, rules and
# servers all made), the time to create the ports (tap + bridge port each,
# through vnetctl), net-list latency, and vnetd's RSS/PSS; then the RSS and PSS
# of DNSMASQ dnsmasq processes (libvirt's configuration: one per network, on
# bridges made here with ip) and of all NETWORKS of them.
# Targets (issue 10): every network up within 5 s; vnetd's whole memory below
# that of 32 dnsmasq processes.
#
# Everything runs in namespaces made here and removed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/scale.sh creates network namespaces: run it as root" >&2
  exit 1
fi
NETWORKS=${NETWORKS:-256}
PORTS=${PORTS:-1000}
DNSMASQ=${DNSMASQ:-32}
LIST_CALLS=${LIST_CALLS:-20}
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}
if [ "$NETWORKS" -lt 1 ] || [ "$NETWORKS" -gt 4000 ]; then
  echo "NETWORKS must be 1..4000" >&2
  exit 2
fi

id=$$
NS_DEF=vscale-def-$id NS_RUN=vscale-run-$id NS_DM=vscale-dm-$id
tmp=$(mktemp -d /tmp/vnetd-scale.XXXXXX)
vnetd_pid=
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log() { printf '%s\n' "$*" >&2; }

cleanup() {
  set +e
  [ -n "$vnetd_pid" ] && kill -9 "$vnetd_pid" 2>/dev/null
  for ns in "$NS_DEF" "$NS_RUN" "$NS_DM"; do
    if ip netns list | grep -qw -- "$ns"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
      ip netns del "$ns"
    fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

command -v dnsmasq >/dev/null || { log "installing dnsmasq-base"; apt-get install -y -qq dnsmasq-base >/dev/null; }

log "building vnetd and vnetctl"
"$GO" build -o "$tmp/vnetd" ./cmd/vnetd
"$GO" build -o "$tmp/vnetctl" ./cmd/vnetctl
ctl() { "$tmp/vnetctl" --socket "$tmp/run/vnetd.sock" "$@"; }

# net_xml I: network I of the run (10.A.B.0/24 and fd00:5ca:I::/64).
net_xml() {
  local i=$1 a=$((200 + $1 / 250)) b=$(($1 % 250))
  cat <<EOF
<network>
  <name>s$i</name>
  <forward mode='nat'/>
  <bridge name='vs$i' stp='off'/>
  <domain name='s$i.test' localOnly='yes'/>
  <dns><host ip='10.$a.$b.10'><hostname>fixed</hostname></host></dns>
  <ip address='10.$a.$b.1' netmask='255.255.255.0'>
    <dhcp><range start='10.$a.$b.100' end='10.$a.$b.200'/></dhcp>
  </ip>
  <ip family='ipv6' address='fd00:5ca:$i::1' prefix='64'/>
</network>
EOF
}

start_vnetd() { # NS
  mkdir -p "$tmp/run"
  ip netns exec "$1" "$tmp/vnetd" --config-dir "$tmp/etc" --state-dir "$tmp/state" --run-dir "$tmp/run" \
    --socket "$tmp/run/vnetd.sock" --log-level info >"$tmp/vnetd-$1.log" 2>&1 &
  vnetd_pid=$!
}

wait_api() { # deadline seconds
  local n=$(($1 * 100))
  while ! ctl net-list --all >/dev/null 2>&1; do
    n=$((n - 1))
    if [ "$n" -le 0 ] || ! kill -0 "$vnetd_pid" 2>/dev/null; then
      log "vnetd did not come up:"; tail -20 "$tmp"/vnetd-*.log >&2; exit 1
    fi
    sleep 0.01
  done
}

stop_vnetd() {
  kill "$vnetd_pid" 2>/dev/null || true
  wait "$vnetd_pid" 2>/dev/null || true
  vnetd_pid=
}

now_ms() { date +%s%3N; }

# 1. Define every network with autostart (in a namespace of its own: the
#    definitions are what a boot finds on disk).
ip netns add "$NS_DEF"
ip -n "$NS_DEF" link set lo up
start_vnetd "$NS_DEF"
wait_api 10
log "defining $NETWORKS networks"
mkdir -p "$tmp/xml"
for ((i = 0; i < NETWORKS; i++)); do
  net_xml "$i" >"$tmp/xml/s$i.xml"
  ctl net-define "$tmp/xml/s$i.xml" >/dev/null
  ctl net-autostart "s$i" >/dev/null
done
stop_vnetd
rm -rf "$tmp/state" # a boot: nothing is running yet

# 2. Cold start in a fresh namespace: from exec to the API answering, which
#    vnetd does only after the autostart networks are up.
ip netns add "$NS_RUN"
ip -n "$NS_RUN" link set lo up
log "cold start with $NETWORKS autostart networks"
t0=$(now_ms)
start_vnetd "$NS_RUN"
wait_api 120
t1=$(now_ms)
start_ms=$((t1 - t0))
active=$(ctl net-list | grep -c ' active' || true)
startup_log=$(grep -o 'startup=[^ ]*' "$tmp/vnetd-$NS_RUN.log" | tail -1 || true)

# 3. Ports: taps spread over the networks.
log "creating $PORTS ports"
t0=$(now_ms)
for ((p = 0; p < PORTS; p++)); do
  net=$((p % NETWORKS))
  printf "<networkport><uuid>%08x-0000-4000-8000-%012x</uuid><owner><name>vm%d</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner><mac address='52:54:01:%02x:%02x:%02x'/></networkport>" \
    "$p" "$p" "$p" $((p >> 16 & 255)) $((p >> 8 & 255)) $((p & 255)) >"$tmp/port.xml"
  ctl net-port-create "s$net" "$tmp/port.xml" --tap "vt$p" >/dev/null
done
t1=$(now_ms)
ports_ms=$((t1 - t0))
ports_made=$(ip -n "$NS_RUN" -o link show type tun | wc -l)

# 4. net-list latency (client start-up included).
t0=$(now_ms)
for ((k = 0; k < LIST_CALLS; k++)); do ctl net-list --all >/dev/null; done
t1=$(now_ms)
list_ms=$(awk -v t=$((t1 - t0)) -v n="$LIST_CALLS" 'BEGIN { printf "%.1f", t / n }')

# Memory: let the servers settle, then RSS and PSS (PSS splits shared pages).
sleep 2
mem() { # PID -> "rss_kB pss_kB"
  awk '/^Rss:/ { r = $2 } /^Pss:/ { p = $2 } END { print r, p }' "/proc/$1/smaps_rollup"
}
read -r v_rss v_pss < <(mem "$vnetd_pid")
# Idle cost: CPU time vnetd uses over IDLE seconds with nothing asked of it
# (timers: RA schedules, lease sweeps, firewall checks), once right after
# the ports (every network is still sending its first, closely spaced
# router advertisements, RFC 4861 6.2.4) and once SETTLE seconds later.
IDLE=${IDLE:-10}
SETTLE=${SETTLE:-60}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
idle_cpu() {
  local c0 c1
  c0=$(cpu_ticks "$vnetd_pid")
  sleep "$IDLE"
  c1=$(cpu_ticks "$vnetd_pid")
  awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v s="$IDLE" 'BEGIN { printf "%.1f", 100 * d / hz / s }'
}
idle_pct=$(idle_cpu)
sleep "$SETTLE"
settled_pct=$(idle_cpu)
read -r v_rss2 _ < <(mem "$vnetd_pid")
threads=$(awk '/^Threads:/ { print $2 }' "/proc/$vnetd_pid/status")
fds=$(find "/proc/$vnetd_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
stop_vnetd

# 5. libvirt's approach: one dnsmasq per network with the configuration
#    libvirt writes (DHCP range, DNS on the bridge address, RA), on bridges
#    made here.
ip netns add "$NS_DM"
ip -n "$NS_DM" link set lo up
max=$NETWORKS
[ "$DNSMASQ" -gt "$max" ] && max=$DNSMASQ
log "starting $max dnsmasq processes"
dm_pids=()
for ((i = 0; i < max; i++)); do
  a=$((200 + i / 250)) b=$((i % 250))
  ip -n "$NS_DM" link add "vd$i" type bridge
  ip -n "$NS_DM" addr add "10.$a.$b.1/24" dev "vd$i"
  ip -n "$NS_DM" addr add "fd00:5ca:$i::1/64" dev "vd$i" nodad
  ip -n "$NS_DM" link set "vd$i" up
  cat >"$tmp/dm$i.conf" <<EOF
strict-order
no-resolv
domain=s$i.test
expand-hosts
local=/s$i.test/
pid-file=$tmp/dm$i.pid
except-interface=lo
bind-dynamic
interface=vd$i
dhcp-range=10.$a.$b.100,10.$a.$b.200,255.255.255.0
dhcp-no-override
dhcp-authoritative
dhcp-lease-max=101
dhcp-hostsfile=$tmp/dm$i.hostsfile
addn-hosts=$tmp/dm$i.addnhosts
enable-ra
dhcp-range=fd00:5ca:$i::,ra-only
EOF
  : >"$tmp/dm$i.hostsfile"
  echo "10.$a.$b.10 fixed" >"$tmp/dm$i.addnhosts"
  ip netns exec "$NS_DM" dnsmasq --conf-file="$tmp/dm$i.conf" --keep-in-foreground --user=root --group=root --dhcp-leasefile="$tmp/dm$i.leases" &
  dm_pids+=($!)
  disown
done
sleep 2
sum_rss() { # N -> "rss pss" of the first N dnsmasq processes
  local n=$1 r=0 p=0 k rr pp
  for ((k = 0; k < n; k++)); do
    read -r rr pp < <(mem "${dm_pids[$k]}")
    r=$((r + rr)) p=$((p + pp))
  done
  echo "$r $p"
}
read -r d32_rss d32_pss < <(sum_rss "$DNSMASQ")
read -r dn_rss dn_pss < <(sum_rss "$NETWORKS")
alive=0
for p in "${dm_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
verdict() { if [ "$1" -eq 1 ]; then echo PASS; else echo FAIL; fi; }
up_ok=0; [ "$start_ms" -le 5000 ] && [ "$active" -eq "$NETWORKS" ] && up_ok=1
mem_ok=0; [ "$v_rss" -lt "$d32_rss" ] && mem_ok=1

cat <<EOF

bench/scale.sh  $started_at  $(uname -r), $(nproc) CPUs, dnsmasq $(dnsmasq --version | awk 'NR==1 { print $3 }')
command: NETWORKS=$NETWORKS PORTS=$PORTS DNSMASQ=$DNSMASQ bench/scale.sh

| measure | value |
| --- | --- |
| networks (DHCPv4 + DNS + RA each), active after cold start | $active / $NETWORKS |
| cold start to API up, all networks up (target ≤ 5 s) | $((start_ms)) ms ($startup_log) — $(verdict $up_ok) |
| $PORTS ports created (tap + bridge port, one vnetctl each) | ${ports_ms} ms ($ports_made taps) |
| net-list --all, mean of $LIST_CALLS (client start-up included) | ${list_ms} ms |
| vnetd RSS / PSS | $(mib "$v_rss") MiB / $(mib "$v_pss") MiB ($threads threads, $fds fds) |
| vnetd CPU when idle, over ${IDLE} s: right after / ${SETTLE} s later | ${idle_pct}% / ${settled_pct}% of one CPU |
| vnetd RSS ${SETTLE} s later | $(mib "$v_rss2") MiB |
| $DNSMASQ dnsmasq RSS / PSS (sum) | $(mib "$d32_rss") MiB / $(mib "$d32_pss") MiB |
| $NETWORKS dnsmasq RSS / PSS (sum) | $(mib "$dn_rss") MiB / $(mib "$dn_pss") MiB ($alive running) |
| vnetd RSS below $DNSMASQ dnsmasq RSS | $(verdict $mem_ok) |
EOF
