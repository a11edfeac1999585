#!/usr/bin/env bash
# bench/lifecycle.sh: median latency of net-start and net-destroy of a
# default-like NAT network (bridge, 192.168.x.1/24, DHCP range), vnetd against
# libvirtd, measured in the same run.
#
#   sudo bench/lifecycle.sh                 # 20 iterations per side
#   sudo ITERATIONS=10 bench/lifecycle.sh
#
# Each side runs in a fresh network namespace made here, so neither touches the
# host's links or firewall:
#   vnetd:    ip netns exec NS vnetd --config-dir/--state-dir/--run-dir in a temp dir
#   libvirtd: ip netns exec NS unshare --mount, with /run (so /var/run too),
#             /etc/libvirt, /var/lib/libvirt, /var/cache/libvirt and
#             /var/log/libvirt bind-mounted from a temp dir: its state, sockets
#             and config are throw-away, it sees no D-Bus (so no firewalld, no
#             polkit) and no host libvirt config.
# Every iteration times one client process (vnetctl or virsh) from fork to
# exit with a monotonic clock; the client's own start-up is part of the number
# on both sides.
#
# libvirt is installed with apt-get when libvirtd is missing (set
# LIBVIRT_INSTALL=0 to forbid that; BENCH_LIBVIRT=0 skips libvirt). If libvirt
# cannot be measured the script says why and still prints vnetd's numbers; it
# exits non-zero only when the vnetd side fails (or, with BENCH_STRICT=1, when a
# target is missed).
#
# Everything made here (namespaces, mounts, processes, bridges, temp files) is
# removed on exit, also on failure or Ctrl-C.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/lifecycle.sh creates network namespaces: run it as root" >&2
  exit 1
fi

ITERATIONS=${ITERATIONS:-20}
if ! [[ $ITERATIONS =~ ^[1-9][0-9]*$ ]]; then
  echo "ITERATIONS must be a positive integer, not '$ITERATIONS'" >&2
  exit 2
fi
BENCH_LIBVIRT=${BENCH_LIBVIRT:-1}
LIBVIRT_INSTALL=${LIBVIRT_INSTALL:-1}
BENCH_STRICT=${BENCH_STRICT:-0}
LIBVIRTD=${LIBVIRTD:-}
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}
CMD_TIMEOUT=${CMD_TIMEOUT:-60s} # per client invocation

cmdline="$(printf '%q ' "$0" "$@")"
cmdline="ITERATIONS=$ITERATIONS ${cmdline% }"
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)

id=$$
VNS=vnetd-bench-$id
LNS=libvirt-bench-$id
NETNAME=bench-default
VBR=vbench-vnetd LBR=vbench-lv
tmp=$(mktemp -d /tmp/vnetd-bench.XXXXXX)
chmod 755 "$tmp"
vnetd_pid=
lv_job=

log() { printf '%s\n' "$*" >&2; }

