#!/usr/bin/env bash
# HTTP throughput and latency of the tower layers under wrk, against the
# same axum server several ways (benches/examples/http_server.rs; its docs
# list the modes):
#
#   bare      axum alone, `GET /` answering `ok`
#   fusebox   + a keyed RateLimitLayer (key: the x-api-key header) and a
#             CircuitBreakerLayer inside it, built from a Registry, quota
#             never reached
#   governor  + tower_governor's GovernorLayer keyed by the same header,
#             quota never reached (the peer); governor-headers with its
#             x-ratelimit-* headers
#
# each either in one `Router::layer` call (MODE) or around the whole
# router (MODE-outer: no per-request boxing by axum). `bare-outer` is the
# router alone served the way the -outer modes are (through
# `ServiceExt::into_make_service`), about 2 % cheaper here than `bare`
# (`axum::serve(listener, router)`): the baseline of the layers' own cost
# around the router.
#
# Two measurements:
#
# 1. Solo: each mode's server alone, `wrk -c64 -d10s --latency -H
#    'x-api-key: bench'` after a 1 s warm-up, modes interleaved for ROUNDS
#    rounds: requests/s and latency (medians). The server runs on CPU 0
#    with one tokio worker, wrk on CPU 1 with one thread (WRK_PIN=0: not
#    pinned). On this VM these drift ±10 % between runs (the host takes
#    the CPU from the guest: `steal` in /proc/stat), more than the
#    differences being measured, so the ratios come from 2.
# 2. Duet (Bulej et al., "Duet Benchmarking", 2020): two servers at the
#    same time on CPU 0, each loaded by its own wrk on CPU 1, for
#    DUET_ROUNDS rounds per pair, alternating which starts first. Both go
#    through the same interference, so their ratio holds where single
#    runs drift. Both servers are put in one CPU cgroup capped at half of
#    CPU 0 (where the cgroup file system is writable, as root), so they,
#    not the clients, are the bottleneck, and share it fairly. Each
#    server's cost per request is its CPU time (the sum over its threads
#    of /proc/PID/task/*/schedstat, ns, steal excluded) over the requests
#    wrk completed; the pair's ratio is that cost's, and the requests/s
#    ratio is shown next to it. `bare:bare` is the control: what the
#    method reads for no difference.
#
# Writes benches/wrk.md and puts it into BENCHMARKS.md between the
# `<!-- wrk:begin -->` and `<!-- wrk:end -->` markers (report.sh keeps the
# same block when it rewrites BENCHMARKS.md). About 20 minutes.
#
#   ./benches/wrk.sh                 # WRK_ROUNDS=3 WRK_DURATION=6s DUET_ROUNDS=8
#   WRK_ROUNDS=1 DUET_ROUNDS=2 WRK_DURATION=3s ./benches/wrk.sh   # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."

PIN=${WRK_PIN:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}
THREADS=${WRK_THREADS:-$([ "$PIN" = 1 ] && echo 1 || echo 2)}
CONNECTIONS=${WRK_CONNECTIONS:-64}
DURATION=${WRK_DURATION:-6s}
ROUNDS=${WRK_ROUNDS:-3}
MODES=${WRK_MODES:-"bare bare-outer fusebox-outer governor-outer governor-headers-outer fusebox governor governor-headers identity"}
DUET_ROUNDS=${DUET_ROUNDS:-8}
DUET_DURATION=${DUET_DURATION:-5s}
PAIRS=${DUET_PAIRS:-"bare:bare bare-outer:fusebox-outer bare-outer:governor-headers-outer bare:fusebox bare:fusebox-outer bare:bare-outer governor-headers-outer:fusebox-outer governor-headers-outer:fusebox-limit-outer governor-outer:fusebox-limit-no-fields-outer governor-outer:fusebox-no-fields-outer bare-outer:fusebox-no-fields-outer bare-outer:governor-outer bare-outer:static-fields-outer bare:identity"}
case " $MODES " in
    *" bare "*) ;;
    *) echo "WRK_MODES must include bare (the solo table's baseline)" >&2; exit 2 ;;
esac
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
    rm -f "$log"
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

