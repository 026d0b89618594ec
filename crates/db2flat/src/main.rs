//! db2flat: dump the key database to the flat keyring files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use db2flat::flat;
use db2flat::flat::FlatError;
use ripem_core::cli::{finish, parse_args, CommonArgs, Progress};
use ripem_core::config::ConfigError;
use ripem_core::exit;
use ripem_core::exit::probe;
use ripem_keydb::{KeyStore, StoreError};
use ripem_openpgp::KeyPolicy;

/// Write the key database to pubkeys.txt and pubkeys.asc, atomically.
#[derive(clap::Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Path of the text file [default: STATE_DIR/pub/pubkeys.txt]; the .asc file goes beside it
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Also write a static Web Key Directory for [hkpd] wkd_domains under DIR (DIR/.well-known/openpgpkey/<domain>/...)
    #[arg(long, value_name = "DIR")]
    wkd: Option<PathBuf>,
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.common.load()?;
    if args.wkd.is_some() && config.hkpd.wkd_domains.is_empty() {
        return Err(ConfigError::Invalid {
            path: config
                .source
                .clone()
                .unwrap_or_else(|| PathBuf::from("(built-in defaults)")),
            message: "--wkd needs the domains to write in [hkpd] wkd_domains".into(),
        }
        .into());
    }
    let text = args.output.unwrap_or_else(|| config.paths.flat_text());
    let armored = text.with_extension("asc");
    if let Some(dir) = text.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let paths = &config.paths;
    let store = KeyStore::open_read_if_exists(&paths.database, &paths.database_lock(), config.keyreg.writer_timeout)?;
    let started = std::time::Instant::now();
    let progress = Progress::new(0, false);
    let summary = match &store {
        Some(store) => flat::dump(store, &text, &armored, chrono::Utc::now(), &|done, total| {
            progress.update(done as u64, total as u64, String::new);
        }),
        None => flat::dump_empty(&text, &armored, chrono::Utc::now()),
    };
    progress.finish();
    let summary = summary?;
    eprintln!(
        "db2flat: wrote {} keys to {} and {} in {:.1} s{}{}",
        summary.keys,
        text.display(),
        armored.display(),
        started.elapsed().as_secs_f64(),
        if summary.skipped > 0 {
            format!(" ({} unreadable keys left out of the .asc)", summary.skipped)
        } else {
            String::new()
        },
        if summary.abandoned > 0 {
            format!("; removed {} temp files of killed dumps", summary.abandoned)
        } else {
            String::new()
        }
    );
    if let Some(root) = &args.wkd {
        let written = db2flat::wkd::write_tree(
            store.as_ref(),
            root,
            &config.hkpd.wkd_domains,
            &config.addresses.register,
            &KeyPolicy::configured(&config.keyreg),
        )?;
        eprintln!(
            "db2flat: wrote the WKD of {} under {}: {} keys, {} stale files removed",
            config.hkpd.wkd_domains.join(", "),
            root.join(".well-known/openpgpkey").display(),
            written.keys,
            written.removed
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    finish(
        "db2flat",
        &[probe::<FlatError>, probe::<StoreError>],
        run(parse_args(exit::USAGE)),
    )
}
