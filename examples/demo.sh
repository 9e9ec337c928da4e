#!/usr/bin/env bash
# The main job, end to end on this machine: a local OCI registry, the example trains (Rust,
# Python on the project's Python base, R on its R base) built, pushed, signed, verified and run
# through a hub on three stations. The bases are built the first time (minutes), then reused. Everything it makes lives under .pht-demo/ and is stopped on exit.
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

step "generating the researcher's keys, and the base signer's (bases are signed apart from trains)"
PHT_KEY_PASSWORD= pht key generate --dir "$demo/keys" --name researcher
PHT_KEY_PASSWORD= pht key generate --dir "$demo/keys" --name bases >/dev/null

step "the Python and R base images (debootstrapped from Debian once per machine, then reused)"
PHT_KEY_PASSWORD= pht base build python --tag "$registry/bases/python:bookworm" --key "$demo/keys/bases.key" | tee "$demo/base-python.txt"
PHT_KEY_PASSWORD= pht base build r --tag "$registry/bases/r:bookworm" --key "$demo/keys/bases.key" | tee "$demo/base-r.txt"
python_base=$(head -n 1 "$demo/base-python.txt")
r_base=$(head -n 1 "$demo/base-r.txt")

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

step "starting the hub"
hub_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
hub=http://127.0.0.1:$hub_port
admin_token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
mkdir -p "$demo/hub"
cat > "$demo/hub/hub.yaml" <<YAML
listen: 127.0.0.1:$hub_port
state_dir: state
admin_token: $admin_token
long_poll_max_wait_secs: 10
YAML
"$bin/pht-hub" serve --config "$demo/hub/hub.yaml" >"$demo/hub/hub.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "$hub/v1/health" >/dev/null && break; sleep 0.1; done
echo "hub at $hub"

# The hub operator registers the researcher and the stations with `pht-hub admin`, which reads the
# hub's address and admin token from its configuration.
hub_admin() { "$bin/pht-hub" admin --config "$demo/hub/hub.yaml" "$@"; }
hub_admin add-researcher researcher --public-key "$demo/keys/researcher.pub"

step "setting up three stations, each with its own synthetic cohort and its own policy"
stations=(station-a station-b station-c)
for id in "${stations[@]}"; do
  dir=$demo/$id
  mkdir -p "$dir"
  cat > "$dir/policy.yaml" <<YAML
version: 1
trusted_signers:
  - name: researcher
    public_key: $demo/keys/researcher.pub
    purposes: ["aggregate statistics"]
    datasets: [cohort]
    approval: automatic
trusted_base_signers:
  - name: bases
    public_key: $demo/keys/bases.pub
base_images:
  required: false          # the Rust example is FROM scratch; a train on a base needs one signed by 'bases'
  allowed:
    - signer: bases
registries:
  - registry: "$registry"
    repositories: ["trains/*"]
resources: {cpus: 1, memory: 256MiB, wall_clock: 2m, output_size: 16MiB}
outputs:
  release: automatic
YAML
  cat > "$dir/station.yaml" <<YAML
version: 1
station_id: $id
key_dir: keys
datasets:
  cohort:
    path: $root/examples/data/$id/cohort
registries:
  - registry: "$registry"
policy: policy.yaml
state_dir: state
hub:
  url: $hub
  poll_wait: 5s
YAML
  "$bin/pht-station" --config "$dir/station.yaml" keys init >/dev/null
  hub_admin add-station "$id" --public-key "$dir/keys/station.pub" --age-recipient "$dir/keys/station.age.pub"
done
# Each station trusts its peers' keys from its own configuration (for sequential state), never the hub's.
for id in "${stations[@]}"; do
  echo "peers:" >> "$demo/$id/station.yaml"
  for peer in "${stations[@]}"; do
    printf '  %s:\n    public_key: %s\n    age_recipient: %s\n' "$peer" "$demo/$peer/keys/station.pub" "$(cat "$demo/$peer/keys/station.age.pub")" >> "$demo/$id/station.yaml"
  done
  "$bin/pht-station" --config "$demo/$id/station.yaml" check-config
  "$bin/pht-station" --config "$demo/$id/station.yaml" run >"$demo/$id/daemon.log" 2>&1 &
  pids+=($!)
done

