//! The benchmark's key corpus, generated once and cached on disk.
//!
//! A realistic mix made with rPGP: 70 % Ed25519, 20 % RSA-3072, 10 %
//! RSA-4096 (by default); one to four user IDs each; one key in five
//! carries third-party certifications (which keyreg strips). A *certified*
//! corpus ([`Mix::certified`]) is certified as a key server's keys are:
//! most keys carry none, many a few, some dozens and one in a hundred
//! 50 to 150, from a pool of [`CERTIFIER_POOL`] Ed25519 certifiers. RSA
//! key pairs are slow to make, so a few pairs are reused under different
//! creation times: a v4 fingerprint covers the creation time, so every key
//! is still a different key. The corpus directory holds `keys.asc` (one
//! armored keyring), `keys.pgp` (the same keys as binary packets, the
//! form SKS builds from), `addresses.txt` (one registered address per key, to look up)
//! and `feed.asc` (fresh keys, one armored block each, that the merge phase
//! registers while lookups run). A `complete` marker is written last, so an
//! interrupted generation is started again.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, TimeZone, Utc};
use pgp::composed::{SignedPublicKey, SignedSecretKey};
use pgp::ser::Serialize;
use ripem_openpgp::{self as openpgp, ArmoredKeyringWriter, GenAlgorithm, KeyMaterial, KeySpec};

/// Keys generated per unit of work handed to a thread.
const CHUNK: usize = 500;
/// Fresh keys for the merge phase.
pub const FEED_KEYS: usize = 400;
/// Certifiers whose signatures decorate some keys.
const CERTIFIERS: usize = 3;
/// Certifiers of a certified corpus: more than the most any key carries.
pub const CERTIFIER_POOL: usize = 160;

/// What share of the corpus is which algorithm.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Percent of keys that are RSA (a third of them 4096 bits, the rest 3072).
    pub rsa_percent: u64,
    /// Certified as a key server's keys are (see the module's text),
    /// rather than one key in five by up to three certifiers.
    pub certified: bool,
}

/// A generated corpus on disk.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Its directory.
    pub dir: PathBuf,
    /// How many keys `keys.asc` holds.
    pub keys: usize,
}

impl Corpus {
    /// The armored keyring of every key.
    pub fn keyring(&self) -> PathBuf {
        self.dir.join("keys.asc")
    }

    /// The same keys as binary packets (written for corpora made since
    /// the SKS phase; see [`Corpus::has_binary_keyring`]).
    pub fn binary_keyring(&self) -> PathBuf {
        self.dir.join("keys.pgp")
    }

    /// Whether the corpus has its binary keyring.
    pub fn has_binary_keyring(&self) -> bool {
        self.binary_keyring().exists()
    }

    /// One registered address per key, one per line.
    pub fn addresses(&self) -> PathBuf {
        self.dir.join("addresses.txt")
    }

    /// Fresh keys for the merge phase, one armored block each.
    pub fn feed(&self) -> PathBuf {
        self.dir.join("feed.asc")
    }
}

