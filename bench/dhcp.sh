#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run from traps and as "start_$srv"
#
# bench/dhcp.sh: the highest offered rate of full DHCP exchanges (DHCPv4 DORA,
# DHCPv6 Solicit-Advertise-Request-Reply) that each DHCP server sustains with
# under 1% drops: vnetd's own servers against dnsmasq and Kea, measured with
# Kea's perfdhcp in the same run, on the same namespace topology.
#
#   sudo bench/dhcp.sh
#   sudo BENCH_SERVERS="dnsmasq kea" bench/dhcp.sh
#   sudo STEPS="1000 4000 16000" DURATION=10 FAMILIES=4 bench/dhcp.sh
#
# Topology, made fresh for every rate step (nothing touches the host's links):
#   server namespace: bridge BR with 10.200.0.1/16 and fd00:200::1/64 (no DAD),
#                     the server under test bound to BR only;
#   client namespace: eth0, a veth whose peer is a port of BR, 10.200.0.2/16
#                     (outside the pools), where perfdhcp runs with -l eth0.
#   Pools: 10.200.1.0-10.200.255.250 (65275 addresses) and
#          fd00:200::1:0-fd00:200::1:ffff (65536); CLIENTS (60000) simulated
#          clients, fewer than either pool, so no pool runs out.
# Servers, each with durable leases and without per-packet logging:
#   vnetd:   built from this tree (go build into the temp dir), started in the
#            server namespace with a throw-away state dir, one isolated network
#            with both ranges defined and started with vnetctl; vnetd makes BR.
#   dnsmasq: --no-daemon --conf-file=/dev/null --port=0 --interface=BR
#            --bind-interfaces --except-interface=lo --no-ping, both ranges,
#            --dhcp-leasefile in the temp dir, --dhcp-lease-max=140000,
#            --quiet-dhcp --quiet-dhcp6, no --enable-ra.
#   Kea:     kea-dhcp4 / kea-dhcp6 in the foreground, interfaces-config BR,
#            memfile lease database persist=true in the temp dir, lfc-interval 0,
#            loggers at WARN (Kea's INFO logs every lease), its defaults
#            otherwise (raw sockets for v4, multi-threading off in Kea 2.2).
# Every rate step starts a fresh server with an empty lease database: a step
# measures the server, not the backlog the previous step left (dnsmasq keeps
# rewriting its lease file for seconds after a fast step).
#
# One step: perfdhcp -4|-6 -g single -l eth0 -r RATE -R CLIENTS -p DURATION
# -W 1000000, parsed for sent/received of both exchanges (DISCOVER-OFFER and
# REQUEST-ACK, or SOLICIT-ADVERTISE and REQUEST-REPLY). A step passes when both
# drop rates are under MAX_DROP % (a reply later than perfdhcp's 1 s drop time
# counts as a drop) and perfdhcp really offered >= 95% of RATE. The rates are
# stepped up from the lowest; a step that fails is run again on a fresh server
# (RETRIES times, default 1: the 2 cores are shared with perfdhcp and whatever
# else runs, and a server that stalls for ~10 ms overflows a socket receive
# buffer of the default size, a few hundred packets, at 20000/s),
# and the climb ends after STOP_AFTER (2) consecutive steps that failed, or at
# the first step where the server could not be started or died. The result is
# the highest step that passed; failed steps below it are named in the cell.
#
# perfdhcp quirks this script works around:
# - DHCPv4: perfdhcp always acts as a relay agent: giaddr = its own address,
#   hops = 1, sent from port 67, expecting replies on its address port 67;
#   -B only sets SO_BROADCAST, and there is no option to send as a directly
#   connected client. vnetd's server refuses relayed requests (it serves its
#   bridge only). So, for every server alike, an nftables table in the client
#   namespace rewrites what perfdhcp sends to port 67 into a local client's
#   request (giaddr 0, hops 0, the BROADCAST flag set so that servers answer by
#   broadcast, as they must to a client without an address) and DNATs the
#   broadcast replies (to 255.255.255.255:68) to perfdhcp's socket, 10.200.0.2:67.
#   Servers see what libvirt guests send: broadcast DHCPDISCOVER/DHCPREQUEST
#   from the bridge. perfdhcp's REQUEST copies giaddr from the OFFER, so only
#   its DISCOVERs really need the rewrite.
# - perfdhcp busy-polls one core whatever the rate; in its default multi-thread
#   mode (on any multi-core machine) it takes both cores of a 2-core machine and
#   starves the server (in a trial here Kea dropped 18% at 16000/s with
#   -g multi, 0.2% with -g single). -g single is used (PERFDHCP_THREADS).
# - Without -W, exchanges still in flight when the period ends count as drops
#   (perfdhcp's drops are sent minus received): -W waits the drop time (1 s).
# - perfdhcp's "Rate:" line divides by the whole run including the -W wait;
#   the offered rate here is DISCOVERs (Solicits) sent / DURATION.
# - perfdhcp picks each exchange's client at random among -R clients, so at
#   high rates clients repeat (the server renews their lease) and a client may
#   have two exchanges in flight; the same for every server.
# - DHCPv6 needs a link-local address on eth0 (and on BR for the servers):
#   DAD is off in both namespaces (accept_dad=0) and the script waits until no
#   address is tentative.
#
# Other knobs: CLIENTS (-R), MAX_DROP (percent), RETRIES, STOP_AFTER, FAMILIES ("4 6"),
# PERFDHCP_THREADS (single), PERFDHCP_ARGS (extra perfdhcp options, e.g.
# "-t 1" for per-second counts), PIN (1, the default with 2+ CPUs: perfdhcp on
# CPU 0, the server with all its threads on CPU 1; 0: the scheduler decides, and
# then a server's threads compete with perfdhcp for its CPU: unpinned, vnetd's
# threads woke on perfdhcp's CPU and the figure measured perfdhcp's share of
# it rather than the server, see bench/RESULTS.md), VNETD_LOG_LEVEL
# (warn: vnetd logs every OFFER and ACK at info), BENCH_KEEP=DIR (keep the
# perfdhcp output and server logs of every step that did not pass).
#
# Missing tools (perfdhcp, kea-dhcp4/6, dnsmasq, nft) are installed with apt-get
# (kea-admin, kea-dhcp4-server, kea-dhcp6-server, dnsmasq-base, nftables), with
# a policy-rc.d so that no service starts on the host; BENCH_INSTALL=0 forbids
# that. A server that cannot be built, started or measured is reported as such
# in its row; the others are still measured. Exit status: 0 when the run
# completed, 1 on setup errors, 2 on bad settings, 3 with BENCH_STRICT=1 when
# the target is not met or could not be evaluated.
#
# Everything made here (namespaces, processes, temp files) is removed on exit,
# also on failure or Ctrl-C.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/dhcp.sh creates network namespaces: run it as root" >&2
  exit 1
