#!/usr/bin/env bash
# Installs haserf on a load-balancer host (Debian), as docs/agent.md describes:
#
#   /usr/local/bin/haserf                      the binary (built with cargo unless --bin)
#   /etc/systemd/system/haserf.service         the unit (systemd/haserf.service)
#   /etc/default/haserf                        its settings (kept if it exists)
#   /etc/haproxy/haserf.lua, haserf-spoe.conf  the HAProxy companion (lua/, haproxy/spoe.conf)
#   /usr/local/share/doc/haserf/               README.md and docs/
#   /var/lib/haproxy/haserf/                   the agent's dir inside HAProxy's: served-by.map
#                                              (created empty), the status socket for a
#                                              chrooted HAProxy; owner haproxy
#
# Then: edit /etc/default/haserf, `systemctl daemon-reload && systemctl enable --now haserf`.
#
# Options: --root DIR   install under DIR instead of / (packaging, tests)
#          --bin PATH   install this binary instead of building one
# Idempotent; needs root for / (or write access to --root).
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=""
BIN=""
while (($#)); do
  case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --root=*) ROOT="${1#--root=}"; shift ;;
    --bin) BIN="${2:?--bin needs a path}"; shift 2 ;;
    --bin=*) BIN="${1#--bin=}"; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
ROOT="${ROOT%/}"

if [ -z "$BIN" ]; then
  command -v cargo >/dev/null || { echo "install.sh: cargo is missing (scripts/install-deps.sh installs it), or pass --bin PATH" >&2; exit 1; }
  cargo build --release --locked --bin haserf
  BIN=target/release/haserf
fi
[ -x "$BIN" ] || { echo "install.sh: $BIN is not an executable" >&2; exit 1; }

install -D -m 0755 "$BIN" "$ROOT/usr/local/bin/haserf"
install -D -m 0644 systemd/haserf.service "$ROOT/etc/systemd/system/haserf.service"
if [ -e "$ROOT/etc/default/haserf" ]; then
  echo "install.sh: keeping the existing $ROOT/etc/default/haserf" >&2
else
  install -D -m 0644 systemd/haserf.default "$ROOT/etc/default/haserf"
fi
install -D -m 0644 lua/haserf.lua "$ROOT/etc/haproxy/haserf.lua"
install -D -m 0644 haproxy/spoe.conf "$ROOT/etc/haproxy/haserf-spoe.conf"
install -d "$ROOT/usr/local/share/doc/haserf"
install -m 0644 README.md docs/*.md "$ROOT/usr/local/share/doc/haserf/"

# the agent's directory inside HAProxy's (Debian's chroot): the status socket when HAProxy is
# chrooted, and the served-by map the example haproxy.cfg reads (HAProxy refuses to start on
# a missing map file: created empty here, kept by the agent's --haproxy-map)
install -d -m 0750 "$ROOT/var/lib/haproxy/haserf"
[ -e "$ROOT/var/lib/haproxy/haserf/served-by.map" ] ||
  install -m 0640 /dev/null "$ROOT/var/lib/haproxy/haserf/served-by.map"
if getent passwd haproxy >/dev/null && [ "$(id -u)" -eq 0 ]; then
  chown haproxy:haproxy "$ROOT/var/lib/haproxy/haserf" "$ROOT/var/lib/haproxy/haserf/served-by.map"
fi

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
cat <<MSG
haserf installed under ${ROOT:-/}:
  $ROOT/usr/local/bin/haserf ($("$ROOT/usr/local/bin/haserf" --version))
  $ROOT/etc/systemd/system/haserf.service, settings in $ROOT/etc/default/haserf
Next: edit /etc/default/haserf, then
  systemctl daemon-reload && systemctl enable --now haserf && haserf status --wait-ready
MSG
