#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS seconds each (default 60) and fails on the
# first crash, leaving the crashing input under fuzz/artifacts/<target>/. Seeds come from
# fuzz/seeds/<target>/; what libFuzzer finds goes to fuzz/target/corpus/<target>/ (not committed).
#
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
# Targets are built once, without a sanitizer (the project forbids `unsafe`; a panic, an overflow
# or an out-of-bounds slice is what we look for) and with debug assertions, so arithmetic
# overflow is a crash too.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
targets=$(cargo fuzz list)
cargo fuzz build --sanitizer none --debug-assertions
for target in $targets; do
  mkdir -p "target/corpus/$target"
  echo "fuzzing $target for ${seconds}s"
  log="target/fuzz-$target.log"
  if ! cargo fuzz run --sanitizer none --debug-assertions "$target" \
    "target/corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=0 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $target crashed; the input is in fuzz/artifacts/$target/ (reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $target fuzz/artifacts/$target/<file>)" >&2
    exit 1
  fi
  grep -E '^Done [0-9]+ runs' "$log" || true
done
echo "every fuzz target ran ${seconds}s without a crash"
