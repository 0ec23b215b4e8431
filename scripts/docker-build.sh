#!/usr/bin/env bash
# Builds the `ha` and `web` images from the local base image (scripts/docker-base.sh:
# debootstrap + docker import), so no registry is ever contacted.
#
#   scripts/docker-build.sh
#
# Environment:
#   HASERF_BIN        haserf binary to copy in (default: `cargo build --release`, then
#                     target/release/haserf). The host must be glibc-compatible with Debian 12.
#   HASERF_LUA        the Lua companion (default: lua/haserf.lua when present; without it the
#                     `ha` image has no status page on :8405)
#   HASERF_HA_IMAGE   tag of the ha image  (default haserf-ha:latest)
#   HASERF_WEB_IMAGE  tag of the web image (default haserf-web:latest)
set -euo pipefail
cd "$(dirname "$0")/.."

HA_IMAGE="${HASERF_HA_IMAGE:-haserf-ha:latest}"
WEB_IMAGE="${HASERF_WEB_IMAGE:-haserf-web:latest}"

base=$(scripts/docker-base.sh)

bin="${HASERF_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=target/release/haserf
fi
[ -x "$bin" ] || { echo "docker-build: haserf binary '$bin' not found" >&2; exit 1; }
lua="${HASERF_LUA:-lua/haserf.lua}"

ctx=$(mktemp -d /tmp/haserf-docker-ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT

ha="$ctx/ha/rootfs" web="$ctx/web/rootfs"
mkdir -p "$ha/usr/local/bin" "$ha/etc/haproxy" "$web/usr/local/bin" "$web/app"
cp docker/ha/Dockerfile "$ctx/ha/"
cp docker/web/Dockerfile "$ctx/web/"
install -m 0755 "$bin" "$ha/usr/local/bin/haserf"
install -m 0755 docker/ha/entrypoint.sh "$ha/usr/local/bin/ha-entrypoint"
install -m 0644 docker/ha/haproxy.cfg "$ha/etc/haproxy/haproxy.cfg"
if [ -f "$lua" ]; then
  install -m 0644 "$lua" "$ha/etc/haproxy/haserf.lua"
else
  echo "docker-build: $lua not found; the ha image has no status page" >&2
fi
install -m 0755 "$bin" "$web/usr/local/bin/haserf"
install -m 0755 docker/web/entrypoint.sh "$web/usr/local/bin/web-entrypoint"
install -m 0755 docker/web/app.py "$web/app/app.py"

# The classic builder resolves FROM against local images and never pulls unless asked to.
export DOCKER_BUILDKIT=0
for spec in "$HA_IMAGE:ha" "$WEB_IMAGE:web"; do
  tag="${spec%:*}" dir="${spec##*:}"
  docker build --build-arg "BASE=$base" -t "$tag" "$ctx/$dir" > "$ctx/build-$dir.log" 2>&1 \
    || { cat "$ctx/build-$dir.log" >&2; echo "docker-build: building $tag failed" >&2; exit 1; }
done
echo "docker-build: $HA_IMAGE and $WEB_IMAGE built from $base" >&2
