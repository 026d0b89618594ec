//! `ripem-keygen`: makes OpenPGP test keys for tests, demos and benchmarks
//! of ripem-keyserver.
//!
//! `ripem-keygen --uid "Alice <alice@example.org>" --public alice.asc` writes
//! an armored public key (and, with `--secret`, the unprotected secret key).
//! `--algo rsa1024` exists to test the weak-key refusal; `--expired` makes a
//! key created two years ago that expired after one year.
//! `ripem-keygen certify --signer carol.sec.asc --key alice.asc --out o.asc`
//! adds a third-party certification to every user ID, to test stripping.
//! The keys are made with rPGP through `ripem_openpgp`, so the
//! ed25519 ones use the legacy EdDSA form that gpg 2.2 reads.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, TimeZone, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pgp::types::KeyDetails as _;
use ripem_openpgp::{self as openpgp, GenAlgorithm, KeySpec};

/// Makes OpenPGP test keys (never use them for real mail: the secret keys are unprotected).
#[derive(Debug, Parser)]
#[command(
    name = "ripem-keygen",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    generate: GenerateArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Add a third-party certification by SIGNER to every user ID of KEY.
    Certify {
        /// Armored secret key of the certifier.
        #[arg(long)]
        signer: PathBuf,
        /// Armored public key to certify.
        #[arg(long)]
        key: PathBuf,
        /// Where to write the certified public key (armored).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// A user ID, e.g. "Alice <alice@example.org>"; repeat for several (the first is primary).
    #[arg(long = "uid", required = true)]
    uids: Vec<String>,
    /// Primary key algorithm.
    #[arg(long, value_enum, default_value_t = Algo::Ed25519)]
    algo: Algo,
    /// Make a key created two years ago (unless --created) that expired after one year.
    #[arg(long)]
    expired: bool,
    /// Key creation time, as seconds since the Unix epoch.
    #[arg(long, value_name = "UNIX_TS")]
    created: Option<i64>,
    /// Leave out the encryption subkey.
    #[arg(long)]
    no_subkey: bool,
    /// Where to write the armored public key.
    #[arg(long, value_name = "OUT.asc", required = true)]
    public: Option<PathBuf>,
    /// Where to write the armored (unprotected) secret key.
    #[arg(long, value_name = "OUT.sec.asc")]
    secret: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Algo {
    /// Ed25519 (EdDSA, algorithm 22) with a Curve25519 encryption subkey.
    Ed25519,
    /// RSA 2048 with an RSA subkey.
    Rsa2048,
    /// RSA 3072 with an RSA subkey.
    Rsa3072,
    /// RSA 1024: too weak, refused by the server (for tests).
    Rsa1024,
}

const YEAR_SECS: u64 = 365 * 24 * 60 * 60;

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Certify { signer, key, out }) => certify(&signer, &key, &out),
        None => generate(&cli.generate),
    }
}

fn generate(args: &GenerateArgs) -> Result<()> {
    let Some(public_path) = &args.public else {
        bail!("--public is required");
    };
    let created: DateTime<Utc> = match (args.created, args.expired) {
        (Some(ts), _) => Utc
            .timestamp_opt(ts, 0)
            .single()
            .with_context(|| format!("--created {ts} is not a valid time"))?,
        (None, true) => Utc::now() - chrono::Duration::days(730),
        (None, false) => Utc::now(),
    };
    let spec = KeySpec {
        user_ids: args.uids.clone(),
        algorithm: match args.algo {
            Algo::Ed25519 => GenAlgorithm::Ed25519,
            Algo::Rsa2048 => GenAlgorithm::Rsa(2048),
            Algo::Rsa3072 => GenAlgorithm::Rsa(3072),
            Algo::Rsa1024 => GenAlgorithm::Rsa(1024),
        },
        created,
        expires_after: args.expired.then_some(std::time::Duration::from_secs(YEAR_SECS)),
        encryption_subkey: !args.no_subkey,
    };
    let secret = openpgp::generate_key(rand::thread_rng(), &spec)?;
    let public = secret.to_public_key();
    write(public_path, &openpgp::armor_public_key(&public)?)?;
    if let Some(secret_path) = &args.secret {
        write(secret_path, &openpgp::armor_secret_key(&secret)?)?;
    }
    println!("{:X}", public.fingerprint());
    Ok(())
}

fn certify(signer: &Path, key: &Path, out: &Path) -> Result<()> {
    let signer_text = read(signer)?;
    let signer =
        openpgp::read_secret_key(&signer_text).with_context(|| format!("reading secret key {}", signer.display()))?;
    let key_text = read(key)?;
    let Some(block) = openpgp::find_armored_keys(&key_text).into_iter().next() else {
        bail!("{}: no armored public key block", key.display());
    };
    let mut keys =
        openpgp::parse_armored_keys(block).with_context(|| format!("reading public key {}", key.display()))?;
    if keys.len() != 1 {
        bail!("{}: expected one key, found {}", key.display(), keys.len());
    }
    let certified = openpgp::certify_user_ids(&signer, &keys.remove(0).into())?;
    write(out, &openpgp::armor_public_key(&certified)?)?;
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from([
            "ripem-keygen",
            "--uid",
            "A <a@example.org>",
            "--uid",
            "a@example.net",
            "--algo",
            "rsa1024",
            "--expired",
            "--public",
            "a.asc",
        ])
        .expect("generate args");
        assert!(cli.command.is_none());
        assert_eq!(cli.generate.uids.len(), 2);
        assert_eq!(cli.generate.algo, Algo::Rsa1024);
        let cli = Cli::try_parse_from([
            "ripem-keygen",
            "certify",
            "--signer",
            "s.asc",
            "--key",
            "k.asc",
            "--out",
            "o.asc",
        ])
        .expect("certify args");
        assert!(matches!(cli.command, Some(Command::Certify { .. })));
        assert!(Cli::try_parse_from(["ripem-keygen", "--uid", "x"]).is_err());
    }
}
