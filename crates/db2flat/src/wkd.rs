//! A static Web Key Directory, for a domain that would rather serve WKD
//! from its own web server than point `openpgpkey.<domain>` at hkpd:
//! the advanced layout, `DIR/.well-known/openpgpkey/<domain>/hu/<hash>`,
//! for each of `[hkpd] wkd_domains`, each file the binary key of one
//! registered address holding only its user IDs in that domain (user IDs
//! without an address stay), beside an empty `policy` file and the
//! `submission-address` file (the register address). Every file is
//! written atomically; a key file whose address is no longer registered
//! is deleted after the new ones are in place, so a web server never
//! serves a half tree.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use ripem_core::atomic::write_atomically;
use ripem_core::types::Query;
use ripem_core::wkd::{is_hash, local_part_hash};
use ripem_keydb::KeyStore;
use ripem_openpgp::{read_stored_key, KeyPolicy};

use crate::flat::FlatError;

/// What a WKD tree holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WkdSummary {
    /// Key files written.
    pub keys: usize,
    /// Stale key files deleted.
    pub removed: usize,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> FlatError + '_ {
    move |source| FlatError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The `openpgpkey` directory of `domain` under `root`.
pub fn domain_dir(root: &Path, domain: &str) -> PathBuf {
    root.join(".well-known").join("openpgpkey").join(domain)
}

/// Writes the WKD tree of `domains` under `root` from `store` (`None`:
/// no database yet, so no key files), reading keys back under `policy`
/// (the configured one).
pub fn write_tree(
    store: Option<&KeyStore>,
    root: &Path,
    domains: &[String],
    submission_address: &str,
    policy: &KeyPolicy,
) -> Result<WkdSummary, FlatError> {
    // (domain, hash) → the binary key; collected first, so that a
    // database error leaves the old tree as it was.
    let mut files: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
    if let Some(store) = store {
        for fingerprint in store.fingerprints() {
            let Some(record) = store.record(&Query::Fingerprint(fingerprint?))? else {
                continue;
            };
            let mut key = None;
            for email in &record.users {
                let Some((local, domain)) = email.as_str().rsplit_once('@') else {
                    continue;
                };
                if !domains.iter().any(|wanted| wanted == domain) {
                    continue;
                }
                let key = match &key {
                    Some(key) => key,
                    None => match read_stored_key(&record.key_armor, policy) {
                        Ok(parsed) => key.insert(parsed),
                        Err(_) => break,
                    },
                };
                let binary = key.keeping_user_ids(|e| e.domain() == domain).to_bytes();
                files.insert((domain.to_string(), local_part_hash(local)), binary);
            }
        }
    }
    let mut summary = WkdSummary::default();
    for domain in domains {
        let dir = domain_dir(root, domain);
        let hu = dir.join("hu");
        fs::create_dir_all(&hu).map_err(io_error(&hu))?;
        let policy = dir.join("policy");
        write_atomically(&policy, b"").map_err(io_error(&policy))?;
        let submission = dir.join("submission-address");
        write_atomically(&submission, format!("{submission_address}\n").as_bytes()).map_err(io_error(&submission))?;
        let mut written = BTreeSet::new();
        for ((_, hash), binary) in files.iter().filter(|((at, _), _)| at == domain) {
            let path = hu.join(hash);
            write_atomically(&path, binary).map_err(io_error(&path))?;
            written.insert(hash.clone());
        }
        for entry in fs::read_dir(&hu).map_err(io_error(&hu))? {
            let entry = entry.map_err(io_error(&hu))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_hash(&name) && !written.contains(&name) {
                fs::remove_file(entry.path()).map_err(io_error(&entry.path()))?;
                summary.removed += 1;
            }
        }
        summary.keys += written.len();
    }
    Ok(summary)
}
