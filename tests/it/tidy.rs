//! Architecture checks: every module documents itself (folders walked recursively), the
//! layer rules hold (the LAYERS table), and environment knobs and exit codes each live in one
//! place (`src/app/env.rs`, `src/cli/exit.rs`).

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

/// The code of a file before its first `#[cfg(test)]` (tests may read the environment).
fn non_test_code(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// What breaks the one-place rules in `text` of the file `rel` (a path under the
/// repository): environment variables are read only in `src/app/env.rs`; exit codes are
/// only in `src/cli/exit.rs` (no literal `Ok(0..=3)` as a command's code, no
/// `process::exit`).
fn one_place_violations(rel: &str, text: &str) -> Vec<String> {
    let code = non_test_code(text);
    let mut out = Vec::new();
    let test_file = rel.ends_with("/tests.rs") || rel.ends_with("/fuzz.rs");
    if !test_file
        && rel != "src/app/env.rs"
        && (code.contains("env::var(") || code.contains("env::var_os("))
    {
        out.push(format!(
            "{rel} reads an environment variable: only src/app/env.rs does"
        ));
    }
    if rel.starts_with("src/cli/") && rel != "src/cli/exit.rs" {
        let literal = regex::Regex::new(r"Ok\([0-3]\)").unwrap();
        if literal.is_match(code) || code.contains("process::exit(") {
            out.push(format!(
                "{rel} spells an exit code: only src/cli/exit.rs does"
            ));
        }
    }
    out
}

#[test]
fn environment_knobs_and_exit_codes_each_live_in_one_place() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for path in files("src") {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&path).unwrap();
        problems.extend(one_place_violations(&rel, &text));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_one_place_check_sees_a_knob_or_a_code_elsewhere() {
    assert_eq!(
        one_place_violations("src/app/batch.rs", "let x = std::env::var(\"X\");").len(),
        1
    );
    assert_eq!(
        one_place_violations("src/cli/mod.rs", "fn f() -> Result<u8, E> { Ok(0) }").len(),
        1
    );
    assert!(one_place_violations("src/app/env.rs", "std::env::var(\"X\")").is_empty());
    assert!(one_place_violations("src/cli/exit.rs", "Ok(0)").is_empty());
    assert!(
        one_place_violations("src/store/x.rs", "#[cfg(test)]\nstd::env::var(\"CI\")").is_empty()
    );
}
