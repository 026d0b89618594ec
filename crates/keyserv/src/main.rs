//! keyserv: answer key lookups over UDP (port 1611).

use std::net::SocketAddr;
use std::process::ExitCode;

use keyserv::server::ServerError;
use ripem_core::cli::{finish, parse_args, CommonArgs};
use ripem_core::config::{Config, ConfigError};
use ripem_core::exit;
use ripem_core::exit::probe;
use ripem_core::pidfile;
use ripem_keydb::{KeyStore, StoreError};

/// Answer key lookups over UDP from the key database.
#[derive(clap::Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to answer on, overriding the configuration (repeatable)
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// Log the type of each answer (not who asked, unless log_requests = true)
    #[arg(short, long)]
    verbose: bool,
}

impl Args {
    /// The configuration with this command line's overrides.
    fn load(&self) -> Result<Config, ConfigError> {
        let mut config = self.common.load()?;
        config.keyserv.log_answers |= self.verbose;
        if !self.listen.is_empty() {
            config.keyserv.listen.clone_from(&self.listen);
        }
        Ok(config)
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.load()?;
    let paths = &config.paths;
    // Refuse at start what would otherwise only show in the log later.
    pidfile::refuse_if_running(&paths.pid_file)?;
    match KeyStore::open_read_if_exists(&paths.database, &paths.database_lock(), config.keyreg.writer_timeout) {
        // keyreg repairs damage by itself; until then lookups of what can
        // still be read are answered.
        Err(err) if err.is_damage() => eprintln!("keyserv: {err}; keyreg will rebuild it"),
        checked => drop(checked?),
    }
    let reload = || match args.load() {
        Ok(config) => Some(config),
        Err(err) => {
            eprintln!("keyserv: {err}");
            None
        }
    };
    keyserv::server::serve(&config, &config.keyserv.listen, &reload)?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    finish(
        "keyserv",
        &[probe::<ServerError>, probe::<StoreError>],
        run(parse_args(exit::USAGE)),
    )
}
