//! The SKS phase: `keyreg --import` against SKS, the key server most
//! public OpenPGP servers ran, on the same keyring, in one run.
//!
//! SKS's database is built as Debian's `sks_build.sh` builds it
//! (`/usr/lib/sks/sks_build.sh --normal`): `sks build` of the dump,
//! `sks cleandb` (tried twice, as the script does), `sks pbuild`; all three
//! are timed together. keyreg imports the same file into a fresh state
//! directory. The two alternate, [`RUNS`] times each, each run on a
//! fresh directory, and the medians and their ratio are printed. SKS
//! verifies no signature; keyreg verifies every self-signature it keeps,
//! so the ratio is the cost of the whole of keyreg's checks against
//! SKS's storing. Needs Debian's `sks` on the `PATH` (`scripts/bench`
//! installs it as root, and skips this phase otherwise).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Runs of each program per keyring; the median counts.
pub const RUNS: usize = 5;

/// One keyring to compare on.
#[derive(Debug, Clone)]
pub struct Keyring {
    /// How the report names it.
    pub label: String,
    /// Binary OpenPGP packets (SKS builds only from those).
    pub path: PathBuf,
}

/// What the SKS phase needs.
#[derive(Debug, Clone)]
pub struct SksSpec {
    /// Where the workspace's programs are (`target/release`).
    pub bin_dir: PathBuf,
    /// The scratch directory: each run's databases go under it.
    pub work_dir: PathBuf,
    /// The keyrings, compared in turn.
    pub keyrings: Vec<Keyring>,
}

/// The SKS configuration of a build: loopback only, no mail sync; page
/// sizes as Debian's sample configuration sets them.
const SKSCONF: &str = "hkp_address: 127.0.0.1\nrecon_address: 127.0.0.1\npagesize: 16\nptree_pagesize: 16\ninitial_stat:\ndisable_mailsync:\n";

/// Compares the two on every keyring of `spec` and prints the figures.
pub fn compare(spec: &SksSpec) -> Result<()> {
    let keyreg = spec.bin_dir.join("keyreg");
    if !keyreg.exists() {
        bail!("{} is missing: build the release programs first", keyreg.display());
    }
    println!("\nSKS phase: SKS's build (sks build + cleandb + pbuild, as sks_build.sh) against keyreg --import, alternating, median of {RUNS}");
    for keyring in &spec.keyrings {
        compare_on(spec, &keyreg, keyring)?;
    }
    Ok(())
}

fn compare_on(spec: &SksSpec, keyreg: &Path, keyring: &Keyring) -> Result<()> {
    let size = fs::metadata(&keyring.path)
        .with_context(|| format!("reading {}", keyring.path.display()))?
        .len();
    let mut sks_runs = Vec::new();
    let mut keyreg_runs = Vec::new();
    let mut summary = String::new();
    for run in 0..RUNS {
        let sks_dir = spec.work_dir.join(format!("sks-{run}"));
        sks_runs.push(sks_build(&sks_dir, &keyring.path)?);
        let state = spec.work_dir.join(format!("keyreg-{run}"));
        let (seconds, output) = keyreg_import(keyreg, &state, &keyring.path)?;
        keyreg_runs.push(seconds);
        summary = output;
        fs::remove_dir_all(&sks_dir).with_context(|| format!("removing {}", sks_dir.display()))?;
        fs::remove_dir_all(&state).with_context(|| format!("removing {}", state.display()))?;
    }
    let sks = median(&mut sks_runs);
    let ours = median(&mut keyreg_runs);
    println!(
        "   {} ({:.1} MB): {}",
        keyring.label,
        size as f64 / 1e6,
        summary
            .lines()
            .find(|line| line.contains(" keys added, "))
            .unwrap_or("")
    );
    println!("     SKS    {sks:.3} s median (runs {})", listed(&sks_runs));
    println!("     keyreg {ours:.3} s median (runs {})", listed(&keyreg_runs));
    println!(
        "     keyreg --import is {:.2}x SKS's speed (SKS time / keyreg time; target 2x)",
        sks / ours
    );
    Ok(())
}

fn median(runs: &mut [f64]) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn listed(runs: &[f64]) -> String {
    runs.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>().join(" ")
}

/// Builds SKS's database from `keyring` in the fresh directory `dir`, as
/// `sks_build.sh --normal` does; returns the seconds the three steps took.
fn sks_build(dir: &Path, keyring: &Path) -> Result<f64> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    let dump = dir.join("dump");
    fs::create_dir_all(&dump).with_context(|| format!("creating {}", dump.display()))?;
    std::os::unix::fs::symlink(fs::canonicalize(keyring)?, dump.join("keyring.pgp"))?;
    // Debian's sks keeps its absolute paths (/etc/sks, /var/lib/sks,
    // /var/log/sks, /var/run/sks) under the base directory it is given.
    for sub in ["etc/sks", "var/lib/sks", "var/log/sks", "var/run/sks"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    for conf in [dir.to_path_buf(), dir.join("etc/sks")] {
        fs::write(conf.join("sksconf"), SKSCONF)?;
        fs::write(conf.join("membership"), "")?;
    }
    // sks runs in `dir` and joins the base directory onto its own
    // absolute paths, so a relative base would be counted twice.
    let base = fs::canonicalize(dir)
        .with_context(|| format!("resolving {}", dir.display()))?
        .display()
        .to_string();
    let dump_file = "dump/keyring.pgp";
    let started = Instant::now();
    sks(
        dir,
        "build",
        &[dump_file, "-n", "10", "-cache", "100", "-basedir", &base],
    )?;
    if sks(dir, "cleandb", &["-basedir", &base]).is_err() {
        sks(dir, "cleandb", &["-basedir", &base])?;
    }
    sks(
        dir,
        "pbuild",
        &["-cache", "20", "-ptree_cache", "70", "-basedir", &base],
    )?;
    Ok(started.elapsed().as_secs_f64())
}

/// Runs `sks <step> <args>` in `dir`, its output to `<step>.log` there.
fn sks(dir: &Path, step: &str, args: &[&str]) -> Result<()> {
    let log_path = dir.join(format!("{step}.log"));
    let log = fs::File::create(&log_path)?;
    let status = Command::new("sks")
        .arg(step)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("running sks (Debian package sks)")?;
    if !status.success() {
        bail!("sks {step} failed ({status}); see {}", log_path.display());
    }
    Ok(())
}

/// `keyreg --import keyring` into the fresh state directory `state`;
/// returns its seconds and its output.
fn keyreg_import(keyreg: &Path, state: &Path, keyring: &Path) -> Result<(f64, String)> {
    if state.exists() {
        fs::remove_dir_all(state).with_context(|| format!("emptying {}", state.display()))?;
    }
    fs::create_dir_all(state)?;
    let config = state.join("keyserver.toml");
    fs::write(
        &config,
        format!("state_dir = \"{}\"\n[mail]\ntransport = \"file\"\n", state.display()),
    )?;
    let started = Instant::now();
    let output = Command::new(keyreg)
        .arg("--config")
        .arg(&config)
        .arg("--import")
        .arg(keyring)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", keyreg.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("keyreg --import {} failed ({})", keyring.display(), output.status);
    }
    Ok((seconds, String::from_utf8_lossy(&output.stdout).into_owned()))
}
