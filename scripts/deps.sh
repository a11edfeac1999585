#!/usr/bin/env bash
# Install, only when missing, the Debian packages the tests need.
set -euo pipefail

# package:command pairs; the command is a quick presence check, dpkg the other.
wanted=(
  "libxml2-utils:xmllint"
  "iproute2:ip"
  "iputils-ping:ping"
  "nftables:nft"
  "isc-dhcp-client:dhclient"
  "udhcpc:udhcpc"
  "DHCPCD:dhcpcd"
  "ndisc6:rdisc6"
  "bind9-dnsutils:dig"
  "iperf3:iperf3"
  "kea-admin:perfdhcp"   # DHCP load for the crash-durability test (no Kea service)
  "openvswitch-switch:ovsdb-server"   # OVSDB tests run their own ovsdb-server
  "gcc:gcc"         # go test -race needs cgo
  "libc6-dev:"      # ditto (crt files, headers)
)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
have_cmd() { [ -n "$1" ] && PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }

missing=()
need_dhcpcd=0
for pair in "${wanted[@]}"; do
  pkg=${pair%%:*} cmd=${pair#*:}
  have_cmd "$cmd" && continue
  if [ "$pkg" = DHCPCD ]; then
    installed dhcpcd-base || installed dhcpcd5 || installed dhcpcd || need_dhcpcd=1
    continue
  fi
  installed "$pkg" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ] && [ $need_dhcpcd -eq 0 ]; then
  echo "deps: all test packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "deps: WARNING: not root, not installing: ${missing[*]} $([ $need_dhcpcd -eq 1 ] && echo dhcpcd)" >&2
  echo "deps: WARNING: tests that need these tools will skip or fail" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=600)
# apt-get update may already be running in the background: retry on its lock.
for i in $(seq 1 60); do
  apt-get "${apt_opts[@]}" update -qq && break
  [ "$i" -eq 60 ] && { echo "deps: apt-get update kept failing" >&2; exit 1; }
  echo "deps: apt-get update failed (lock held?), retrying in 10s" >&2
  sleep 10
done

has_candidate() {
  local c
  c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [ -n "$c" ] && [ "$c" != "(none)" ]
}
if [ $need_dhcpcd -eq 1 ]; then
  for p in dhcpcd-base dhcpcd5 dhcpcd; do
    if has_candidate "$p"; then missing+=("$p"); break; fi
  done
fi

echo "deps: installing ${missing[*]}"
apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"
