//! Bad agent files through the real binary: empty, header only, wrong delimiter, unknown
//! columns, a 10 MB cell, invalid UTF-8, a header repeated mid-file: each is exit 2 with an
//! error naming the file, the line (and column) and the rule, zero AWS writes and no state
//! file. Formula-injection cells are neutralised in the CSV report and the notices' CSV.
//! (The property tests of the reader, validators, config and workflow loaders sit next to
//! the code: `agent::fuzz`, `config::fuzz`, `engine::tests::workflow_fuzz_*`.)

use crate::harness::*;

const HEADER: &str = "email,first_name,last_name";

fn file(env: &Env, name: &str, bytes: &[u8]) -> String {
    let p = env.dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    path_str(&p).to_string()
}

/// `batch FILE` is refused: exit 2, each needle on stderr, no write, no state file.
async fn refused(env: &Env, name: &str, bytes: &[u8], needles: &[&str]) -> Out {
    let path = file(env, name, bytes);
    let out = env.run(&["batch", &path]).await;
    assert_eq!(out.code, 2, "{name}: {out:?}");
    for n in needles {
        assert!(out.stderr.contains(n), "{name}: {n:?} in {out:?}");
    }
    assert_eq!(writes(env), 0, "{name}: {:?}", env.sb.calls());
    assert!(!env.state.exists(), "{name}: no state file");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_agent_files_are_refused_naming_file_line_and_rule() {
    let env = Env::new().await;
    refused(&env, "empty.csv", b"", &["empty.csv: the file is empty"]).await;
    refused(
        &env,
        "header-only.csv",
        format!("{HEADER}\r\n\r\n").as_bytes(),
        &["header-only.csv: no agent rows, only a header"],
    )
    .await;
    refused(
        &env,
        "semicolons.csv",
        b"email;first_name;last_name\nana@example.com;Ana;Silva\n",
        &["semicolons.csv:1: the file is not comma-separated", "';'"],
    )
    .await;
    refused(
        &env,
        "unknown.csv",
        format!("{HEADER},favourite_colour\nana@example.com,Ana,Silva,red\n").as_bytes(),
        &[
            "unknown.csv:1: unknown column \"favourite_colour\" (column 4)",
            "accepted columns",
        ],
    )
    .await;
    refused(
        &env,
        "latin1.csv",
        // Saved as Latin-1: "René" is `Ren\xe9`.
        &[
            format!("{HEADER}\nana@example.com,Ana,Silva\nrene@example.com,Ren").as_bytes(),
            b"\xe9,Silva\n",
        ]
        .concat(),
        &[
            "latin1.csv:3: column \"first_name\"",
            "not valid UTF-8",
            "CSV UTF-8",
        ],
    )
    .await;
    refused(
        &env,
        "pasted.csv",
        format!("{HEADER}\nana@example.com,Ana,Silva\n{HEADER}\nben@example.com,Ben,Okafor\n")
            .as_bytes(),
        &["pasted.csv:3: the header is repeated"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_10_mb_cell_is_reported_short_with_its_line_and_column() {
    let env = Env::new().await;
    let mut bytes = format!("{HEADER}\nana@example.com,Ana,Silva\nben@example.com,").into_bytes();
    bytes.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    bytes.extend_from_slice(b",Okafor\ncy@example.com,Cy,Lee\n");
    let out = refused(
        &env,
        "huge.csv",
        &bytes,
        &["huge.csv:3: column \"first_name\""],
    )
    .await;
    assert!(
        out.stderr.len() < 4096,
        "the cell is not echoed whole: {} bytes of stderr",
        out.stderr.len()
    );
    assert!(
        out.stderr.contains("1 problem(s) in"),
        "reading went on past it, to a single problem: {out:?}"
    );
}

/// Cells as a spreadsheet would run them.
const FORMULAS: [&str; 4] = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)"];

#[tokio::test(flavor = "multi_thread")]
async fn formula_cells_are_neutralised_in_the_csv_report_and_notices() {
    let env = Env::new().await;
    // An email may start with `-`; names may be formulas (they are only sent to AWS).
    let csv = format!(
        "{HEADER}\n-cmd@example.com,\"{}\",\"{}\"\nana@example.com,\"{}\",\"{}\"\n",
        FORMULAS[0], FORMULAS[3], FORMULAS[1], FORMULAS[2]
    );
    let path = file(&env, "formulas.csv", csv.as_bytes());
    let report = env.dir.path().join("report.csv");
    let notices = env.dir.path().join("notices");
    let out = env
        .run(&[
            "batch",
            &path,
            "--report",
            path_str(&report),
            "--notices",
            path_str(&notices),
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    env.world().assert_onboarded_once("-cmd@example.com");
    for csv_file in [report.clone(), notices.join("notices.csv")] {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(&csv_file)
            .unwrap();
        let mut cells = 0;
        let mut neutralised = 0;
        for rec in r.records() {
            for cell in rec.unwrap().iter() {
                cells += 1;
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{}: a cell a spreadsheet would run: {cell:?}",
                    csv_file.display()
                );
                if cell == "'-cmd@example.com" {
                    neutralised += 1;
                }
            }
        }
        assert!(cells > 0);
        assert!(
            neutralised >= 1,
            "{}: the email is kept, with a leading quote",
            csv_file.display()
        );
    }

    // A rejected formula cell is quoted on stderr as written (not lower-cased), never
    // written anywhere.
    let bad = file(
        &env,
        "bad.csv",
        format!("{HEADER}\n\"{}\",Ana,Silva\n", FORMULAS[0]).as_bytes(),
    );
    let before = writes(&env);
    let out = env.run(&["batch", &bad]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("bad.csv:2: column \"email\": invalid email \"=cmd|' /C calc'!A0\""),
        "{out:?}"
    );
    assert_eq!(writes(&env), before);
}
