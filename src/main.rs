//! The `connect-onboard` binary: parse the command line, run it, exit with its code.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = connect_onboard::cli::Cli::parse();
    std::process::ExitCode::from(connect_onboard::cli::run(cli).await)
}