fi

BENCH_SERVERS=${BENCH_SERVERS:-vnetd dnsmasq kea}
STEPS=${STEPS:-250 500 1000 2000 3000 4000 6000 8000 12000 16000 20000 24000 32000 40000 48000}
DURATION=${DURATION:-5}
CLIENTS=${CLIENTS:-60000}
MAX_DROP=${MAX_DROP:-1}
RETRIES=${RETRIES:-1}
STOP_AFTER=${STOP_AFTER:-2}
FAMILIES=${FAMILIES:-4 6}
PERFDHCP_THREADS=${PERFDHCP_THREADS:-single}
VNETD_LOG_LEVEL=${VNETD_LOG_LEVEL:-warn}
PERFDHCP_ARGS=${PERFDHCP_ARGS:-}
PIN=${PIN:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}
BENCH_KEEP=${BENCH_KEEP:-}
BENCH_INSTALL=${BENCH_INSTALL:-1}
BENCH_STRICT=${BENCH_STRICT:-0}
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}

die() { echo "bench/dhcp.sh: $*" >&2; exit 2; }
for s in $BENCH_SERVERS; do
  case $s in vnetd | dnsmasq | kea) ;; *) die "BENCH_SERVERS: unknown server '$s' (vnetd, dnsmasq, kea)" ;; esac
done
[ -n "${BENCH_SERVERS// /}" ] || die "BENCH_SERVERS is empty"
for f in $FAMILIES; do
  case $f in 4 | 6) ;; *) die "FAMILIES: '$f' is not 4 or 6" ;; esac
done
prev=0
for r in $STEPS; do
  [[ $r =~ ^[1-9][0-9]*$ ]] || die "STEPS: '$r' is not a positive integer"
  [ "$r" -gt "$prev" ] || die "STEPS must be increasing ('$r' after '$prev')"
  prev=$r
done
[ "$prev" -gt 0 ] || die "STEPS is empty"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive number of seconds, not '$DURATION'"
if ! [[ $CLIENTS =~ ^[1-9][0-9]*$ ]] || [ "$CLIENTS" -gt 65000 ]; then
  die "CLIENTS must be 1-65000 (the pools hold 65275 and 65536 addresses), not '$CLIENTS'"
