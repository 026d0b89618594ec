//! reconcile-bench: what a reconciliation costs beside fetching every id.
//!
//! For each store size n (default 10k, 100k, 1M) and k = 10, 100, 1,000
//! differences (half only on each side), it builds two summaries (the same n ids, and k/2 more
//! on each side), runs a
//! real session over the wire format (in one process: the transport is a
//! function call, so the seconds are computation, not network), checks that
//! both sides found exactly the differences, and measures the baseline of
//! one side sending every id it holds as hex lines in 1 MiB messages and the
//! other checking each. Prints a Markdown table.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ripem_reconcile::{reconcile, Id, Limits, Message, Responder, Summary};
use sha2::Digest;

const DIFFERENCES: [u64; 3] = [10, 100, 1000];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("reconcile-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut sizes = Vec::new();
    for arg in std::env::args().skip(1) {
        sizes.push(
            arg.parse::<u64>()
                .with_context(|| format!("{arg:?} is not a store size"))?,
        );
    }
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000, 1_000_000];
    }
    println!(
        "| n | k | reconcile bytes | round trips | seconds | fetch-all bytes | round trips | seconds | bytes ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut builds = Vec::new();
    for &n in &sizes {
        let ids: Vec<Id> = (0..n).map(id).collect();
        let start = Instant::now();
        let base = Summary::from_ids(ids.iter().copied());
        let built = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut inserted = Summary::new();
        for id in &ids {
            inserted.insert(*id);
        }
        let insert_seconds = start.elapsed().as_secs_f64();
        if inserted.root_digest() != base.root_digest() {
            bail!("n = {n}: inserting one by one and building at once disagree");
        }
        builds.push((n, built, insert_seconds));
        for k in DIFFERENCES {
            row(n, k, &base)?;
        }
    }
    println!();
    for (n, built, inserted) in builds {
        println!("summary of {n} ids: built from the list in {built:.3} s, by {n} inserts in {inserted:.3} s");
    }
    Ok(())
}

/// The id numbered `seed`: the SHA-256 of its big-endian bytes.
fn id(seed: u64) -> Id {
    Id(sha2::Sha256::digest(seed.to_be_bytes()).into())
}

/// One line of the table: both sides hold the n ids of `base`, and each
/// k/2 more of its own.
fn row(n: u64, k: u64, base: &Summary) -> Result<()> {
    let only_a: Vec<Id> = (0..k / 2).map(|i| id(n + 2 * i)).collect();
    let only_b: Vec<Id> = (0..k / 2).map(|i| id(n + 2 * i + 1)).collect();
    let (mut a, mut b) = (base.clone(), base.clone());
    for id in &only_a {
        a.insert(*id);
    }
    for id in &only_b {
        b.insert(*id);
    }
    let start = Instant::now();
    let mut responder = Responder::new(Limits::default());
    let outcome = reconcile(&a, &mut |message| responder.answer(&b, &message)).context("reconciling")?;
    let seconds = start.elapsed().as_secs_f64();
    let (mut a_lacks, mut b_lacks) = (only_b, only_a);
    a_lacks.sort();
    b_lacks.sort();
    let (mut found_a, mut found_b) = (outcome.lacks.clone(), outcome.other_lacks.clone());
    found_a.sort();
    found_b.sort();
    if found_a != a_lacks || found_b != b_lacks {
        bail!(
            "n = {n}, k = {k}: the session found {} and {} differences, not {} and {}",
            found_a.len(),
            found_b.len(),
            a_lacks.len(),
            b_lacks.len()
        );
    }
    let stats = outcome.stats;
    let bytes = stats.bytes_sent + stats.bytes_received;
    let (all_bytes, all_trips, all_seconds) = fetch_everything(&a, &b);
    println!(
        "| {n} | {} | {bytes} | {} | {seconds:.4} | {all_bytes} | {all_trips} | {all_seconds:.3} | {:.1}× |",
        stats.differences,
        stats.round_trips,
        all_bytes as f64 / bytes as f64
    );
    Ok(())
}

/// The baseline: `b` sends every id as a hex line, in messages of at most
/// 1 MiB, and `a` reads each and checks it against its own; returns bytes,
/// messages and seconds.
fn fetch_everything(a: &Summary, b: &Summary) -> (u64, u64, f64) {
    let start = Instant::now();
    let limit = Limits::default().max_message_bytes;
    let (mut bytes, mut messages, mut missing) = (0u64, 0u64, 0u64);
    let mut after: Option<Id> = None;
    let mut chunk = Vec::new();
    loop {
        chunk.clear();
        b.ids_after(&ripem_reconcile::Prefix::ROOT, after.as_ref(), limit / 65, &mut chunk);
        if chunk.is_empty() {
            break;
        }
        after = chunk.last().copied();
        let text: String = chunk.iter().map(|id| format!("{id}\n")).collect();
        let message = Message::from_text(text);
        bytes += message.len() as u64;
        messages += 1;
        for line in message.as_str().lines() {
            if Id::parse_hex(line).is_ok_and(|id| !a.contains(&id)) {
                missing += 1;
            }
        }
    }
    std::hint::black_box(missing);
    (bytes, messages, start.elapsed().as_secs_f64())
}
