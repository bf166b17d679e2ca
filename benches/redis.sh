#!/usr/bin/env bash
# Decisions per second of the Redis backend against a loopback
# redis-server (issue 14), next to two peers done from the client, and
# with local leasing: benches/examples/redis_bench/ (its header lists the
# rows). The example starts its own redis-server on a free port in a
# temporary directory and kills it when it ends; this script kills it too
# if the example itself is killed (the server's pid is in redis.pid).
#
# Writes benches/redis.md and puts it into BENCHMARKS.md between the
# `<!-- redis:begin -->` and `<!-- redis:end -->` markers (report.sh keeps
# the same block when it rewrites BENCHMARKS.md). About 1.5 minutes with
# the defaults, after the build.
#
#   ./benches/redis.sh                                   # 3 rounds of 2 s per row
#   REDIS_BENCH_ROUNDS=1 REDIS_BENCH_SECS=1 ./benches/redis.sh   # a quick look
#
# Knobs (environment, read by the example): REDIS_BENCH_SECS (2),
# REDIS_BENCH_WARMUP_SECS (0.3), REDIS_BENCH_ROUNDS (3), REDIS_BENCH_TASKS
# ("1 64"), REDIS_BENCH_CONTENTION_TASKS (64), REDIS_BENCH_LEASE (1000),
# REDIS_BENCH_TIMEOUT_MS (1000), REDIS_BENCH_WORKERS (2), REDIS_BENCH_ROWS
# (a subset of "fusebox fusebox_limiter incr_expire client_gcra leased").
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null; then
    SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools
fi

cargo build --release -q -p fusebox-benches --example redis_bench
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BENCH=$TARGET_DIR/release/examples/redis_bench
# The raw output stays here: `python3 benches/redis_report.py $OUT`
# rewrites benches/redis.md from it without running again.
OUT=$TARGET_DIR/redis-bench
rm -rf "$OUT"
mkdir -p "$OUT"
cleanup() {
    if [ -f "$OUT/redis/redis.pid" ]; then
        kill -9 "$(cat "$OUT/redis/redis.pid")" 2>/dev/null || true
    fi
    rm -rf "$OUT/redis"
}
trap cleanup EXIT

getconf CLK_TCK >"$OUT/clk_tck"
cat /proc/loadavg >"$OUT/loadavg-before"
REDIS_BENCH_DIR="$OUT/redis" "$BENCH" >"$OUT/bench.out"
cat /proc/loadavg >"$OUT/loadavg-after"

python3 benches/redis_report.py "$OUT"
echo "wrote benches/redis.md and its block in BENCHMARKS.md"
