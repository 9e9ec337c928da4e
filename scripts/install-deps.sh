#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine, and checks Docker.
# The tests and the demo build the Python and R base images from Debian's packages the first
# time they need them (`pht base build`, a few minutes each; a Debian mirror must be reachable),
# then reuse them from Docker.
# Idempotent: installs only what is missing. On another OS: install Docker Engine, the
# `docker-registry` (CNCF distribution 2.x `registry`) and `age` binaries yourself.
set -euo pipefail

need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v age >/dev/null 2>&1 || need+=(age)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# `pht base build` makes the Python and R bases with debootstrap (in /usr/sbin, often not on PATH).
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
# The operator console's browser test drives a real Chromium through WebDriver (tests/console_browser.rs).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# The hub's PostgreSQL store is tested against a real server (tests/harness/postgres.rs) and
# its replicas behind a real nginx; the tests start both themselves, on loopback.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
# A real Prometheus scrapes a hub and a station in tests/ops_metrics.rs (started by the test,
# on loopback); promtool checks the alert rules in examples/ops/.
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# systemd-analyze checks the units in examples/systemd/ (tests/systemd_units.rs); nothing is
# started under systemd.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${need[*]} — install them with your package manager (Debian: apt-get install ${need[*]})" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${need[*]} with apt-get"
  $sudo apt-get update -qq
  # Install without starting anything: no PostgreSQL cluster of the package's own, and no
  # service started by a package (nginx would take port 80). Tests start their own servers.
  $sudo mkdir -p /etc/postgresql-common
  [ -e /etc/postgresql-common/createcluster.conf ] ||
    echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
  policy_added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    -o Dpkg::Options::=--force-confold "${need[@]}" >/dev/null
  [ -z "$policy_added" ] || $sudo rm -f /usr/sbin/policy-rc.d
fi

# Test peers from PyPI, each in a virtual environment of its own: schemathesis fuzzes the hub's
# API from its OpenAPI document (tests/hub_api_fuzz.rs); acro judges the parity cases.
tools="${PHT_TOOLS_DIR:-$HOME/.cache/pht-tools}"
schemathesis_version=4.32.5
if ! "$tools/schemathesis/bin/schemathesis" --version 2>/dev/null | grep -q "$schemathesis_version"; then
  echo "installing schemathesis $schemathesis_version in $tools/schemathesis"
  python3 -m venv "$tools/schemathesis"
  "$tools/schemathesis/bin/pip" install --quiet "schemathesis==$schemathesis_version"
fi
# acro (SACRO's output checker) is the disclosure-control parity peer: scripts/acro_verdicts.py,
# crates/pht-checks/tests/acro_parity.rs. Its own dependencies (pandas, statsmodels) are not
# pinned by acro; the parity test prints the acro version it compared with.
acro_version=1.0.2
if ! "$tools/acro/bin/python" -c 'import importlib.metadata as m; print(m.version("acro"))' 2>/dev/null | grep -qx "$acro_version"; then
  echo "installing acro $acro_version in $tools/acro"
  python3 -m venv "$tools/acro"
  "$tools/acro/bin/pip" install --quiet "acro==$acro_version"
fi

# cargo-fuzz for `make fuzz` (fuzz/).
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  echo "Docker is not reachable: start the Docker daemon and make /var/run/docker.sock readable by this user." >&2
  echo "The end-to-end tests need real Docker; they are never skipped." >&2
  exit 1
fi

if ! rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-gnu; then
  echo "the Rust target x86_64-unknown-linux-gnu is needed to build static train binaries" >&2
  exit 1
fi
