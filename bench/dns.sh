#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run from traps
#
# bench/dns.sh: DNS queries per second that vnetd's DNS server (dnsd) and
# dnsmasq answer, measured with dnsperf in the same run on the same topology:
# the same 200 local names, then 200 forwarded names served from each
# server's cache.
#
#   sudo bench/dns.sh
#   sudo DURATION=20 RUNS=3 bench/dns.sh
#   sudo BENCH_SERVERS=vnetd DNSPERF_ARGS="-c 8 -T 2 -q 200" bench/dns.sh
#
# Topology (nothing touches the host's links):
#   server namespace: bridge BR with 10.201.0.1/16, the server under test on
#                     it; uplink vup 10.202.0.1/24 to the upstream namespace;
#   client namespace: eth0 (a port of BR), 10.201.0.2/16, where dnsperf runs;
#   upstream namespace: eth0 10.202.0.2/24, a trivial DNS server (dnsbench
#                     -upstream) answering every A query with 10.202.0.2, TTL
#                     3600: it only fills the caches.
# Servers, both bound to BR's address only, both reading the same upstream
# from a resolv.conf in the temp dir:
#   vnetd:   dnsd.Server from this tree, run by dnsd/internal/dnsbench (built
#            with go build) for a NAT network with domain bench.test and 200
#            <dns><host> entries host-001 … host-200 → 10.201.1.1 … 10.201.1.200.
#   dnsmasq: libvirt's DNS options for that network (strict-order,
#            bind-dynamic, interface=BR, except-interface=lo, domain=bench.test,
#            expand-hosts, the same 200 names in an addn-hosts file) plus
#            --cache-size=10000: its default of 150 cannot hold the 200
#            forwarded names, and a cache that thrashes would measure the
#            upstream, not dnsmasq.
# Measurement, per server: dnsperf from the client namespace against
# 10.201.0.1 for DURATION seconds (default 10), UDP, with DNSPERF_ARGS
# (default "-c 4 -q 250 -b 8192": 4 client sockets, 250 queries in flight,
# 8 MB socket buffers so that dnsperf itself drops nothing; the same for
# both servers), first over the local names (host-NNN.bench.test A),
# then over the forwarded names (fwd-NNN.upstream.test A) after one warm-up
# pass over them (dnsperf -n 1, not counted). RUNS (default 1) repeats each
# measurement; the table gives the best run and the total of lost queries
# over all runs. dnsperf counts a query lost when no answer came within its
# timeout (5 s). dnsmasq loses a few dozen queries at the start of each run:
# the first burst overflows its socket's default receive buffer (208 kB);
# vnetd asks for 4 MB.
#
# KINDS ("local cached") picks the measurements, in that order.
# VNETD_CPUPROFILE=FILE writes a CPU profile of vnetd's server (go tool pprof).
# PIN=1 puts dnsperf on CPU 0 and the server on CPU 1 (off by default, so a
# multi-threaded server may use both cores, as it would in production).
# Missing tools (dnsperf, dnsmasq) are installed with apt-get (dnsperf,
# dnsmasq-base: no service is started); BENCH_INSTALL=0 forbids that.
# Exit status: 0 when the run completed, 1 on setup errors, 2 on bad
# settings, 3 with BENCH_STRICT=1 when the target (vnetd >= dnsmasq, local and
# cached, no lost queries) is not met.
#
# Everything made here (namespaces, processes, temp files) is removed on
# exit, also on failure or Ctrl-C.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/dns.sh creates network namespaces: run it as root" >&2
  exit 1
fi

BENCH_SERVERS=${BENCH_SERVERS:-vnetd dnsmasq}
DURATION=${DURATION:-10}
RUNS=${RUNS:-1}
DNSPERF_ARGS=${DNSPERF_ARGS:--c 4 -q 250 -b 8192}
NAMES=${NAMES:-200}
KINDS=${KINDS:-local cached}
PIN=${PIN:-0}
BENCH_INSTALL=${BENCH_INSTALL:-1}
BENCH_STRICT=${BENCH_STRICT:-0}
VNETD_CPUPROFILE=${VNETD_CPUPROFILE:-}
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}

die() { echo "bench/dns.sh: $*" >&2; exit 2; }
for s in $BENCH_SERVERS; do
  case $s in vnetd | dnsmasq) ;; *) die "BENCH_SERVERS: unknown server '$s' (vnetd, dnsmasq)" ;; esac
done
for k in $KINDS; do
  case $k in local | cached) ;; *) die "KINDS: unknown measurement '$k' (local, cached)" ;; esac
done
[ -n "${BENCH_SERVERS// /}" ] || die "BENCH_SERVERS is empty"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive number of seconds, not '$DURATION'"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
if ! [[ $NAMES =~ ^[1-9][0-9]*$ ]] || [ "$NAMES" -gt 250 ]; then
  die "NAMES must be 1-250, not '$NAMES'"
