//! Hostile inputs, wrapping words, and the layout of these test binaries.
//!
//! One test binary for many files (each file a module, named as before):
//! a binary per file built and linked the same code 94 times. Run one
//! file's tests with `cargo test -p fusebox --test contracts -- <file>::`.

#[path = "../../tests/tests/binary_layout.rs"]
mod binary_layout;
mod common;

mod hostile_inputs;
mod wrapping_words;
