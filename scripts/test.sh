#!/usr/bin/env bash
# Every test layer of fusebox, in one command. Installs what it needs
# (idempotently) and stops at the first failing layer.
#
#   ./scripts/test.sh
#
# Layers: format; clippy (host and firmware targets, the benchmarks
# included) and rustdoc (broken links fail, every public item has an
# example); unit, doc, property and integration tests and the storm demo;
# no_std builds (Cortex-M0 and M4, and a core-only sysroot proving nothing
# pulls in `alloc`); the firmware under QEMU; loom models and Miri (four
# jobs side by side, in the background from the no_std builds on). Each
# command prints its wall time and how busy the cores were meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."

NIGHTLY=${FUSEBOX_NIGHTLY:-nightly}
# Built once, from scratch, run, then thrown away: no incremental caches to
# write, and line tables (file and line in a panic's backtrace) instead of
# full debug info, which the tests never read and which made most of a
# debug build's and link's time.
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=line-tables-only
THUMBS=(thumbv6m-none-eabi thumbv7em-none-eabihf)
passed=0
start=$SECONDS

layer() {
    printf '\n==> %s\n' "$*"
}
done_layer() {
    passed=$((passed + 1))
    printf '    ok (%ss so far)\n' $((SECONDS - start))
    stop_if_background_failed
}
# The jobs started in the background (loom, Miri): name -> pid, log, and
# exit status once ended.
declare -A bg_pid=() bg_log=() bg_status=()
# Records the status of every background job that has ended; a failed one
# stops the run at once (its log printed whole) rather than after the
# layers still to come.
stop_if_background_failed() {
    local name status
    for name in "${!bg_pid[@]}"; do
        [ -z "${bg_status[$name]:-}" ] || continue
        kill -0 "${bg_pid[$name]}" 2>/dev/null && continue
        status=0
        wait "${bg_pid[$name]}" || status=$?
        bg_status[$name]=$status
        if [ "$status" -ne 0 ]; then
            trap - EXIT
            for other in "${!bg_pid[@]}"; do
                kill_tree "${bg_pid[$other]}"
            done
            printf '\n%s failed; its log (%s):\n' "$name" "${bg_log[$name]}"
            cat "${bg_log[$name]}"
            exit 1
        fi
    done
}
# The machine's busy and total CPU ticks so far (every core; /proc/stat).
cpu_ticks() {
    awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat
}
# Runs one command and prints its wall time and how busy the machine's
# cores were meanwhile, so a slow step, and one that leaves cores idle,
# is named.
step() {
    local t0=$SECONDS busy0 total0 busy1 total1
    read -r busy0 total0 < <(cpu_ticks)
    "$@"
    read -r busy1 total1 < <(cpu_ticks)
    printf '    [%3ss, cores %3s%% busy] %s\n' $((SECONDS - t0)) \
        $((100 * (busy1 - busy0) / (total1 - total0 > 0 ? total1 - total0 : 1))) "$*"
}

layer "install: rustup components and targets"
rustup component add rustfmt clippy >/dev/null
rustup target add "${THUMBS[@]}" >/dev/null
if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$NIGHTLY" --profile minimal
fi
if ! rustup "+$NIGHTLY" component list --installed 2>/dev/null | grep -q '^miri'; then
    rustup "+$NIGHTLY" component add miri rust-src
fi
rustup "+$NIGHTLY" component add rust-src >/dev/null
# The dashboard test (tests/tests/http_dashboard.rs) drives a real
# headless browser; it fails, never skips, without one.
if ! command -v chromium >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update && apt-get install -y chromium
fi
# The Redis tests (tests/tests/redis_limit*.rs) start their own
# redis-server instances (and a 3-node Cluster with redis-cli).
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update && apt-get install -y redis-server redis-tools
fi
# scripts/doc_examples.py reads rustdoc's JSON (the rustdoc layer).
if ! command -v python3 >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update && apt-get install -y python3
fi
done_layer

layer "fmt"
step cargo fmt --all -- --check
done_layer

layer "clippy (host, all targets; firmware targets with every feature) and rustdoc"
step cargo clippy --workspace --all-targets -- -D warnings
# fusebox-tests enables fusebox-std's `http` feature, so the workspace
# runs above and below cover the HTTP endpoints (feature unification).
# `--all-targets` type-checks the benchmark suite too; it is run (and
# built in release) by benches/report.sh, never here.
step cargo clippy -p fusebox --all-targets --features serde,std,time-window,half-open-timeout -- -D warnings
# The workspace build enables both new features (benches, loom-tests);
# the core without them:
step cargo clippy -p fusebox --all-targets -- -D warnings
for t in "${THUMBS[@]}"; do
    step cargo clippy -p fusebox --target "$t" --features defmt,serde,embassy-time,time-window,half-open-timeout -- -D warnings