fi
[[ $MAX_DROP =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "MAX_DROP must be a percentage, not '$MAX_DROP'"
[[ $RETRIES =~ ^[0-9]+$ ]] || die "RETRIES must be a non-negative integer, not '$RETRIES'"
[[ $STOP_AFTER =~ ^[1-9][0-9]*$ ]] || die "STOP_AFTER must be a positive integer, not '$STOP_AFTER'"
case $PERFDHCP_THREADS in single | multi) ;; *) die "PERFDHCP_THREADS must be single or multi" ;; esac
# PIN=1: perfdhcp on CPU 0, the server (all its threads) on CPU 1.
srvpin=(env) cltpin=(env)
if [ "$PIN" = 1 ]; then
  [ "$(nproc)" -ge 2 ] || die "PIN=1 needs 2 CPUs"
  srvpin=(taskset -c 1) cltpin=(taskset -c 0)
fi

cmdline="$(printf '%q ' "$0" "$@")"
cmdline="BENCH_SERVERS='$BENCH_SERVERS' STEPS='$STEPS' DURATION=$DURATION ${cmdline% }"
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# busy_cpu: how busy the CPUs are over one second, in percent of all of them.
busy_cpu() {
  local a b
  a=$(head -1 /proc/stat) && sleep 1 && b=$(head -1 /proc/stat)
  printf '%s\n%s\n' "$a" "$b" | awk '{ idle = $5 + $6; tot = 0; for (i = 2; i <= NF; i++) tot += $i
    if (NR == 1) { i0 = idle; t0 = tot } else printf "%.0f\n", (tot - t0 > 0) ? 100 * (1 - (idle - i0) / (tot - t0)) : 0 }'
}
t0=$SECONDS

id=$$
SNS=dhcpb-srv-$id CNS=dhcpb-cli-$id
BR=dhcpb0
NETNAME=dhcpbench
tmp=$(mktemp -d /tmp/vnetd-dhcpbench.XXXXXX)
server_pid=
perf_pid=

log() { printf '%s\n' "$*" >&2; }

# kill_wait PID [SECONDS]: SIGTERM, then SIGKILL after the grace time.
kill_wait() {
  local pid=$1 n=$((${2:-5} * 20))
  kill "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && [ "$n" -gt 0 ]; do sleep 0.05; n=$((n - 1)); done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# kill_netns_pids NS: every process still inside a namespace made here is ours.
kill_netns_pids() {
  local ns=$1 pids
  ip netns list 2>/dev/null | grep -qw -- "$ns" || return 0
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086 # one pid a word
  kill $pids 2>/dev/null || true
  for _ in $(seq 60); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] || return 0
    sleep 0.05
  done
  # shellcheck disable=SC2086
  kill -9 $pids 2>/dev/null || true
  sleep 0.1
}

