//! keylookup: look a key up on RIPEM key servers over UDP.

use std::process::ExitCode;
use std::time::Duration;

use keylookup::answer_check::WrongAnswer;
use keylookup::client::{self, ClientAnswer, Patience};
use ripem_core::cli::{finish, parse_args, CommonArgs};
use ripem_core::config::Config;
use ripem_core::exit;
use ripem_core::types::Query;

/// Ask key servers for a key and print it armored (pipe it to `gpg --import`).
#[derive(clap::Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Key server to ask, HOST[:PORT] (repeatable; tried in order) [default: [keylookup] servers in the config, else localhost:1611]
    #[arg(long, value_name = "HOST[:PORT]")]
    server: Vec<String>,
    /// Tries per server
    #[arg(long, default_value_t = 3)]
    tries: u32,
    /// Milliseconds to wait for each try
    #[arg(long, default_value_t = 1500)]
    timeout_ms: u64,
    /// Print the whole record, not just the armored key
    #[arg(long)]
    record: bool,
    /// The address, or 0x and the key's fingerprint
    query: String,
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let query = Query::parse(&args.query)?;
    let servers = if args.server.is_empty() {
        // A client needs no state directory: the file is read for its
        // server list only.
        Config::load(args.common.config.as_deref(), args.common.state_dir.as_deref())?
            .keylookup
            .servers
    } else {
        args.server
    };
    let patience = Patience {
        tries: args.tries,
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let mut wrong = |server: &str, err: &WrongAnswer| {
        eprintln!("keylookup: {server} sent a wrong answer for {query}, not trusted: {err}");
    };
    match client::lookup(&servers, &query, patience, &mut wrong) {
        ClientAnswer::Found { record, text, .. } => {
            if args.record {
                print!("{text}");
            } else {
                println!("{}", record.key_armor);
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientAnswer::NotFound { server } => {
            eprintln!("keylookup: {query} is not registered ({server})");
            Ok(ExitCode::from(1))
        }
        ClientAnswer::NoServer(failures) => {
            eprintln!("keylookup: no key server answered: {}", failures.join("; "));
            Ok(ExitCode::from(exit::UNAVAILABLE))
        }
    }
}

fn main() -> ExitCode {
    finish("keylookup", &[], run(parse_args(exit::USAGE)))
}
