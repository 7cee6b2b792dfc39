//! `rhizome-mock`: the outside world for end-to-end tests (see
//! `rhizome_tests::mock`). Parses the command line and runs the mock.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = rhizome_tests::mock::Args::parse();
    rhizome_tests::mock::init_tracing();
    rhizome_tests::mock::run(args).await
}
