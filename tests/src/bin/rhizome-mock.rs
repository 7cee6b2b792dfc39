//! `rhizome-mock`: the outside world for end-to-end tests (see
//! `rhizome_tests::mock`). Parses the command line and runs the mock.

use std::process::ExitCode;

use clap::Parser as _;
use rhizome_tests::mock::{self, Command};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = mock::Args::parse();
    if let Some(Command::Healthcheck { url }) = &args.command {
        return Ok(if mock::healthcheck(url).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    mock::init_tracing();
    mock::run(args).await.map(|()| ExitCode::SUCCESS)
}
