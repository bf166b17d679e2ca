//! Puts the target's `memory.x` (from `memory/`) on the linker search path.
use std::{env, fs, path::PathBuf};

fn main() {
    let target = env::var("TARGET").expect("TARGET");
    let src = PathBuf::from(format!("memory/{target}.x"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy(&src, out.join("memory.x")).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed=build.rs");
}
