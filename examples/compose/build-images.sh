#!/usr/bin/env bash
# Builds the three images docker-compose.yml runs, each FROM scratch (nothing is pulled):
#
#   pht-hub:TAG        pht-hub       at /usr/local/bin/pht-hub
#   pht-station:TAG    pht-station   at /usr/local/bin/pht-station
#   pht-registry:TAG   Debian's docker-registry at /usr/bin/docker-registry
#
# Each image holds its binary, exactly the shared libraries `ldd` names for it (at the paths `ldd`
# names, the dynamic loader included), /etc/nsswitch.conf, a two-line /etc/passwd and /etc/group.
# The libraries come from this machine, so build on the machine (or the Debian release) the
# binaries were built on.
#
# Usage: examples/compose/build-images.sh [BIN_DIR]
#   BIN_DIR   where pht-hub and pht-station were built (default: target/release of this checkout)
# Environment:
#   PHT_IMAGE_TAG         the images' tag (default: local; docker-compose.yml reads the same one)
#   PHT_REGISTRY_BINARY   the registry binary (default: docker-registry on PATH;
#                         `apt-get install docker-registry`)
#   PHT_BUILD_DIR         an empty directory to write the build contexts into (default: a
#                         temporary directory, removed afterwards)
#   PHT_IMAGE_LABEL       one more KEY=VALUE label on every image (the tests mark theirs with it)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
bin_dir="${1:-$here/../../target/release}"
tag="${PHT_IMAGE_TAG:-local}"
registry_binary="${PHT_REGISTRY_BINARY:-$(command -v docker-registry || true)}"

fail() {
  echo "build-images.sh: $*" >&2
  exit 1
}

[ -x "$bin_dir/pht-hub" ] && [ -x "$bin_dir/pht-station" ] ||
  fail "no pht-hub and pht-station in $bin_dir: build them (cargo build --release --bins)" \
    "or name the directory they are in"
[ -n "$registry_binary" ] && [ -x "$registry_binary" ] ||
  fail "no docker-registry found: apt-get install docker-registry, or set PHT_REGISTRY_BINARY"

if [ -n "${PHT_BUILD_DIR:-}" ]; then
  build_dir="$PHT_BUILD_DIR"
  mkdir -p "$build_dir"
else
  build_dir="$(mktemp -d)"
  trap 'rm -rf "$build_dir"' EXIT
fi

# add_file SOURCE ROOTFS IMAGE_PATH: SOURCE (the file a symbolic link names, not the link) at
# IMAGE_PATH under ROOTFS. A hard link where it can be one: a debug build is 100 MB or more.
add_file() {
  local source destination
  source="$(readlink -f "$1")"
  destination="$2$3"
  mkdir -p "$(dirname "$destination")"
  ln -f "$source" "$destination" 2>/dev/null || cp "$source" "$destination"
}

# shared_libraries BINARY: the absolute paths `ldd` prints, the dynamic loader included; none for
# a static binary. A library ldd cannot find stops the build: the image would not start.
shared_libraries() {
  local listing
  listing="$(ldd "$1" 2>&1 || true)"
  if grep -q "not found" <<<"$listing"; then
    fail "$1 links libraries this machine lacks:
$listing"
  fi
  awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$listing"
}

# context NAME BINARY IMAGE_PATH: the build context of image NAME in $build_dir/NAME.
context() {
  local name="$1" binary="$2" image_path="$3" dir="$build_dir/$1"
  local libraries
  rm -rf "$dir"
  mkdir -p "$dir/rootfs/etc" "$dir/empty"
  add_file "$binary" "$dir/rootfs" "$image_path"
  libraries="$(shared_libraries "$binary")"
  if [ -n "$libraries" ] && ! grep -q "ld-linux" <<<"$libraries"; then
    # Without its loader a dynamic binary fails in FROM scratch with a bare "no such file".
    fail "ldd named no dynamic loader for $binary: $libraries"
  fi
  while read -r library; do
    [ -n "$library" ] && add_file "$library" "$dir/rootfs" "$library"
  done <<<"$libraries"
  # glibc's files and dns lookups are built into libc since 2.34; this says to use them.
  echo "hosts: files dns" >"$dir/rootfs/etc/nsswitch.conf"
  {
    echo "root:x:0:0:root:/:/sbin/nologin"
    echo "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin"
  } >"$dir/rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/rootfs/etc/group"
  cp "$here/images/$name.Dockerfile" "$dir/Dockerfile"
}

build() {
  local name="$1"
  local labels=(--label "org.pht.compose.image=$name")
  if [ -n "${PHT_IMAGE_LABEL:-}" ]; then
    labels+=(--label "$PHT_IMAGE_LABEL")
  fi
  # The classic builder, which needs nothing beyond the engine (no BuildKit, no buildx).
  DOCKER_BUILDKIT=0 docker build --quiet --force-rm "${labels[@]}" \
    --tag "pht-$name:$tag" "$build_dir/$name" >/dev/null
  echo "pht-$name:$tag"
}

context hub "$bin_dir/pht-hub" /usr/local/bin/pht-hub
context station "$bin_dir/pht-station" /usr/local/bin/pht-station
context registry "$registry_binary" /usr/bin/docker-registry
build hub
build station
build registry