teardown() {
  if [ -n "$perf_pid" ]; then kill_wait "$perf_pid" 2; perf_pid=; fi
  if [ -n "$server_pid" ]; then kill_wait "$server_pid" 5; server_pid=; fi
  local ns
  for ns in "$SNS" "$CNS"; do
    kill_netns_pids "$ns"
    ip netns del "$ns" 2>/dev/null || true
  done
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  teardown
  # An apt-get install cut short leaves our policy-rc.d behind: remove it.
  if [ -s "$tmp/made-policy-rc" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ -n "$BENCH_KEEP" ]; then
    mkdir -p "$BENCH_KEEP" && cp -a "$tmp"/. "$BENCH_KEEP"/ 2>/dev/null &&
      echo "kept the logs of the steps that did not pass in $BENCH_KEEP" >&2
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

has() { [[ " $BENCH_SERVERS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- tools

install_tools() {
  local need=()
  command -v perfdhcp >/dev/null || need+=(kea-admin)
  command -v nft >/dev/null || need+=(nftables)
  command -v ss >/dev/null || need+=(iproute2)
  if has dnsmasq; then command -v dnsmasq >/dev/null || need+=(dnsmasq-base); fi
  if has kea; then
    command -v kea-dhcp4 >/dev/null || need+=(kea-dhcp4-server)
    command -v kea-dhcp6 >/dev/null || need+=(kea-dhcp6-server)
  fi
  [ "${#need[@]}" -gt 0 ] || return 0
  if [ "$BENCH_INSTALL" != 1 ]; then
    log "missing ${need[*]} and BENCH_INSTALL=$BENCH_INSTALL"
    return 1
  fi
  command -v apt-get >/dev/null || { log "missing ${need[*]} and no apt-get to install them"; return 1; }
  log "== installing ${need[*]} with apt-get"
  # Don't let the packages start Kea or dnsmasq services on the host.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    echo 1 >"$tmp/made-policy-rc"
  fi
  local rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"; } \
    >"$tmp/apt.log" 2>&1 || rc=$?
  if [ -s "$tmp/made-policy-rc" ]; then rm -f /usr/sbin/policy-rc.d "$tmp/made-policy-rc"; fi
  if [ "$rc" != 0 ]; then
    log "apt-get install ${need[*]} failed:"; tail -5 "$tmp/apt.log" >&2
    return 1
  fi
}

# ---------------------------------------------------------------- topology

# make_namespaces: both namespaces, DAD off, the veth, the client's address
# and its nftables table (see the header: perfdhcp's relay-agent DHCPv4).
make_namespaces() {
  local ns
  for ns in "$SNS" "$CNS"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  done
  ip -n "$CNS" link add eth0 type veth peer name vport netns "$SNS"
  ip -n "$CNS" addr add 10.200.0.2/16 dev eth0
  ip -n "$CNS" link set eth0 up
  # Offsets in bits from the UDP header (8 bytes): hops is DHCP byte 3,
  # flags bytes 10-11, giaddr bytes 24-27.
  ip netns exec "$CNS" nft -f - <<'EOF'
table ip perfdhcp {
  chain out {
    type filter hook output priority mangle; policy accept;
    udp dport 67 @th,88,8 set 0 @th,144,16 set 0x8000 @th,256,32 set 0
  }
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    udp dport 68 ip daddr 255.255.255.255 dnat to 10.200.0.2:67
  }
}
EOF
}

# make_bridge: the bridge the dnsmasq and Kea steps use; vnetd makes its own
# with the same name and addresses.
make_bridge() {
  ip -n "$SNS" link add "$BR" type bridge stp_state 0 forward_delay 0 &&
    ip -n "$SNS" addr add 10.200.0.1/16 dev "$BR" &&
    ip -n "$SNS" addr add fd00:200::1/64 dev "$BR" nodad &&
    ip -n "$SNS" link set "$BR" up
}

# attach_port: enslave the client's veth peer to BR and wait until the port
# forwards and no address is tentative (DHCPv6 runs between link-locals).
attach_port() {
  ip -n "$SNS" link set vport master "$BR" up || return 1
  local _
  for _ in $(seq 100); do
    if bridge -n "$SNS" link show dev vport 2>/dev/null | grep -q 'state forwarding' &&
      ip -n "$CNS" -6 addr show dev eth0 scope link | grep -q fe80 &&
      ip -n "$SNS" -6 addr show dev "$BR" scope link | grep -q fe80 &&
      ! ip -n "$CNS" -6 addr show dev eth0 | grep -q tentative &&
      ! ip -n "$SNS" -6 addr show dev "$BR" | grep -q tentative; then
      return 0
    fi
    sleep 0.05
  done
  log "the bridge port or the link-local addresses did not come up in 5 s:"
  bridge -n "$SNS" link >&2; ip -n "$SNS" addr >&2; ip -n "$CNS" addr >&2
  return 1
}

# wait_listen PORT: the server listens on UDP PORT in the server namespace.
wait_listen() {
  local port=$1 _
  for _ in $(seq 200); do
    kill -0 "$server_pid" 2>/dev/null || return 1
    if ip netns exec "$SNS" ss -Hlun "sport = :$port" 2>/dev/null | grep -q .; then return 0; fi
    sleep 0.05
  done
  return 1
}

# ---------------------------------------------------------------- servers

# Each start_SERVER FAMILY DIR starts one fresh server in $SNS (on a fresh
# topology) and sets server_pid; on failure it leaves the reason in DIR/why.

start_dnsmasq() {
  local d=$2
  make_bridge || { echo "could not make $BR" >"$d/why"; return 1; }
  attach_port || { echo "$BR's port did not come up" >"$d/why"; return 1; }
  ip netns exec "$SNS" "${srvpin[@]}" dnsmasq --no-daemon --conf-file=/dev/null --port=0 --user=root \
    --pid-file= --log-facility=- \
    --interface="$BR" --bind-interfaces --except-interface=lo --no-ping \
    --dhcp-range=10.200.1.0,10.200.255.250,255.255.0.0,1h \
    --dhcp-range=fd00:200::1:0,fd00:200::1:ffff,64,1h \
    --dhcp-leasefile="$d/dnsmasq.leases" --dhcp-lease-max=140000 \
    --quiet-dhcp --quiet-dhcp6 >"$d/server.log" 2>&1 &
  server_pid=$!
}

kea_config() {
  local fam=$1 d=$2
  if [ "$fam" = 4 ]; then
    cat <<EOF
{
  "Dhcp4": {
    "interfaces-config": { "interfaces": [ "$BR" ] },
    "lease-database": { "type": "memfile", "persist": true, "name": "$d/leases4.csv", "lfc-interval": 0 },
    "valid-lifetime": 3600,
    "subnet4": [ {
      "id": 1, "subnet": "10.200.0.0/16",
      "pools": [ { "pool": "10.200.1.0 - 10.200.255.250" } ]
    } ],
    "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "stderr" } ], "severity": "WARN" } ]
  }
}
EOF
  else
    cat <<EOF
{
  "Dhcp6": {
    "interfaces-config": { "interfaces": [ "$BR" ] },
    "server-id": { "type": "EN", "enterprise-id": 2495, "identifier": "0102030405060708", "persist": false },
    "lease-database": { "type": "memfile", "persist": true, "name": "$d/leases6.csv", "lfc-interval": 0 },
    "preferred-lifetime": 3000, "valid-lifetime": 3600,
    "subnet6": [ {
      "id": 1, "subnet": "fd00:200::/64", "interface": "$BR",
      "pools": [ { "pool": "fd00:200::1:0 - fd00:200::1:ffff" } ]
    } ],
    "loggers": [ { "name": "kea-dhcp6", "output_options": [ { "output": "stderr" } ], "severity": "WARN" } ]
  }
}
EOF
  fi
}

start_kea() {
  local fam=$1 d=$2
  make_bridge || { echo "could not make $BR" >"$d/why"; return 1; }
  attach_port || { echo "$BR's port did not come up" >"$d/why"; return 1; }
  kea_config "$fam" "$d" >"$d/kea.json"
  # Pid and lock files in the temp dir, not /run/kea.
  KEA_PIDFILE_DIR=$d KEA_LOCKFILE_DIR=$d KEA_DHCP_DATA_DIR=$d \
    ip netns exec "$SNS" "${srvpin[@]}" "kea-dhcp$fam" -c "$d/kea.json" >"$d/server.log" 2>&1 &
  server_pid=$!
}

network_xml() {
  cat <<EOF
<network>
  <name>$NETNAME</name>
  <bridge name='$BR' stp='off' delay='0'/>
  <ip address='10.200.0.1' netmask='255.255.0.0'>
    <dhcp>
      <range start='10.200.1.0' end='10.200.255.250'>
        <lease expiry='1' unit='hours'/>
      </range>
    </dhcp>
  </ip>
  <ip family='ipv6' address='fd00:200::1' prefix='64'>
    <dhcp>
      <range start='fd00:200::1:0' end='fd00:200::1:ffff'>
        <lease expiry='1' unit='hours'/>
      </range>
    </dhcp>
  </ip>
</network>
EOF
}

vnetd_why=
vnetd_ver=
build_vnetd() {
  log "== vnetd: building vnetd and vnetctl from this tree"
  vnetd_ver=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
  if ! "$GO" build -o "$tmp/vnetd" ./cmd/vnetd >"$tmp/build.log" 2>&1 ||
    ! "$GO" build -o "$tmp/vnetctl" ./cmd/vnetctl >>"$tmp/build.log" 2>&1; then
    log "vnetd does not build:"; sed 's/^/  /' "$tmp/build.log" >&2
    vnetd_why="go build failed: $(grep -m1 -v '^#' "$tmp/build.log" || echo '?')"
    return 1
  fi
  network_xml >"$tmp/net.xml"
}

start_vnetd() {
  local d=$2 sock=$2/vnetd.sock
  ip netns exec "$SNS" "${srvpin[@]}" "$tmp/vnetd" --config-dir "$d/etc" --state-dir "$d/state" \
    --run-dir "$d/run" --socket "$sock" --log-level "$VNETD_LOG_LEVEL" >"$d/server.log" 2>&1 &
  server_pid=$!
  local _
  for _ in $(seq 200); do
    [ -S "$sock" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  if ! [ -S "$sock" ]; then
    echo "vnetd did not come up: $(tail -1 "$d/server.log")" >"$d/why"
    return 1
  fi
  local ctl=("$tmp/vnetctl" --socket "$sock")
  if ! "${ctl[@]}" net-define "$tmp/net.xml" >"$d/ctl.out" 2>&1 ||
    ! "${ctl[@]}" net-start "$NETNAME" >>"$d/ctl.out" 2>&1; then
    echo "vnetctl: $(tail -1 "$d/ctl.out")" >"$d/why"
    return 1
  fi
  if ! ip -n "$SNS" addr show dev "$BR" 2>/dev/null | grep -qF 10.200.0.1/16; then
    echo "net-start returned but $BR has no 10.200.0.1/16" >"$d/why"
    return 1
  fi
  attach_port || { echo "$BR's port did not come up" >"$d/why"; return 1; }
}

# ---------------------------------------------------------------- one step

# run_step SERVER FAMILY RATE TRY: fresh topology and server, one perfdhcp
# run; appends a line to $tmp/steps and sets step_verdict: pass, fail,
# client-limited or error. Not run in a subshell: the traps must know the pids.
step_verdict=
run_step() {
  local srv=$1 fam=$2 rate=$3 try=$4
  local d=$tmp/$srv-v$fam-$rate-$try port=67
  [ "$fam" = 6 ] && port=547
  mkdir -p "$d"
  : >"$d/why"
  local ok=1
  make_namespaces
  "start_$srv" "$fam" "$d" || ok=0
  if [ "$ok" = 1 ] && ! wait_listen "$port"; then
    if kill -0 "$server_pid" 2>/dev/null; then
      echo "no $srv DHCPv$fam server listening on UDP $port on $BR after 10 s: $(grep -v '^\s*$' "$d/server.log" | tail -1)" >"$d/why"
    else
      echo "$srv exited at start: $(grep -v '^\s*$' "$d/server.log" | tail -1)" >"$d/why"
    fi
    ok=0
  fi
  local verdict=error
  if [ "$ok" = 1 ]; then
    local args=(-"$fam" -g "$PERFDHCP_THREADS" -l eth0 -r "$rate" -R "$CLIENTS" -p "$DURATION" -W 1000000)
    [ "$fam" = 4 ] && args+=(-B)
    # Word splitting wanted: extra perfdhcp options, e.g. "-t 1".
    # shellcheck disable=SC2206
    args+=($PERFDHCP_ARGS)
    local rc=0
    timeout -k 5 $((DURATION + 30)) ip netns exec "$CNS" "${cltpin[@]}" perfdhcp "${args[@]}" >"$d/perfdhcp.out" 2>&1 &
    perf_pid=$!
    wait "$perf_pid" || rc=$?
    perf_pid=
    # 3: some exchanges were unsuccessful, which is what is measured.
    if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
      echo "perfdhcp failed (exit $rc): $(grep -v '^\s*$' "$d/perfdhcp.out" | tail -1)" >"$d/why"
    else
      verdict=parsed
    fi
  fi
  # Where packets were lost, for BENCH_KEEP: both namespaces' UDP counters
  # (RcvbufErrors: a socket buffer overflowed) and vnetd's own metrics.
  ip netns exec "$CNS" cat /proc/net/snmp >"$d/client.snmp" 2>/dev/null || true
  ip netns exec "$SNS" cat /proc/net/snmp >"$d/server.snmp" 2>/dev/null || true
  if [ -S "$d/vnetd.sock" ]; then
    curl -sf --unix-socket "$d/vnetd.sock" http://vnetd/metrics 2>/dev/null | grep -E '^vnetd_dhcp' >"$d/metrics" || true
  fi
  # The server must have lived through the run.
  if [ "$verdict" = parsed ] && ! kill -0 "$server_pid" 2>/dev/null; then
    echo "$srv exited during the run: $(grep -v '^\s*$' "$d/server.log" | tail -1)" >"$d/why"
    verdict=error
  fi
  teardown
  local line
  if [ "$verdict" = parsed ]; then
    # sent/received of the first (DO/SA) and second (RA/RR) exchange.
    line=$(awk -v rate="$rate" -v dur="$DURATION" -v max="$MAX_DROP" '
      /^\*\*\*Statistics for:/ { sec++ }
      /^sent packets:/     { s[sec] = $3 }
      /^received packets:/ { r[sec] = $3 }
      END {
        s1 = s[1] + 0; r1 = r[1] + 0; s2 = s[2] + 0; r2 = r[2] + 0
        if (s1 == 0) { print "error"; exit }
        d1 = (s1 - r1) * 100 / s1
        d2 = (s2 > 0) ? (s2 - r2) * 100 / s2 : 100
        off = s1 / dur
        # perfdhcp that could not keep the rate says nothing about the server.
        v = (off < 0.95 * rate) ? "client-limited" : (d1 < max && d2 < max) ? "pass" : "fail"
        printf "%s %.0f %d %d %.2f %d %d %.2f\n", v, off, s1, r1, d1, s2, r2, d2
      }' "$d/perfdhcp.out")
    [ "${line%% *}" = error ] && echo "perfdhcp sent nothing: $(grep -v '^\s*$' "$d/perfdhcp.out" | tail -1)" >"$d/why"
  else
    line=error
  fi
  verdict=${line%% *}
  echo "$srv $fam $rate $try $line" >>"$tmp/steps"
  if [ "$verdict" = error ]; then
    log "   $srv v$fam $rate/s: error: $(cat "$d/why")"
    [ -s "$d/server.log" ] && { log "   $srv log ends:"; tail -5 "$d/server.log" | sed 's/^/     /' >&2; }
  else
    # shellcheck disable=SC2086 # the fields of the line
    set -- $line
    log "   $srv v$fam $rate/s (try $try): offered $2/s, drops $5% / $8% -> $verdict"
    # Nothing answered: show what the server said.
    if [ "$4" = 0 ] && [ -s "$d/server.log" ]; then
      log "   no reply at all; $srv log ends:"; tail -5 "$d/server.log" | sed 's/^/     /' >&2
    fi
  fi
  # The artefacts of passing steps are not needed.
  if [ "$verdict" = pass ]; then rm -rf "$d"; fi
  step_verdict=$verdict
}

# climb SERVER FAMILY: step the rate up until STOP_AFTER consecutive steps
# failed (each after its retries) or one hit an error; writes "CELL<TAB>NUMBER"
# to $tmp/result.SERVER.FAMILY (NUMBER: the highest step that passed, 0 when
# none did, empty when the server could not be measured at all).
climb() {
  local srv=$1 fam=$2 v try r fails=0 last_err=
  local -a rs=() vs=()
  for r in $STEPS; do
    try=0
    while :; do
      try=$((try + 1))
      run_step "$srv" "$fam" "$r" "$try"
      v=$step_verdict
      [ "$v" = pass ] && break
      [ "$v" = error ] && last_err=$(cat "$tmp/$srv-v$fam-$r-$try/why")
      [ "$try" -le "$RETRIES" ] || break
    done
    rs+=("$r") vs+=("$v")
    if [ "$v" = pass ]; then fails=0; continue; fi
    [ "$v" = error ] && break
    fails=$((fails + 1))
    [ "$fails" -lt "$STOP_AFTER" ] || break
  done
  # best: the highest step that passed; above: the verdict of the first step
  # above it; holes: steps below it that failed (noise, or a real dip).
  local i best='' above='' above_r='' holes='' errs=0
  for i in "${!rs[@]}"; do
    if [ "${vs[$i]}" = pass ]; then best=${rs[$i]}; fi
    if [ "${vs[$i]}" = error ]; then errs=$((errs + 1)); fi
  done
  for i in "${!rs[@]}"; do
    if [ -n "$best" ] && [ "${rs[$i]}" -lt "$best" ] && [ "${vs[$i]}" != pass ]; then
      holes="$holes, ${rs[$i]}/s"
    fi
    if [ -z "$above" ] && { [ -z "$best" ] || [ "${rs[$i]}" -gt "$best" ]; }; then
      above=${vs[$i]} above_r=${rs[$i]}
    fi
  done
  local cell num
  if [ "$errs" = "${#rs[@]}" ]; then
    cell="n/a: $last_err" num=
  elif [ -z "$best" ]; then
    cell="< ${rs[0]}/s" num=0
    [ "$above" = error ] && cell="$cell (error: $last_err)"
  elif [ -z "$above" ]; then
    cell="≥ $best/s (every step passed; raise STEPS)" num=$best
  elif [ "$above" = client-limited ]; then
    cell="≥ $best/s (perfdhcp could not offer $above_r/s)" num=$best
  elif [ "$above" = error ]; then
    cell="$best/s (error at $above_r/s: $last_err)" num=$best
  else
    cell="$best/s" num=$best
  fi
  [ -z "$holes" ] || cell="$cell (failed below it: ${holes#, })"
  printf '%s\t%s\n' "$cell" "$num" >"$tmp/result.$srv.$fam"
}

# ---------------------------------------------------------------- run

install_tools || exit 1
: >"$tmp/steps"
busy_at_start=$(busy_cpu)
if [ "$busy_at_start" -gt 20 ]; then
  log "warning: the CPUs were ${busy_at_start}% busy before the run: something else runs, the rates may come out low or noisy"
fi

for srv in $BENCH_SERVERS; do
  log "== $srv"
  if [ "$srv" = vnetd ] && ! build_vnetd; then
    for fam in $FAMILIES; do printf 'n/a: %s\t\n' "$vnetd_why" >"$tmp/result.vnetd.$fam"; done
    continue
  fi
  for fam in $FAMILIES; do
    log "== $srv DHCPv$fam: steps $STEPS, $DURATION s each"
    climb "$srv" "$fam"
  done
done

# ---------------------------------------------------------------- report

cell() { if [ -s "$tmp/result.$1.$2" ]; then cut -f1 "$tmp/result.$1.$2"; else echo "not measured"; fi; }
num() { if [ -s "$tmp/result.$1.$2" ]; then cut -f2 "$tmp/result.$1.$2"; fi; }
fam_cell() { if [[ " $FAMILIES " == *" $2 "* ]]; then cell "$1" "$2"; else echo "not run (FAMILIES)"; fi; }

label() {
  case $1 in
    vnetd) echo "vnetd ${vnetd_ver:-$(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?')} (this tree)" ;;
    dnsmasq) echo "dnsmasq $(dnsmasq --version 2>/dev/null | awk 'NR==1{print $3}')" ;;
    kea) echo "Kea $(kea-dhcp4 -v 2>/dev/null || echo '?') (memfile)" ;;
  esac
}

elapsed=$((SECONDS - t0))
echo
echo "## DHCP: highest offered rate with < ${MAX_DROP}% drops, full exchanges"
echo
echo "command: $cmdline"
echo "date:    $started_at ($((elapsed / 60)) min $((elapsed % 60)) s)"
echo "machine: $(nproc) cores (${busy_at_start}% busy before the run$([ "$PIN" = 1 ] && echo ', perfdhcp pinned to CPU 0, servers to CPU 1')), $(uname -sr), Debian $(cat /etc/debian_version 2>/dev/null || echo '?'), perfdhcp $(perfdhcp -v 2>&1 | awk '/VERSION/{print $2; exit}'), $("$GO" version 2>/dev/null | awk '{print $3}')"
echo "load:    perfdhcp -g $PERFDHCP_THREADS -l eth0 -r RATE -R $CLIENTS -p $DURATION -W 1000000 (-B for v4) from a client namespace; a fresh server and topology per step; steps $STEPS; a failed step is retried $RETRIES time(s), the climb stops after $STOP_AFTER failed steps in a row"
echo "network: bridge with 10.200.0.1/16 and fd00:200::1/64, pools 10.200.1.0-10.200.255.250 and fd00:200::1:0-fd00:200::1:ffff, leases 1 h, durable (lease file / lease store)"
echo "v4:      perfdhcp's relayed DHCPv4 rewritten to a local client's (giaddr 0, BROADCAST flag) by nftables in the client namespace, for every server"
echo
echo "| server | DHCPv4 max rate <${MAX_DROP}% drops | DHCPv6 max rate <${MAX_DROP}% drops |"
echo "| --- | --- | --- |"
for srv in $BENCH_SERVERS; do
  echo "| $(label "$srv") | $(fam_cell "$srv" 4) | $(fam_cell "$srv" 6) |"
done
echo
if [ -s "$tmp/steps" ]; then
  echo "<details><summary>every step (offered = DISCOVERs/Solicits sent / $DURATION s; drops = 1 - received/sent)</summary>"
  echo
  echo "| server | family | rate/s | try | offered/s | DO/SA sent | DO/SA drops | RA/RR sent | RA/RR drops | result |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  while read -r srv fam rate try v off s1 _ d1 s2 _ d2; do
    if [ "$v" = error ]; then
      echo "| $srv | v$fam | $rate | $try | - | - | - | - | - | error |"
    else
      echo "| $srv | v$fam | $rate | $try | $off | $s1 | $d1% | $s2 | $d2% | $v |"
    fi
  done <"$tmp/steps"
  echo
  echo "</details>"
  echo
fi

# Target: vnetd >= Kea, both families, in this run. A family that fails
# makes it FAIL; otherwise a family without both numbers leaves it unevaluated.
failed=0 unknown=0 detail=
for fam in 4 6; do
  v=$(num vnetd "$fam") k=$(num kea "$fam")
  if ! has vnetd || ! has kea || [[ " $FAMILIES " != *" $fam "* ]]; then
    unknown=1; detail="${detail}v$fam: vnetd or Kea not run; "
  elif [ -z "$v" ] || [ -z "$k" ] || [ "$k" = 0 ]; then
    # Kea passing no step at all (0) says the run measured nothing.
    unknown=1; detail="${detail}v$fam: vnetd $(cell vnetd "$fam"), Kea $(cell kea "$fam"); "
  else
    detail="${detail}v$fam: vnetd $v/s vs Kea $k/s; "
    [ "$v" -ge "$k" ] || failed=1
  fi
done
target=PASS
[ "$unknown" = 1 ] && target="not evaluated"
[ "$failed" = 1 ] && target=FAIL
echo "target: vnetd >= Kea in the same run, v4 and v6 (${detail%; }): $target"
if [ "$BENCH_STRICT" = 1 ] && [ "$target" != PASS ]; then exit 3; fi
exit 0
