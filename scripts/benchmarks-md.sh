#!/usr/bin/env bash
# Rebuilds BENCHMARKS.md from the per-area result pages under docs/bench/ (each page holds
# its figures and the exact command that produced them).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Benchmarks"
  echo
  echo "Every figure below comes from a benchmark run side by side with what it is compared"
  echo "against, in one run, reported as a ratio; each section gives the command to reproduce"
  echo "it. The machine is the project's 2-core VM, usually shared with other builds, so"
  echo "absolute numbers move between runs more than the ratios do."
  echo
  echo "| area | page |"
  echo "|---|---|"
  for f in docs/bench/*.md; do
    title=$(grep -m1 '^#' "$f" | sed 's/^#* *//')
    echo "| $title | [$f]($f) |"
  done
  for f in docs/bench/*.md; do
    echo
    sed 's/^#/##/' "$f"
  done
} > BENCHMARKS.md
echo "BENCHMARKS.md: $(wc -l < BENCHMARKS.md) lines from $(ls docs/bench/*.md | wc -l) pages"
