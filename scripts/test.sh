#!/usr/bin/env bash
# The whole test suite, as README says: install what is missing, lint, then every test
# (unit, fixtures, property tests, and integration tests against real serf and HAProxy).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

cargo fmt --check
# clippy --all-targets also compiles the benches and the bench runner.
cargo clippy --all-targets --quiet -- -D warnings
# Library, binaries, integration tests and doc tests (benches are measured, not tested:
# `cargo test --all-targets` would run their main()).
cargo test --no-fail-fast "$@"
# The 1,000-node gossip simulation: about N² log N simulated messages, so it runs in a
# release build (about 2 minutes here) instead of the debug run above, where it is ignored.
cargo test --release --test gossip_sim -- --ignored --nocapture thousand