done
# The adapter's features one at a time (the workspace build unifies them:
# a test needing `http` once compiled only with it on).
for f in "" tower http redis; do
    step cargo clippy -p fusebox-std --all-targets --no-default-features --features "$f" -- -D warnings
done
# The storm demo with its own features (the README's first command builds
# it alone: no other package's features unified into the adapter).
step cargo clippy -p fusebox-demo --all-targets -- -D warnings
# The libraries' docs: a broken intra-doc link is an error, in the
# private items' docs too (a maintainer's reading; the public docs last).
step env RUSTDOCFLAGS="-D warnings" cargo doc -p fusebox -p fusebox-std --no-deps --all-features --document-private-items
step env RUSTDOCFLAGS="-D warnings" cargo doc -p fusebox -p fusebox-std --no-deps --all-features
# Every public item has a runnable example: rustdoc's JSON (nightly, its
# own target directory) read by scripts/doc_examples.py, which also sees
# the items re-exported from private modules that rustdoc's own lint for
# this skips.
step env RUSTDOCFLAGS="-Z unstable-options --output-format json" CARGO_TARGET_DIR=target/doc-json \
    cargo "+$NIGHTLY" doc -p fusebox -p fusebox-std --no-deps --all-features
step python3 scripts/doc_examples.py target/doc-json
done_layer

layer "unit, doc and property tests"
# Not the benchmarks (no tests of their own; their peers, criterion and
# the servers of benches/wrk.sh only built here, in debug, took minutes;
# clippy above type-checks every one of their targets) nor the loom
# models (without `--cfg loom` they are empty; the last layer runs them).
# Those two enabled the core's `time-window`; it is named instead, so the
# core is tested with the set the workspace unifies to: alloc, serde, std,
# time-window, half-open-timeout (fusebox-std adds the last).
#
# Built first, then run by scripts/test_binaries.py three binaries at a
# time (cargo runs them one by one): most integration suites wait on
# servers, sockets and timeouts, and one at a time left a core idle for
# most of the layer's 7 minutes. The doctests after them.
workspace_tests() {
    python3 scripts/test_binaries.py --jobs 3 --workspace --exclude fusebox-benches \
        --exclude fusebox-loom --features fusebox/time-window
    cargo test --workspace --exclude fusebox-benches --exclude fusebox-loom \
        --features fusebox/time-window --doc
}
step workspace_tests
# The core without the two breaker features (`time-window`,
# `half-open-timeout`): the targets whose code or tests they change (the
# crate's own tests and examples, the breaker's suite, the contracts and
# the limiter suite's time files); the cache's and histogram's suites
# build the same code with or without them.
step cargo test -p fusebox --features serde,std --lib --test breaker --test contracts --test limiter
step cargo test -p fusebox --features serde,std --doc
# The core with each of the two breaker features alone (the clippy layer
# built the whole set without the workspace's unification):
step cargo test -p fusebox --features time-window,serde --test breaker_time_scenarios --test serde
step cargo test -p fusebox --features half-open-timeout,serde --test breaker_half_open_timeout --test serde
# `EmbassyClock` on a driver defined by the test, at a tick rate that is
# not 1 MHz (the common 32 768 Hz RTC; the rates' arithmetic is unit-tested
# in `time.rs` for all of them). Never mixed into a workspace run: the test
# is the build's one embassy-time driver.
step cargo test -p fusebox --features embassy-time,embassy-time/tick-hz-32_768 --test embassy_clock
# A server binary with nothing but `features = ["std"]` links and runs.
step cargo run -q -p fusebox-std-link
# The README's first command, once, on a short storm: it must exit 0 and
# print its table. The binary the workspace run above built (and
# demo/tests/storm.rs ran and checked), not a build of its own: the
# README builds it with `--release` (that build of its dependencies alone
# took 4.5 minutes of a 37-minute run here), and `cargo run -p
# fusebox-demo` rebuilt the adapter with the demo's own features (40 s);
# the clippy layer type-checks it with those. In process, whatever Redis
# a shell or CI job exports for the storm (`storm --help`:
# FUSEBOX_REDIS_URL; one unreachable failed this step).
step env -u FUSEBOX_REDIS_URL "${CARGO_TARGET_DIR:-target}/debug/storm" --short --seed 1
# The core's unit and integration tests (models, peers' scenarios, long
# histories) again on the 32-bit (Cortex-M) word layouts, on the host
# (`build.rs` turns `fusebox_wide_words` off; the tests read the same cfg
# for the ranges the docs narrow there).
step env RUSTFLAGS="--cfg fusebox_narrow_words" CARGO_TARGET_DIR=target/narrow \
    cargo test -p fusebox --tests --features time-window,half-open-timeout
