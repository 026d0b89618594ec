//! keyserv: answer key lookups over UDP (port 1611).

use std::net::SocketAddr;
use std::process::ExitCode;

use ripem_core::cli::{exit, finish, parse_args, CommonArgs};

/// Answer key lookups over UDP from the key database.
#[derive(clap::Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to answer on, overriding the configuration (repeatable)
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.common.load()?;
    let listen = if args.listen.is_empty() {
        config.keyserv.listen.clone()
    } else {
        args.listen.clone()
    };
    let reload = || match args.common.load() {
        Ok(config) => Some(config),
        Err(err) => {
            eprintln!("keyserv: {err}");
            None
        }
    };
    ripem_core::server::serve(&config, &listen, &reload)?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    finish("keyserv", run(parse_args(exit::USAGE)))
}
