//! The README's examples are tests: every ```` ```console ```` block of README.md is run, in
//! order, as a new admin would type it — in one fresh directory holding a copy of
//! `examples/`, against one sandbox seeded with `examples/sandbox-world.toml` and reached
//! through the standard `AWS_ENDPOINT_URL*` variables (what the README's walk-through tells a
//! reader to paste) — and what each command prints (stdout and stderr, interleaved as on a
//! terminal) must be what the README shows.
//!
//! Comparison, after both sides are normalised (run ids, UUIDs, timestamps, durations and
//! the sandbox's port become placeholders): line by line; an expected line ending in `...`
//! matches any line that starts with what comes before it, and a line that is only `...`
//! matches any number of lines.
//!
//! `$ connect-onboard ARGS` runs the binary (a trailing `< /dev/null` is what the harness
//! does anyway; a trailing `> FILE` writes its stdout to FILE); `$ cat FILE` prints a file. A run id in a command (`rollback r-2026...`)
//! stands for the run id that the examples before it printed last, as a reader would copy
//! it. `README_BLESS=1` rewrites the blocks that do not match with what the commands
//! printed, for review with `git diff`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use connect_onboard_sandbox::{FaultConfig, Sandbox, SandboxOptions, Seed};
use regex::Regex;

use crate::harness::BIN;

/// The repository's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One ```` ```console ```` block: where it stands in the README, and its commands.
struct Block {
    /// Line of the opening fence (1-based), for messages.
    line: usize,
    /// Byte range of the block's body in the README.
    body: std::ops::Range<usize>,
    commands: Vec<Example>,
}

/// A command line and what the README says it prints.
struct Example {
    command: String,
    expected: Vec<String>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut open: Option<(usize, usize)> = None;
    for (i, line) in readme.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += line.len();
        let text = line.trim_end();
        match open {
            None if text == "```console" => open = Some((i + 1, offset)),
            Some((at, body_start)) if text == "```" => {
                let body = &readme[body_start..start];
                out.push(Block {
                    line: at,
                    body: body_start..start,
                    commands: examples(body, at),
                });
                open = None;
            }
            _ => {}
        }
    }
    assert!(open.is_none(), "README.md: a console block is not closed");
    out
}

fn examples(body: &str, at: usize) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    for line in body.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push(Example {
                command: cmd.to_string(),
                expected: Vec::new(),
            });
        } else {
            let last = out.last_mut().unwrap_or_else(|| {
                panic!("README.md:{at}: a console block must start with a `$ ` command line")
            });
            last.expected.push(line.to_string());
        }
    }
    out
}

/// Replaces what differs from run to run with placeholders.
fn normalise(text: &str) -> String {
    let rules: [(&str, &str); 6] = [
        (r"r-\d{8}-\d{6}-[0-9a-f]{6}", "[RUN]"),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[UUID]",
        ),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[TIME]"),
        (r"\b\d+(\.\d+)? s\b", "[SECS] s"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        (r"connect-onboard-demo-\d+", "connect-onboard-demo-[PID]"),
    ];
    let mut s = text.to_string();
    for (re, to) in rules {
        s = Regex::new(re).unwrap().replace_all(&s, to).into_owned();
    }
    s
}

/// Whether `actual` matches `expected` (both normalised), with `...` wildcards.
fn matches(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e.trim() == "..." => {
            (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]))
        }
        Some((e, rest)) => match actual.split_first() {
            None => false,
            Some((a, arest)) => {
                let ok = match e.strip_suffix("...") {
                    Some(prefix) => a.starts_with(prefix),
                    None => a == e,
                };
                ok && matches(rest, arest)
            }
        },
    }
}

