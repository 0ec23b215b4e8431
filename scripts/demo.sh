#!/usr/bin/env bash
# haserf demo, on loopback: HAProxy with a slotted backend (server-template web 1-8), the
# haserf agent filling the slots through HAProxy's runtime API, and 3 web nodes running stock
# `serf agent` next to a tiny HTTP app (node1..node3). Prints the slot table, adds a node and removes one
# while showing what HAProxy serves, and shows HAProxy's pid never changes (zero reloads).
#
#   scripts/demo.sh           run it and leave everything running (prints how to stop it)
#   scripts/demo.sh --once    run it and tear everything down
#   scripts/demo.sh --stop    stop a demo left running
#
# Addresses: 127.77.0.0/24 on loopback (override with HASERF_DEMO_NET=127.x.y). Every process
# is bounded by `timeout` (1 hour) and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

NET="${HASERF_DEMO_NET:-127.77.0}"
STATE="${TMPDIR:-/tmp}/haserf-demo.${NET}"
MODE="${1:-}"

stop_demo() {
  [ -f "$STATE/pids" ] || return 0
  while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$STATE/pids"
  sleep 0.5
  while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$STATE/pids"
  rm -rf "$STATE"
}

case "$MODE" in
  --stop) stop_demo; echo "demo: stopped"; exit 0 ;;
  --once | "") ;;
  *) echo "usage: scripts/demo.sh [--once|--stop]" >&2; exit 2 ;;
esac

scripts/install-deps.sh
# A debug build: it compiles in about half the time of a release build on a small machine,
# and the demo's load is tiny.
echo "demo: building haserf…"
cargo build --quiet --bin haserf --bin haserf-bench
HASERF="$PWD/target/debug/haserf"
APP="$PWD/target/debug/haserf-bench"

stop_demo                      # a previous demo on the same addresses
mkdir -p "$STATE"
LB="$NET.1"
FRONT="$LB:8080"
LIMIT=3600
[ "$MODE" = "--once" ] && LIMIT=300

# start NAME CMD…: run in the background under `timeout`, log to $STATE/NAME.log, remember the pid.
start() {
  local name="$1"; shift
  timeout -k 5 "$LIMIT" "$@" >"$STATE/$name.log" 2>&1 &
  local pid=$!
  disown "$pid"
  echo "$pid" >>"$STATE/pids"
  echo "$pid" >"$STATE/$name.pid"
}

# wait_for SECONDS WHAT CMD…: poll CMD until it succeeds, or fail saying WHAT.
wait_for() {
  local secs="$1" what="$2"; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then
      echo "demo: timed out waiting for $what; logs in $STATE" >&2
      tail -n 5 "$STATE"/*.log >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

if [ "$MODE" = "--once" ]; then trap stop_demo EXIT; else trap 'echo "demo: failed; stop leftovers with: scripts/demo.sh --stop" >&2' ERR; fi

cat >"$STATE/haproxy.cfg" <<EOF
global
    stats socket $STATE/haproxy.sock mode 600 level admin expose-fd listeners
    log stderr format short local0 warning
defaults
    mode http
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch 1
    option httpchk GET /health
    default-server check inter 1s fall 2 rise 2
frontend fe
    bind $FRONT
    default_backend web
backend web
    balance roundrobin
    server-template web 1-8 127.0.0.1:9 disabled
EOF

start haproxy haproxy -W -S "$STATE/master.sock" -f "$STATE/haproxy.cfg" -p "$STATE/haproxy.pid"
wait_for 10 "HAProxy" test -S "$STATE/haproxy.sock"
start agent "$HASERF" agent --node lb --bind "$LB:7946" \
  --haproxy-socket "$STATE/haproxy.sock" --backend web --status-socket "$STATE/haserf.sock"
# `haserf status` exits 2 while nothing answers (1: answers, not ready yet; 0: ready)
answers() { local rc=0; "$HASERF" status --status-socket "$STATE/haserf.sock" || rc=$?; [ "$rc" -ne 2 ]; }
if ! wait_for 15 "the haserf agent" answers; then
  echo "demo: the haserf agent did not start; its log:" >&2
  cat "$STATE/agent.log" >&2
  exit 1
fi
HAPROXY_PID="$(cat "$STATE/haproxy.pid")"

web() { # web N: node N's app and a stock serf agent on $NET.(10+N)
  local ip="$NET.$((10 + $1))"
  start "node$1-app" "$APP" app --bind "$ip:8080" --name "node$1" --max-secs "$LIMIT"
  start "node$1-serf" serf agent -node "node$1" -bind "$ip:7946" -rpc-addr "$ip:7373" \
    -join "$LB:7946" -tag role=web -tag port=8080 -log-level warn
}

# filled: how many slots hold a member that HAProxy's checks show UP.
filled() { "$HASERF" slots --status-socket "$STATE/haserf.sock" | awk 'NR > 1 && $3 != "-" && $6 == "UP"' | wc -l; }
served() { # what HAProxy serves: 8 requests through the frontend
  local out=""
  for _ in 1 2 3 4 5 6 7 8; do out+="$(curl -s --max-time 2 "http://$FRONT/" || echo FAIL) "; done
  echo "  HAProxy serves: $out"
}
wait_filled() { # wait_filled N: until exactly N slots are filled and UP
  local end=$((SECONDS + 30))
  until [ "$(filled 2>/dev/null || true)" -eq "$1" ]; do
    ((SECONDS < end)) || { echo "demo: slots did not reach $1" >&2; return 1; }
    sleep 0.3
  done
}
slots() { echo; "$HASERF" slots --status-socket "$STATE/haserf.sock"; echo; }

echo "demo: HAProxy (pid $HAPROXY_PID) on http://$FRONT, 8 empty slots; haserf agent joined on $LB:7946"
for n in 1 2 3; do web "$n"; done
wait_filled 3
echo "demo: 3 web nodes (node1..3) joined with stock serf; the agent filled 3 slots:"
slots
wait_for 15 "node3 to serve" bash -c "for i in 1 2 3 4 5 6; do curl -s http://$FRONT/; done | grep -q node3"
served

echo "demo: adding node4…"
web 4
wait_filled 4
wait_for 15 "node4 to serve" bash -c "for i in 1 2 3 4 5 6 7 8; do curl -s http://$FRONT/; done | grep -q node4"
slots
served

echo "demo: node2 leaves gracefully (serf leave)…"
serf leave -rpc-addr "$NET.12:7373" >/dev/null
wait_filled 3
gone() { ! "$HASERF" slots --status-socket "$STATE/haserf.sock" | awk '$3 == "node2" { found = 1 } END { exit !found }'; }
wait_for 30 "node2 to leave its slot" gone
slots
served

now_pid="$(cat "$STATE/haproxy.pid")"
if [ "$now_pid" = "$HAPROXY_PID" ]; then
  echo "demo: HAProxy pid $HAPROXY_PID throughout: zero reloads."
else
  echo "demo: HAProxy pid changed ($HAPROXY_PID → $now_pid)!" >&2
  exit 1
fi

if [ "$MODE" = "--once" ]; then
  echo "demo: done; tearing down."
else
  trap - ERR
  echo "demo: still running (for up to an hour). Try: curl http://$FRONT/ ;"
  echo "      $HASERF slots --status-socket $STATE/haserf.sock"
  echo "demo: stop it with: scripts/demo.sh --stop"
fi