# --- Duets -------------------------------------------------------------
# The CPU cgroup both servers of a duet share (cgroup v1 `cpu` or v2).
CGROUP=
make_cgroup() {
    local v1=/sys/fs/cgroup/cpu v2=/sys/fs/cgroup
    [ "$PIN" = 1 ] || return 0
    if [ -w "$v1" ] && [ -e "$v1/cpu.cfs_quota_us" ]; then
        CGROUP="$v1/fusebox-wrk-$$"
        mkdir -p "$CGROUP"
        echo 100000 >"$CGROUP/cpu.cfs_period_us"
        echo 50000 >"$CGROUP/cpu.cfs_quota_us"
    elif [ -w "$v2" ] && grep -qw cpu "$v2/cgroup.controllers" 2>/dev/null; then
        grep -qw cpu "$v2/cgroup.subtree_control" || echo +cpu >"$v2/cgroup.subtree_control"
        CGROUP="$v2/fusebox-wrk-$$"
        mkdir -p "$CGROUP"
        echo "50000 100000" >"$CGROUP/cpu.max"
    fi
}
drop_cgroup() {
    [ -z "$CGROUP" ] || rmdir "$CGROUP" 2>/dev/null || true
}
# A process's CPU time so far, ns: the sum over its threads.
cpu_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'
}
# Starts a duet server in mode $1 (side $2: a or b); sets PID_$2, PORT_$2.
start_side() {
    local log="$OUT/duet.$2.out" port=
    rm -f "$log"
    "${SERVER_CPU[@]}" "$SERVER" --mode "$1" --port 0 "${SERVER_ARGS[@]}" >"$log" &
    eval "PID_$2=$!"
    for _ in $(seq 100); do
        port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log" 2>/dev/null)
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "server ($1) did not start" >&2; exit 1; }
    eval "PORT_$2=$port"
    [ -z "$CGROUP" ] || eval "echo \$PID_$2" >"$CGROUP/cgroup.procs"
}
stop_duet() {
    for pid in ${PID_a:-} ${PID_b:-}; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PID_a= PID_b=
}
trap 'stop; stop_duet; drop_cgroup; rm -rf "$OUT"' EXIT
make_cgroup
echo "${CGROUP:+capped}" >"$OUT/duet-capped"
for pair in $PAIRS; do
    for round in $(seq "$DUET_ROUNDS"); do
        # Alternate which server starts first (and gets the first wrk).
        if [ $((round % 2)) = 1 ]; then a=${pair%%:*} b=${pair##*:}; else a=${pair##*:} b=${pair%%:*}; fi
        start_side "$a" a
        start_side "$b" b
        # Warm both up at once.
        "${CLIENT_CPU[@]}" wrk -t1 -c"$CONNECTIONS" -d1s -H 'x-api-key: bench' "http://127.0.0.1:$PORT_a/" >/dev/null &
        wa=$!
        "${CLIENT_CPU[@]}" wrk -t1 -c"$CONNECTIONS" -d1s -H 'x-api-key: bench' "http://127.0.0.1:$PORT_b/" >/dev/null
        wait "$wa"
        ca=$(cpu_ns "$PID_a") cb=$(cpu_ns "$PID_b")
        steal=$(awk '/^cpu0 /{ print $9 }' /proc/stat)
        "${CLIENT_CPU[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DUET_DURATION" -H 'x-api-key: bench' "http://127.0.0.1:$PORT_a/" >"$OUT/duet.$pair.$round.a.txt" &
        wa=$!
        "${CLIENT_CPU[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DUET_DURATION" -H 'x-api-key: bench' "http://127.0.0.1:$PORT_b/" >"$OUT/duet.$pair.$round.b.txt"
        wait "$wa"
        echo "$a $b $(($(cpu_ns "$PID_a") - ca)) $(($(cpu_ns "$PID_b") - cb)) $(($(awk '/^cpu0 /{ print $9 }' /proc/stat) - steal))" \
            >"$OUT/duet.$pair.$round.cpu"
        stop_duet
        echo "duet $pair, round $round: $(cat "$OUT/duet.$pair.$round.cpu")"
    done
done
drop_cgroup

python3 benches/wrk_report.py "$OUT" "$MODES" "$ROUNDS" \
    "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency -H 'x-api-key: bench'" \
    "$PAIRS" "$DUET_ROUNDS" "wrk -t1 -c$CONNECTIONS -d$DUET_DURATION -H 'x-api-key: bench'"
echo "wrote benches/wrk.md and its block in BENCHMARKS.md"
