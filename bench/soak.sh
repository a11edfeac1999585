#!/usr/bin/env bash
# bench/soak.sh: a long mixed run against one vnetd, to show that nothing
# grows: DHCPv6 clients (perfdhcp, short leases so leases expire and are
# swept all along), DNS queries (dnsperf: local names, PTRs, misses), port
# create/delete churn and live net-update of DNS hosts, all at once for
# DURATION seconds. Goroutines, open files, RSS and live heap are sampled
# every INTERVAL seconds; the table ends with the growth from the first
# sample (taken after WARMUP seconds, when the lease population has reached
# its steady state) to the last.
#
#   sudo bench/soak.sh                      # 10 minutes
#   sudo DURATION=120 INTERVAL=20 bench/soak.sh
#
# Everything runs in namespaces made here and removed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "bench/soak.sh creates network namespaces: run it as root" >&2
  exit 1
fi
DURATION=${DURATION:-600}
INTERVAL=${INTERVAL:-30}
WARMUP=${WARMUP:-150} # > the 2-minute lease time: the lease count is steady
DHCP_RATE=${DHCP_RATE:-50}
DNS_QPS=${DNS_QPS:-500}
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}
[ "$WARMUP" -ge "$DURATION" ] && WARMUP=$((DURATION / 4))

for tool in perfdhcp dnsperf; do
  command -v "$tool" >/dev/null || {
    echo "bench/soak.sh needs $tool (Debian: kea-admin for perfdhcp, dnsperf)" >&2
    exit 1
  }
done

id=$$
SNS=vsoak-s-$id CNS=vsoak-c-$id
tmp=$(mktemp -d /tmp/vnetd-soak.XXXXXX)
vnetd_pid=
pids=()
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log() { printf '%s\n' "$*" >&2; }
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "$vnetd_pid" ] && kill -9 "$vnetd_pid" 2>/dev/null
  for ns in "$SNS" "$CNS"; do
    if ip netns list | grep -qw -- "$ns"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
      ip netns del "$ns"
    fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

log "building vnetd and vnetctl"
"$GO" build -o "$tmp/vnetd" ./cmd/vnetd
"$GO" build -o "$tmp/vnetctl" ./cmd/vnetctl
sock=$tmp/run/vnetd.sock
ctl() { "$tmp/vnetctl" --socket "$sock" "$@"; }
get() { curl -sf --unix-socket "$sock" "http://vnetd$1"; }

ip netns add "$SNS"
ip netns add "$CNS"
ip -n "$SNS" link set lo up
ip -n "$CNS" link set lo up
mkdir -p "$tmp/run"
ip netns exec "$SNS" "$tmp/vnetd" --config-dir "$tmp/etc" --state-dir "$tmp/state" --run-dir "$tmp/run" \
  --socket "$sock" --log-level warn >"$tmp/vnetd.log" 2>&1 &
vnetd_pid=$!
disown
for _ in $(seq 500); do ctl net-list >/dev/null 2>&1 && break; sleep 0.02; done

cat >"$tmp/net.xml" <<'EOF'
<network>
  <name>soak</name>
  <forward mode='nat'/>
  <bridge name='vsoak' stp='off'/>
  <domain name='soak.test' localOnly='yes'/>
  <dns><host ip='10.203.0.10'><hostname>fixed</hostname></host></dns>
  <ip address='10.203.0.1' prefix='16'>
    <dhcp><range start='10.203.1.0' end='10.203.1.255'/></dhcp>
  </ip>
  <ip family='ipv6' address='fd00:203::1' prefix='64'>
    <dhcp><range start='fd00:203::1:0' end='fd00:203::1:ffff'><lease expiry='2' unit='minutes'/></range></dhcp>
  </ip>
</network>
EOF
ctl net-create "$tmp/net.xml" >/dev/null

# The client: a veth whose peer is a port of the network.
ip link add "vsk$id" netns "$SNS" type veth peer name eth0 netns "$CNS"
cat >"$tmp/port.xml" <<'EOF'
<networkport><uuid>00000000-0000-4000-8000-00000000c11e</uuid>
<owner><name>client</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner>
<mac address='52:54:00:50:0a:01'/></networkport>
EOF
ctl net-port-create soak "$tmp/port.xml" --attach "vsk$id" >/dev/null
ip -n "$CNS" addr add 10.203.0.2/16 dev eth0
ip -n "$CNS" addr add fd00:203::2/64 dev eth0 nodad
ip -n "$CNS" link set eth0 up
for _ in $(seq 300); do
  ip netns exec "$CNS" ping -c1 -W1 10.203.0.1 >/dev/null 2>&1 && break
  sleep 0.05
done
for _ in $(seq 300); do
  ip -n "$CNS" -6 addr show dev eth0 | grep -q tentative || break
  sleep 0.05
done

