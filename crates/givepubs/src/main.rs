//! givepubs: answer a request mail with the flat keyring (run by the MTA),
//! at most once a day per return address (see `givepubs::answer`).

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use givepubs::answer::{answer, GivepubsError};
use ripem_core::cli::{finish, parse_args, CommonArgs};
use ripem_core::exit::{self, probe};

/// Mail the flat public keyring back to the sender of the message on stdin.
#[derive(clap::Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.common.load()?;
    let mut raw = Vec::new();
    std::io::stdin()
        .take(config.keyreg.max_message_bytes + 1)
        .read_to_end(&mut raw)
        .context("reading the request from standard input")?;
    let answered = answer(&config, &raw, &|warning| eprintln!("givepubs: {warning}"))?;
    eprintln!("givepubs: {answered}");
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    finish("givepubs", &[probe::<GivepubsError>], run(parse_args(exit::USAGE)))
}
