#!/usr/bin/env bash
# The whole test suite, as README says: install what is missing, lint, then every test
# (unit, fixtures, property tests, and integration tests against real serf and HAProxy),
# then the version matrix: the HAProxy- and serf-facing suites again on every other
# supported version (scripts/test-matrix.sh; versions from scripts/versions.sh).
# Arguments go to `cargo test` (main run and matrix runs alike).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Every tested HAProxy and serf, from Debian's archive (cached after the first run).
scripts/versions.sh

cargo fmt --check
# clippy --all-targets also compiles the benches and the bench runner.
cargo clippy --all-targets --quiet -- -D warnings

# From here a failure is recorded and the next step still runs; the exit status says.
failed=()
# Library, binaries, integration tests and doc tests (benches are measured, not tested:
# `cargo test --all-targets` would run their main()), against Debian bookworm's HAProxy 2.6
# and serf 0.9.4.
HASERF_HAPROXY=$(scripts/versions.sh --path haproxy-2.6) \
  HASERF_SERF=$(scripts/versions.sh --path serf-0.9) \
  cargo test --no-fail-fast "$@" || failed+=("cargo test (HAProxy 2.6, serf 0.9.4)")
# The 1,000-node gossip simulation: about N² log N simulated messages, so it runs in a
# release build (about 2 minutes here) instead of the debug run above, where it is ignored.
cargo test --release --test gossip_sim -- --ignored --nocapture thousand ||
  failed+=("gossip_sim thousand (release)")
# HAProxy 3.0 and 3.2, serf 0.10.1: the suites that talk to them, same test binaries.
if (($#)); then
  scripts/test-matrix.sh -- "$@" || failed+=("the version matrix")
else
  scripts/test-matrix.sh || failed+=("the version matrix")
fi

if ((${#failed[@]})); then
  printf 'test.sh: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "test.sh: all passed"