fi
srvpin=(env) cltpin=(env)
if [ "$PIN" = 1 ]; then
  [ "$(nproc)" -ge 2 ] || die "PIN=1 needs 2 CPUs"
  srvpin=(taskset -c 1) cltpin=(taskset -c 0)
fi

need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
case " $BENCH_SERVERS " in *" dnsmasq "*) command -v dnsmasq >/dev/null || need+=(dnsmasq-base) ;; esac
command -v dig >/dev/null || need+=(bind9-dnsutils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$BENCH_INSTALL" != 1 ]; then
    echo "bench/dns.sh: missing ${need[*]} and BENCH_INSTALL=0" >&2
    exit 1
  fi
  echo "== installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

tmp=$(mktemp -d /tmp/vnetd-dnsbench.XXXXXX)
chmod 755 "$tmp"
suffix=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
ns_srv=vnt-dnsb-s-$suffix ns_cli=vnt-dnsb-c-$suffix ns_up=vnt-dnsb-u-$suffix
br=brdnsb$suffix
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "$ns_srv" "$ns_cli" "$ns_up"; do
    if ip netns list | grep -qw "$ns"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building dnsd/internal/dnsbench"
"$GO" build -o "$tmp/dnsbench" ./dnsd/internal/dnsbench

# Topology.
for ns in "$ns_srv" "$ns_cli" "$ns_up"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip -n "$ns_srv" link add "$br" type bridge stp_state 0 forward_delay 0
ip -n "$ns_srv" addr add 10.201.0.1/16 dev "$br"
ip -n "$ns_srv" link set "$br" up
ip -n "$ns_srv" link add vcli type veth peer name eth0 netns "$ns_cli"
ip -n "$ns_srv" link set vcli master "$br" up
ip -n "$ns_cli" addr add 10.201.0.2/16 dev eth0
ip -n "$ns_cli" link set eth0 up
ip -n "$ns_srv" link add vup type veth peer name eth0 netns "$ns_up"
ip -n "$ns_srv" addr add 10.202.0.1/24 dev vup
ip -n "$ns_srv" link set vup up
ip -n "$ns_up" addr add 10.202.0.2/24 dev eth0
ip -n "$ns_up" link set eth0 up

# Data: the network, dnsmasq's files, dnsperf's inputs.
echo "nameserver 10.202.0.2" >"$tmp/resolv.conf"
{
  echo "<network><name>dnsbench</name><forward mode='nat'/><bridge name='$br'/>"
  echo "<domain name='bench.test'/><dns>"
  for i in $(seq 1 "$NAMES"); do
    printf "<host ip='10.201.1.%d'><hostname>host-%03d</hostname></host>\n" "$i" "$i"
  done
  echo "</dns><ip address='10.201.0.1' prefix='16'/></network>"
} >"$tmp/network.xml"
: >"$tmp/addnhosts"
: >"$tmp/local.txt"
: >"$tmp/fwd.txt"
for i in $(seq 1 "$NAMES"); do
  printf '10.201.1.%d\thost-%03d\t\n' "$i" "$i" >>"$tmp/addnhosts"
  printf 'host-%03d.bench.test A\n' "$i" >>"$tmp/local.txt"
  printf 'fwd-%03d.upstream.test A\n' "$i" >>"$tmp/fwd.txt"
done

# wait_ready FILE PID: until the process printed "ready" (or died).
wait_ready() {
  for _ in $(seq 1 100); do
    grep -q '^ready' "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

ip netns exec "$ns_up" "$tmp/dnsbench" -upstream 10.202.0.2 >"$tmp/up.out" 2>&1 &
pids+=($!)
wait_ready "$tmp/up.out" "$!" || { cat "$tmp/up.out" >&2; echo "bench/dns.sh: upstream did not start" >&2; exit 1; }

start_vnetd() {
  local prof=()
  [ -n "$VNETD_CPUPROFILE" ] && prof=(-cpuprofile "$VNETD_CPUPROFILE")
  ip netns exec "$ns_srv" "${srvpin[@]}" "$tmp/dnsbench" -network "$tmp/network.xml" -bridge "$br" \
    -resolv "$tmp/resolv.conf" "${prof[@]}" >"$tmp/server.out" 2>&1 &
  server_pid=$!
  wait_ready "$tmp/server.out" "$server_pid"
}

start_dnsmasq() {
  ip netns exec "$ns_srv" "${srvpin[@]}" dnsmasq --no-daemon --conf-file=/dev/null --user=root \
    --pid-file="$tmp/dnsmasq.pid" --strict-order --except-interface=lo --bind-dynamic --interface="$br" \
    --domain=bench.test --expand-hosts --no-hosts --addn-hosts="$tmp/addnhosts" \
    --resolv-file="$tmp/resolv.conf" --cache-size=10000 --log-facility="$tmp/dnsmasq.log" \
    >"$tmp/server.out" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    ip netns exec "$ns_cli" dig +time=1 +tries=1 +short @10.201.0.1 host-001.bench.test A 2>/dev/null | grep -q . && return 0
    kill -0 "$server_pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

# dnsperf_run FILE [ARGS]: prints "QPS LOST SENT" of one run.
dnsperf_run() {
  local data=$1
  shift
  # shellcheck disable=SC2086 # DNSPERF_ARGS is a list of options
  ip netns exec "$ns_cli" "${cltpin[@]}" dnsperf -s 10.201.0.1 -d "$data" $DNSPERF_ARGS "$@" >"$tmp/dnsperf.out" 2>&1 || {
    cat "$tmp/dnsperf.out" >&2
    return 1
  }
  awk '/Queries sent:/ {sent=$3} /Queries lost:/ {lost=$3} /Queries per second:/ {qps=$4}
       END {printf "%.0f %d %d\n", qps, lost, sent}' "$tmp/dnsperf.out"
}

check() {
  local got
  got=$(ip netns exec "$ns_cli" dig +time=1 +tries=2 +short @10.201.0.1 "$1" A)
  if [ "$got" != "$2" ]; then
    echo "bench/dns.sh: $server answers '$got' for $1, want $2" >&2
    return 1
  fi
}

declare -A local_qps cached_qps local_lost cached_lost note
dnsperf_version=$(dnsperf -h 2>&1 | awk '/^Version/ {print $2}')
for server in $BENCH_SERVERS; do
  echo "== $server"
  if ! "start_$server"; then
    cat "$tmp/server.out" >&2
    note[$server]="did not start"
    stop_server
    continue
  fi
  if ! check host-001.bench.test 10.201.1.1 || ! check fwd-001.upstream.test 10.202.0.2; then
    note[$server]="wrong answers"
    stop_server
    continue
  fi
  for kind in $KINDS; do
    data=$tmp/local.txt
    if [ "$kind" = cached ]; then
      data=$tmp/fwd.txt
      dnsperf_run "$data" -n 1 >/dev/null # warm-up: fills the cache
    fi
    best=0 lost=0
    for run in $(seq 1 "$RUNS"); do
      read -r qps l sent < <(dnsperf_run "$data" -l "$DURATION")
      echo "   $kind run $run: $qps q/s, $l lost of $sent"
      [ "$qps" -gt "$best" ] && best=$qps
      lost=$((lost + l))
    done
    if [ "$kind" = local ]; then local_qps[$server]=$best local_lost[$server]=$lost; else cached_qps[$server]=$best cached_lost[$server]=$lost; fi
  done
  stop_server
  [ "$server" = vnetd ] && grep '^dnsbench:' "$tmp/server.out" | sed 's/^/   /'
done

echo
echo "dnsperf $dnsperf_version, $DURATION s per run, best of $RUNS, args: $DNSPERF_ARGS; $NAMES names; $(nproc) CPUs"
echo
echo "| server | local names q/s | lost | cached forwarded names q/s | lost |"
echo "| --- | --- | --- | --- | --- |"
for server in $BENCH_SERVERS; do
  label=$server
  [ "$server" = dnsmasq ] && label="dnsmasq $(dnsmasq --version | awk 'NR==1 {print $3}')"
  [ "$server" = vnetd ] && label="vnetd ($(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo tree) + working tree)"
  if [ -n "${note[$server]:-}" ]; then
    echo "| $label | ${note[$server]} | | | |"
  else
    echo "| $label | ${local_qps[$server]:--} | ${local_lost[$server]:--} | ${cached_qps[$server]:--} | ${cached_lost[$server]:--} |"
  fi
done

verdict=""
if [[ " $BENCH_SERVERS " == *" vnetd "* && " $BENCH_SERVERS " == *" dnsmasq "* && $KINDS == "local cached" ]] &&
  [ -z "${note[vnetd]:-}${note[dnsmasq]:-}" ]; then
  if [ "${local_qps[vnetd]}" -ge "${local_qps[dnsmasq]}" ] && [ "${cached_qps[vnetd]}" -ge "${cached_qps[dnsmasq]}" ] &&
    [ "${local_lost[vnetd]}" -eq 0 ] && [ "${cached_lost[vnetd]}" -eq 0 ]; then
    verdict=PASS
  else
    verdict=FAIL
  fi
  echo
  echo "target (vnetd >= dnsmasq, local and cached, no lost queries): $verdict"
fi
if [ "$BENCH_STRICT" = 1 ] && [ "$verdict" != PASS ]; then
  exit 3
fi
