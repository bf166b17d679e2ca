//! One name for the word-width choice (STYLE.md: one home per cfg).
//!
//! `fusebox_wide_words` is set when the packed state words are 64 bits wide:
//! on targets with native 64-bit atomics, and under loom (whose atomics are
//! all 64-bit capable), unless `--cfg fusebox_narrow_words` asks for the
//! 32-bit Cortex-M layout on a host (the loom models run both layouts).

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(fusebox_wide_words)");
    println!("cargo::rustc-check-cfg=cfg(loom)");
    println!("cargo::rustc-check-cfg=cfg(fusebox_narrow_words)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CARGO_CFG_LOOM");
    println!("cargo::rerun-if-env-changed=CARGO_CFG_FUSEBOX_NARROW_WORDS");

    let loom = env::var_os("CARGO_CFG_LOOM").is_some();
    let narrow = env::var_os("CARGO_CFG_FUSEBOX_NARROW_WORDS").is_some();
    let atomic_64 = env::var("CARGO_CFG_TARGET_HAS_ATOMIC")
        .is_ok_and(|widths| widths.split(',').any(|width| width == "64"));
    if (loom || atomic_64) && !narrow {
        println!("cargo::rustc-cfg=fusebox_wide_words");
    }
}
