#!/bin/bash
# The `ha` container: HAProxy and the haserf agent side by side under tini (PID 1).
# If either process exits, the other is stopped and the container exits non-zero, so
# Docker's restart policy restarts both together; haserf re-pushes the slot table from
# membership when it starts against a fresh HAProxy.
set -uo pipefail

IP=$(hostname -i | awk '{print $1}')
NODE="${HASERF_NODE:-$(hostname)}"
mkdir -p /run/haproxy /run/haserf

if [ -f /etc/haproxy/haserf.lua ]; then
  export HASERF_LUA=1
fi

haproxy -db -f /etc/haproxy/haproxy.cfg &
haproxy_pid=$!

# HAProxy must answer on its runtime socket before the agent reads the slots.
for _ in $(seq 100); do
  echo "show info" | socat -t 2 - UNIX-CONNECT:/run/haproxy/admin.sock 2>/dev/null | grep -q '^Pid:' && break
  kill -0 "$haproxy_pid" 2>/dev/null || { echo "ha: HAProxy exited at start-up" >&2; exit 1; }
  sleep 0.1
done

# When this container restarts, the web nodes are already running: join them right away
# (addresses from Docker's DNS for the service name) instead of waiting for them to reconnect.
join=()
for ip in $(getent ahostsv4 "${HA_JOIN_SERVICE:-web}" 2>/dev/null | awk '{print $1}' | sort -u | head -3); do
  join+=(--join "$ip:7946")
done

encrypt=()
if [ -n "${SERF_ENCRYPT_KEY:-}" ]; then encrypt=(--encrypt "$SERF_ENCRYPT_KEY"); fi

# shellcheck disable=SC2086
haserf agent --node "$NODE" --bind 0.0.0.0:7946 --advertise "$IP:7946" \
  --tag role=lb \
  --haproxy-socket /run/haproxy/admin.sock \
  --backend "${HASERF_BACKEND:-web}" \
  --status-socket /run/haserf/haserf.sock \
  --server-state-file /run/haproxy/server-state \
  "${join[@]}" "${encrypt[@]}" ${HASERF_ARGS:-} &
agent_pid=$!

stopping=0
on_term() {
  stopping=1
  haserf leave --status-socket /run/haserf/haserf.sock >/dev/null 2>&1 || true
  kill -TERM "$agent_pid" 2>/dev/null
  kill -USR1 "$haproxy_pid" 2>/dev/null   # soft stop: finish in-flight requests
}
trap on_term TERM INT

wait -n "$haproxy_pid" "$agent_pid"
if [ "$stopping" = 0 ]; then
  echo "ha: HAProxy or the agent exited; stopping the container" >&2
  kill -TERM "$agent_pid" "$haproxy_pid" 2>/dev/null
  wait
  exit 1
fi
wait
exit 0
