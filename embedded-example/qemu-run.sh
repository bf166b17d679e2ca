#!/usr/bin/env bash
# Cargo runner: boots ELF $1 under QEMU for its target and decodes the defmt
# frames. Fails on a non-zero firmware exit or a hang (FW_TIMEOUT s, default 30).
set -euo pipefail
elf=$1
case "$elf" in
*thumbv6m-none-eabi*) machine=(-cpu cortex-m0 -machine microbit) ;;
*) machine=(-cpu cortex-m4 -machine mps2-an386) ;;
esac
timeout "${FW_TIMEOUT:-30}" qemu-system-arm "${machine[@]}" -nographic \
    -semihosting-config enable=on,target=native -kernel "$elf" |
    defmt-print -e "$elf"
