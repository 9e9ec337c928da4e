#!/usr/bin/env bash
# `make test`: every test of the workspace, against real Docker and a real registry.
#
# Cargo runs test binaries one after another, while the end-to-end binaries (tests/, crate
# pht-e2e) spend most of their time waiting on Docker, the registry and debootstrap. So one
# `cargo test --workspace --no-run` builds every test binary once, and those very executables
# then run in four lanes at once, each binary from its package's directory as cargo would
# (scripts/test-plan.py assigns them):
#   1. the crates' own tests, then the doctests, in the foreground;
#   2. tests/multi_host.rs (hosts as containers), then the other end-to-end binaries;
#   3. tests/base_reproducible.rs (each base debootstrapped twice), then tests/python_sandbox.rs;
#   4. tests/trains_py_r.rs, which waits for lane 3's first build of each base and reuses it.
# Lanes 2 to 4 write logs under target/test-lanes/, printed when a binary fails. Nothing is
# skipped: every test executable the build produced is run in exactly one lane.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
root=$(pwd)

lanes=target/test-lanes
rm -rf "$lanes"
mkdir -p "$lanes"

# Every test executable, each in exactly one lane. (Lanes 3 and 4 cannot start on a build of
# their own binaries alone: `cargo test --test …` gives them other hashes than the full build,
# so the shared crates would compile twice.)
$CARGO test --workspace --no-run --message-format=json-render-diagnostics --quiet >"$lanes/build.json"
python3 scripts/test-plan.py "$root" "$lanes/build.json" >"$lanes/plan"
if [ ! -s "$lanes/plan" ]; then
  echo "no test executables found in cargo's build messages ($lanes/build.json)" >&2
  exit 1
fi
touch "$lanes/summary"

run_lane() { # lane plan
  local status=0 lane name directory executable started log code
  while read -r lane name directory executable; do
    [ "$lane" = "$1" ] || continue
    log="$lanes/$(basename "$executable").log"
    started=$(date +%s)
    code=0
    if [ "$1" = 1 ]; then
      (cd "$directory" && "$executable") || code=$?
    else
      (cd "$directory" && "$executable") >"$log" 2>&1 || code=$?
    fi
    echo "lane $1 $name: $( [ $code -eq 0 ] && echo passed || echo FAILED ), $(( $(date +%s) - started )) s" >>"$lanes/summary"
    if [ $code -ne 0 ]; then
      status=1
      if [ "$1" != 1 ]; then
        echo "----- $name failed:" >&2
        cat "$log" >&2
      fi
    fi
  done <"$2"
  return $status
}

run_lane 3 "$lanes/plan" &
third=$!
run_lane 4 "$lanes/plan" &
fourth=$!
run_lane 2 "$lanes/plan" &
second=$!

status=0
run_lane 1 "$lanes/plan" || status=1
$CARGO test --workspace --doc || status=1
wait "$second" || status=1
wait "$third" || status=1
wait "$fourth" || status=1

echo "test binaries, by lane:"
cat "$lanes/summary"
for log in "$lanes"/*.log; do
  grep -E '^test result|^base ' "$log" | sed "s|^|$(basename "$log" .log): |" || true
done
exit $status
