#!/usr/bin/env bash
# bench/shaping.sh: configured versus achieved TCP throughput through vnetd's
# bandwidth shaping (package shaping: HTB over tc netlink, outbound through an
# IFB), for guest inbound and guest outbound at 1, 10, 100 and 1000 Mbit/s,
# and a floor scenario: a network with inbound average 100 Mbit/s, two ports
# with floors of 60 and 30 Mbit/s, both saturated at once.
#
#   sudo bench/shaping.sh
#   sudo DURATION=20 OMIT=5 RATES="10 100" bench/shaping.sh
#
# Topology, all in throw-away network namespaces:
#
#   ext (10.78.0.2) ── uplink ── host: routes, br0 10.77.0.1/24 ─┬─ vnet0 ── guest0 (10.77.0.10)
#                                                               └─ vnet1 ── guest1 (10.77.0.11)
#
# vnet0/vnet1 play the guests' tap devices (veth ends on the bridge). Guest
# inbound is ext → guest (iperf3 client in ext), guest outbound guest → ext:
# both cross the host's routing and the bridge, as a NAT/routed guest's
# traffic does. The shaping package is driven through
# shaping/internal/shapectl on the host namespace's devices (the daemon
# integration is not used here). Figures are iperf3's receiver-side TCP
# goodput over DURATION seconds after OMIT seconds of warm-up (see goodput
# below), TCP cubic unless IPERF_ARGS says otherwise; MTU 1500, so
# TCP/IP/Ethernet headers take 4.4% of the link-layer rate the shaper counts
# (1448 payload bytes per 1514-byte frame): goodput tops out at 95.6% of the
# configured rate.
#
# Targets (issue 8): achieved within ±5% of the configured average in every
# row, both directions; under contention each port gets ≥ 95% of its floor.
# Exit status is non-zero when a run fails, or (BENCH_STRICT=1) when a target
# is missed. Everything made here is removed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/shaping.sh creates network namespaces: run it as root" >&2
  exit 1
fi
for t in ip iperf3 jq; do
  command -v "$t" >/dev/null || { echo "bench/shaping.sh needs $t (apt-get install iproute2 iperf3 jq)" >&2; exit 1; }
done

DURATION=${DURATION:-20}
IPERF_ARGS=${IPERF_ARGS:--C cubic}
OMIT=${OMIT:-3}
RATES=${RATES:-"1 10 100 1000"}
FLOOR=${FLOOR:-1}
LOWRATE=${LOWRATE:-1} # 0: no -l/-w for the slow rows (see lowrate)
BENCH_STRICT=${BENCH_STRICT:-0}
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}

cmdline="$(printf '%q ' "$0" "$@")"
cmdline="DURATION=$DURATION OMIT=$OMIT RATES=\"$RATES\" IPERF_ARGS=\"$IPERF_ARGS\" LOWRATE=$LOWRATE ${cmdline% }"
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)

id=$$
H=vsb-host-$id X=vsb-ext-$id G0=vsb-g0-$id G1=vsb-g1-$id
tmp=$(mktemp -d /tmp/vnetd-shaping.XXXXXX)

