#!/usr/bin/env bash
# Instructions per HTTP request of each server mode of
# benches/examples/http_server.rs, under callgrind: deterministic where
# wrk's requests/s on this VM drift ±10 % between runs. User space only
# (the kernel's socket work, about 70 % of the server's CPU time here, is
# the same for every mode and not counted).
#
# Each mode: the server under callgrind (one tokio worker), warmed by wrk,
# counters zeroed, then `wrk -c1` for a few seconds (one connection: every
# request takes the same path through the event loop, so batching does not
# move the count), counters dumped; instructions ÷ requests.
#
#   ./benches/http_instr.sh [mode ...]     # default: the modes below
#   SIM=1 ./benches/http_instr.sh [mode ...]
#   SERVER=path/to/http_server ./benches/http_instr.sh [mode ...]
#
# SERVER= measures a server built before (a copy of the example from
# another commit, to compare two builds in one session) instead of
# building this checkout's.
#
# SIM=1 adds callgrind's cache and branch simulation (the host's cache
# geometry): first-level instruction and data misses and mispredicted
# branches per request (benches/analysis.md, "Simulated caches and
# branches per request").
set -euo pipefail
cd "$(dirname "$0")/.."
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(bare identity fusebox fusebox-two-calls governor governor-headers bare-outer identity-outer static-fields-outer fusebox-outer fusebox-no-fields-outer fusebox-limit-outer fusebox-limit-no-fields-outer fusebox-breaker-outer governor-outer governor-headers-outer)
for tool in valgrind callgrind_control wrk; do
    command -v "$tool" >/dev/null || {
        echo "needs $tool (apt-get install -y valgrind wrk)" >&2
        exit 1
    }
done
if [ -z "${SERVER:-}" ]; then
    cargo build --release -q -p fusebox-benches --example http_server
    SERVER=${CARGO_TARGET_DIR:-target}/release/examples/http_server
fi
OUT=$(mktemp -d)
PID=
trap '[ -z "$PID" ] || kill "$PID" 2>/dev/null; rm -rf "$OUT"' EXIT
SIM_ARGS=()
if [ -n "${SIM:-}" ]; then
    SIM_ARGS=(--cache-sim=yes --branch-sim=yes)
    echo "| mode | requests | instructions/request | over bare | I1 misses | D1 read misses | D1 write misses | mispredicted conditional | mispredicted indirect |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
else
    echo "| mode | requests | instructions/request | over bare |"
    echo "|---|---:|---:|---:|"
fi
bare=
for mode in "${MODES[@]}"; do
    valgrind --tool=callgrind "${SIM_ARGS[@]}" --callgrind-out-file="$OUT/$mode.%p" \
        "$SERVER" --mode "$mode" --port 0 --workers 1 >"$OUT/$mode.log" 2>&1 &
    PID=$!
    port=
    for _ in $(seq 300); do
        port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$OUT/$mode.log")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "server ($mode) did not start" >&2; exit 1; }
    url="http://127.0.0.1:$port/"
    wrk -t1 -c4 -d2s -H 'x-api-key: bench' "$url" >/dev/null
    callgrind_control -z "$PID" >/dev/null 2>&1
    wrk -t1 -c1 -d4s -H 'x-api-key: bench' "$url" >"$OUT/$mode.wrk"
    callgrind_control -d "$PID" >/dev/null 2>&1
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$OUT/$mode.wrk")
    if grep -q 'Non-2xx' "$OUT/$mode.wrk"; then
        echo "$mode: non-2xx answers, the run measures nothing" >&2
        exit 1
    fi
    # The dump made by callgrind_control -d: the file with a part number.
    dump=$(ls "$OUT/$mode".*.1 2>/dev/null || ls "$OUT/$mode".* | grep -v '\.log$\|\.wrk$' | head -1)
    total=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$dump" | head -1)
    per=$((total / requests))
    [ -n "$bare" ] || { [ "$mode" != bare ] || bare=$per; }
    over=$([ -n "$bare" ] && echo "+$((per - bare))" || echo "")
    if [ -n "${SIM:-}" ]; then
        # events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim
        sim=$(sed -n 's/^summary: *//p' "$dump" | head -1 |
            awk -v r="$requests" '{printf "%.1f | %.1f | %.1f | %.1f | %.1f", $4/r, $5/r, $6/r, $11/r, $13/r}')
        echo "| $mode | $requests | $per | $over | $sim |"
    else
        echo "| $mode | $requests | $per | $over |"
    fi
done
