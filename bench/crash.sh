#!/usr/bin/env bash
# bench/crash.sh: crash durability, the long run (issue 10). Under perfdhcp
# load vnetd is SIGKILLed and restarted KILLS times per DHCP family; every
# lease whose DHCPACK (DHCPv6 Reply) reached a client must be listed by
# net-dhcp-leases after the last restart. Then the same for ports: ports with
# inbound floors are created and deleted in a loop through KILLS more
# SIGKILLs; every port whose net-port-create succeeded (and whose delete did
# not) must be listed, and the floor accounting must equal the listed floors.
#
#   sudo bench/crash.sh
#   sudo KILLS=50 RATE=1000 bench/crash.sh
#
# The work is done by the e2e tests TestCrashDurabilityUnderLoad and
# TestPortsAndFloorsSurviveCrashes (e2e/crash_test.go), which make test runs
# with 5 kill points each; this script runs them with larger settings, one
# at a time, and tabulates what they report. In short (see the tests):
#   - a vnetd namespace with one network: a /16 with a DHCPv4 range of 20480
#     addresses and a DHCPv6 range of 65536, and a client namespace on its
#     bridge where perfdhcp -g single -r RATE -R CLIENTS runs (-4 then -6;
#     DHCPv4 rewritten from relayed to local by nftables, as in bench/dhcp.sh);
#   - the answers are captured in the client namespace with an AF_PACKET
#     socket (what reached the clients, whatever perfdhcp made of it); a
#     client's last acknowledged address is the one that must be listed;
#   - a kill point every INTERVAL while the load runs; after the load, one
#     more SIGKILL and restart, then net-dhcp-leases --json;
#   - ports: no device (the hypervisor plugs it), floors of 100-499 kB/s on a
#     network with an inbound average of 20000 kB/s, a kill every 0.7 s.
# Lost must be 0 in every row. "answers in the second before" shows that each
# kill hit a busy server.
#
# Knobs: KILLS (20), RATE (500 exchanges/s: the machine is shared),
# INTERVAL (1.5s), CLIENTS (15000, at most 20000), PORTS (1; 0 skips the
# ports row), BENCH_INSTALL (1: apt-get install kea-admin for perfdhcp when
# it is missing). Exit status: 0 when nothing was lost, 1 on setup errors,
# 2 on bad settings, 3 when something was lost or a check failed.
# Namespaces, processes and temp files are removed on exit, also on Ctrl-C.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/crash.sh creates network namespaces: run it as root" >&2
  exit 1
fi

KILLS=${KILLS:-20}
RATE=${RATE:-500}
INTERVAL=${INTERVAL:-1.5s}
CLIENTS=${CLIENTS:-15000}
PORTS=${PORTS:-1}
BENCH_INSTALL=${BENCH_INSTALL:-1}
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}

die() { echo "bench/crash.sh: $*" >&2; exit 2; }
[[ $KILLS =~ ^[1-9][0-9]*$ ]] || die "KILLS must be a positive integer, not '$KILLS'"
[[ $RATE =~ ^[1-9][0-9]*$ ]] || die "RATE must be a positive integer, not '$RATE'"
if ! [[ $CLIENTS =~ ^[1-9][0-9]*$ ]] || [ "$CLIENTS" -gt 20000 ]; then die "CLIENTS must be 1-20000, not '$CLIENTS'"; fi
[[ $INTERVAL =~ ^[0-9]+(\.[0-9]+)?(ms|s)$ ]] || die "INTERVAL must be a duration such as 1.5s or 800ms, not '$INTERVAL'"
case $PORTS in 0 | 1) ;; *) die "PORTS must be 0 or 1" ;; esac

# The tests put the tag in their namespaces' names, so that an interrupted
# run (which runs no test cleanups) removes exactly its own.
tag=b$$
tag=${tag:0:8}
tmp=$(mktemp -d /tmp/vnetd-crash.XXXXXX)
test_pid=

cleanup() {
  local rc=$? ns pids
  set +e
  trap - EXIT INT TERM
  if [ -n "$test_pid" ]; then kill "$test_pid" 2>/dev/null; wait "$test_pid" 2>/dev/null; fi
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^vnt-cr(srv|cli|port)$tag-"); do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    # shellcheck disable=SC2086 # one pid a word
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! command -v perfdhcp >/dev/null; then
  if [ "$BENCH_INSTALL" != 1 ]; then
    echo "bench/crash.sh needs perfdhcp (Debian package kea-admin); BENCH_INSTALL=$BENCH_INSTALL" >&2
    exit 1
  fi
  echo "== installing kea-admin (perfdhcp) with apt-get" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kea-admin; } >"$tmp/apt.log" 2>&1 ||
    { echo "apt-get install kea-admin failed:" >&2; tail -5 "$tmp/apt.log" >&2; exit 1; }
