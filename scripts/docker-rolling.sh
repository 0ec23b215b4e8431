#!/usr/bin/env bash
# Applies the current docker/compose.yaml settings (e.g. a new WEB_AGENT or HASERF_WEB_IMAGE)
# to the running `web` containers one at a time, without an outage: each old container is
# stopped (its entrypoint leaves the cluster gracefully, so the load balancer drains its
# slot first), removed, and replaced by one with the new settings; the next one goes only
# once the load balancer serves as many web nodes as before (bounded wait).
#
#   WEB_AGENT=haserf scripts/docker-rolling.sh
#
# `docker-compose up` would instead recreate every web container at once. The `ha` container
# is never touched. Environment: COMPOSE (default: docker-compose, else `docker compose`),
# COMPOSE_PROJECT_NAME (default from docker/.env), WAIT_SECONDS per replacement (default 120).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${COMPOSE:-}" ]; then
  read -r -a compose <<<"$COMPOSE"
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose)
else
  compose=(docker compose)
fi
compose+=(-f docker/compose.yaml)

mapfile -t old < <("${compose[@]}" ps -q web)
n=${#old[@]}
[ "$n" -gt 0 ] || { echo "docker-rolling: no web container is running" >&2; exit 1; }

serving() {
  "${compose[@]}" exec -T ha haserf slots --used --state ready 2>/dev/null | tail -n +2 | wc -l
}

for c in "${old[@]}"; do
  echo "docker-rolling: replacing $(docker inspect -f '{{.Name}}' "$c" | tr -d /)" >&2
  docker stop -t 20 "$c" >/dev/null
  docker rm "$c" >/dev/null
  "${compose[@]}" up -d --no-deps --no-recreate --scale web="$n" web >/dev/null
  ok=""
  for _ in $(seq "${WAIT_SECONDS:-120}"); do
    if [ "$(serving)" -ge "$n" ]; then ok=1; break; fi
    sleep 1
  done
  [ -n "$ok" ] || { echo "docker-rolling: the replacement did not serve within ${WAIT_SECONDS:-120}s; stopping" >&2; exit 1; }
done
echo "docker-rolling: $n web containers replaced" >&2
