#!/usr/bin/env bash
# HTTP throughput and latency of the tower layers under wrk, against the
# same axum server three ways (benches/examples/http_server.rs):
#
#   bare      axum alone, `GET /` answering `ok`
#   fusebox   + a keyed RateLimitLayer (key: the x-api-key header) and a
#             CircuitBreakerLayer inside it, in one Router::layer call,
#             built from a Registry, quota never reached
#   governor  + tower_governor's GovernorLayer keyed by the same header,
#             quota never reached (the peer); governor-headers with its
#             x-ratelimit-* headers
#   identity  + a layer that does nothing: the floor of one Router::layer
#
# and breakdowns of fusebox (see the example's docs).
#
# Each run: `wrk -c64 -d10s --latency -H 'x-api-key: bench'` (64
# keep-alive connections, 10 s), after a 1 s warm-up run against the same
# server process. The modes are interleaved for ROUNDS rounds and the
# table shows each mode's median.
#
# Pinned (the default where there are 2 CPUs or more, WRK_PIN=0 to turn
# off): the server runs on CPU 0 with one tokio worker, wrk on CPU 1 with
# one thread, so the server is the bottleneck and a layer's cost is the
# server's, not the load generator's (unpinned, wrk and the server share
# the cores and a bigger response costs wrk's parser as much as the
# server). The server's own CPU time per request (from /proc/PID/stat
# around the measured run) is reported too.
#
# Writes benches/wrk.md and puts it into BENCHMARKS.md between the
# `<!-- wrk:begin -->` and `<!-- wrk:end -->` markers (report.sh keeps the
# same block when it rewrites BENCHMARKS.md). About 3 minutes.
#
#   ./benches/wrk.sh                 # WRK_ROUNDS=5 WRK_DURATION=10s
#   WRK_ROUNDS=1 WRK_DURATION=3s ./benches/wrk.sh   # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."

PIN=${WRK_PIN:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}
THREADS=${WRK_THREADS:-$([ "$PIN" = 1 ] && echo 1 || echo 2)}
CONNECTIONS=${WRK_CONNECTIONS:-64}
DURATION=${WRK_DURATION:-10s}
ROUNDS=${WRK_ROUNDS:-5}
MODES=${WRK_MODES:-"bare fusebox governor governor-headers identity fusebox-no-fields fusebox-limit fusebox-breaker"}
if [ "$PIN" = 1 ]; then
    SERVER_CPU=(taskset -c 0)
    SERVER_ARGS=(--workers 1)
    CLIENT_CPU=(taskset -c 1)
else
    SERVER_CPU=()
    SERVER_ARGS=()
    CLIENT_CPU=()
fi

if ! command -v wrk >/dev/null; then
    SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq wrk
fi

cargo build --release -q -p fusebox-benches --example http_server
SERVER=${CARGO_TARGET_DIR:-target}/release/examples/http_server
OUT=$(mktemp -d)
SERVER_PID=
stop() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap 'stop; rm -rf "$OUT"' EXIT

# Starts the server in mode $1 on a free loopback port; sets PORT.
start() {
    local log="$OUT/server.$1.$round.out"
    "${SERVER_CPU[@]}" "$SERVER" --mode "$1" --port 0 "${SERVER_ARGS[@]}" >"$log" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log" 2>/dev/null)
        [ -n "$PORT" ] && return 0
        sleep 0.1
    done
    echo "server ($1) did not start" >&2
    exit 1
}

# The server's CPU time (user + system, clock ticks) so far.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"
}

getconf CLK_TCK >"$OUT/clk_tck"
echo "$PIN" >"$OUT/pinned"
cat /proc/loadavg >"$OUT/loadavg-before"
for round in $(seq "$ROUNDS"); do
    for mode in $MODES; do
        start "$mode"
        URL="http://127.0.0.1:$PORT/"
        "${CLIENT_CPU[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d1s -H 'x-api-key: bench' "$URL" >/dev/null
        before=$(cpu_ticks)
        "${CLIENT_CPU[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H 'x-api-key: bench' "$URL" \
            >"$OUT/$mode.$round.txt"
        echo $(($(cpu_ticks) - before)) >"$OUT/$mode.$round.cpu"
        stop
        echo "round $round, $mode: $(grep Requests/sec "$OUT/$mode.$round.txt"), $(cat "$OUT/$mode.$round.cpu") CPU ticks"
    done
done
cat /proc/loadavg >"$OUT/loadavg-after"

python3 benches/wrk_report.py "$OUT" "$MODES" "$ROUNDS" \
    "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency -H 'x-api-key: bench'"
echo "wrote benches/wrk.md and its block in BENCHMARKS.md"