export PHT_HUB_URL=$hub PHT_RESEARCHER=researcher PHT_KEY=$demo/keys/researcher.key PHT_KEY_PASSWORD=
station_keys=()
for id in "${stations[@]}"; do station_keys+=(--station-key "$id=$demo/$id/keys/station.pub"); done

step "a parallel job: every station counts its own cohort by sex"
job=$(pht --json submit "$pinned" --route station-a,station-b,station-c --param group_by=sex | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
echo "job $job submitted"
pht status "$job" --watch --timeout 3m
pht results "$job" --out "$demo/results-parallel" --identity "$demo/keys/researcher.age" "${station_keys[@]}"
for id in "${stations[@]}"; do echo "-- $id"; cat "$demo/results-parallel/$id/outputs/counts.csv"; done

step "a sequential job: the counts travel from station to station, encrypted to the next one"
job=$(pht --json submit "$pinned" --route station-a,station-b,station-c --sequential --param group_by=sex | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
echo "job $job submitted"
pht status "$job" --watch --timeout 3m
pht results "$job" --out "$demo/results-sequential" --identity "$demo/keys/researcher.age" "${station_keys[@]}"
echo "-- totals over all three cohorts (from station-c, the last stop):"
cat "$demo/results-sequential/station-c/outputs/counts.csv"

# The example trains in Python and R name the base of the machine they were written on; here
# each is copied and pointed at the base this demo published (FROM REPOSITORY@sha256:…).
train_on_base() {
  rm -rf "$demo/$1" && cp -r "trains/$1" "$demo/$1"
  sed -i "s|^FROM .*|FROM $2|" "$demo/$1/Dockerfile"
  pht --json train build "$demo/$1" --tag "$registry/trains/$1:0.1.0" >/dev/null  # quiet: no docker build log
  local pinned_train
  pinned_train=$(pht train push "$registry/trains/$1:0.1.0")
  PHT_KEY_PASSWORD= pht train sign "$pinned_train" --key "$demo/keys/researcher.key" >/dev/null
  echo "$pinned_train"
}
run_job() { # train, results directory, extra submit arguments…
  local train=$1 out=$2; shift 2
  local job_id
  job_id=$(pht --json submit "$train" --route station-a,station-b,station-c "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
  pht status "$job_id" --watch --timeout 5m >/dev/null
  pht results "$job_id" --out "$out" --identity "$demo/keys/researcher.age" "${station_keys[@]}" >/dev/null
}

step "a Python train (trains/cohort-stats-py, pandas): patients and mean BMI by diagnosis, small groups suppressed by the train"
py_train=$(train_on_base cohort-stats-py "$python_base")
echo "$py_train (on $python_base)"
run_job "$py_train" "$demo/results-py-parallel" --param group_by=diagnosis
for id in "${stations[@]}"; do echo "-- $id"; cat "$demo/results-py-parallel/$id/outputs/counts.csv"; done
run_job "$py_train" "$demo/results-py-sequential" --sequential --param group_by=diagnosis
echo "-- over all three cohorts (station-c, the last stop of a sequential route):"
cat "$demo/results-py-sequential/station-c/outputs/counts.csv"

step "an R train (trains/logistic-r, glm): diabetes ~ age + bmi + sex + smoker at every station, pooled along a sequential route"
r_train=$(train_on_base logistic-r "$r_base")
echo "$r_train (on $r_base)"
run_job "$r_train" "$demo/results-r-parallel"
for id in "${stations[@]}"; do
  echo "-- $id"; cat "$demo/results-r-parallel/$id/outputs/coefficients.csv" "$demo/results-r-parallel/$id/outputs/model.csv"
done
run_job "$r_train" "$demo/results-r-sequential" --sequential
echo "-- fixed-effect pooled over the three stations (station-c):"
cat "$demo/results-r-sequential/station-c/outputs/pooled.csv"

step "what station-a's output check said, and its audit log"
run=$("$bin/pht-station" --config "$demo/station-a/station.yaml" --json runs | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["run_id"])')
"$bin/pht-station" --config "$demo/station-a/station.yaml" outputs show "$run"
"$bin/pht-station" --config "$demo/station-a/station.yaml" audit verify

printf '\n\033[1mdemo finished\033[0m: signed trains in Rust, Python and R, a hub, three stations; parallel and sequential results verified (files under %s)\n' "$demo"
