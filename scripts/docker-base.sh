#!/usr/bin/env bash
# Builds the Debian base image for haserf's containers WITHOUT any registry:
# debootstrap (from Debian's package mirror) into a folder, then `docker import`.
# The image is cached by tag: the tag is a hash of the package list and of this script,
# so re-running is instant when nothing changed.
#
#   scripts/docker-base.sh            # prints the image tag (e.g. haserf-base:bookworm-1a2b3c4d)
#   MIRROR=http://deb.debian.org/debian SUITE=bookworm scripts/docker-base.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
# haproxy + serf + tini for the load balancer, python3 for the demo web app, and a few tools
# that make the containers debuggable (curl, socat for the runtime socket, iproute2, procps).
PACKAGES="haproxy,serf,tini,python3,curl,socat,iproute2,procps,ca-certificates"

hash=$( { echo "$SUITE $MIRROR $PACKAGES"; cat "$0"; } | sha256sum | cut -c1-12)
TAG="haserf-base:${SUITE}-${hash}"

if ! command -v docker >/dev/null || ! docker version >/dev/null 2>&1; then
  echo "docker-base: no working Docker engine (docker version failed); install docker.io and start dockerd" >&2
  exit 1
fi
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG"
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  echo "docker-base: installing debootstrap from Debian's packages" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq debootstrap >/dev/null
fi

work=$(mktemp -d /tmp/haserf-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "docker-base: debootstrap $SUITE ($PACKAGES) into $work, a few minutes the first time" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" \
  > "$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }

# Slim it: no apt lists or caches, no docs; HAProxy's own service files are not used.
rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/*.bin \
  "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/usr/share/doc/* \
  "$work"/rootfs/usr/share/man/* "$work"/rootfs/usr/share/locale/*
echo "$TAG" > "$work/rootfs/etc/haserf-base"

tar -C "$work/rootfs" --numeric-owner -c . \
  | docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --message "haserf base: debootstrap $SUITE minbase + $PACKAGES" \
      - "$TAG" >/dev/null
docker tag "$TAG" haserf-base:latest
echo "$TAG"
