#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine, and checks Docker.
# Idempotent: installs only what is missing. On another OS: install Docker Engine, the
# `docker-registry` (CNCF distribution 2.x `registry`) and `age` binaries yourself.
set -euo pipefail

need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v age >/dev/null 2>&1 || need+=(age)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
if [ ${#need[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${need[*]} — install them with your package manager (Debian: apt-get install ${need[*]})" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${need[*]} with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
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