/// Runs one README command in `dir`; stdout and stderr share one file, as on a terminal.
fn run(dir: &Path, env: &[(String, String)], command: &str) -> String {
    let mut words = shlex::split(command).unwrap_or_else(|| panic!("cannot split {command:?}"));
    if words.ends_with(&["<".to_string(), "/dev/null".to_string()]) {
        words.truncate(words.len() - 2);
    }
    match words.first().map(String::as_str) {
        Some("cat") => {
            return words[1..]
                .iter()
                .map(|f| {
                    std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"))
                })
                .collect();
        }
        Some("connect-onboard") => {}
        _ => panic!("README console blocks run `connect-onboard` and `cat` only: {command:?}"),
    }
    // `> FILE`: stdout to that file (stderr still shown), as a shell does.
    let to_file = match words.len().checked_sub(2).map(|i| (i, &words[i])) {
        Some((i, op)) if op == ">" => {
            let f = words[i + 1].clone();
            words.truncate(i);
            Some(f)
        }
        _ => None,
    };
    let out_path = dir.join(".readme-output");
    let shown = std::fs::File::create(&out_path).unwrap();
    let err = shown.try_clone().unwrap();
    let out = match &to_file {
        Some(f) => std::fs::File::create(dir.join(f)).unwrap(),
        None => shown,
    };
    let mut c = std::process::Command::new(BIN);
    c.args(&words[1..]).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("CONNECT_ONBOARD_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    let none = dir.join(".empty-aws-config");
    std::fs::write(&none, "").unwrap();
    c.envs(env.iter().map(|(k, v)| (k, v)))
        .env("HOME", dir)
        .env("AWS_CONFIG_FILE", &none)
        .env("AWS_SHARED_CREDENTIALS_FILE", &none)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let mut child = c.spawn().expect("connect-onboard runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("`{command}` did not finish within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::read_to_string(&out_path).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_console_example_of_the_readme_prints_what_it_shows() {
    let readme_path = root().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let blocks = blocks(&readme);
    assert!(
        blocks.len() >= 7,
        "README.md has {} console blocks; its examples are meant to be tested",
        blocks.len()
    );
    let seed = Seed::from_path(&root().join("examples/sandbox-world.toml")).expect("seed");
    let sb = Sandbox::start(SandboxOptions {
        port: 0,
        seed,
        faults: FaultConfig::default(),
    })
    .await
    .expect("sandbox starts");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("examples"), &dir.path().join("examples"));
    let env = sb.env_lines();
    let bless = std::env::var_os("README_BLESS").is_some();
    let mut failures = Vec::new();
    let mut blessed = readme.clone();
    let run_id = Regex::new(r"r-\d{8}-\d{6}-[0-9a-f]{6}").unwrap();
    let mut last_run: Option<String> = None;
    // Replace from the end, so earlier ranges stay valid.
    let mut replacements = Vec::new();
    for b in &blocks {
        let mut body = String::new();
        let mut block_ok = true;
        for ex in &b.commands {
            let cmd = match &last_run {
                Some(r) => run_id.replace_all(&ex.command, r.as_str()).into_owned(),
                None => ex.command.clone(),
            };
            let (d, e) = (dir.path().to_path_buf(), env.clone());
            let actual = tokio::task::spawn_blocking(move || run(&d, &e, &cmd))
                .await
                .unwrap();
            if let Some(m) = run_id.find_iter(&actual).last() {
                last_run = Some(m.as_str().to_string());
            }
            let norm_actual: Vec<String> = normalise(&actual)
                .lines()
                .map(|l| l.trim_end().to_string())
                .collect();
            let norm_expected: Vec<String> = ex
                .expected
                .iter()
                .map(|l| normalise(l).trim_end().to_string())
                .collect();
            body.push_str(&format!("$ {}\n", ex.command));
            if matches(&norm_expected, &norm_actual) {
                for l in &ex.expected {
                    body.push_str(l);
                    body.push('\n');
                }
            } else {
                block_ok = false;
                failures.push(format!(
                    "README.md:{}: `$ {}`\n--- README shows\n{}\n--- it printed\n{}",
                    b.line,
                    ex.command,
                    ex.expected.join("\n"),
                    actual.trim_end()
                ));
                body.push_str(&actual);
                if !actual.ends_with('\n') && !actual.is_empty() {
                    body.push('\n');
                }
            }
        }
        if !block_ok {
            replacements.push((b.body.clone(), body));
        }
    }
    sb.shutdown().await;
    if bless && !replacements.is_empty() {
        for (range, body) in replacements.into_iter().rev() {
            blessed.replace_range(range, &body);
        }
        std::fs::write(&readme_path, blessed).unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} README example(s) print something else (README_BLESS=1 rewrites them):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_matcher_honours_wildcards_and_catches_a_difference() {
    let l = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(matches(&l(&["a", "b..."]), &l(&["a", "bcd"])));
    assert!(matches(&l(&["a", "...", "z"]), &l(&["a", "x", "y", "z"])));
    assert!(matches(&l(&["a", "...", "z"]), &l(&["a", "z"])));
    assert!(!matches(&l(&["a", "b"]), &l(&["a", "c"])));
    assert!(!matches(&l(&["a"]), &l(&["a", "extra"])));
    assert!(!matches(&l(&["a", "b..."]), &l(&["a", "cb"])));
    assert_eq!(
        normalise("run r-20261204-162948-5a4c1c took 0.7 s at 2026-12-04T16:29:48.120Z"),
        "run [RUN] took [SECS] s at [TIME]"
    );
}