# Load generators, all for DURATION seconds.
ip netns exec "$CNS" perfdhcp -6 -l eth0 -r "$DHCP_RATE" -R 100000 -p "$DURATION" >"$tmp/perfdhcp.out" 2>&1 &
pids+=($!)
{
  for i in $(seq 50); do
    echo "fixed.soak.test A"
    echo "name$i.soak.test A"
    echo "10.0.203.10.in-addr.arpa PTR"
    echo "missing$i.soak.test AAAA"
  done
} >"$tmp/queries"
ip netns exec "$CNS" dnsperf -s 10.203.0.1 -d "$tmp/queries" -l "$DURATION" -Q "$DNS_QPS" -c 4 >"$tmp/dnsperf.out" 2>&1 &
pids+=($!)
deadline=$(($(date +%s) + DURATION))
( # port churn: a tap port made and deleted, over and over
  k=0
  while [ "$(date +%s)" -lt "$deadline" ]; do
    printf "<networkport><uuid>00000000-0000-4000-8000-%012x</uuid><owner><name>churn</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner><mac address='52:54:00:51:%02x:%02x'/></networkport>" \
      "$k" $((k >> 8 & 255)) $((k & 255)) >"$tmp/churn.xml"
    ctl net-port-create soak "$tmp/churn.xml" --tap "vsc$((k % 4))" >/dev/null 2>&1 || true
    ctl net-port-delete soak "$(printf '00000000-0000-4000-8000-%012x' "$k")" >/dev/null 2>&1 || true
    k=$((k + 1))
    sleep 0.2
  done
  echo "$k" >"$tmp/ports.count"
) &
pids+=($!)
( # live DNS updates: a host added and deleted, over and over
  k=0
  while [ "$(date +%s)" -lt "$deadline" ]; do
    h="<host ip='10.203.9.$((k % 250 + 1))'><hostname>name$((k % 50 + 1))</hostname></host>"
    ctl net-update soak add-last dns-host "$h" --live >/dev/null 2>&1 || true
    ctl net-update soak delete dns-host "$h" --live >/dev/null 2>&1 || true
    k=$((k + 1))
    sleep 0.5
  done
  echo "$k" >"$tmp/updates.count"
) &
pids+=($!)

sample() { # elapsed -> table row
  local g fds rss heap leases
  g=$(get '/debug/pprof/goroutine?debug=1' | awk 'NR==1 { print $4 }')
  fds=$(find "/proc/$vnetd_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$vnetd_pid/status")
  # Live heap: what is left after a forced collection (the heap profile
  # endpoint runs one first); RSS alone also follows the collector's goal.
  get '/debug/pprof/heap?gc=1' >/dev/null
  heap=$(get '/metrics' | awk '$1 == "go_memstats_heap_alloc_bytes" { printf "%d", $2 / 1024 }')
  leases=$(ctl net-dhcp-leases soak --json | grep -o '"ipaddr"' | wc -l)
  echo "$1 $g $fds $rss ${heap:-0} $leases"
}

log "soaking for ${DURATION}s (first sample after ${WARMUP}s, then every ${INTERVAL}s)"
start=$(date +%s)
sleep "$WARMUP"
rows=()
while :; do
  now=$(date +%s)
  rows+=("$(sample $((now - start)))")
  [ $((now - start + INTERVAL)) -gt "$DURATION" ] && break
  sleep "$INTERVAL"
done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
# After the load: the soak's own objects are gone.
sleep 2
rows+=("$(sample "end")")

acks=$(awk '/received packets:/ { print $3; exit }' "$tmp/perfdhcp.out" 2>/dev/null || true)
dns_done=$(awk '/Queries completed:/ { print $3 }' "$tmp/dnsperf.out")
dns_lost=$(awk '/Queries lost:/ { print $3 }' "$tmp/dnsperf.out")

echo
echo "bench/soak.sh  $started_at  $(uname -r), $(nproc) CPUs"
echo "command: DURATION=$DURATION INTERVAL=$INTERVAL WARMUP=$WARMUP DHCP_RATE=$DHCP_RATE DNS_QPS=$DNS_QPS bench/soak.sh"
echo "load: DHCPv6 $DHCP_RATE clients/s (2-minute leases; replies received: ${acks:-?}), DNS $DNS_QPS q/s (completed ${dns_done:-?}, lost ${dns_lost:-?}),"
echo "      $(cat "$tmp/ports.count" 2>/dev/null || echo '?') tap ports created and deleted, $(cat "$tmp/updates.count" 2>/dev/null || echo '?') dns-host add+delete pairs"
echo
echo "| t (s) | goroutines | open fds | RSS (KiB) | live heap after GC (KiB) | DHCP leases |"
echo "| --- | --- | --- | --- | --- | --- |"
for r in "${rows[@]}"; do
  # shellcheck disable=SC2086
  set -- $r
  echo "| $1 | $2 | $3 | $4 | $5 | $6 |"
done
# shellcheck disable=SC2086
set -- ${rows[0]}
g0=$2 f0=$3 r0=$4
# shellcheck disable=SC2086
set -- ${rows[$((${#rows[@]} - 2))]}
g1=$2 f1=$3 r1=$4 h1=$5
# shellcheck disable=SC2086
set -- ${rows[0]}
h0=$5
echo
echo "growth first -> last sample under load: goroutines $((g1 - g0)), fds $((f1 - f0)), RSS $((r1 - r0)) KiB, live heap $((h1 - h0)) KiB"
grep -E 'level=(ERROR|WARN)' "$tmp/vnetd.log" | sed 's/time=[^ ]* //' | sort | uniq -c | sort -rn | head -5 || true
