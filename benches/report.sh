#!/usr/bin/env bash
# Runs the benchmark suite with short settings and writes BENCHMARKS.md at
# the repository root. About 4 minutes on 2 cores.
#
#   ./benches/report.sh [extra criterion arguments, e.g. a filter]
set -euo pipefail
cd "$(dirname "$0")/.."

SETTINGS="--warm-up-time 1 --measurement-time 2 --noplot"
NOTES=target/fusebox-bench-notes.txt
SIZES=target/fusebox-sizes.md
mkdir -p target
rm -f "$NOTES"
rm -rf target/criterion
# shellcheck disable=SC2086
FUSEBOX_BENCH_NOTES="$PWD/$NOTES" cargo bench -p fusebox-benches --bench suite -- $SETTINGS "$@"
cargo run --release -q -p fusebox-benches --bin sizes >"$SIZES"
python3 benches/report.py "$NOTES" "$SIZES" "$SETTINGS" >BENCHMARKS.md
echo "wrote BENCHMARKS.md"
