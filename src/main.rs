//! The `connect-onboard` binary: parse the command line, run it, exit with its code.

use clap::Parser;

/// mimalloc: a tenth to a fifth less CPU per agent than glibc's allocator, whose
/// consolidations showed in the profiles (BENCHMARKS.md, issue 18 (d)).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread runs every task: the tool waits on the network (AWS's quotas set its pace), and
/// its CPU per agent fell by a quarter against the multi-thread runtime (no cross-thread
/// wakeups or work stealing; BENCHMARKS.md, issue 18 (d)). The state file's group committer
/// keeps its own thread, so a commit's fsync never stalls the tasks.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    ignore_file_size_signal();
    let code = match connect_onboard::cli::Cli::try_parse() {
        Ok(cli) => connect_onboard::cli::run(cli).await,
        Err(e) => connect_onboard::cli::usage_error(e),
    };
    std::process::ExitCode::from(code)
}

/// A write past the file-size limit (`ulimit -f`) raises SIGXFSZ, whose default action kills
/// the process mid-write. Ignored, the write fails with EFBIG instead: the state store
/// reports it as an error naming the state file and every agent stays resumable.
fn ignore_file_size_signal() {
    // SAFETY: called first thing in main, before any other thread exists; SIG_IGN installs
    // no handler code.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}