# The doc examples too: what a firmware adopter copies must hold on
# Cortex-M (RUSTDOCFLAGS gives the examples the cfg, for the few whose
# visible `target_has_atomic` split the host's emulation cannot follow).
step env RUSTFLAGS="--cfg fusebox_narrow_words" RUSTDOCFLAGS="--cfg fusebox_narrow_words" \
    CARGO_TARGET_DIR=target/narrow cargo test -p fusebox --doc --features time-window,half-open-timeout
# Lints on that layout too: an import or a comparison only the 64-bit
# words use is dead code there.
step env RUSTFLAGS="--cfg fusebox_narrow_words" CARGO_TARGET_DIR=target/narrow \
    cargo clippy -p fusebox --all-targets --features time-window,half-open-timeout -- -D warnings
done_layer

layer "loom models and Miri: four jobs side by side"
# Loom at each word width, Miri's x86 tests and Miri's big-endian run each
# leave cores idle alone (Miri interprets on one core; a loom binary often
# ends on one long model), so they run side by side, each writing a log
# (the two loom runs one after the other left the last minutes to the
# narrow run alone, on the few cores Miri left it); the next
# layer waits for them and prints their step times (a log whole, on
# failure). Started here, beside the no_std builds and the firmware
# (which leave a core idle a quarter of their time), not earlier: the
# integration suites above wait on sockets and timeouts and run alone
# (started after fmt at idle priority, these jobs once changed their
# scheduling enough to hang a test on a race, since fixed, and slowed
# those layers by about 17 %).
loom_log=target/loom-layer.log
loom_narrow_log=target/loom-narrow-layer.log
miri_log=target/miri-layer.log
miri_words_log=target/miri-big-endian-layer.log
mkdir -p target
# A failing layer stops them (the whole tree under each subshell) on the
# way out; all of it stays in this script's process group, so that
# whatever kills the script's group kills them too.
kill_tree() {
    local child
    for child in $(pgrep -P "$1" || true); do
        kill_tree "$child"
    done
    kill "$1" 2>/dev/null || true
}
# Every model sets its preemption bound in code. Release without debug
# info: the models are run, never debugged, here.
# Built, then run two binaries at a time by scripts/test_binaries.py:
# the breaker's binary ends on one long model (a2, 3 threads and 2
# permits, minutes alone on a core), which cargo's one binary at a time
# left the others waiting behind.
#
#   loom RUSTFLAGS TARGET-DIR [CARGO-TEST-ARGS...] [-- TEST-ARGS...]
#
# Each job's subshell calls it once: the exports stay there.
loom() {
    export RUSTFLAGS=$1 CARGO_TARGET_DIR=$2 CARGO_PROFILE_RELEASE_DEBUG=false
    shift 2
    step python3 scripts/test_binaries.py --jobs 2 -p fusebox-loom --release "$@"
}
(
    set -e
    loom "--cfg loom" target/loom
) </dev/null >"$loom_log" 2>&1 &
bg_pid[loom]=$! bg_log[loom]=$loom_log
# Beside it, in a target directory of its own: the 32-bit (Cortex-M) word
# layouts: the keyed limiter's three-RMW slot protocol, 32-bit bucket
# words, counters, generations and time-window buckets, and the cache's
# slot sequences (two 32-bit words there, one 64-bit word here). Not
# again: the breaker's 3-thread, 2-permit half-open model (a2, about 40 %
# of a run's time), whose slot protocol is the same code at both widths;
# every other breaker model runs at both.
(
    set -e
    loom "--cfg loom --cfg fusebox_narrow_words" target/loom-narrow \
        --test breaker --test breaker_reconfig --test breaker_time --test bucket --test histogram \
        --test cache --test cache_seq_carry \
        -- --skip a2_half_open_in_flight_bounded_two_permits
) </dev/null >"$loom_narrow_log" 2>&1 &
bg_pid[loom-narrow]=$! bg_log[loom-narrow]=$loom_narrow_log
(
    set -e
    # The parts with unsafe code: their unit tests (the keyed limiter's
    # slots, the caches', `AtomicBytes`) and the suites that reach them
    # (the concurrent cache's, the keyed limiter's). Not the breaker, the
    # plain bucket nor the histogram, whose code is safe (the histogram's
    # construction in place is run below): Miri finds no undefined
    # behaviour in safe code, and their unit tests were half of this
    # job's time. Nor the binaries that Miri runs no test of (their files
    # are `cfg(not(miri))`: thread counts, long histories). The doctests
    # are the API's examples, run natively, and add no unsafe path the
    # tests do not take.
    step env MIRIFLAGS="${MIRIFLAGS:-}" cargo "+$NIGHTLY" miri test -p fusebox \
        --lib -- bucket::keyed:: cache:: sync::
    step env MIRIFLAGS="${MIRIFLAGS:-}" cargo "+$NIGHTLY" miri test -p fusebox \
        --test cache --test limiter
    # Heap construction in place (`new_boxed`, feature `alloc`) at Miri
    # sizes; the tests above ran without `alloc`.
    step env MIRIFLAGS="${MIRIFLAGS:-}" cargo "+$NIGHTLY" miri test -p fusebox --features alloc \
        --lib --test boxed_construction --test histogram_boxed -- boxed in_place
) </dev/null >"$miri_log" 2>&1 &
bg_pid[Miri]=$! bg_log[Miri]=$miri_log
# Beside it and loom (Miri interprets on one core), in a target
# directory of its own (cargo holds a directory's lock for a whole run,
# tests included): the 32-bit word paths of the keyed limiter's unsafe
# code (Cortex-M's: 32-bit bucket words, the three-RMW slot protocol) and
# `AtomicBytes`'s byte views on a big-endian host target without 64-bit
# atomics; Miri builds that target's sysroot itself.
(
    set -e
    step env MIRIFLAGS="${MIRIFLAGS:-}" CARGO_TARGET_DIR=target/miri-big-endian \
        cargo "+$NIGHTLY" miri test -p fusebox --target powerpc-unknown-linux-gnu --lib -- bucket::keyed:: sync::
) </dev/null >"$miri_words_log" 2>&1 &
bg_pid[Miri-big-endian]=$! bg_log[Miri-big-endian]=$miri_words_log

