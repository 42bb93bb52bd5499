//! Architecture checks: every module documents itself (folders walked recursively), and the
//! layer rules hold: the engine names nothing above it, the store only the engine.

use std::path::{Path, PathBuf};

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    rs_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut out);
    assert!(!out.is_empty(), "no sources under {dir}");
    out
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    for dir in ["src", "sandbox/src"] {
        for path in files(dir) {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.trim_start().starts_with("//!"),
                "{} has no //! module doc",
                path.display()
            );
        }
    }
}

/// The layer rule holds for a folder's code; its unit tests (`tests.rs`) may drive it with
/// a lower layer's test doubles (the engine's use the store's in-memory journal).
fn assert_names_none_of(dir: &str, forbidden: &[&str]) {
    for path in files(dir).into_iter().filter(|p| !p.ends_with("tests.rs")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for f in forbidden {
            assert!(
                !text.contains(f),
                "{} mentions {f}: the layer rule forbids it",
                path.display()
            );
        }
    }
}

const AWS: [&str; 3] = ["aws_sdk", "aws_config", "aws_smithy"];

#[test]
fn the_engine_names_nothing_above_it() {
    let mut forbidden = AWS.to_vec();
    forbidden.extend([
        "crate::aws",
        "crate::steps",
        "crate::target",
        "crate::config",
        "crate::app",
        "crate::cli",
        "crate::agent",
        "crate::store",
    ]);
    assert_names_none_of("src/engine", &forbidden);
}

#[test]
fn the_store_uses_only_the_engine() {
    let mut forbidden = AWS.to_vec();
    forbidden.extend([
        "crate::aws",
        "crate::steps",
        "crate::target",
        "crate::config",
        "crate::app",
        "crate::cli",
        "crate::agent",
    ]);
    assert_names_none_of("src/store", &forbidden);
}

#[test]
fn only_the_aws_layer_names_the_sdk() {
    for dir in [
        "src/steps",
        "src/target",
        "src/app",
        "src/agent",
        "src/config",
    ] {
        assert_names_none_of(dir, &AWS);
    }
}

#[test]
fn the_tidy_check_can_fail() {
    // The walker sees nested files, so a forbidden name in a nested module would be caught.
    assert!(files("src").iter().any(|p| p.ends_with("engine/retry.rs")));
}
