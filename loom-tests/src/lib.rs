//! Loom models live in `tests/`; see the manifest for how to run them.
