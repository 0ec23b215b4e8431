#!/usr/bin/env bash
# Installs what haserf's demo and tests need on a fresh Debian machine:
# haproxy and serf from Debian's packages, plus the small tools the docs and tests use
# (socat for the status socket by hand, systemd-analyze to check the unit, script for a
# terminal, chromium to look at the status page), and Python's prometheus_client from PyPI for the metrics format test. The
# other tested HAProxy/serf versions come from scripts/versions.sh (scripts/test.sh calls both).
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail

need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v serf >/dev/null || need+=(serf)
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v timeout >/dev/null || need+=(coreutils)
[ -x /bin/kill ] || [ -x /usr/bin/kill ] || need+=(procps)
command -v cargo >/dev/null || need+=(cargo)
command -v python3 >/dev/null || need+=(python3)
command -v socat >/dev/null || need+=(socat)
command -v script >/dev/null || need+=(bsdutils)
command -v systemd-analyze >/dev/null || need+=(systemd)
# headless Chromium renders the Lua status page in tests/status_page_screenshot.rs
command -v chromium >/dev/null || need+=(chromium)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# scripts/versions.sh: other HAProxy/serf versions from Debian's archive, unpacked beside the
# system's (patchelf points them at their own glibc; perl finds the matrix suites).
command -v patchelf >/dev/null || need+=(patchelf)
command -v perl >/dev/null || need+=(perl)
command -v flock >/dev/null || need+=(util-linux)

if ((${#need[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${need[*]} from Debian's packages" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
for tool in haproxy serf cargo python3; do
  command -v "$tool" >/dev/null || { echo "install-deps: $tool is still missing" >&2; exit 1; }
done

# Python's prometheus_client (from PyPI) reads the agent's /metrics in tests/metrics_http.rs:
# a virtualenv under target/ (Debian's python refuses system-wide pip installs). The tests
# find it at $HASERF_PYENV (default target/pyenv).
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYENV="${HASERF_PYENV:-$ROOT/target/pyenv}"
if ! "$PYENV/bin/python" -c 'import prometheus_client' 2>/dev/null; then
  echo "install-deps: prometheus_client (PyPI) into $PYENV" >&2
  python3 -m venv "$PYENV"
  "$PYENV/bin/pip" install -q --disable-pip-version-check 'prometheus-client>=0.20,<1'
fi
