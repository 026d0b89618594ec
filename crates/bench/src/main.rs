//! ripem-bench: the benchmark driver, load generator and no-op responder.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ripem_bench::corpus::{self, Mix};
use ripem_bench::{load, noop, recon, run, sks};

/// Benchmarks for ripem-keyserver.
#[derive(Parser)]
#[command(name = "ripem-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a database from a generated corpus and print every figure.
    Run {
        /// Keys in the corpus.
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        /// Percent of RSA keys in the corpus.
        #[arg(long, default_value_t = 30)]
        rsa_percent: u64,
        /// Seconds per load phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Directory of the workspace's release programs.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// Where generated corpora are cached.
        #[arg(long, default_value = "target/bench-corpus")]
        corpus_dir: PathBuf,
        /// Scratch directory (emptied first).
        #[arg(long, default_value = "target/bench-run")]
        work_dir: PathBuf,
        #[command(flatten)]
        load: LoadShape,
    },
    /// keyreg --import against SKS's build on the Debian keyring and a
    /// certified corpus, alternating, median of 5.
    Sks {
        /// Keys in the certified corpus (0: the Debian keyring only).
        #[arg(long, default_value_t = 100_000)]
        keys: usize,
        /// Percent of RSA keys in the certified corpus.
        #[arg(long, default_value_t = 3)]
        rsa_percent: u64,
        /// Extra keyrings (binary packets) to compare on.
        #[arg(long)]
        keyring: Vec<PathBuf>,
        /// Directory of the workspace's release programs.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// Where generated corpora are cached.
        #[arg(long, default_value = "target/bench-corpus")]
        corpus_dir: PathBuf,
        /// Scratch directory.
        #[arg(long, default_value = "target/bench-sks")]
        work_dir: PathBuf,
    },
    /// Generate (or find cached) a corpus.
    Corpus {
        /// Keys in the corpus.
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        /// Percent of RSA keys.
        #[arg(long, default_value_t = 30)]
        rsa_percent: u64,
        /// Certified as a key server's keys are (most none, some many).
        #[arg(long)]
        certified: bool,
        /// Where corpora are cached.
        #[arg(long, default_value = "target/bench-corpus")]
        dir: PathBuf,
    },
    /// Closed-loop lookups against a server on loopback.
    Load {
        /// The server.
        #[arg(long)]
        target: SocketAddr,
        /// File of registered addresses, one per line.
        #[arg(long)]
        addresses: PathBuf,
        /// Source address (loopback).
        #[arg(long, default_value = "127.0.0.1")]
        source: IpAddr,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Ask for the addresses in turn rather than at random.
        #[arg(long)]
        in_turn: bool,
        #[command(flatten)]
        load: LoadShape,
    },
    /// Answer every datagram with it echoed and padded to a size.
    Noop {
        /// Where to listen (loopback).
        #[arg(long)]
        listen: SocketAddr,
        /// Bytes per answer.
        #[arg(long, default_value_t = 1500)]
        reply_size: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Repair by reconciliation between two keysync daemons: bytes at the
    /// socket and seconds, beside what LIST 1- costs.
    Recon(ReconShape),
    /// Run a program; print its time and peak RSS last on stdout.
    Measure {
        /// The program.
        program: PathBuf,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args)]
struct ReconShape {
    /// Shared updates (repeatable).
    #[arg(long = "n", default_values_t = [10_000u64, 100_000])]
    sizes: Vec<u64>,
    /// Differing updates (repeatable).
    #[arg(long = "k", default_values_t = [80u64])]
    differences: Vec<u64>,
    /// Directory of the workspace's programs (keysync, ripem-keygen).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Scratch directory (emptied first).
    #[arg(long, default_value = "target/bench-recon")]
    work_dir: PathBuf,
}

#[derive(clap::Args)]
struct LoadShape {
    /// Sockets (threads) of the load generator.
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Requests in flight per socket.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
}

/// The Debian keyring if installed, the certified corpus of `keys` keys
/// (made first if not cached) and any `extra` keyrings.
fn sks_spec(
    keys: usize,
    rsa_percent: u64,
    extra: Vec<PathBuf>,
    bin_dir: PathBuf,
    corpus_dir: &std::path::Path,
    work_dir: PathBuf,
) -> Result<sks::SksSpec> {
    let mut keyrings = Vec::new();
    let debian = PathBuf::from(run::REAL_WORLD_KEYRING);
    if debian.exists() {
        keyrings.push(sks::Keyring {
            label: format!("the Debian keyring {}", debian.display()),
            path: debian,
        });
    } else {
        println!(
            "SKS phase: {} is missing (Debian package debian-keyring); skipped",
            debian.display()
        );
    }
    if keys > 0 {
        let corpus = corpus::ensure(
            corpus_dir,
            keys,
            Mix {
                rsa_percent,
                certified: true,
            },
        )?;
        keyrings.push(sks::Keyring {
            label: format!("{keys} generated keys, {rsa_percent} % RSA, certified"),
            path: corpus.binary_keyring(),
        });
    }
    keyrings.extend(extra.into_iter().map(|path| sks::Keyring {
        label: path.display().to_string(),
        path,
    }));
    Ok(sks::SksSpec {
        bin_dir,
        work_dir,
        keyrings,
    })
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run {
            keys,
            rsa_percent,
            seconds,
            bin_dir,
            corpus_dir,
            work_dir,
            load,
        } => run::run(run::RunSpec {
            keys,
            mix: Mix {
                rsa_percent,
                certified: false,
            },
            duration: Duration::from_secs(seconds),
            bin_dir,
            corpus_root: corpus_dir,
            work_dir,
            sockets: load.sockets,
            in_flight: load.in_flight,
            merge_every: Duration::from_millis(200),
        }),
        Command::Sks {
            keys,
            rsa_percent,
            keyring,
            bin_dir,
            corpus_dir,
            work_dir,
        } => sks::compare(&sks_spec(keys, rsa_percent, keyring, bin_dir, &corpus_dir, work_dir)?),
        Command::Corpus {
            keys,
            rsa_percent,
            certified,
            dir,
        } => corpus::ensure(&dir, keys, Mix { rsa_percent, certified }).map(|_| ()),
        Command::Load {
            target,
            addresses,
            source,
            seconds,
            in_turn,
            load: shape,
        } => {
            let text =
                std::fs::read_to_string(&addresses).with_context(|| format!("reading {}", addresses.display()))?;
            let spec = load::LoadSpec {
                target,
                source,
                sockets: shape.sockets,
                in_flight: shape.in_flight,
                duration: Duration::from_secs(seconds),
                timeout: Duration::from_secs(1),
                order: if in_turn {
                    load::Order::InTurn
                } else {
                    load::Order::Random
                },
            };
            let report = load::run(&spec, Arc::new(text.lines().map(str::to_string).collect()))?;
            println!("{}", report.summary());
            Ok(())
        }
        Command::Noop {
            listen,
            reply_size,
            seconds,
        } => noop::serve(listen, reply_size, Duration::from_secs(seconds)).map(|_| ()),
        Command::Measure { program, args } => run::measure(&program, &args),
        Command::Recon(shape) => {
            println!("{}", recon::HEADER);
            for &n in &shape.sizes {
                for &k in &shape.differences {
                    let row = recon::run(&shape.bin_dir, &shape.work_dir, n, k)?;
                    println!("{}", row.line());
                }
            }
            Ok(())
        }
    }
}
