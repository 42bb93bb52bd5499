//! The integration tier: the real `connect-onboard` binary and the real AWS SDK clients over
//! HTTP against the in-process sandbox (and moto for Identity Store), one binary with modules.

// Test and bench code: unwrap is how a check fails, and printing is its report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod harness;
mod seeds;

mod apply;
mod batch;
mod chaos;
mod crash;
mod doctor;
mod drift;
mod dynamodb;
mod failures;
mod first_hour;
mod iam_policy;
mod input;
mod inputs_fuzz;
mod lease;
mod migrate;
mod moto;
mod offboard;
mod onboard;
mod persistence;
mod port_apply;
mod readme;
mod reliability;
mod reliability_moto;
mod runs;
mod sandbox_cli;
mod secrets;
mod state_faults;
mod sync;
mod sync_queue;
mod tidy;
