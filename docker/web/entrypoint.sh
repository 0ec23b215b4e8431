#!/bin/bash
# A `web` container: the demo app plus a membership agent, under tini (PID 1).
#   WEB_AGENT=serf    stock `serf agent` (default)
#   WEB_AGENT=haserf  `haserf agent` in backend-node mode
# Node name: the container's name (haserf_web_3), not its id. Tags: role=web,
# port=$WEB_PORT. Joins $JOIN (default ha:7946), retrying until it answers.
# On SIGTERM (docker stop, scale down): graceful leave first, so the load balancer drains
# this node's slot, then keep serving for DRAIN_SECONDS, then stop the app.
set -uo pipefail

IP=$(hostname -i | awk '{print $1}')
# The node name people recognise: the container's name (compose: <project>_web_<n>, or
# <project>-web-<n> with compose v2), from Docker's DNS (reverse lookup of our address,
# not /etc/hosts, which holds the container id);
# the hostname (the container id) if that is not answered within 2 s.
container_name() {
  for _ in $(seq 10); do
    name=$(getent -s dns hosts "$IP" | awk '{print $2; exit}')
    [ -n "$name" ] && { echo "${name%%.*}"; return; }
    sleep 0.2
  done
}
NODE_NAME="${NODE_NAME:-$(container_name)}"
export NODE_NAME="${NODE_NAME:-$(hostname)}" NODE_IP="$IP" WEB_PORT="${WEB_PORT:-3000}"
JOIN="${JOIN:-ha:7946}"
mkdir -p /run/haserf

python3 /app/app.py &
app_pid=$!

case "${WEB_AGENT:-serf}" in
  serf)
    args=(-node="$NODE_NAME" -bind=0.0.0.0:7946 -advertise="$IP:7946" -rpc-addr=127.0.0.1:7373
          -tag role=web -tag port="$WEB_PORT" -retry-join="$JOIN" -retry-interval=2s)
    if [ -n "${SERF_ENCRYPT_KEY:-}" ]; then args+=(-encrypt="$SERF_ENCRYPT_KEY"); fi
    serf agent "${args[@]}" &
    ;;
  haserf)
    # --join takes IP:PORT: resolve the service name first (it may not exist for a moment).
    host="${JOIN%:*}" port="${JOIN##*:}" join_ip=""
    for _ in $(seq 300); do
      join_ip=$(getent ahostsv4 "$host" | awk '{print $1; exit}')
      [ -n "$join_ip" ] && break
      sleep 0.2
    done
    [ -n "$join_ip" ] || { echo "web: cannot resolve $host" >&2; exit 1; }
    args=(--node "$NODE_NAME" --bind 0.0.0.0:7946 --advertise "$IP:7946"
          --tag role=web --tag port="$WEB_PORT" --join "$join_ip:$port"
          --status-socket /run/haserf/haserf.sock)
    if [ -n "${SERF_ENCRYPT_KEY:-}" ]; then args+=(--encrypt "$SERF_ENCRYPT_KEY"); fi
    haserf agent "${args[@]}" &
    ;;
  *) echo "web: unknown WEB_AGENT '${WEB_AGENT}' (serf or haserf)" >&2; exit 2 ;;
esac
agent_pid=$!

stopping=0
on_term() {
  stopping=1
  if [ "${WEB_AGENT:-serf}" = haserf ]; then
    haserf leave --status-socket /run/haserf/haserf.sock >/dev/null 2>&1 || kill -INT "$agent_pid"
  else
    serf leave -rpc-addr=127.0.0.1:7373 >/dev/null 2>&1 || kill -INT "$agent_pid"
  fi
  # Shutdown grace period: the slot goes DRAIN then MAINT on the load balancer while the app
  # still answers whatever is in flight.
  sleep "${DRAIN_SECONDS:-3}"
  kill -TERM "$app_pid" "$agent_pid" 2>/dev/null
}
trap on_term TERM INT

wait -n "$app_pid" "$agent_pid"
if [ "$stopping" = 0 ]; then
  echo "web: the app or the agent exited; stopping the container" >&2
  kill -TERM "$app_pid" "$agent_pid" 2>/dev/null
  wait
  exit 1
fi
wait
exit 0
