//! keyreg: register, change and remove keys from the spool queues.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use keyreg::error::RegistrarError;
use keyreg::import::ImportProgress;
use keyreg::registrar::{describe_repair, CycleSummary, DaemonError, DaemonEvent, Registrar};
use ripem_core::cli::{finish, parse_args, CommonArgs, Progress};
use ripem_core::exit;
use ripem_core::exit::probe;
use ripem_keydb::StoreError;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Process key registration requests from the spool into the key database.
#[derive(clap::Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Process everything pending in all queues, then exit
    #[arg(long, conflicts_with_all = ["import", "rebuild"])]
    once: bool,
    /// Rebuild the database from its apply log (or a copy that checks out),
    /// switch it in and keep the old file as keys.gdbm.replaced-<time>
    #[arg(long, conflicts_with = "import")]
    rebuild: bool,
    /// Rebuild the database from the updates it holds (every change since
    /// it was made), in the one order of all updates; with DIR, first add
    /// the update files there (e.g. written by `keysync --dump DIR`)
    #[arg(long, value_name = "DIR", num_args = 0..=1, conflicts_with_all = ["import", "rebuild", "once"])]
    replay: Option<Option<PathBuf>>,
    /// Load armored or binary keyrings, or db2flat flat files, into the database (no replies)
    #[arg(long, value_name = "FILE", num_args = 1..)]
    import: Vec<PathBuf>,
    /// Also log each outcome line, not just one line per request
    #[arg(short, long)]
    verbose: bool,
}

fn report(summary: &CycleSummary, verbose: bool) {
    for request in &summary.requests {
        let reply = match &request.reply {
            ripem_core::mail::ReturnAddress::Reply(to) => to.to_string(),
            ripem_core::mail::ReturnAddress::NoReply(reason) => format!("no reply ({reason})"),
        };
        eprintln!(
            "keyreg: {} {} → {reply}: {}",
            request.queue, request.file, request.summary
        );
        if verbose {
            request.outcome.iter().for_each(|line| eprintln!("keyreg:   {line}"));
        }
    }
    for repair in &summary.repairs {
        eprintln!("keyreg: the database was damaged: {repair}");
    }
    for error in &summary.reply_errors {
        eprintln!("keyreg: reply not sent yet, will retry: {error}");
    }
    for line in &summary.outgoing_moved_aside {
        eprintln!("keyreg: outgoing: {line}");
    }
    let received = &summary.received;
    if received.applied + received.duplicates + received.deferred > 0 {
        eprintln!(
            "keyreg: sync: {} updates from peers applied, {} already here, {} waiting for their time",
            received.applied, received.duplicates, received.deferred
        );
    }
    for count in &received.replays {
        eprintln!("keyreg: sync: an update arrived after later ones it touches; replayed {count} updates");
    }
    for line in &received.refused {
        eprintln!("keyreg: sync: refused, moved to failed/: {line}");
    }
    if received.conflicts > 0 {
        eprintln!(
            "keyreg: sync: {} registrations overruled by earlier ones; their senders are told",
            received.conflicts
        );
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.common.load()?;
    let database = config.paths.database.clone();
    let mut registrar = Registrar::new(config).context("starting keyreg")?;
    if args.rebuild {
        let report = registrar
            .repair(false)
            .with_context(|| format!("rebuilding {}", database.display()))?;
        eprintln!("keyreg: {}", describe_repair(&report));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(from) = &args.replay {
        let count = registrar
            .replay(from.as_deref())
            .with_context(|| format!("replaying {}", database.display()))?;
        eprintln!("keyreg: the database was replayed from {count} updates");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.import.is_empty() {
        // What a crash left is settled, and damage repaired, before the
        // import writes (a cycle does the same for --once and the daemon).
        if let Some(report) = registrar
            .check_database()
            .with_context(|| format!("opening {}", database.display()))?
        {
            eprintln!("keyreg: the database was damaged: {}", describe_repair(&report));
        }
        let started = std::time::Instant::now();
        let progress = Progress::new(0, true);
        let tally = registrar.import(&args.import, &|at: ImportProgress| {
            progress.update(at.bytes_read, at.bytes_total, || format!("{} keys", at.keys));
        });
        progress.finish();
        let tally = tally?;
        eprintln!(
            "keyreg: imported {} files in {:.1} s",
            args.import.len(),
            started.elapsed().as_secs_f64()
        );
        println!("{tally}");
        return Ok(ExitCode::SUCCESS);
    }
    if args.once {
        let summary = registrar.process_pending()?;
        report(&summary, args.verbose);
        return Ok(if summary.reply_errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(exit::TEMPFAIL)
        });
    }
    eprintln!(
        "keyreg: started, pid {}, watching {}",
        std::process::id(),
        registrar.spool().new_dir(ripem_core::spool::QueueName::Add).display()
    );
    let reload = || args.common.load();
    registrar.run_daemon(&reload, &|event| match event {
        DaemonEvent::Cycle(Ok(summary)) => report(&summary, args.verbose),
        DaemonEvent::Cycle(Err(err)) => eprintln!("keyreg: batch left in the spool, will retry: {err}"),
        DaemonEvent::Reloaded(source) => eprintln!(
            "keyreg: configuration reloaded from {}",
            source.map_or_else(|| "(built-in defaults)".into(), |path| path.display().to_string())
        ),
        DaemonEvent::ReloadFailed(reason) => {
            eprintln!("keyreg: configuration not reloaded, keeping the old one: {reason}")
        }
    })?;
    eprintln!("keyreg: stopped");
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    finish(
        "keyreg",
        &[probe::<RegistrarError>, probe::<DaemonError>, probe::<StoreError>],
        run(parse_args(exit::USAGE)),
    )
}
