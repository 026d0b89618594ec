//! hkpd: HKP, WKD and VKS over HTTP(S) from the key database.

use std::net::SocketAddr;
use std::process::ExitCode;

use hkpd::error::HkpdError;
use ripem_core::cli::{finish, parse_args, CommonArgs};
use ripem_core::config::{Config, ConfigError};
use ripem_core::exit::{self, probe};
use ripem_core::pidfile;

/// Answer HKP, WKD and VKS requests over HTTP(S) from the key database.
#[derive(clap::Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to answer on, overriding the configuration (repeatable)
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
}

impl Args {
    /// The configuration with this command line's overrides.
    fn load(&self) -> Result<Config, ConfigError> {
        let mut config = self.common.load()?;
        if !self.listen.is_empty() {
            config.hkpd.listen.clone_from(&self.listen);
        }
        Ok(config)
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.load()?;
    pidfile::refuse_if_running(&config.hkpd.pid_file)?;
    let reload = || match args.load() {
        Ok(config) => Some(config),
        Err(err) => {
            hkpd::log(&err.to_string());
            None
        }
    };
    hkpd::server::serve(&config, &reload)?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    finish("hkpd", &[probe::<HkpdError>], run(parse_args(exit::USAGE)))
}
