//! What an answer holds: the armored keyring of `op=get`, the
//! machine-readable index of `op=index`/`op=vindex` with `options=mr`
//! (GnuPG's `doc/KEYSERVER`: `info:1:<count>`, then per key a `pub:` line
//! and its `uid:` lines, `%`-escaped), the small HTML index without `mr`,
//! and WKD's binary key restricted to one domain's user IDs.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use ripem_core::record::Record;
use ripem_openpgp::{dearmor, ArmoredKeyringWriter, CheckedKey};

/// The keys of `records` as one armored keyring: a single record's own
/// armor as stored, several keys' packets under one armor.
pub fn armored_keyring(records: &[Record]) -> Vec<u8> {
    if let [record] = records {
        let mut out = record.key_armor.clone().into_bytes();
        out.push(b'\n');
        return out;
    }
    let written = ArmoredKeyringWriter::new(Vec::new()).and_then(|mut writer| {
        for record in records {
            if let Ok(bytes) = dearmor(&record.key_armor) {
                writer.write_key(&bytes)?;
            }
        }
        writer.finish()
    });
    written.unwrap_or_default()
}

/// One key of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The primary fingerprint.
    pub fingerprint: String,
    /// The OpenPGP algorithm number of the primary key.
    pub algorithm: u8,
    /// The key's size in bits (RSA's modulus, the curve's size).
    pub bits: u32,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Expiry time, seconds since the epoch, if it expires.
    pub expires: Option<i64>,
    /// Revoked by its owner.
    pub revoked: bool,
    /// Expired at the time of the answer.
    pub expired: bool,
    /// The user IDs.
    pub uids: Vec<UidEntry>,
}

/// One user ID of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidEntry {
    /// The user ID's bytes.
    pub text: Vec<u8>,
    /// When its self-signature was made.
    pub created: Option<i64>,
    /// Revoked by its owner.
    pub revoked: bool,
}

impl IndexEntry {
    /// The index entry of a stored key.
    pub fn of(key: &CheckedKey, now: DateTime<Utc>) -> IndexEntry {
        let (algorithm, bits) = key.algorithm_number_and_bits();
        let uids = key
            .user_id_summaries()
            .into_iter()
            .map(|uid| UidEntry {
                text: uid.text,
                created: uid.created.map(|at| at.timestamp()),
                revoked: uid.revoked,
            })
            .collect();
        IndexEntry {
            fingerprint: key.fingerprint().to_string(),
            algorithm,
            bits,
            created: key.created_at().timestamp(),
            expires: key.expires_at().map(|at| at.timestamp()),
            revoked: key.is_revoked(),
            expired: key.is_expired(now),
            uids,
        }
    }
}

/// `%`-escapes a field of a machine-readable line: every byte outside
/// printable ASCII, and `:` and `%`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_graphic() && byte != b':' && byte != b'%' || byte == b' ' {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The machine-readable index (`options=mr`).
pub fn machine_readable(entries: &[IndexEntry]) -> String {
    let mut out = format!("info:1:{}\n", entries.len());
    for entry in entries {
        let mut flags = String::new();
        if entry.revoked {
            flags.push('r');
        }
        if entry.expired {
            flags.push('e');
        }
        let expires = entry.expires.map(|at| at.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "pub:{}:{}:{}:{}:{expires}:{flags}",
            entry.fingerprint, entry.algorithm, entry.bits, entry.created
        );
        for uid in &entry.uids {
            let created = uid.created.map(|at| at.to_string()).unwrap_or_default();
            let flags = if uid.revoked { "r" } else { "" };
            let _ = writeln!(out, "uid:{}:{created}::{flags}", escape(&uid.text));
        }
    }
    out
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn date(seconds: i64) -> String {
    DateTime::<Utc>::from_timestamp(seconds, 0).map_or_else(String::new, |time| time.format("%Y-%m-%d").to_string())
}

/// The index as a small HTML page (without `options=mr`).
pub fn html(entries: &[IndexEntry], searched: &str) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Search results for {0}</title></head>\n<body><h1>Search results for {0}</h1>\n",
        html_escape(searched)
    );
    if entries.is_empty() {
        out.push_str("<p>No key found.</p>\n");
    }
    for entry in entries {
        let algorithm = entry.algorithm;
        let mut state = String::new();
        if entry.revoked {
            state.push_str(" (revoked)");
        }
        if entry.expired {
            state.push_str(" (expired)");
        }
        let _ = writeln!(
            out,
            "<pre>pub  {bits}/{algorithm} <a href=\"/pks/lookup?op=get&amp;search=0x{fpr}\">{fpr}</a> {created}{state}",
            bits = entry.bits,
            fpr = entry.fingerprint,
            created = date(entry.created),
        );
        for uid in &entry.uids {
            let text = String::from_utf8_lossy(&uid.text);
            let revoked = if uid.revoked { " (revoked)" } else { "" };
            let _ = writeln!(out, "uid  {}{revoked}", html_escape(&text));
        }
        out.push_str("</pre>\n");
    }
    out.push_str("</body></html>\n");
    out
}

/// WKD's answer: the binary key with only its user IDs at `domain`
/// (user IDs without any address, which name no other domain, stay).
pub fn wkd_binary(key: &CheckedKey, domain: &str) -> Vec<u8> {
    key.keeping_user_ids(|email| email.domain() == domain).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_readable_lines() {
        let entry = IndexEntry {
            fingerprint: "AB".repeat(20),
            algorithm: 22,
            bits: 255,
            created: 1_700_000_000,
            expires: Some(1_800_000_000),
            revoked: true,
            expired: false,
            uids: vec![UidEntry {
                text: "Zoë: <z@example.org> 100%".as_bytes().to_vec(),
                created: Some(1_700_000_001),
                revoked: false,
            }],
        };
        assert_eq!(
            machine_readable(std::slice::from_ref(&entry)),
            format!(
                "info:1:1\npub:{}:22:255:1700000000:1800000000:r\nuid:Zo%C3%AB%3A <z@example.org> 100%25:1700000001::\n",
                "AB".repeat(20)
            )
        );
        assert_eq!(machine_readable(&[]), "info:1:0\n");
        let page = html(&[entry], "<script>");
        assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"));
    }
}
