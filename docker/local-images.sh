#!/usr/bin/env bash
# Makes the base images that docker/Dockerfile and docker/compose.yaml need, on
# a machine with no image registry: one Debian root filesystem from the OS
# package archive (debootstrap), turned into images with `docker import`.
#
#   rhizome-local/debian:bookworm    minbase Debian; the build stage with PREBUILT=1
#   rhizome-local/runtime:bookworm   glibc and libgcc only, like distroless/cc
#   rhizome-local/redis:bookworm     Debian's redis-server
#   rhizome-local/haproxy:bookworm   Debian's haproxy
#
# Images already present are kept (REBUILD=1 makes them again). Prints the
# environment that points docker/compose.yaml at them. Needs root (debootstrap,
# chroot) and the Debian archive; DEBIAN_MIRROR overrides the mirror, which is
# otherwise the host's own.
set -euo pipefail

SUITE=${DEBIAN_SUITE:-bookworm}
WORK=${RHIZOME_ROOTFS_DIR:-/var/tmp/rhizome-rootfs}
PREFIX=${RHIZOME_LOCAL_PREFIX:-rhizome-local}
BASE_IMAGE="$PREFIX/debian:$SUITE"
RUNTIME_IMAGE="$PREFIX/runtime:$SUITE"
REDIS_IMAGE="$PREFIX/redis:$SUITE"
LB_IMAGE="$PREFIX/haproxy:$SUITE"
PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

log() { echo "==> $*" >&2; }

have_image() { [ "${REBUILD:-0}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

# The mirror the host's apt uses (deb822 or one-line sources), else Debian's.
host_mirror() {
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

ensure_tools() {
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap (apt-get)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
}

# One minbase root filesystem, made once and reused by every image below.
base_rootfs() {
  local dir="$WORK/base"
  if [ ! -f "$dir/.complete" ]; then
    local mirror=${DEBIAN_MIRROR:-$(host_mirror)}
    log "debootstrap $SUITE (minbase) from $mirror"
    $SUDO rm -rf "$dir"
    $SUDO mkdir -p "$WORK"
    $SUDO debootstrap --variant=minbase "$SUITE" "$dir" "$mirror" >&2
    $SUDO touch "$dir/.complete"
  fi
  echo "$dir"
}

# Removes what an image never needs: package lists, caches, docs, man pages.
slim() {
  $SUDO rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb \
    "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/.complete
}

# Imports directory $1 as image $2, with extra Dockerfile instructions $3…
import_dir() {
  local dir=$1 image=$2
  shift 2
  local changes=(--change "$PATH_ENV")
  for c in "$@"; do changes+=(--change "$c"); done
  $SUDO tar -C "$dir" --numeric-owner -c . | docker import "${changes[@]}" - "$image" >/dev/null
  log "made $image ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
}

# A copy of the base with Debian package $2 installed, imported as image $1.
package_image() {
  local image=$1 package=$2 base dir
  have_image "$image" && { log "$image present"; return; }
  base=$(base_rootfs)
  dir="$WORK/$package"
  $SUDO rm -rf "$dir"
  $SUDO cp -a "$base" "$dir"
  $SUDO cp /etc/resolv.conf "$dir/etc/resolv.conf"
  # Packages must not start services inside the chroot.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$dir/usr/sbin/policy-rc.d" >/dev/null
  $SUDO chmod +x "$dir/usr/sbin/policy-rc.d"
  log "installing $package into a copy of the base"
  $SUDO chroot "$dir" apt-get update -qq
  $SUDO chroot "$dir" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$package" >/dev/null
  $SUDO rm -f "$dir/usr/sbin/policy-rc.d"
  slim "$dir"
  import_dir "$dir" "$image"
  $SUDO rm -rf "$dir"
}

base_image() {
  have_image "$BASE_IMAGE" && { log "$BASE_IMAGE present"; return; }
  local base dir
  base=$(base_rootfs)
  dir="$WORK/debian"
  $SUDO rm -rf "$dir"
  $SUDO cp -a "$base" "$dir"
  slim "$dir"
  import_dir "$dir" "$BASE_IMAGE"
  $SUDO rm -rf "$dir"
}

# glibc and libgcc's files, taken from the base with dpkg's own file lists,
# plus /etc/passwd and /etc/group naming the user the images run as (10001).
runtime_image() {
  have_image "$RUNTIME_IMAGE" && { log "$RUNTIME_IMAGE present"; return; }
  local base dir
  base=$(base_rootfs)
  dir="$WORK/runtime"
  $SUDO rm -rf "$dir"
  $SUDO mkdir -p "$dir/etc" "$dir/tmp" "$dir/usr"
  $SUDO chmod 1777 "$dir/tmp"
  # The merged-/usr links (bin → usr/bin, lib → usr/lib, …) as they are.
  for link in bin sbin lib lib64; do
    if [ -L "$base/$link" ]; then $SUDO cp -a "$base/$link" "$dir/$link"; fi
  done
  # Every file of the packages, under its real directory (past those links).
  $SUDO chroot "$base" dpkg -L libc6 libgcc-s1 | while read -r path; do
    [ -e "$base$path" ] && [ ! -d "$base$path" ] || continue
    case "$path" in /usr/share/doc/* | /usr/share/lintian/* | /usr/share/locale/*) continue ;; esac
    real=$(cd "$base$(dirname "$path")" && pwd -P)
    echo "${real#"$base"}/$(basename "$path")"
  done | sort -u | (cd "$base" && $SUDO xargs -r cp -a --parents -t "$dir")
  $SUDO cp -a "$base/etc/ld.so.cache" "$base/etc/nsswitch.conf" "$dir/etc/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nrhizome:x:10001:10001:rhizome:/var/lib/rhizome:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' |
    $SUDO tee "$dir/etc/passwd" >/dev/null
  printf 'root:x:0:\nrhizome:x:10001:\nnogroup:x:65534:\n' | $SUDO tee "$dir/etc/group" >/dev/null
  import_dir "$dir" "$RUNTIME_IMAGE" 'USER 10001:10001'
  $SUDO rm -rf "$dir"
}

main() {
  docker info >/dev/null 2>&1 || { echo "local-images.sh: no Docker engine answers" >&2; exit 1; }
  ensure_tools
  base_image
  runtime_image
  package_image "$REDIS_IMAGE" redis-server
  package_image "$LB_IMAGE" haproxy
  cat <<EOF
export RUST_IMAGE=$BASE_IMAGE
export RUNTIME_IMAGE=$RUNTIME_IMAGE
export REDIS_IMAGE=$REDIS_IMAGE
export LB_IMAGE=$LB_IMAGE
EOF
}

main "$@"
