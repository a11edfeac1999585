#!/usr/bin/env bash
# The demo. For now: build, then validate libvirt's stock default network.
set -euo pipefail
cd "$(dirname "$0")/.."

make --no-print-directory build

echo
echo "The demo (a namespace running vnetd with libvirt's default network) arrives"
echo "with the daemon issue; right now vnetd can parse, validate and format network XML:"
echo

if [ -x bin/vnetctl ]; then
  echo "\$ bin/vnetctl net-validate testdata/networks/default.xml"
  bin/vnetctl net-validate testdata/networks/default.xml
else
  echo "(bin/vnetctl is not built yet: cmd/vnetctl has no Go files)"
fi
