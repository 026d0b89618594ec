//! copymail: spool one incoming message from stdin (run by the MTA).
//!
//! Exit 0 only once the message is safely in the queue; 65 if it is over
//! the size limit (the MTA bounces it); 75 on any other failure, so the
//! MTA keeps the message and tries again.

use std::process::ExitCode;

use anyhow::Context;
use ripem_core::cli::{finish, parse_args, CommonArgs};
use ripem_core::exit;
use ripem_core::spool::{QueueName, Spool, SpoolError};

/// Copy one mail message from standard input into a keyreg spool queue.
#[derive(clap::Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The queue: add, change or remove
    #[arg(long, value_name = "QUEUE")]
    queue: QueueName,
}

fn run() -> anyhow::Result<ExitCode> {
    // A broken alias line must not bounce mail: the MTA retries on 75.
    let args: Args = parse_args(exit::TEMPFAIL);
    let config = args.common.load()?;
    let spool = Spool::new(&config.paths.spool_dir);
    spool.create_dirs()?;
    spool
        .deliver(
            args.queue,
            &mut std::io::stdin().lock(),
            config.keyreg.max_message_bytes,
        )
        .with_context(|| format!("spooling into the {} queue", args.queue))?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let result = run();
    let too_large = result
        .as_ref()
        .err()
        .is_some_and(|err| matches!(err.downcast_ref::<SpoolError>(), Some(SpoolError::TooLarge { .. })));
    let code = finish("copymail", &[], result);
    if code == ExitCode::SUCCESS {
        code
    } else if too_large {
        ExitCode::from(exit::DATAERR)
    } else {
        ExitCode::from(exit::TEMPFAIL)
    }
}
