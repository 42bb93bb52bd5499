//! connect-onboard: onboard Amazon Connect agents into Connect *and* IAM Identity Center as
//! one durable workflow — checkpoint after every step, resume after any interruption without
//! creating anything twice, roll back exactly what it created.
//!
//! Code map, by layer (see ARCHITECTURE.md for the data flow and invariants); a layer uses
//! only the layers listed after it:
//! - [`cli`] — clap arguments, output, the one exit-code table, developer commands.
//! - [`app`] — the operations behind the commands; returns data, never prints.
//! - [`preflight`] — preflight reads and checks before the first write; name → id resolution.
//! - [`steps`] — the onboarding actions over the AWS port, and error classification.
//! - [`aws`] — the AWS port: three small traits and their SDK implementations.
//! - [`config`] — the TOML configuration file.
//! - [`agent`] — an agent's fields and every client-side validation rule.
//! - [`store`] — the SQLite state file and the in-memory journal (the engine's `Journal`).
//! - [`engine`] — the generic durable engine and workflow definitions (no AWS in it).
//!
//! The local AWS emulator lives in its own crate, `connect-onboard-sandbox`.

pub mod agent;
pub mod app;
pub mod aws;
pub mod cli;
pub mod config;
pub mod engine;
pub mod preflight;
pub mod steps;
pub mod store;