fi

tests=TestCrashDurabilityUnderLoad
[ "$PORTS" = 1 ] && tests="$tests|TestPortsAndFloorsSurviveCrashes"
cmdline="KILLS=$KILLS RATE=$RATE INTERVAL=$INTERVAL CLIENTS=$CLIENTS PORTS=$PORTS $(printf '%q ' "$0" "$@")"
cmdline=${cmdline% }
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
t0=$SECONDS
echo "== go test ./e2e -run '^($tests)\$' with $KILLS kill points each, DHCP at $RATE/s (a few minutes)" >&2
# -parallel 1: the DHCP load and the port churn one after the other on the
# shared cores. TMPDIR: the tests' temp dirs go with ours.
rc=0
TMPDIR=$tmp VNETD_CRASH_TAG=$tag VNETD_CRASH_KILLS=$KILLS VNETD_CRASH_RATE=$RATE \
  VNETD_CRASH_INTERVAL=$INTERVAL VNETD_CRASH_CLIENTS=$CLIENTS \
  "$GO" test -count=1 -timeout 0 -parallel 1 -v -run "^($tests)\$" ./e2e >"$tmp/test.out" 2>&1 &
test_pid=$!
wait "$test_pid" || rc=$?
test_pid=

# The tests' "crash ..." lines, as tab-separated fields.
dhcp_rows=$(sed -nE 's/.*crash DHCPv([46]): ([0-9]+) kill points, ([0-9]+) answers seen by clients, ([0-9]+) clients, ([0-9]+) listed, ([0-9]+) lost; answers in the second before each kill \[([0-9 ]*)\]; ([0-9]+) clients.*/DHCPv\1\t\2\t\3\t\4\t\5\t\6\t\7\t\8/p' "$tmp/test.out")
port_rows=$(sed -nE 's/.*crash ports: ([0-9]+) kill points, ([0-9]+) acknowledged, ([0-9]+) listed, ([0-9]+) lost; floors ([0-9]+) of ([0-9]+) kB\/s, accounting ([A-Za-z]+); calls map\[(.*)\]/ports\t\1\t\2\t\3\t\4\t\5\t\6\t\7\t\8/p' "$tmp/test.out")
elapsed=$((SECONDS - t0))

echo
echo "## Crash durability: SIGKILL under load, then restart"
echo
echo "command: $cmdline"
echo "date:    $started_at ($((elapsed / 60)) min $((elapsed % 60)) s)"
echo "machine: $(nproc) cores, $(uname -sr), Debian $(cat /etc/debian_version 2>/dev/null || echo '?'), perfdhcp $(perfdhcp -v 2>&1 | awk '/VERSION/{print $2; exit}'), $("$GO" version | awk '{print $3}'), vnetd $(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?')"
echo
echo "| what | kill points | acknowledged to clients | present after restart | lost | notes |"
echo "| --- | --- | --- | --- | --- | --- |"
lost=0 rows=0
while IFS=$'\t' read -r what kills answers clients listed nlost before moved; do
  [ -n "$what" ] || continue
  # shellcheck disable=SC2086 # one count a word
  least=$(printf '%s\n' $before | sort -n | head -1)
  echo "| $what | $kills | $answers answers to $clients clients | $listed of their leases | $nlost | at least $least answers in the second before each kill; $moved clients moved to another address |"
  rows=$((rows + 1))
  [ "$nlost" = 0 ] || lost=1
done <<<"$dhcp_rows"
while IFS=$'\t' read -r what kills acked listed nlost sum limit accounting calls; do
  [ -n "$what" ] || continue
  echo "| $what | $kills | $acked ports created (and not deleted) | $((acked - nlost)) ($listed listed, with calls cut by a kill) | $nlost | floor accounting $accounting ($sum of $limit kB/s taken); calls: $calls |"
  rows=$((rows + 1))
  [ "$nlost" = 0 ] || lost=1
done <<<"$port_rows"
echo
verdict=PASS
want=2
[ "$PORTS" = 1 ] && want=3
if [ "$rc" != 0 ] || [ "$lost" != 0 ] || [ "$rows" -lt "$want" ]; then verdict=FAIL; fi
echo "target: zero lost in every row, every check passed: $verdict"
if [ "$verdict" != PASS ]; then
  echo
  echo "go test said (exit $rc):"
  grep -vE '^(=== (RUN|PAUSE|CONT)|\s*$)' "$tmp/test.out" | tail -40
  if [ "$rows" = 0 ]; then exit 1; fi
  exit 3
fi
