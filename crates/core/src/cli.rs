//! What every program's `main` shares: the common flags, loading the
//! configuration from them, and turning an error into one line on stderr
//! and a sysexits-style exit code ([`crate::exit`]): a program lists the
//! error types it can meet beyond this crate's, whose probes are here.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, ConfigError};
use crate::exit::{self, exit_code, probe, Probe};
use crate::mail::MailError;
use crate::pidfile::PidFileError;
use crate::reply::ReplyError;
use crate::spool::SpoolError;
use crate::types::IdentError;

/// Flags every program takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Configuration file [default: $RIPEM_KEYSERVER_CONFIG, else /etc/ripem-keyserver/keyserver.toml]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// State directory; every path not set on its own derives from it
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl CommonArgs {
    /// Loads the configuration these flags name and checks that its state
    /// directory exists.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let config = Config::load(self.config.as_deref(), self.state_dir.as_deref())?;
        config.check_state_dir()?;
        Ok(config)
    }
}

/// Stops library errors from capturing backtraces when `RUST_BACKTRACE`
/// is set (it stays on for panics). rPGP records one in every parse
/// error, and a keyring with a few unreadable keys then spends more time
/// walking stacks than checking keys. Called first thing in `main`, while
/// the program still has one thread.
fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

/// Parses the command line; on a usage error prints clap's message and
/// exits with `EX_USAGE` (64), or `usage_code` where a program needs
/// another (copymail: 75, so the MTA retries rather than bounces).
pub fn parse_args<T: clap::Parser>(usage_code: u8) -> T {
    quiet_library_backtraces();
    T::try_parse().unwrap_or_else(|err| {
        let _ = err.print();
        std::process::exit(if err.use_stderr() { i32::from(usage_code) } else { 0 })
    })
}

/// The probes for this crate's own errors, which every program may meet.
const CORE_PROBES: &[Probe] = &[
    probe::<ConfigError>,
    probe::<SpoolError>,
    probe::<PidFileError>,
    probe::<ReplyError>,
    probe::<MailError>,
    probe::<IdentError>,
    probe::<std::io::Error>,
];

/// The effective user's name, else its uid.
fn effective_user() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

/// Ends a program: on error, prints `program: cause: cause…` on one line
/// (naming the user it runs as when permission was denied) and returns
/// [`exit_code`], asking the program's own `probes` first. A broken pipe on stdout
/// is not an error.
pub fn finish<E>(program: &str, probes: &[Probe], result: Result<ExitCode, E>) -> ExitCode
where
    E: AsRef<dyn Error + Send + Sync + 'static>,
{
    match result {
        Ok(code) => code,
        Err(err) => {
            let err: &(dyn Error + 'static) = err.as_ref();
            let mut chain = Vec::new();
            let mut current: Option<&(dyn Error + 'static)> = Some(err);
            while let Some(cause) = current {
                if cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                {
                    return ExitCode::SUCCESS;
                }
                let text = cause.to_string();
                if !chain.iter().any(|seen: &String| seen.contains(&text)) {
                    chain.push(text);
                }
                current = cause.source();
            }
            let code = exit_code(err, &[probes, CORE_PROBES]);
            if code == exit::NOPERM {
                // Under an MTA's pipe or a unit's User=, who we are is half the story.
                chain.push(format!("running as user {}", effective_user()));
            }
            eprintln!("{program}: {}", chain.join(": ").replace('\n', " "));
            ExitCode::from(code)
        }
    }
}

/// A progress bar on stderr for long runs (`keyreg --import`, db2flat),
/// drawn only when stderr is a terminal; otherwise nothing is drawn and
/// the program prints a one-line summary at the end.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// A bar over `total` units; `bytes` shows them as sizes, else as counts.
    pub fn new(total: u64, bytes: bool) -> Progress {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let template = if bytes {
            "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec}) {msg}"
        } else {
            "{elapsed_precise} [{wide_bar}] {pos}/{len} ({per_sec}) {msg}"
        };
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress { bar: Some(bar) }
    }

    /// Moves the bar to `done` of `total`, with a short message.
    pub fn update(&self, done: u64, total: u64, message: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(message());
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
