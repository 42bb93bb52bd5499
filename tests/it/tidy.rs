//! Architecture checks: every module documents itself, and the engine and the store know
//! nothing about AWS.

fn src(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    for dir in ["src", "sandbox/src"] {
        for entry in std::fs::read_dir(format!("{}/{dir}", env!("CARGO_MANIFEST_DIR"))).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    text.trim_start().starts_with("//!"),
                    "{} has no //! module doc",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn the_engine_and_the_store_know_nothing_about_aws() {
    for file in ["src/workflow.rs", "src/store.rs"] {
        let text = src(file);
        for forbidden in [
            "aws_sdk",
            "aws_config",
            "crate::aws",
            "crate::steps",
            "crate::app",
            "crate::cli",
            "crate::agent",
        ] {
            assert!(!text.contains(forbidden), "{file} mentions {forbidden}");
        }
    }
}
