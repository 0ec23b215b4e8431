#!/usr/bin/env bash
# The version matrix: runs the test suites that start a real HAProxy or real serf peers again
# with the other supported versions (scripts/versions.sh installs them from Debian's archive).
# scripts/test.sh runs the whole suite with HAProxy 2.6 and serf 0.9.4 (Debian bookworm),
# then this, which reuses the compiled test binaries (no rebuild: the versions are picked at
# run time through HASERF_HAPROXY and HASERF_SERF).
#
#   scripts/test-matrix.sh                  # every extra pair below
#   scripts/test-matrix.sh haproxy-3.2      # only the pairs with haproxy-3.2
#   scripts/test-matrix.sh --list           # which suites each pair runs
#   scripts/test-matrix.sh haproxy-3.0 -- --test agent_membership   # one suite, one version
#
# Pairs: what one Debian release ships together. trixie: HAProxy 3.0 + serf 0.10.1, runs the
# HAProxy-facing and the serf-facing suites; forky/sid: HAProxy 3.2 + serf 0.10.1, runs the
# HAProxy-facing suites (serf 0.10.1 is already covered by the first pair).
#
# Which suites: every tests/*.rs that starts HAProxy or serf through the harness (found by
# the patterns below), so a new interop test joins the matrix by itself, except EXCLUDED.
# A failure does not stop the run; the summary at the end lists every suite with its result
# and time, and the exit status is 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

# "haproxy version | serf version | which suites (haproxy, serf or both)"
PAIRS=(
  "haproxy-3.0|serf-0.10|both"
  "haproxy-3.2|serf-0.10|haproxy"
)
# Suites that start a peer but not one the matrix can swap: the compose test runs the Debian
# bookworm images built by scripts/docker-base.sh (their HAProxy and serf are the image's).
EXCLUDED=(docker_compose)

# Harness calls that start HAProxy / serf (tests/support: Haproxy, SerfPeer, web nodes, Lab
# hosts' HTTP backends are a minimal HAProxy) or name the program directly.
HAPROXY_USE='Haproxy::|HaproxyConfig::|require_binary\("haproxy"\)|Launch::new\(\s*"haproxy"|\.http_backend\('
SERF_USE='SerfPeer::|SerfCluster::|web_nodes\(|serf_keygen\(|require_binary\("serf"\)|Launch::new\(\s*"serf"|short_command\([^;]*"serf"'

suites() { # haproxy|serf|both → suite names
  local f name pat
  case "$1" in
    haproxy) pat="$HAPROXY_USE" ;;
    serf) pat="$SERF_USE" ;;
    both) pat="$HAPROXY_USE|$SERF_USE" ;;
  esac
  for f in tests/*.rs; do
    name=$(basename "$f" .rs)
    [[ " ${EXCLUDED[*]} " == *" $name "* ]] && continue
    PAT="$pat" perl -0777 -ne 'exit(/$ENV{PAT}/ ? 0 : 1)' "$f" && echo "$name"
  done
}

only=()
cargo_args=()
list=0
while (($#)); do
  case "$1" in
    --) shift; cargo_args=("$@"); break ;;
    --list) list=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) only+=("$1") ;;
  esac
  shift
done

selected=()
for p in "${PAIRS[@]}"; do
  IFS='|' read -r hv sv kind <<<"$p"
  if ((${#only[@]})); then
    keep=0
    for o in "${only[@]}"; do [[ "$o" == "$hv" || "$o" == "$sv" ]] && keep=1; done
    ((keep)) || continue
  fi
  selected+=("$p")
done
((${#selected[@]})) || { echo "test-matrix: no pair matches ${only[*]}; pairs: ${PAIRS[*]}" >&2; exit 1; }

if ((list)); then
  for p in "${selected[@]}"; do
    IFS='|' read -r hv sv kind <<<"$p"
    echo "$hv + $sv: $(suites "$kind" | tr '\n' ' ')"
  done
  exit 0
fi

summary=()
failed=0
total_start=$(date +%s)
run() { # LABEL cargo-test-arguments…
  local label="$1" start result
  shift
  start=$(date +%s)
  if HASERF_HAPROXY="$haproxy" HASERF_SERF="$serf" cargo test --no-fail-fast "$@"; then
    result=ok
  else
    result=FAILED
    failed=1
  fi
  summary+=("$(printf '%-12s %-10s %-32s %-7s %4ss' "$hv" "$sv" "$label" "$result" \
    $(($(date +%s) - start)))")
}
for p in "${selected[@]}"; do
  IFS='|' read -r hv sv kind <<<"$p"
  haproxy=$(scripts/versions.sh --path "$hv")
  serf=$(scripts/versions.sh --path "$sv")
  echo "test-matrix: $hv ($haproxy) + $sv ($serf)" >&2
  if ((${#cargo_args[@]})); then
    run "${cargo_args[*]}" "${cargo_args[@]}"
  else
    for n in $(suites "$kind"); do run "$n" --test "$n"; done
  fi
done
echo
echo "test-matrix: summary (HAProxy, serf, suite, result, wall time)"
printf '  %s\n' "${summary[@]}"
echo "test-matrix: total $(($(date +%s) - total_start)) s"
exit "$failed"