/// The corpus of `keys` keys under `root`, generated first if not cached.
pub fn ensure(root: &Path, keys: usize, mix: Mix) -> Result<Corpus> {
    let corpus = Corpus {
        dir: root.join(format!(
            "keys-{keys}-rsa{}{}",
            mix.rsa_percent,
            if mix.certified { "-certified" } else { "" }
        )),
        keys,
    };
    if corpus.dir.join("complete").exists() {
        eprintln!("corpus: using the cached {}", corpus.dir.display());
        return Ok(corpus);
    }
    fs::create_dir_all(&corpus.dir).with_context(|| format!("creating {}", corpus.dir.display()))?;
    let started = Instant::now();
    eprintln!(
        "corpus: generating {keys} keys in {} (cached for later runs)",
        corpus.dir.display()
    );
    let generator = Generator::new(mix)?;
    generator.write_keyring(&corpus, keys)?;
    generator.write_feed(&corpus.feed())?;
    fs::write(corpus.dir.join("complete"), b"")?;
    eprintln!("corpus: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(corpus)
}

/// A cheap, well-mixed hash of a key's index: decides its shape.
fn splitmix(index: u64) -> u64 {
    let mut z = index.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How many certifiers certify a key of a certified corpus, by its shape:
/// none for 60 % of keys, 1 to 4 for 30 %, 5 to 20 for 9 %, 50 to 150 for
/// 1 % (a key server's keys: most never met anyone, a few met many).
fn certifier_count(shape: u64) -> usize {
    let spread = (shape >> 48) as usize;
    match (shape >> 40) % 100 {
        0..60 => 0,
        60..90 => 1 + spread % 4,
        90..99 => 5 + spread % 16,
        _ => 50 + spread % 101,
    }
}

struct Generator {
    mix: Mix,
    rsa3072: Vec<KeyMaterial>,
    rsa4096: Vec<KeyMaterial>,
    certifiers: Vec<SignedSecretKey>,
    epoch: DateTime<Utc>,
}

/// One generated key: its binary packets and the address to look it up by.
struct Made {
    binary: Vec<u8>,
    address: String,
}

impl Generator {
    fn new(mix: Mix) -> Result<Generator> {
        let pool = |bits: u32, count: usize| -> Result<Vec<KeyMaterial>> {
            if mix.rsa_percent == 0 {
                return Ok(Vec::new());
            }
            eprintln!("corpus: making {count} RSA-{bits} key pairs to reuse");
            (0..count)
                .map(|_| {
                    Ok(openpgp::generate_material(
                        rand::thread_rng(),
                        GenAlgorithm::Rsa(bits),
                        true,
                    )?)
                })
                .collect()
        };
        let certifier_total = if mix.certified { CERTIFIER_POOL } else { CERTIFIERS };
        let certifiers = (0..certifier_total)
            .map(|n| {
                let spec = KeySpec::ed25519(&[&format!("Certifier {n} <certifier{n}@ca.example.net>")]);
                Ok(openpgp::generate_key(rand::thread_rng(), &spec)?)
            })
            .collect::<Result<_>>()?;
        Ok(Generator {
            mix,
            rsa3072: pool(3072, 3)?,
            rsa4096: pool(4096, 2)?,
            certifiers,
            epoch: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().context("epoch")?,
        })
    }

    /// Key number `index` of the corpus.
    fn make(&self, index: usize) -> Result<Made> {
        let shape = splitmix(index as u64);
        let uid_count = 1 + (shape >> 8) % 4;
        let emails: Vec<String> = (0..uid_count)
            .map(|n| format!("user{index}.{n}@d{}.example.org", index % 997))
            .collect();
        let user_ids: Vec<String> = emails
            .iter()
            .enumerate()
            .map(|(n, email)| format!("User {index} ({n}) <{email}>"))
            .collect();
        let percent = shape % 100;
        let spec = KeySpec {
            user_ids,
            algorithm: GenAlgorithm::Ed25519,
            // Distinct creation times keep reused RSA pairs distinct keys.
            created: self.epoch - Duration::seconds(index as i64),
            expires_after: None,
            encryption_subkey: true,
        };
        let secret = if percent < self.mix.rsa_percent {
            let pool = if percent.is_multiple_of(3) {
                &self.rsa4096
            } else {
                &self.rsa3072
            };
            let material = &pool[(shape >> 32) as usize % pool.len()];
            openpgp::key_from_material(material, &spec)?
        } else {
            openpgp::generate_key(rand::thread_rng(), &spec)?
        };
        let public = self.certify(secret.to_public_key(), shape)?;
        Ok(Made {
            binary: public.to_bytes()?,
            address: emails[(shape >> 24) as usize % emails.len()].clone(),
        })
    }

    /// `key` with its third-party certifications, by its shape.
    fn certify(&self, key: SignedPublicKey, shape: u64) -> Result<SignedPublicKey> {
        let (count, first) = if self.mix.certified {
            (certifier_count(shape), (shape >> 56) as usize)
        } else if (shape >> 16).is_multiple_of(5) {
            (1 + (shape >> 20) as usize % CERTIFIERS, 0)
        } else {
            (0, 0)
        };
        let mut certified = key.clone();
        for n in 0..count {
            let certifier = &self.certifiers[(first + n) % self.certifiers.len()];
            // Each certifier signs the bare key, so a key of many
            // certifications is not copied once per certifier.
            let signed = openpgp::certify_user_ids(certifier, &key)?;
            let users = certified.details.users.iter_mut().zip(&key.details.users);
            for ((user, bare), from) in users.zip(signed.details.users) {
                user.signatures
                    .extend(from.signatures.into_iter().skip(bare.signatures.len()));
            }
        }
        Ok(certified)
    }

    /// Generates the keyring on every core, writing chunks in order.
    fn write_keyring(&self, corpus: &Corpus, keys: usize) -> Result<()> {
        let mut keyring = ArmoredKeyringWriter::new(BufWriter::new(File::create(corpus.keyring())?))?;
        let mut binary = BufWriter::new(File::create(corpus.binary_keyring())?);
        let mut addresses = BufWriter::new(File::create(corpus.addresses())?);
        let chunks = keys.div_ceil(CHUNK);
        let next = AtomicUsize::new(0);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (done, finished) = mpsc::sync_channel::<(usize, Result<Vec<Made>>)>(threads * 2);
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..threads {
                let done = done.clone();
                let next = &next;
                scope.spawn(move || loop {
                    let chunk = next.fetch_add(1, Ordering::Relaxed);
                    if chunk >= chunks {
                        break;
                    }
                    let range = chunk * CHUNK..((chunk + 1) * CHUNK).min(keys);
                    if done.send((chunk, range.map(|i| self.make(i)).collect())).is_err() {
                        break;
                    }
                });
            }
            drop(done);
            let mut waiting = std::collections::BTreeMap::new();
            let mut written = 0;
            for (chunk, made) in finished {
                waiting.insert(chunk, made?);
                while let Some(made) = waiting.remove(&written) {
                    for key in made {
                        keyring.write_key(&key.binary)?;
                        binary.write_all(&key.binary)?;
                        writeln!(addresses, "{}", key.address)?;
                    }
                    written += 1;
                    if written.is_multiple_of((chunks / 10).max(1)) {
                        eprintln!("corpus: {} of {keys} keys", (written * CHUNK).min(keys));
                    }
                }
            }
            Ok(())
        })?;
        keyring.finish()?.flush()?;
        binary.flush()?;
        addresses.flush()?;
        Ok(())
    }

    /// Fresh Ed25519 keys for the merge phase, one armored block each.
    fn write_feed(&self, path: &Path) -> Result<()> {
        let mut out = BufWriter::new(File::create(path)?);
        for n in 0..FEED_KEYS {
            let spec = KeySpec::ed25519(&[&format!("Feed {n} <feed{n}@feed.example.org>")]);
            let key = openpgp::generate_key(rand::thread_rng(), &spec)?;
            writeln!(out, "{}", openpgp::armor_public_key(&key.to_public_key())?)?;
        }
        out.flush()?;
        Ok(())
    }
}
