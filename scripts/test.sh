#!/usr/bin/env bash
# `make test`: every test of the workspace, against real Docker and a real registry.
#
# The base rebuild test (tests/base_reproducible.rs) debootstraps both bases once more, minutes
# spent mostly waiting on the mirror and the disk. Cargo runs test binaries one after another,
# so that binary runs here beside the rest rather than after them; the main run skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}

$CARGO test --workspace --no-run --quiet
rebuild_test=$($CARGO test -p pht-e2e --test base_reproducible --no-run --message-format=json --quiet \
  | python3 -c 'import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable"):
        print(message["executable"])')
mkdir -p target
log=target/base_reproducible.log
started=$(date +%s)
(cd tests && "$rebuild_test") >"$log" 2>&1 &
rebuild=$!

status=0
$CARGO test --workspace -- --skip _base_rebuilt_from_its_package_list || status=$?
if wait "$rebuild"; then
  echo "base_reproducible (beside the rest): passed, $(( $(date +%s) - started )) s"
  grep -E '^(test |base )' "$log" || true
else
  echo "base_reproducible failed:" >&2
  cat "$log" >&2
  status=1
fi
exit $status