# kill_wait PID [SECONDS]: SIGTERM, then SIGKILL after the grace time.
kill_wait() {
  local pid=$1 n=$((${2:-5} * 20))
  kill "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && [ "$n" -gt 0 ]; do sleep 0.05; n=$((n - 1)); done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# kill_netns_pids NS: every process still inside a namespace made here
# (dnsmasq, leftover daemons) is ours.
kill_netns_pids() {
  local ns=$1 pids
  ip netns list 2>/dev/null | grep -qw -- "$ns" || return 0
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [ -n "$pids" ] || return 0
  kill $pids 2>/dev/null || true
  for _ in $(seq 40); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] || return 0
    sleep 0.05
  done
  kill -9 $pids 2>/dev/null || true
  sleep 0.1
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  # The libvirt measurement, when interrupted while it runs.
  if [ -n "$lv_job" ]; then kill_wait "$lv_job" 5; fi
  # libvirt: stop the network so libvirtd reaps its dnsmasq, then the daemon.
  if [ -S "$tmp/lv/run/libvirt/libvirt-sock" ] && command -v virsh >/dev/null; then
    timeout 20 virsh -q -c "qemu:///system?socket=$tmp/lv/run/libvirt/libvirt-sock" \
      net-destroy "$NETNAME" >/dev/null 2>&1
  fi
  [ -s "$tmp/libvirtd.pid" ] && kill_wait "$(cat "$tmp/libvirtd.pid")" 10
  [ -n "$vnetd_pid" ] && kill_wait "$vnetd_pid" 5
  for ns in "$VNS" "$LNS"; do
    kill_netns_pids "$ns"
    ip netns del "$ns" 2>/dev/null
  done
  # An apt-get install cut short leaves our policy-rc.d behind: remove it.
  if [ -s "$tmp/made-policy-rc" ]; then rm -f /usr/sbin/policy-rc.d; fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers

# timeit: a tiny Go wrapper that runs one command and appends its wall time in
# nanoseconds (monotonic clock, fork to exit) to a file. Built into the temp
# dir, not the repo.
build_timeit() {
  mkdir -p "$tmp/timeit-src"
  cat >"$tmp/timeit-src/go.mod" <<'EOF'
module timeit

go 1.21
EOF
  cat >"$tmp/timeit-src/main.go" <<'EOF'
// timeit -o FILE -t TIMEOUT CMD [ARGS...]: run CMD with this process's stdio,
// append its latency in ns (monotonic, fork to exit) to FILE, exit as CMD did.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"time"
)

func main() {
	out := flag.String("o", "", "append the latency in ns to this file")
	timeout := flag.Duration("t", time.Minute, "kill the command after this long")
	flag.Parse()
	if flag.NArg() == 0 || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: timeit -o FILE [-t TIMEOUT] CMD [ARGS...]")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	code := 0
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		fmt.Fprintf(os.Stderr, "timeit: %s: timed out after %s\n", flag.Arg(0), *timeout)
		code = 124
	case errors.As(err, &ee):
		code = ee.ExitCode()
		if code < 0 {
			code = 128
		}
	case err != nil:
		fmt.Fprintln(os.Stderr, "timeit:", err)
		os.Exit(127)
	}
	if code == 0 {
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = fmt.Fprintln(f, took.Nanoseconds())
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "timeit:", err)
			os.Exit(125)
		}
	}
	os.Exit(code)
}
EOF
  (cd "$tmp/timeit-src" && GOFLAGS= GOWORK=off "$GO" build -o "$tmp/timeit" .)
}

# timed SAMPLES CMD...: one timed client invocation; its output goes to
# $tmp/clients.out, and is shown when it fails.
timed() {
  local samples=$1 rc=0
  shift
  "$tmp/timeit" -o "$samples" -t "$CMD_TIMEOUT" "$@" >"$samples.last" 2>&1 || rc=$?
  cat "$samples.last" >>"$tmp/clients.out"
  if [ "$rc" != 0 ]; then
    log "$(basename "$1") ${*:2} failed (exit $rc):"
    sed 's/^/  /' "$samples.last" >&2
  fi
  return "$rc"
}

# median FILE: median of the ns values in FILE, in ns.
median() {
  sort -n "$1" | awk '{v[NR]=$1} END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) print v[(NR+1)/2]; else printf "%.0f\n", (v[NR/2]+v[NR/2+1])/2 }'
}
# ms NS: "3.1 ms" below 10 ms, "92 ms" above.
ms() {
  awk -v n="$1" 'BEGIN { m = n / 1e6; if (m < 10) printf "%.1f ms", m; else printf "%.0f ms", m }'
}
# spread FILE: "min / median / max" in ms.
spread() {
  sort -n "$1" | awk '{v[NR]=$1} END {
    med = (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2
    printf "%.1f / %.1f / %.1f ms", v[1]/1e6, med/1e6, v[NR]/1e6 }'
}
# ratio A B: A/B as "29x" (one decimal below 10).
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { r = a / b; if (r < 10) printf "%.1fx", r; else printf "%.0fx", r }'
}

