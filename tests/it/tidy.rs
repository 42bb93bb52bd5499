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

const AWS: [&str; 3] = ["aws_sdk", "aws_config", "aws_smithy"];

/// The layer table of ARCHITECTURE.md ("may use"): for each folder of `src/`, the crate's
/// modules its code may name (`crate::X`, or `crate::X::Y` for one part of X). Only `aws`
/// names the SDK, and `store/dynamodb` (the DynamoDB state store's driver).
const LAYERS: &[(&str, &[&str])] = &[
    ("engine", &[]),
    ("store", &["engine"]),
    ("agent", &[]),
    ("aws", &[]),
    ("config", &["agent", "aws::pacer"]),
    ("steps", &["engine", "aws", "agent", "config"]),
    ("preflight", &["aws", "config", "agent", "steps"]),
    (
        "app",
        &[
            "engine",
            "store",
            "agent",
            "aws",
            "config",
            "steps",
            "preflight",
        ],
    ),
    ("cli", &["app", "agent", "config", "engine"]),
];

/// Every `crate::...` path named in `text` (module path only, without the item).
fn crate_paths(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"crate::([a-z_]+(?:::[a-z_]+)*)").unwrap();
    re.captures_iter(text).map(|c| c[1].to_string()).collect()
}

#[test]
fn every_folder_names_only_the_layers_the_architecture_table_allows() {
    let folders: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for f in &folders {
        assert!(
            LAYERS.iter().any(|(d, _)| d == f),
            "src/{f} is not in the layer table (tests/it/tidy.rs and ARCHITECTURE.md)"
        );
    }
    for (dir, allowed) in LAYERS {
        let path = format!("src/{dir}");
        for file in files(&path)
            .into_iter()
            .filter(|p| !p.ends_with("tests.rs"))
        {
            let text = std::fs::read_to_string(&file).unwrap();
            // Doc comments may mention other layers; code may not.
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for p in crate_paths(&code) {
                let ok = p.split("::").next() == Some(dir)
                    || allowed
                        .iter()
                        .any(|a| p == *a || p.starts_with(&format!("{a}::")));
                assert!(
                    ok,
                    "{} names crate::{p}: {dir} may use only {allowed:?} (ARCHITECTURE.md)",
                    file.display()
                );
            }
            // The DynamoDB state store drives its table with the SDK's client, as the
            // SQLite store drives its file with rusqlite (ARCHITECTURE.md).
            let store_driver =
                file.starts_with(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/dynamodb"));
            if *dir != "aws" && !store_driver {
                let sdk = regex::Regex::new(&format!(r"\b({})\w*::", AWS.join("|"))).unwrap();
                assert!(
                    !sdk.is_match(&code),
                    "{} names the SDK: only src/aws does",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn the_layer_check_sees_a_forbidden_path() {
    let paths = crate_paths("use crate::aws::pacer::RateLimits;\nlet x = crate::steps::PASSWORD;");
    assert_eq!(paths, vec!["aws::pacer", "steps"]);
}

#[test]
fn the_tidy_check_can_fail() {
    // The walker sees nested files, so a forbidden name in a nested module would be caught.
    assert!(files("src").iter().any(|p| p.ends_with("engine/retry.rs")));
}
