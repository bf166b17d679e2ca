#!/usr/bin/env bash
# Instructions per operation of each hot path (examples/hot.rs) under
# callgrind: two runs of different lengths, subtracted, so set-up cancels.
# Hardware counters (perf stat) are unavailable in some VMs; this is not.
#
#   ./benches/instr.sh [path ...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p fusebox-benches --example hot
target_dir=${CARGO_TARGET_DIR:-target}
paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(fetch_add breaker breaker_rate bucket keyed keyed_governor keyed_governor_default_hasher cc_get cc_get_quiet qc_get \
    lru_get lrurs_get lru_put lrurs_put histogram std_breaker_call failsafe_call failsafe_call_default)
ir() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$target_dir/release/examples/hot" "$1" "$2" 2>&1 |
        grep -o 'Collected : [0-9]*' | grep -o '[0-9]*$'
}
for p in "${paths[@]}"; do
    a=$(ir "$p" 100000)
    b=$(ir "$p" 600000)
    python3 -c "print(f'| {\"$p\"} | {($b - $a) / 500000:.1f} |')"
done