# took_ns MSG LOG: vnetd's own "took=" durations for log lines msg=MSG, in ns.
took_ns() {
  grep -E "msg=\"?$1\"? " "$2" | sed -n 's/.* took=\([0-9.]*[nµum]*s\).*/\1/p' |
    awk '{ v = $1 + 0; u = $1; sub(/^[0-9.]+/, "", u)
      f = (u == "ns") ? 1 : (u == "µs" || u == "us") ? 1e3 : (u == "ms") ? 1e6 : 1e9
      printf "%.0f\n", v * f }'
}

# network_xml NAME BRIDGE OCTET: libvirt's stock default network, renamed and
# moved to 192.168.OCTET.0/24.
network_xml() {
  cat <<EOF
<network>
  <name>$1</name>
  <forward mode='nat'/>
  <bridge name='$2' stp='on' delay='0'/>
  <ip address='192.168.$3.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.$3.2' end='192.168.$3.254'/>
    </dhcp>
  </ip>
</network>
EOF
}

# check_up NS BRIDGE ADDR: the network really came up (outside the timed part).
check_up() {
  ip -n "$1" -br addr show dev "$2" 2>/dev/null | grep -qF "$3/24"
}
# check_gone NS BRIDGE: the bridge device is gone. net-destroy returns once the
# network carries no traffic and has no rules; vnetd leaves the kernel's
# deletion of the device (30-50 ms of RCU grace periods holding the rtnl lock
# here) to the background. Every operation is measured from an idle host: wait,
# untimed and on both sides, for the bridge to go and then SETTLE seconds more,
# so one operation's kernel work does not land in the next one's figure.
SETTLE=${SETTLE:-0.2}
check_gone() {
  local _
  for _ in $(seq 100); do
    if ! ip -n "$1" link show dev "$2" >/dev/null 2>&1; then
      sleep "$SETTLE"
      return 0
    fi
    sleep 0.01
  done
  return 1
}
# serves_dhcp NS: something listens on UDP 67 inside the namespace.
serves_dhcp() {
  if ip netns exec "$1" ss -Hlun 2>/dev/null | awk '{print $4}' | grep -q ':67$'; then
    echo yes
  else
    echo no
  fi
}

# ---------------------------------------------------------------- vnetd

