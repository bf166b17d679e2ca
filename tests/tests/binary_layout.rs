//! A package here builds its test binaries from a list (`autotests =
//! false` in its `Cargo.toml`; `fusebox-tests` and the core, whose
//! `contracts` suite runs this file too): a few suites whose roots
//! (`suite_*.rs`) declare each file as a module, and the files that need
//! a binary of their own. A test file that no binary declares would never
//! be built or run, silently: this test fails on one, and on a file built
//! twice.

// It reads the file system, which Miri's isolation refuses (the core's
// suites run under Miri too); no unsafe code runs here.
#![cfg(not(miri))]

use std::collections::BTreeMap;
use std::path::Path;

/// Each `.rs` file of the package's test directory (suite roots
/// excluded), with the binaries that build it.
fn builders() -> BTreeMap<String, Vec<String>> {
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = package.join("tests");
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut suites = Vec::new();
    let mut helpers = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the package's tests") {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if entry.file_type().unwrap().is_dir() {
            helpers.push(name); // a helper module (`common`), no tests
            continue;
        }
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        if stem.starts_with("suite_") {
            suites.push(stem.to_owned());
        } else {
            files.insert(stem.to_owned(), Vec::new());
        }
    }
    let manifest = std::fs::read_to_string(package.join("Cargo.toml")).unwrap();
    for line in manifest.lines() {
        let Some(path) = line.trim().strip_prefix("path = \"tests/") else {
            continue;
        };
        let stem = path.trim_end_matches('"').trim_end_matches(".rs");
        if let Some(builders) = files.get_mut(stem) {
            builders.push("its own binary".to_owned());
        } else {
            assert!(
                stem.starts_with("suite_"),
                "Cargo.toml builds a missing tests/{stem}.rs"
            );
        }
    }
    for suite in suites {
        let root = std::fs::read_to_string(dir.join(format!("{suite}.rs"))).unwrap();
        let mut previous = "";
        for line in root.lines() {
            let declared = line.strip_prefix("mod ").and_then(|m| m.strip_suffix(';'));
            let from_elsewhere = previous.starts_with("#[path");
            previous = line;
            let Some(module) = declared else {
                continue;
            };
            if from_elsewhere || helpers.iter().any(|h| h == module) {
                continue;
            }
            let builders = files
                .get_mut(module)
                .unwrap_or_else(|| panic!("{suite} declares a missing {module}.rs"));
            builders.push(suite.clone());
        }
    }
    files
}

#[test]
fn every_test_file_is_built_by_exactly_one_binary() {
    let files = builders();
    assert!(
        files.len() > 50,
        "{} files: not a package's tests",
        files.len()
    );
    let wrong: Vec<_> = files.iter().filter(|(_, b)| b.len() != 1).collect();
    assert!(
        wrong.is_empty(),
        "each file needs one binary (a `mod` line in one suite_*.rs, or a [[test]] of its own): {wrong:?}"
    );
}
