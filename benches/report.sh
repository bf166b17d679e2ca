#!/usr/bin/env bash
# Runs the benchmark suite with short settings and writes BENCHMARKS.md at
# the repository root. About 4 minutes on 2 cores. The HTTP section that
# benches/wrk.sh writes (benches/wrk.md) and the Redis section of
# benches/redis.sh (benches/redis.md) are kept, between their markers.
#
#   ./benches/report.sh [extra criterion arguments, e.g. a filter]
set -euo pipefail
cd "$(dirname "$0")/.."

SETTINGS="--warm-up-time 1 --measurement-time 2 --noplot"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
NOTES=$TARGET_DIR/fusebox-bench-notes.txt
SIZES=$TARGET_DIR/fusebox-sizes.md
mkdir -p "$TARGET_DIR"
rm -f "$NOTES"
rm -rf "$TARGET_DIR/criterion"
# shellcheck disable=SC2086
FUSEBOX_BENCH_NOTES="$(cd "$(dirname "$NOTES")" && pwd)/$(basename "$NOTES")" cargo bench -p fusebox-benches --bench suite -- $SETTINGS "$@"
cargo run --release -q -p fusebox-benches --bin sizes >"$SIZES"
python3 benches/report.py "$NOTES" "$SIZES" "$SETTINGS" >BENCHMARKS.md
echo "wrote BENCHMARKS.md"
