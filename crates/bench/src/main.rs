//! ripem-bench: the benchmark driver, load generator and no-op responder.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ripem_bench::corpus::{self, Mix};
use ripem_bench::{load, noop, run};

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
    /// Generate (or find cached) a corpus.
    Corpus {
        /// Keys in the corpus.
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        /// Percent of RSA keys.
        #[arg(long, default_value_t = 30)]
        rsa_percent: u64,
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
struct LoadShape {
    /// Sockets (threads) of the load generator.
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Requests in flight per socket.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
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
            mix: Mix { rsa_percent },
            duration: Duration::from_secs(seconds),
            bin_dir,
            corpus_root: corpus_dir,
            work_dir,
            sockets: load.sockets,
            in_flight: load.in_flight,
            merge_every: Duration::from_millis(200),
        }),
        Command::Corpus { keys, rsa_percent, dir } => corpus::ensure(&dir, keys, Mix { rsa_percent }).map(|_| ()),
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
    }
}
