#!/usr/bin/env bash
# The main job, end to end on this machine: a local OCI registry, the example train built,
# pushed, signed and verified. Everything it makes lives under .pht-demo/ and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=$root/.pht-demo
bin=$root/target/debug
pht() { "$bin/pht" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$demo" && mkdir -p "$demo/keys"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

step "starting a local OCI registry (Debian's docker-registry)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
registry=127.0.0.1:$port
cat > "$demo/registry.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $demo/registry}, delete: {enabled: true}}
http: {addr: $registry}
YAML
docker-registry serve "$demo/registry.yml" >"$demo/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://$registry/v2/" >/dev/null && break; sleep 0.1; done
echo "registry at $registry"

step "generating the researcher's keys"
PHT_KEY_PASSWORD= pht key generate --dir "$demo/keys" --name researcher

step "building the example train (trains/cohort-stats)"
reference=$registry/trains/cohort-stats:0.1.0
pht train build trains/cohort-stats --tag "$reference"

step "pushing it"
pinned=$(pht train push "$reference")
echo "$pinned"

step "signing it (cosign-compatible, tag sha256-<hex>.sig)"
PHT_KEY_PASSWORD= pht train sign "$pinned" --key "$demo/keys/researcher.key"

step "verifying it"
pht train verify "$pinned" --key "$demo/keys/researcher.pub"

step "inspecting it"
pht train inspect "$pinned" --key "$demo/keys/researcher.pub"

step "a wrong key is refused (exit code 1)"
PHT_KEY_PASSWORD= pht key generate --dir "$demo/keys" --name stranger >/dev/null
if pht train verify "$pinned" --key "$demo/keys/stranger.pub"; then
  echo "unexpected: a stranger's key verified" >&2; exit 1
fi

printf '\n\033[1mdemo finished\033[0m: train %s is built, pushed, signed and verified\n' "$pinned"
