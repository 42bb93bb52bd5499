//! connect-onboard: onboard Amazon Connect agents into Connect *and* IAM Identity Center as
//! one durable workflow — checkpoint after every step, resume after any interruption without
//! creating anything twice, roll back exactly what it created.
//!
//! Code map (see ARCHITECTURE.md for the data flow and invariants):
//! - [`workflow`] — the generic durable engine and workflow definitions (no AWS in it).
//! - [`store`] — the SQLite checkpoint store: runs, agents, steps, journal, leases.
//! - [`agent`] — an agent's fields and every client-side validation rule.
//! - [`config`] — the TOML configuration file.
//! - [`aws`] — the AWS port: three small traits and their SDK implementations.
//! - [`steps`] — the four onboarding actions over the port, and error classification.
//! - [`preflight`] — reads and checks before the first write; name → id resolution.
//! - [`app`] — the operations behind the commands; returns data, never prints.
//! - [`cli`] — clap, printing and exit codes.
//!
//! The local AWS emulator lives in its own crate, `connect-onboard-sandbox`.

pub mod agent;
pub mod app;
pub mod aws;
pub mod cli;
pub mod config;
pub mod preflight;
pub mod steps;
pub mod store;
pub mod workflow;
