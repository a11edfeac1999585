#!/usr/bin/env bash
# Run every Go fuzz target in the repo for FUZZTIME each. `go test -fuzz`
# accepts one target per package per run, so targets are run one at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
command -v "$GO" >/dev/null 2>&1 || GO=/usr/local/go/bin/go
FUZZTIME=${FUZZTIME:-20s}

# Packages whose tests mention a fuzz target; `go test -list` then names the
# targets the package really builds (build tags and all).
dirs=$(grep -rl --include='*_test.go' --exclude-dir=.git --exclude-dir=testdata \
  -E '^func Fuzz[A-Za-z0-9_]*\(' . 2>/dev/null | xargs -r -n1 dirname | sort -u || true)
targets=()
for dir in $dirs; do
  list=$("$GO" test -list '^Fuzz' "$dir") || { echo "fuzz: cannot list the targets of $dir" >&2; exit 1; }
  for name in $(grep '^Fuzz' <<<"$list" || true); do
    targets+=("$dir $name")
  done
done

if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets yet"
  exit 0
fi
echo "fuzz: ${#targets[@]} target(s), $FUZZTIME each"

ran=0 failed=()
for t in "${targets[@]}"; do
  dir=${t% *}
  name=${t#* }
  echo "== fuzz $name in $dir for $FUZZTIME"
  if "$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$dir"; then
    ran=$((ran + 1))
  else
    failed+=("$dir:$name")
  fi
done

echo "fuzz: $ran target(s) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
