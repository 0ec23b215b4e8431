#!/usr/bin/env bash
# The whole test suite, as README says: install what is missing, lint, then every test
# (unit, fixtures, property tests, and integration tests against real serf and HAProxy).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets --no-fail-fast "$@"
