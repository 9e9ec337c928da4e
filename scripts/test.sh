#!/usr/bin/env bash
# `make test`: every test of the workspace, against real Docker and a real registry.
#
# Cargo runs test binaries one after another, while the end-to-end binaries (tests/, crate
# pht-e2e) spend most of their time waiting on Docker, the registry and debootstrap. So, after
# one build of everything, three lanes run at once:
#   1. the crates' own tests (`cargo test --workspace --exclude pht-e2e`), in the foreground;
#   2. the end-to-end binaries, one after another (their own tests in parallel threads);
#   3. the base rebuild test (tests/base_reproducible.rs), minutes of debootstrap.
# Lanes 2 and 3 write logs under target/test-lanes/, printed when they end. Nothing is skipped:
# the set of binaries run is exactly what `cargo test --workspace --no-run` built.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}

$CARGO test --workspace --no-run --quiet
executables=$($CARGO test -p pht-e2e --no-run --message-format=json --quiet \
  | python3 -c 'import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable") \
            and "test" in message.get("target", {}).get("kind", []):
        print(message["target"]["name"], message["executable"])')

lanes=target/test-lanes
rm -rf "$lanes"
mkdir -p "$lanes"

run_binary() { # name executable log
  local started status=0
  started=$(date +%s)
  (cd tests && "$2") >"$3" 2>&1 || status=$?
  echo "$1: $( [ $status -eq 0 ] && echo passed || echo FAILED ), $(( $(date +%s) - started )) s" >>"$lanes/summary"
  return $status
}

end_to_end() {
  local status=0
  while read -r name executable; do
    [ "$name" = base_reproducible ] && continue
    run_binary "$name" "$executable" "$lanes/$name.log" || status=1
  done <<<"$executables"
  return $status
}

end_to_end &
e2e=$!
rebuild=$(awk '$1 == "base_reproducible" { print $2 }' <<<"$executables")
run_binary base_reproducible "$rebuild" "$lanes/base_reproducible.log" &
bases=$!

status=0
$CARGO test --workspace --exclude pht-e2e || status=1
wait "$e2e" || status=1
wait "$bases" || status=1

echo "end-to-end lanes:"
cat "$lanes/summary"
for log in "$lanes"/*.log; do
  name=$(basename "$log" .log)
  if grep -q "^$name: FAILED" "$lanes/summary"; then
    echo "----- $name failed:" >&2
    cat "$log" >&2
  else
    grep -E '^test result|^base ' "$log" | sed "s/^/$name: /" || true
  fi
done
exit $status
