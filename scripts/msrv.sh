#!/usr/bin/env bash
# Builds what the manifests' `rust-version` fields promise, on exactly
# those toolchains (installed if missing), for Cortex-M0 (and the host):
#
# * the core (the workspace's rust-version, 1.81) with every feature but
#   `embassy-time`, and on the host with `std`, as a firmware or server
#   uses it: a path dependency of a crate outside the workspace (cargo
#   1.81 cannot load the workspace itself: `fusebox-std` is edition 2024);
# * the core with `embassy-time`, and the example firmware, on
#   embedded-example's rust-version (1.85: embassy-time 0.5,
#   embassy-time-driver 0.2.2, cortex-m 0.7.10 and cortex-m-rt 0.7.7 are
#   edition 2024, which cargo 1.81 refuses to parse).
#
# Each build uses the workspace's (or the example's) Cargo.lock, so the
# dependency versions are the ones the other layers test.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=thumbv6m-none-eabi
msrv_of() {
    sed -n 's/^rust-version = "\(.*\)"$/\1/p' "$1"
}
CORE_MSRV=$(msrv_of Cargo.toml)
FW_MSRV=$(msrv_of embedded-example/Cargo.toml)
if [ -z "$CORE_MSRV" ] || [ -z "$FW_MSRV" ]; then
    echo "msrv.sh: no rust-version read (core: '$CORE_MSRV', firmware: '$FW_MSRV')" >&2
    exit 1
fi
for v in "$CORE_MSRV" "$FW_MSRV"; do
    if ! rustup run "$v" rustc --version >/dev/null 2>&1; then
        rustup toolchain install "$v" --profile minimal
    fi
    rustup "+$v" target add "$TARGET" >/dev/null 2>&1
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/msrv

crate=$(mktemp -d)
trap 'rm -rf "$crate"' EXIT
mkdir "$crate/src"
cat >"$crate/Cargo.toml" <<EOF
[package]
name = "fusebox-msrv-check"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[features]
embassy-time = ["fusebox/embassy-time"]
std = ["fusebox/std"]

[dependencies]
fusebox = { path = "$ROOT/core", default-features = false, features = ["defmt", "serde", "time-window", "half-open-timeout"] }
EOF
echo '#![no_std]' >"$crate/src/lib.rs"
cp Cargo.lock "$crate/Cargo.lock"

echo "msrv: core, every feature but embassy-time, on $CORE_MSRV"
cargo "+$CORE_MSRV" build -q --manifest-path "$crate/Cargo.toml" --target "$TARGET"
echo "msrv: core with std (the host) on $CORE_MSRV"
cargo "+$CORE_MSRV" build -q --manifest-path "$crate/Cargo.toml" --features std
echo "msrv: core with embassy-time on $FW_MSRV"
cargo "+$FW_MSRV" build -q --manifest-path "$crate/Cargo.toml" --target "$TARGET" --features embassy-time
echo "msrv: embedded-example on $FW_MSRV"
# From its directory: its .cargo/config.toml (the linker scripts) is found
# from the working directory, not from the manifest's.
cd embedded-example
cargo "+$FW_MSRV" build -q --release --target "$TARGET" --bins \
    --features breaker,bucket,lru,histogram,half-open-timeout,time-window
