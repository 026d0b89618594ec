//! keysync: stores the updates keyreg makes and exchanges them with peers.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use keysync::daemon::{self, sync_dir};
use keysync::error::SyncError;
use ripem_core::cli::{finish, parse_args, CommonArgs};
use ripem_core::exit::{self, probe};
use ripem_core::pidfile::PidFile;
use ripem_core::spool::{QueueName, Spool};

/// Replicate the key registry between servers: KX over mutually
/// authenticated TLS 1.3.
#[derive(clap::Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Make sync/key.pem and sync/cert.pem if missing, print the pin
    #[arg(long, conflicts_with_all = ["status", "dump"])]
    init: bool,
    /// Print one line per peer from the running daemon's status
    #[arg(long, conflicts_with = "dump")]
    status: bool,
    /// Write every stored update into DIR, one file per update named by its id
    #[arg(long, value_name = "DIR")]
    dump: Option<PathBuf>,
}

fn count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.filter_map(Result::ok).count())
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.common.load()?;
    let dir = sync_dir(&config);
    if args.init {
        let pin = keysync::tls::init(&dir, &config.sync.server_id)?;
        println!("pin: {pin}");
        return Ok(ExitCode::SUCCESS);
    }
    if args.status {
        let spool = Spool::new(&config.paths.spool_dir);
        let waiting_in = count(&dir.join("queue/new"));
        let waiting_out = count(&spool.new_dir(QueueName::Sync));
        for line in keysync::status::report(&dir.join("status"), waiting_in, waiting_out)? {
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(target) = &args.dump {
        let store = keysync::store::Store::open_read_only(&dir.join("updates.log"))?;
        let written = store
            .dump(target)
            .with_context(|| format!("dumping into {}", target.display()))?;
        eprintln!("keysync: wrote {written} updates into {}", target.display());
        return Ok(ExitCode::SUCCESS);
    }
    let pid_path = dir.join("keysync.pid");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _pid_file = PidFile::acquire(&pid_path)?;
    let reload = || match args.common.load() {
        Ok(config) => Some(config),
        Err(err) => {
            keysync::log(&format!("reload refused: {err}"));
            None
        }
    };
    daemon::serve(&config, &reload)?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    finish("keysync", &[probe::<SyncError>], run(parse_args(exit::USAGE)))
}
