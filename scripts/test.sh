#!/usr/bin/env bash
# `make test`: every test of the workspace, against real Docker and a real registry.
#
# Cargo runs test binaries one after another, while the end-to-end binaries (tests/, crate
# pht-e2e) spend most of their time waiting on Docker, the registry and debootstrap. So one
# `cargo test --workspace --no-run` builds every test binary once, and those very executables
# then run in three lanes at once, each binary from its package's directory as cargo would:
#   1. the crates' own tests, then the doctests, in the foreground;
#   2. tests/multi_host.rs (hosts as containers), then the other end-to-end binaries;
#   3. tests/base_reproducible.rs (each base debootstrapped twice), then the binaries that run
#      trains on those bases, which reuse them.
# Lanes 2 and 3 write logs under target/test-lanes/, printed when a binary fails. Nothing is
# skipped: every test executable the build produced is run in exactly one lane.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
root=$(pwd)

lanes=target/test-lanes
rm -rf "$lanes"
mkdir -p "$lanes"

# "lane name directory executable", one line per test executable.
$CARGO test --workspace --no-run --message-format=json-render-diagnostics --quiet >"$lanes/build.json"
python3 - "$root" "$lanes/build.json" >"$lanes/plan" <<'EOF'
import json, os, sys
root = sys.argv[1]
second = ["multi_host"]
third = ["base_reproducible", "trains_py_r", "python_sandbox"]
found = []
for line in open(sys.argv[2]):
    message = json.loads(line)
    if message.get("reason") != "compiler-artifact" or not message.get("executable"):
        continue
    if not message.get("profile", {}).get("test"):
        continue
    directory = os.path.dirname(message["manifest_path"])
    name = message["target"]["name"]
    end_to_end = directory == os.path.join(root, "tests")
    if not end_to_end:
        lane = 1
    elif name in third:
        lane = 3
    else:
        lane = 2
    order = (second + third).index(name) if name in second + third else 99
    found.append((lane, order, name, directory, message["executable"]))
for lane, _, name, directory, executable in sorted(found):
    print(lane, name, directory, executable)
EOF

if [ ! -s "$lanes/plan" ]; then
  echo "no test executables found in cargo's build messages ($lanes/build.json)" >&2
  exit 1
fi
touch "$lanes/summary"

run_lane() { # lane
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
  done <"$lanes/plan"
  return $status
}

run_lane 2 &
second=$!
run_lane 3 &
third=$!

status=0
run_lane 1 || status=1
$CARGO test --workspace --doc || status=1
wait "$second" || status=1
wait "$third" || status=1

echo "test binaries, by lane:"
cat "$lanes/summary"
for log in "$lanes"/*.log; do
  grep -E '^test result|^base ' "$log" | sed "s|^|$(basename "$log" .log): |" || true
done
exit $status
