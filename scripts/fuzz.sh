#!/usr/bin/env bash
# Run every Go fuzz target in the repo for FUZZTIME each. `go test -fuzz`
# accepts one target per package per run, so targets are run one at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
command -v "$GO" >/dev/null 2>&1 || GO=/usr/local/go/bin/go
FUZZTIME=${FUZZTIME:-20s}

targets=$(grep -rHo --include='*_test.go' --exclude-dir=.git --exclude-dir=testdata \
  -E '^func Fuzz[A-Za-z0-9_]*\(' . 2>/dev/null | sort -u || true)

if [ -z "$targets" ]; then
  echo "fuzz: no fuzz targets yet"
  exit 0
fi

ran=0 failed=()
while IFS= read -r hit; do
  file=${hit%%:*}
  name=${hit#*:func }
  name=${name%(}
  dir=$(dirname "$file")
  echo "== fuzz $name in $dir for $FUZZTIME"
  if "$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$dir"; then
    ran=$((ran + 1))
  else
    failed+=("$dir:$name")
  fi
done <<<"$targets"

echo "fuzz: $ran target(s) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
