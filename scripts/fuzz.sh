#!/usr/bin/env bash
# Runs every fuzz target under fuzz/ for a while (cargo-fuzz, nightly toolchain).
#
#   scripts/fuzz.sh              # every target, 60 s each
#   scripts/fuzz.sh 300          # every target, 300 s each
#   scripts/fuzz.sh 60 decode_rpc   # one target
#
# Targets: decode_packet (gossip packets and streams), decode_rpc (Serf RPC requests).
# A crash leaves its input under fuzz/artifacts/<target>/ and makes the script fail.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(decode_packet decode_rpc)
for t in "${targets[@]}"; do
  echo "fuzz: $t for ${secs}s" >&2
  cargo +nightly fuzz run "$t" -- -max_total_time="$secs"
done
