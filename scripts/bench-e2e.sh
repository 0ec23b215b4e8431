#!/usr/bin/env bash
# haserf vs the reload-based baseline, same run, same netns topology (needs root).
#   scripts/bench-e2e.sh                    every scenario, all sides: reload baseline, 100 ms poll
#                                           script, haserf with --admit check and gossip (about 20 minutes)
#   scripts/bench-e2e.sh join --joins 5     one scenario; any haserf-bench flags pass through
# Results: a markdown table on stdout (haserf / poll and haserf / reload ratios), also saved to
# target/bench-e2e.md. See docs/bench/e2e.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --quiet --bin haserf --bin haserf-bench
scenario="${1:-all}"
[ $# -gt 0 ] && shift
./target/release/haserf-bench "$scenario" --side all --admit both "$@" | tee target/bench-e2e.md