vnetd_ver=
vnetd_dhcp=
bench_vnetd() {
  log "== vnetd: building vnetd and vnetctl"
  "$GO" build -o "$tmp/vnetd" ./cmd/vnetd
  "$GO" build -o "$tmp/vnetctl" ./cmd/vnetctl
  vnetd_ver=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)

  local d=$tmp/vn sock=$tmp/vn/vnetd.sock
  mkdir -p "$d"
  network_xml "$NETNAME" "$VBR" 150 >"$d/net.xml"

  log "== vnetd: starting it in network namespace $VNS"
  ip netns add "$VNS"
  ip -n "$VNS" link set lo up
  ip netns exec "$VNS" "$tmp/vnetd" --config-dir "$d/etc" --state-dir "$d/state" \
    --run-dir "$d/run" --socket "$sock" >"$tmp/vnetd.log" 2>&1 &
  vnetd_pid=$!
  for _ in $(seq 200); do
    [ -S "$sock" ] && break
    kill -0 "$vnetd_pid" 2>/dev/null || break
    sleep 0.05
  done
  if ! [ -S "$sock" ]; then
    log "vnetd did not come up; its log:"; cat "$tmp/vnetd.log" >&2
    return 1
  fi

  # vnetctl takes --socket before the verb or after it, depending on the
  # tree's age; $VNETD_SOCKET works for both.
  export VNETD_SOCKET=$sock
  local -a ctl=("$tmp/vnetctl")
  if "$tmp/vnetctl" --socket "$sock" net-list --all >/dev/null 2>&1; then
    ctl=("$tmp/vnetctl" --socket "$sock")
  fi

  "${ctl[@]}" net-define "$d/net.xml" >>"$tmp/clients.out" 2>&1 || {
    log "vnetctl net-define failed:"; cat "$tmp/clients.out" "$tmp/vnetd.log" >&2; return 1; }

  log "== vnetd: $ITERATIONS x net-start / net-destroy"
  local i
  : >"$tmp/vnetd.start" ; : >"$tmp/vnetd.destroy"
  for i in $(seq "$ITERATIONS"); do
    timed "$tmp/vnetd.start" "${ctl[@]}" net-start "$NETNAME" || {
      log "(iteration $i) vnetd log ends:"; tail -20 "$tmp/vnetd.log" >&2; return 1; }
    if [ "$i" = 1 ]; then
      check_up "$VNS" "$VBR" 192.168.150.1 || {
        log "vnetd said started but $VBR has no 192.168.150.1/24:"; ip -n "$VNS" addr >&2; return 1; }
      vnetd_dhcp=$(serves_dhcp "$VNS")
    fi
    timed "$tmp/vnetd.destroy" "${ctl[@]}" net-destroy "$NETNAME" || {
      log "(iteration $i) vnetd log ends:"; tail -20 "$tmp/vnetd.log" >&2; return 1; }
    check_gone "$VNS" "$VBR" || { log "vnetd said destroyed but $VBR is still there after 1 s"; return 1; }
  done
  # The client round trip alone, for reference: a no-op listing.
  : >"$tmp/vnetd.list"
  for i in $(seq "$ITERATIONS"); do
    "$tmp/timeit" -o "$tmp/vnetd.list" -t "$CMD_TIMEOUT" "${ctl[@]}" net-list --all >/dev/null 2>&1 || true
  done
  "${ctl[@]}" net-undefine "$NETNAME" >>"$tmp/clients.out" 2>&1 || true

  kill_wait "$vnetd_pid" 5
  vnetd_pid=
  kill_netns_pids "$VNS"
  ip netns del "$VNS"
}

# ---------------------------------------------------------------- libvirt