trap 'for name in "${!bg_pid[@]}"; do kill_tree "${bg_pid[$name]}"; done' EXIT
done_layer

layer "no_std builds: Cortex-M0 (no CAS) and Cortex-M4F, without and with features"
for t in "${THUMBS[@]}"; do
    step cargo build -p fusebox --target "$t" --no-default-features
    step cargo build -p fusebox --target "$t" --features defmt,serde,embassy-time,time-window,half-open-timeout
done
# The stated MSRVs, on those toolchains: the core on 1.81 (every feature but
# embassy-time), embassy-time and the example firmware on 1.85.
step scripts/msrv.sh
# A sysroot holding only `core`: any `std` or `alloc` anywhere in the
# dependency graph fails this build.
step env CARGO_TARGET_DIR=target/core-only cargo "+$NIGHTLY" build -p fusebox \
    --target thumbv7em-none-eabihf -Zbuild-std=core --features defmt,embassy-time,serde,time-window,half-open-timeout
done_layer

layer "firmware under QEMU (Cortex-M4F and M0): embedded-example/run.sh"
rustup component add llvm-tools >/dev/null
if ! command -v qemu-system-arm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update && apt-get install -y qemu-system-arm
fi
if ! command -v defmt-print >/dev/null; then
    cargo install defmt-print --locked
fi
(
    cd embedded-example
    step cargo fmt -- --check
    for t in "${THUMBS[@]}"; do
        step cargo clippy -q --release --target "$t" --bins --features breaker,bucket,lru,histogram,half-open-timeout,time-window -- -D warnings
    done
)
step embedded-example/run.sh
done_layer

layer "loom models and Miri (started above): waiting for them"
for name in "${!bg_pid[@]}"; do
    # Blocks until the job ends (a failure stops the run there).
    while [ -z "${bg_status[$name]:-}" ]; do
        sleep 5
        stop_if_background_failed
    done
done
trap - EXIT
for log in "$loom_log" "$loom_narrow_log" "$miri_log" "$miri_words_log"; do
    grep -E '^    \[|^test result' "$log" || true
done
done_layer

printf '\nfusebox test layers: %d passed, 0 failed in %ss\n' "$passed" $((SECONDS - start))
