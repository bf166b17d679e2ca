#!/usr/bin/env bash
# Builds the firmware (release: opt-level "z", LTO) for every target, runs
# the scenario under QEMU (qemu-run.sh: defmt-print, timeout), checks the
# Cortex-M4 build has no portable-atomic global-lock fallback, and prints
# the flash/RAM size table. Exits non-zero if anything fails.
set -uo pipefail
cd "$(dirname "$0")"
start=$SECONDS
failed=()
TARGETS=(thumbv7em-none-eabihf thumbv6m-none-eabi)
LLVM_BIN=$(echo "$(rustc --print sysroot)"/lib/rustlib/*/bin)
# Where cargo puts the ELFs read below (a CARGO_TARGET_DIR elsewhere moved
# them, and a stale local target/ was then read instead).
TARGET_DIR=${CARGO_TARGET_DIR:-target}
# Panic locations keep their source file's path in .rodata: the checkout's
# and cargo's home are remapped to fixed names, so the sizes below are the
# same in any clone (they grew by 8 B from /work/main to /work/rev-readme,
# with 24 B left under the 6 KiB budget). Given as `--config` TOML arrays,
# which cargo joins with the configuration's rustflags for these targets
# (and with any CARGO_TARGET_<triple>_RUSTFLAGS of the caller's), and which
# keep a path with a space whole: CARGO_TARGET_<triple>_RUSTFLAGS is split
# at whitespace, so a checkout at "/home/me/my work" failed every build
# ("--remap-path-prefix must contain '=' between FROM and TO").
toml_string() {
    local s=${1//\\/\\\\}
    printf '"%s"' "${s//\"/\\\"}"
}
ROOT=$(cd .. && pwd)
REMAP=()
for t in "${TARGETS[@]}"; do
    REMAP+=(--config "target.$t.rustflags=[$(toml_string "--remap-path-prefix=$ROOT=/fusebox"), $(toml_string "--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo")]")
done

for t in "${TARGETS[@]}"; do
    printf '\n--> scenario on %s\n' "$t"
    cargo run -q "${REMAP[@]}" --release --target "$t" --bin scenario || failed+=("scenario $t")
done

printf '\n--> no portable-atomic lock fallback on thumbv7em\n'
elf=$TARGET_DIR/thumbv7em-none-eabihf/release/scenario
if [ ! -f "$elf" ]; then
    failed+=("nm: $elf missing")
elif "$LLVM_BIN/llvm-nm" "$elf" | grep -i portable_atomic | grep -Ei 'fallback|lock'; then
    failed+=("portable-atomic fallback symbols in $elf")
else
    echo "none"
fi

# Cumulative feature sets of the `size` bin.
SETS=("" breaker breaker,bucket breaker,bucket,lru breaker,bucket,lru,histogram
    breaker,bucket,lru,histogram,half-open-timeout breaker,bucket,lru,histogram,half-open-timeout,time-window)
NAMES=("empty firmware" "+ CircuitBreaker" "+ TokenBucket" "+ LruCache<u32,u32,32>" "+ Histogram<1024>"
    "+ feature half-open-timeout (max_half_open)" "+ feature time-window (3 failures in 8 s)")
for t in "${TARGETS[@]}"; do
    printf '\n--> sizes on %s (flash = .text+.rodata, RAM = .data+.bss)\n' "$t"
    echo "| $t | flash B | RAM B | flash delta |"
    echo "|---|---:|---:|---:|"
    base=""
    for i in "${!SETS[@]}"; do
        feats=${SETS[$i]}
        if ! cargo build -q "${REMAP[@]}" --release --target "$t" --bin size --features "$feats" ||
            ! FW_TIMEOUT=10 cargo run -q "${REMAP[@]}" --release --target "$t" --bin size --features "$feats" >/dev/null; then
            failed+=("size $t [$feats]")
            continue
        fi
        read -r flash ram < <("$LLVM_BIN/llvm-size" -A "$TARGET_DIR/$t/release/size" |
            awk '$1==".text"||$1==".rodata"{f+=$2} $1==".data"||$1==".bss"||$1==".uninit"{r+=$2} END{print f, r}')
        # A missing llvm-size must fail the size check, not skip it.
        if ! [[ "$flash" =~ ^[0-9]+$ && "$ram" =~ ^[0-9]+$ && $flash -gt 0 ]]; then
            failed+=("size $t [$feats]: no size read (llvm-tools installed?)")
            continue
        fi
        base=${base:-$flash}
        echo "| ${NAMES[$i]} | $flash | $ram | +$((flash - base)) |"
        if [ "$t" = thumbv7em-none-eabihf ] && [ "$feats" = breaker,bucket,lru ] &&
            [ $((flash - base)) -gt 6144 ]; then
            failed+=("breaker+bucket+lru add $((flash - base)) B > 6 KiB flash")
        fi
    done
done

printf '\nfirmware run.sh: %ss\n' $((SECONDS - start))
if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "firmware: all targets passed"