cleanup() {
  for ns in $G0 $G1 $X $H; do
    if pids=$(ip netns pids "$ns" 2>/dev/null); then
      for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$GO" build -o "$tmp/shapectl" ./shaping/internal/shapectl
shapectl() { "$tmp/shapectl" -netns "$H" "$@"; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

for ns in $H $X $G0 $G1; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
nsx "$H" sysctl -qw net.ipv4.ip_forward=1
ip -n "$H" link add br0 type bridge stp_state 0 forward_delay 0
ip -n "$H" addr add 10.77.0.1/24 dev br0
ip -n "$H" link set br0 up
for g in 0 1; do
  ns=$G0; [ $g = 1 ] && ns=$G1
  ip -n "$H" link add vnet$g type veth peer name eth0 netns "$ns"
  ip -n "$H" link set vnet$g master br0 up
  ip -n "$ns" addr add 10.77.0.1$g/24 dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via 10.77.0.1
done
ip -n "$H" link add uplink type veth peer name eth0 netns "$X"
ip -n "$H" addr add 10.78.0.1/24 dev uplink
ip -n "$H" link set uplink up
ip -n "$X" addr add 10.78.0.2/24 dev eth0
ip -n "$X" link set eth0 up
ip -n "$X" route add default via 10.78.0.1
mac0=$(ip -n "$G0" -j link show eth0 | jq -r '.[0].address')
mac1=$(ip -n "$G1" -j link show eth0 | jq -r '.[0].address')

for ns in $G0 $G1 $X; do nsx "$ns" iperf3 -s -D -J -p 5201; done
# Wait until the three servers listen.
for ns in $G0 $G1 $X; do
  for _ in $(seq 50); do
    nsx "$ns" ss -ltn | grep -q ':5201 ' && break
    sleep 0.1
  done
done

# goodput FILE: "Mbit/s retransmits" of an iperf3 -J --get-server-output
# run: the bytes the receiver (server) read in its 1-second intervals that lie
# between OMIT and OMIT+DURATION seconds, over their length. (iperf3's own -O
# misaligns the server's intervals and the summary then spans seconds of
# nothing at the end, so the omission is done here.)
goodput() {
  jq -r --argjson lo "$OMIT" --argjson hi "$((OMIT + DURATION))" '
    [.server_output_json.intervals[].sum | select(.start >= $lo - 0.1 and .end <= $hi + 0.1)] as $iv
    | (([$iv[].bytes] | add) * 8 / ([$iv[] | .end - .start] | add) / 1e6) as $mb
    | "\($mb) \(.end.sum_sent.retransmits // 0)"' "$1"
}

# lowrate MBIT: extra iperf3 flags for slow rows. Short reads (-l), or
# iperf3's 128 KiB blocks quantise the receiver's 1-second intervals to ±1
# Mbit/s; a window (-w) that keeps the flow inside the leaf FIFO, or cubic
# overflows it (this kernel has no fq_codel/sfq and no ECN-marking AQM)
# and loss recovery at a few packets per RTT costs several per cent.
lowrate() {
  if [ "$LOWRATE" != 1 ]; then
    return
  elif [ "$1" -le 1 ]; then
    echo "-l 1K -w 32K"
  elif [ "$1" -le 10 ]; then
    echo "-l 8K -w 64K"
  fi
}

# run CLIENT_NS SERVER_IP SECONDS [IPERF3 FLAGS...] → "Mbit/s retransmits"
# over SECONDS after OMIT (see goodput).
run() {
  local c=$1 s=$2 secs=$3
  shift 3
  nsx "$c" iperf3 -c "$s" -t "$((OMIT + secs))" -J --get-server-output $IPERF_ARGS "$@" >"$tmp/run.json"
  DURATION=$secs goodput "$tmp/run.json"
}

# seconds MBIT: how long to measure a row. At 1 Mbit/s the receiver's
# per-second goodput swings by ±4% in a pattern several seconds long (TCP's
# ACK clocking against 12 ms per frame), so that row runs 3×DURATION.
seconds() {
  if [ "$1" -le 1 ]; then echo $((3 * DURATION)); else echo "$DURATION"; fi
}

leaf=$(shapectl probe 2>/dev/null)
echo "# bench/shaping.sh, $started_at, kernel $(uname -r), $(nproc) CPUs, leaf qdisc $leaf, iperf3 $IPERF_ARGS (system default TCP: $(cat /proc/sys/net/ipv4/tcp_congestion_control))"
echo "# $cmdline"
echo
fails=0
within() { # value target pct → 0 if |value/target-1| <= pct%
  awk -v v="$1" -v t="$2" -v p="$3" 'BEGIN { d = (v / t - 1) * 100; exit !(d <= p && d >= -p) }'
}

echo "| direction | configured Mbit/s | iperf3 flags | seconds | achieved Mbit/s | deviation | retransmits | ±5% |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |"
read -r mb rt < <(run "$X" 10.77.0.10 "$DURATION")
printf '| inbound | unshaped | | %s | %.1f | | %s | |\n' "$DURATION" "$mb" "$rt"
read -r mb rt < <(run "$G0" 10.78.0.2 "$DURATION")
printf '| outbound | unshaped | | %s | %.1f | | %s | |\n' "$DURATION" "$mb" "$rt"
for r in $RATES; do
  avg=$((r * 125)) # Mbit/s → kB/s
  for dir in inbound outbound; do
    if [ $dir = inbound ]; then
      shapectl port vnet0 -in $avg 2>/dev/null
      read -r mb rt < <(run "$X" 10.77.0.10 "$(seconds "$r")" $(lowrate "$r"))
    else
      shapectl port vnet0 -out $avg 2>/dev/null
      read -r mb rt < <(run "$G0" 10.78.0.2 "$(seconds "$r")" $(lowrate "$r"))
    fi
    ok=PASS
    within "$mb" "$r" 5 || { ok=FAIL; fails=$((fails + 1)); }
    printf '| %s | %s | %s | %s | %.3f | %+.2f%% | %s | %s |\n' $dir "$r" "$(lowrate "$r")" "$(seconds "$r")" "$mb" \
      "$(awk -v v="$mb" -v t="$r" 'BEGIN { print (v / t - 1) * 100 }')" "$rt" $ok
  done
  shapectl clear vnet0 2>/dev/null
done

if [ "$FLOOR" = 1 ]; then
  echo
  echo "Floor: network inbound average 100 Mbit/s on br0; vnet0 floor 60, vnet1 floor 30 Mbit/s; ext sends to both at once."
  echo
  shapectl network br0 -in 12500 2>/dev/null
  shapectl plug br0 -net-in 12500 -mac "$mac0" -floor 7500 -others 0 -ids "$tmp/ids" >/dev/null 2>&1
  shapectl plug br0 -net-in 12500 -mac "$mac1" -floor 3750 -others 7500 -ids "$tmp/ids" >/dev/null 2>&1
  nsx "$X" iperf3 -c 10.77.0.10 -t "$((OMIT + DURATION))" -J --get-server-output $IPERF_ARGS >"$tmp/f0" &
  p0=$!
  nsx "$X" iperf3 -c 10.77.0.11 -t "$((OMIT + DURATION))" -J --get-server-output $IPERF_ARGS >"$tmp/f1" &
  p1=$!
  wait $p0 $p1
  echo "| port | floor Mbit/s | achieved Mbit/s | share of floor | ≥95% |"
  echo "| --- | ---: | ---: | ---: | --- |"
  total=0
  for g in 0 1; do
    fl=60; [ $g = 1 ] && fl=30
    read -r mb _ < <(goodput "$tmp/f$g")
    total=$(awk -v a="$total" -v b="$mb" 'BEGIN { print a + b }')
    ok=PASS
    awk -v v="$mb" -v f="$fl" 'BEGIN { exit !(v >= 0.95 * f) }' || { ok=FAIL; fails=$((fails + 1)); }
    printf '| vnet%s | %s | %.2f | %.1f%% | %s |\n' $g $fl "$mb" "$(awk -v v="$mb" -v f="$fl" 'BEGIN { print v / f * 100 }')" $ok
  done
  printf '| both | 100 (network) | %.2f | | |\n' "$total"
  echo
  echo "Classes on br0 after the run (bytes at the link layer):"
  shapectl stats br0 2>/dev/null | sed 's/^/    /'
fi

echo
if [ $fails = 0 ]; then
  echo "targets: all met"
else
  echo "targets: $fails missed"
  [ "$BENCH_STRICT" = 1 ] && exit 3
fi
exit 0