# Runs in a subshell with errexit; on failure it leaves the reason in
# $tmp/libvirt.why. Results go to $tmp/libvirt.{start,destroy,version,dhcp}.
bench_libvirt() {
  set -e
  local why=$tmp/libvirt.why
  trap 'rc=$?; [ -s "$why" ] || echo "command failed (exit $rc): $BASH_COMMAND" >"$why"' ERR
  fail() { echo "$*" >"$why"; exit 1; }

  # --- install
  local need=()
  [ -n "$LIBVIRTD" ] || LIBVIRTD=$(command -v libvirtd || true)
  [ -n "$LIBVIRTD" ] || need+=(libvirt-daemon-system)
  command -v virsh >/dev/null || need+=(libvirt-clients)
  command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
  command -v iptables >/dev/null || need+=(iptables)
  command -v nft >/dev/null || need+=(nftables)
  if [ "${#need[@]}" -gt 0 ]; then
    [ "$LIBVIRT_INSTALL" = 1 ] || fail "missing ${need[*]} and LIBVIRT_INSTALL=0"
    command -v apt-get >/dev/null || fail "missing ${need[*]} and no apt-get to install them"
    log "== libvirt: installing ${need[*]} with apt-get"
    apt-get update -qq >"$tmp/apt.log" 2>&1 || fail "apt-get update failed: $(tail -3 "$tmp/apt.log")"
    # Newer Debian splits the drivers out of libvirt-daemon.
    if apt-cache show libvirt-daemon-driver-network >/dev/null 2>&1; then
      need+=(libvirt-daemon-driver-network)
    fi
    # Don't let the packages start a libvirtd (and its default network) on
    # the host: that is what policy-rc.d is for.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
      echo 1 >"$tmp/made-policy-rc"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" \
      >>"$tmp/apt.log" 2>&1 || fail "apt-get install ${need[*]} failed: $(tail -3 "$tmp/apt.log")"
    if [ -s "$tmp/made-policy-rc" ]; then rm -f /usr/sbin/policy-rc.d "$tmp/made-policy-rc"; fi
    [ -n "$LIBVIRTD" ] || LIBVIRTD=$(command -v libvirtd || true)
  fi
  [ -n "$LIBVIRTD" ] && [ -x "$LIBVIRTD" ] || fail "libvirtd not found"
  command -v virsh >/dev/null || fail "virsh not found"
  command -v dnsmasq >/dev/null || fail "dnsmasq not found (libvirt's network driver needs it for DHCP)"
  local drv
  drv=$(find /usr/lib /usr/lib64 -path '*libvirt/connection-driver/libvirt_driver_network.so' 2>/dev/null | head -1)
  [ -n "$drv" ] || fail "libvirt's network driver (libvirt_driver_network.so) is not installed"
  local ver
  ver=$("$LIBVIRTD" --version 2>&1) || fail "$LIBVIRTD --version failed: ${ver:-no output}"
  echo "${ver##* }" >"$tmp/libvirt.version"

  # --- private state for libvirtd
  local lv=$tmp/lv
  mkdir -p "$lv/run" "$lv/etc" "$lv/lib" "$lv/cache" "$lv/log"
  chmod 755 "$lv" "$lv"/*
  # Only the daemon config files: no host networks, domains, pools, hooks.
  cp -a /etc/libvirt/*.conf "$lv/etc/"
  [ -d /etc/libvirt/nwfilter ] && cp -a /etc/libvirt/nwfilter "$lv/etc/"
  cat >>"$lv/etc/libvirtd.conf" <<'EOF'

# bench/lifecycle.sh: private libvirtd, root only, no polkit, quiet log
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:stderr"
EOF
  # libvirt >= 10.4 picks its firewall backend in network.conf.
  if [ -f "$lv/etc/network.conf" ] && grep -q firewall_backend "$lv/etc/network.conf"; then
    echo 'firewall_backend = "nftables"' >>"$lv/etc/network.conf"
  fi
  network_xml "$NETNAME" "$LBR" 151 >"$lv/net.xml"

  log "== libvirt: starting libvirtd in network namespace $LNS with a private mount namespace"
  ip netns add "$LNS"
  ip -n "$LNS" link set lo up
  local varrun=0
  [ "$(readlink -f /var/run)" = /run ] || varrun=1
  # ip netns exec, then unshare --mount, then exec libvirtd: $! is libvirtd.
  ip netns exec "$LNS" unshare --mount --propagation private sh -c '
    set -e
    lv=$1 varrun=$2 libvirtd=$3
    mount --bind "$lv/run" /run
    [ "$varrun" = 0 ] || mount --bind "$lv/run" /var/run
    mount --bind "$lv/etc" /etc/libvirt
    mount --bind "$lv/lib" /var/lib/libvirt
    mount --bind "$lv/cache" /var/cache/libvirt
    mount --bind "$lv/log" /var/log/libvirt
    exec "$libvirtd"
  ' sh "$lv" "$varrun" "$LIBVIRTD" >"$tmp/libvirtd.log" 2>&1 &
  echo $! >"$tmp/libvirtd.pid"
  local lpid=$! sock=$lv/run/libvirt/libvirt-sock
  local uri="qemu:///system?socket=$sock"
  for _ in $(seq 400); do
    [ -S "$sock" ] && virsh -q -c "$uri" net-list --all >/dev/null 2>&1 && break
    kill -0 "$lpid" 2>/dev/null || break
    sleep 0.05
  done
  if ! virsh -q -c "$uri" net-list --all >/dev/null 2>&1; then
    fail "libvirtd did not come up; its log ends: $(grep -v ' info : ' "$tmp/libvirtd.log" | tail -5)"
  fi

  virsh -q -c "$uri" net-define "$lv/net.xml" >>"$tmp/clients.out" 2>&1 ||
    fail "virsh net-define failed: $(tail -3 "$tmp/clients.out")"

  log "== libvirt: $ITERATIONS x net-start / net-destroy"
  : >"$tmp/libvirt.start" ; : >"$tmp/libvirt.destroy"
  local i
  for i in $(seq "$ITERATIONS"); do
    timed "$tmp/libvirt.start" virsh -q -c "$uri" net-start "$NETNAME" ||
      fail "virsh net-start failed (iteration $i): $(cat "$tmp/libvirt.start.last")"
    if [ "$i" = 1 ]; then
      check_up "$LNS" "$LBR" 192.168.151.1 ||
        fail "libvirt said started but $LBR has no 192.168.151.1/24"
      serves_dhcp "$LNS" >"$tmp/libvirt.dhcp"
    fi
    timed "$tmp/libvirt.destroy" virsh -q -c "$uri" net-destroy "$NETNAME" ||
      fail "virsh net-destroy failed (iteration $i): $(cat "$tmp/libvirt.destroy.last")"
    check_gone "$LNS" "$LBR" || fail "libvirt said destroyed but $LBR is still there after 1 s"
  done
  : >"$tmp/libvirt.list"
  for i in $(seq "$ITERATIONS"); do
    "$tmp/timeit" -o "$tmp/libvirt.list" -t "$CMD_TIMEOUT" virsh -q -c "$uri" net-list --all >/dev/null 2>&1 || true
  done
  virsh -q -c "$uri" net-undefine "$NETNAME" >>"$tmp/clients.out" 2>&1 || true
}

# ---------------------------------------------------------------- run

log "== building the timing helper"
build_timeit

# Not in an if: errexit must stay on inside; any failure ends the script.
bench_vnetd

lv_ok=0 lv_why=
if [ "$BENCH_LIBVIRT" != 1 ]; then
  lv_why="skipped: BENCH_LIBVIRT=$BENCH_LIBVIRT"
else
  # In the background and waited for, so that Ctrl-C or SIGTERM reach the
  # traps at once instead of after the whole libvirt run.
  (bench_libvirt) &
  lv_job=$!
  lv_rc=0
  wait "$lv_job" || lv_rc=$?
  lv_job=
  if [ "$lv_rc" = 0 ] && [ "$(wc -l <"$tmp/libvirt.destroy")" = "$ITERATIONS" ]; then
    lv_ok=1
  else
    lv_why=$(cat "$tmp/libvirt.why" 2>/dev/null || echo "exit status $lv_rc")
  fi
  # Stop libvirtd now; cleanup() does it again if this is cut short.
  if [ -s "$tmp/libvirtd.pid" ]; then
    if [ -S "$tmp/lv/run/libvirt/libvirt-sock" ]; then
      timeout 20 virsh -q -c "qemu:///system?socket=$tmp/lv/run/libvirt/libvirt-sock" \
        net-destroy "$NETNAME" >/dev/null 2>&1 || true
    fi
    kill_wait "$(cat "$tmp/libvirtd.pid")" 10
    rm -f "$tmp/libvirtd.pid"
  fi
  kill_netns_pids "$LNS"
  ip netns del "$LNS" 2>/dev/null || true
fi

# ---------------------------------------------------------------- report

vs=$(median "$tmp/vnetd.start") vd=$(median "$tmp/vnetd.destroy")
floor() { if [ -s "$tmp/$1.list" ]; then ms "$(median "$tmp/$1.list")"; else echo "?"; fi; }
# vnetd logs how long each operation took inside the daemon.
server_took() {
  took_ns started "$tmp/vnetd.log" >"$tmp/vnetd.took-start" || true
  took_ns destroyed "$tmp/vnetd.log" >"$tmp/vnetd.took-destroy" || true
  if [ -s "$tmp/vnetd.took-start" ] && [ -s "$tmp/vnetd.took-destroy" ]; then
    echo "inside vnetd (its log's took=, median): start $(ms "$(median "$tmp/vnetd.took-start")"), destroy $(ms "$(median "$tmp/vnetd.took-destroy")")"
  fi
}
echo
echo "## net-start / net-destroy latency of a default-like NAT network"
echo
echo "command: $cmdline"
echo "date:    $started_at"
echo "machine: $(nproc) cores, $(uname -sr), Debian $(cat /etc/debian_version 2>/dev/null || echo '?'), $("$GO" version | awk '{print $3}')"
echo "network: nat, bridge, 192.168.15x.1/24, DHCP range .2-.254 (libvirt's stock default), own bridge and subnet per daemon"
echo "timing:  one client process per operation (vnetctl / virsh), monotonic clock, fork to exit"
echo
echo "| daemon | net-start median | net-destroy median | iterations |"
echo "| --- | --- | --- | --- |"
echo "| vnetd $vnetd_ver (this tree) | $(ms "$vs") | $(ms "$vd") | $ITERATIONS |"
rc=0
if [ "$lv_ok" = 1 ]; then
  ls_=$(median "$tmp/libvirt.start") ld=$(median "$tmp/libvirt.destroy")
  echo "| libvirtd $(cat "$tmp/libvirt.version") (Debian) | $(ms "$ls_") | $(ms "$ld") | $ITERATIONS |"
  echo "| ratio libvirt/vnetd | $(ratio "$ls_" "$vs") | $(ratio "$ld" "$vd") | |"
  echo
  echo "min / median / max: vnetd start $(spread "$tmp/vnetd.start"), destroy $(spread "$tmp/vnetd.destroy")"
  echo "                    libvirtd start $(spread "$tmp/libvirt.start"), destroy $(spread "$tmp/libvirt.destroy")"
  echo "client round trip alone (net-list --all, median): vnetctl $(floor vnetd), virsh $(floor libvirt)"
  server_took
  echo "DHCP server listening after start: vnetd ${vnetd_dhcp:-?}, libvirtd $(cat "$tmp/libvirt.dhcp" 2>/dev/null || echo '?')"
  echo
  # Targets: vnetd start <= 1/5 of libvirt's, destroy <= 1/10.
  t_start=$(awk -v v="$vs" -v l="$ls_" 'BEGIN { print (v * 5 <= l) ? "PASS" : "FAIL" }')
  t_destroy=$(awk -v v="$vd" -v l="$ld" 'BEGIN { print (v * 10 <= l) ? "PASS" : "FAIL" }')
  echo "target: vnetd net-start <= 1/5 of libvirt's   ($(ms "$vs") vs $(ms "$ls_")/5 = $(ms "$(awk -v l="$ls_" 'BEGIN{print l/5}')")): $t_start"
  echo "target: vnetd net-destroy <= 1/10 of libvirt's ($(ms "$vd") vs $(ms "$ld")/10 = $(ms "$(awk -v l="$ld" 'BEGIN{print l/10}')")): $t_destroy"
  if [ "$BENCH_STRICT" = 1 ] && { [ "$t_start" = FAIL ] || [ "$t_destroy" = FAIL ]; }; then rc=3; fi
else
  echo "| libvirtd (not measured) | - | - | 0 |"
  echo
  echo "min / median / max: vnetd start $(spread "$tmp/vnetd.start"), destroy $(spread "$tmp/vnetd.destroy")"
  echo "client round trip alone (net-list --all, median): vnetctl $(floor vnetd)"
  server_took
  echo "DHCP server listening after start: vnetd ${vnetd_dhcp:-?}"
  echo
  echo "libvirt was not measured: $lv_why"
  echo "target: vnetd net-start <= 1/5 of libvirt's: not evaluated (no libvirt numbers)"
  echo "target: vnetd net-destroy <= 1/10 of libvirt's: not evaluated (no libvirt numbers)"
fi
exit "$rc"
