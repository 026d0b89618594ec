//! The canonical text of an update, and its id.
//!
//! An update is RIPEM field text: one `Name: value` line per field, LF line
//! ends, the lines of a block (an armored key, base64 data) as continuation
//! lines that start with one space. The fields come in one fixed order and
//! each kind has its own required and forbidden fields, so one update has
//! exactly one text: [`Update::parse`] refuses any text that does not read
//! back to the same bytes ([`Update::to_bytes`]), and the id, SHA-256 over
//! those bytes, names the update on every server alike. Address lists are
//! sorted and without repeats for the same reason. A signed request is
//! carried as base64 of its exact bytes, since one changed byte (a trailing
//! space, a line end) breaks its signature.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ripem_core::types::{Email, Fingerprint};
use ripem_openpgp::SignedPart;
use sha2::{Digest, Sha256};

use crate::error::UpdateError;

/// An update's text is at most this long: a stripped key fits one
/// datagram, and a signed request is at most a few of them.
pub const MAX_UPDATE_BYTES: usize = 1 << 20;

/// Base64 lines are this long, as in armor.
const BASE64_LINE: usize = 76;

/// What kind of state change an update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A key offered for registration, with the addresses it claims.
    Register,
    /// Key material merged into a registered key (a re-sent copy, a
    /// revocation certificate), claiming nothing.
    Merge,
    /// A key replaced by its successor, signed by the old key.
    Change,
    /// A key removed, signed by it.
    Remove,
}

impl Kind {
    /// The kind's name in the text.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Merge => "merge",
            Kind::Change => "change",
            Kind::Remove => "remove",
        }
    }

    fn parse(name: &str) -> Result<Kind, UpdateError> {
        match name {
            "register" => Ok(Kind::Register),
            "merge" => Ok(Kind::Merge),
            "change" => Ok(Kind::Change),
            "remove" => Ok(Kind::Remove),
            other => Err(UpdateError::Malformed(format!("unknown update kind {other:?}"))),
        }
    }
}

/// The fields of an update, before it has an id (see [`Update::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// What it is.
    pub kind: Kind,
    /// The id of the server that accepted the request.
    pub origin: String,
    /// That server's clock when it did, milliseconds since 1970.
    pub time_ms: u64,
    /// The key it is about: the registered or merged key, a change's new
    /// key, a removed key.
    pub fingerprint: Fingerprint,
    /// A change: the key it replaces.
    pub old_fingerprint: Option<Fingerprint>,
    /// Addresses the accepting server registered to the key.
    pub claims: Vec<Email>,
    /// A change: addresses passed from the old key to the new one.
    pub transfers: Vec<Email>,
    /// A change or removal: addresses set free.
    pub releases: Vec<Email>,
    /// The stripped key, armored (all kinds but remove).
    pub key: Option<String>,
    /// A change or removal: the old key as it was registered, armored.
    pub old_key: Option<String>,
    /// A change or removal: the user's own signed request.
    pub request: Option<SignedPart>,
}

impl Fields {
    /// The fields of an update of `kind` by `origin` at `time_ms` about
    /// `fingerprint`, with nothing else set yet.
    pub fn new(kind: Kind, origin: &str, time_ms: u64, fingerprint: Fingerprint) -> Fields {
        Fields {
            kind,
            origin: origin.to_string(),
            time_ms,
            fingerprint,
            old_fingerprint: None,
            claims: Vec::new(),
            transfers: Vec::new(),
            releases: Vec::new(),
            key: None,
            old_key: None,
            request: None,
        }
    }
}

/// One update: its fields, its canonical text and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    fields: Fields,
    bytes: Vec<u8>,
    id: String,
}

impl Update {
    /// Makes the update of `fields`, putting its address lists in their
    /// canonical order.
    pub fn new(mut fields: Fields) -> Result<Update, UpdateError> {
        for list in [&mut fields.claims, &mut fields.transfers, &mut fields.releases] {
            list.sort();
            list.dedup();
        }
        validate(&fields)?;
        let bytes = render(&fields).into_bytes();
        if bytes.len() > MAX_UPDATE_BYTES {
            return Err(UpdateError::TooLarge(bytes.len()));
        }
        let id = id_of(&bytes);
        Ok(Update { fields, bytes, id })
    }

    /// Reads an update's canonical text; anything else is refused.
    pub fn parse(bytes: &[u8]) -> Result<Update, UpdateError> {
        if bytes.len() > MAX_UPDATE_BYTES {
            return Err(UpdateError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| UpdateError::Malformed("not UTF-8 text".into()))?;
        let fields = read_fields(text)?;
        let update = Update::new(fields)?;
        if update.bytes != bytes {
            return Err(UpdateError::NotCanonical);
        }
        Ok(update)
    }

    /// Its fields.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// Its canonical text.
    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 over the canonical text, 64 lower-case hex digits.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        self.fields.kind
    }

    /// The server that accepted it.
    pub fn origin(&self) -> &str {
        &self.fields.origin
    }

    /// When, in milliseconds since 1970.
    pub fn time_ms(&self) -> u64 {
        self.fields.time_ms
    }

    /// The key it is about.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fields.fingerprint
    }

    /// Where it stands in the one order every server applies updates in:
    /// by time, then origin, then id.
    pub fn order(&self) -> (u64, &str, &str) {
        (self.fields.time_ms, &self.fields.origin, &self.id)
    }
}

/// SHA-256 of `bytes` in lower-case hex.
pub fn id_of(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// Which fields each kind must have and must not have.
fn validate(fields: &Fields) -> Result<(), UpdateError> {
    let bad = |what: &str| {
        Err(UpdateError::Malformed(format!(
            "a {} update {what}",
            fields.kind.as_str()
        )))
    };
    if fields.origin.is_empty() || fields.origin.len() > 255 || !fields.origin.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UpdateError::Malformed(format!("bad origin {:?}", fields.origin)));
    }
    let signed = matches!(fields.kind, Kind::Change | Kind::Remove);
    if signed != fields.request.is_some() || signed != fields.old_key.is_some() {
        return bad("carries a signed request and the old key exactly when it is a change or a removal");
    }
    if (fields.kind == Kind::Change) != fields.old_fingerprint.is_some() {
        return bad("names an old fingerprint exactly when it is a change");
    }
    if (fields.kind == Kind::Remove) == fields.key.is_some() {
        return bad("carries a key unless it is a removal");
    }
    let lists_allowed = match fields.kind {
        Kind::Register => (true, false, false),
        Kind::Merge => (false, false, false),
        Kind::Change => (true, true, true),
        Kind::Remove => (false, false, true),
    };
    if (!lists_allowed.0 && !fields.claims.is_empty())
        || (!lists_allowed.1 && !fields.transfers.is_empty())
        || (!lists_allowed.2 && !fields.releases.is_empty())
    {
        return bad("lists addresses its kind does not move");
    }
    for block in [&fields.key, &fields.old_key].into_iter().flatten() {
        if block.is_empty() || block.contains('\r') || block.ends_with('\n') || !block.is_ascii() {
            return bad("carries a key block that is not plain armor");
        }
    }
    Ok(())
}

fn push_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    out.push_str(value);
    out.push('\n');
}

fn push_block(out: &mut String, name: &str, block: &str) {
    out.push_str(name);
    out.push_str(":\n");
    for line in block.split('\n') {
        out.push(' ');
        out.push_str(line);
        out.push('\n');
    }
}

fn push_base64(out: &mut String, name: &str, data: &[u8]) {
    let encoded = BASE64.encode(data);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(BASE64_LINE)
        .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
        .collect();
    push_block(out, name, &lines.join("\n"));
}

fn render(fields: &Fields) -> String {
    let mut out = String::new();
    push_field(&mut out, "Update", fields.kind.as_str());
    push_field(&mut out, "Origin", &fields.origin);
    push_field(&mut out, "Time", &fields.time_ms.to_string());
    push_field(&mut out, "Fingerprint", fields.fingerprint.as_str());
    if let Some(old) = &fields.old_fingerprint {
        push_field(&mut out, "Old-Fingerprint", old.as_str());
    }
    for (name, list) in [
        ("Claim", &fields.claims),
        ("Transfer", &fields.transfers),
        ("Release", &fields.releases),
    ] {
        for email in list {
            push_field(&mut out, name, email.as_str());
        }
    }
    if let Some(key) = &fields.key {
        push_block(&mut out, "Key", key);
    }
    if let Some(old_key) = &fields.old_key {
        push_block(&mut out, "Old-Key", old_key);
    }
    match &fields.request {
        None => {}
        Some(SignedPart::Cleartext(text)) => {
            push_field(&mut out, "Request", "cleartext");
            push_base64(&mut out, "Request-Data", text.as_bytes());
        }
        Some(SignedPart::Inline(text)) => {
            push_field(&mut out, "Request", "inline");
            push_base64(&mut out, "Request-Data", text.as_bytes());
        }
        Some(SignedPart::Detached {
            content,
            text,
            signature,
        }) => {
            push_field(&mut out, "Request", "detached");
            push_base64(&mut out, "Request-Data", content);
            push_base64(&mut out, "Request-Text", text.as_bytes());
            push_base64(&mut out, "Request-Signature", signature.as_bytes());
        }
    }
    out
}

/// A field as read: its name, its value line, its continuation lines.
struct RawField<'a> {
    name: &'a str,
    value: &'a str,
    block: Vec<&'a str>,
}

fn raw_fields(text: &str) -> Result<Vec<RawField<'_>>, UpdateError> {
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| UpdateError::Malformed("does not end with a line end".into()))?;
    let mut fields: Vec<RawField> = Vec::new();
    for line in body.split('\n') {
        if let Some(rest) = line.strip_prefix(' ') {
            let field = fields
                .last_mut()
                .ok_or_else(|| UpdateError::Malformed("starts with a continuation line".into()))?;
            field.block.push(rest);
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| UpdateError::Malformed(format!("not a field: {:.60?}", line)))?;
        fields.push(RawField {
            name,
            value: value.strip_prefix(' ').unwrap_or(value),
            block: Vec::new(),
        });
    }
    Ok(fields)
}

fn decode_base64(field: &RawField) -> Result<Vec<u8>, UpdateError> {
    BASE64
        .decode(field.block.concat())
        .map_err(|err| UpdateError::Malformed(format!("{}: {err}", field.name)))
}

fn text_of(field: &RawField, bytes: Vec<u8>) -> Result<String, UpdateError> {
    String::from_utf8(bytes).map_err(|_| UpdateError::Malformed(format!("{} is not UTF-8", field.name)))
}

/// Reads the fields in any order the text has them; [`Update::parse`]
/// then insists on the canonical one by rendering them again.
fn read_fields(text: &str) -> Result<Fields, UpdateError> {
    let raw = raw_fields(text)?;
    let malformed = |what: String| UpdateError::Malformed(what);
    let mut kind = None;
    let mut origin = None;
    let mut time_ms = None;
    let mut fingerprint = None;
    let placeholder = Fingerprint::parse(&"0".repeat(40)).map_err(|err| malformed(err.to_string()))?;
    let mut fields = Fields::new(Kind::Register, "", 0, placeholder);
    let mut request_kind = None;
    let (mut data, mut request_text, mut signature) = (None, None, None);
    let fingerprint_of = |value: &str| Fingerprint::parse(value).map_err(|err| malformed(err.to_string()));
    let email_of = |value: &str| Email::parse(value).map_err(|err| malformed(err.to_string()));
    for field in &raw {
        match field.name {
            "Update" => kind = Some(Kind::parse(field.value)?),
            "Origin" => origin = Some(field.value.to_string()),
            "Time" => {
                time_ms = Some(
                    field
                        .value
                        .parse::<u64>()
                        .map_err(|_| malformed(format!("bad time {:?}", field.value)))?,
                )
            }
            "Fingerprint" => fingerprint = Some(fingerprint_of(field.value)?),
            "Old-Fingerprint" => fields.old_fingerprint = Some(fingerprint_of(field.value)?),
            "Claim" => fields.claims.push(email_of(field.value)?),
            "Transfer" => fields.transfers.push(email_of(field.value)?),
            "Release" => fields.releases.push(email_of(field.value)?),
            "Key" => fields.key = Some(field.block.join("\n")),
            "Old-Key" => fields.old_key = Some(field.block.join("\n")),
            "Request" => request_kind = Some(field.value),
            "Request-Data" => data = Some(decode_base64(field)?),
            "Request-Text" => request_text = Some(text_of(field, decode_base64(field)?)?),
            "Request-Signature" => signature = Some(text_of(field, decode_base64(field)?)?),
            other => return Err(malformed(format!("unknown field {other:?}"))),
        }
    }
    fields.kind = kind.ok_or_else(|| malformed("no Update: field".into()))?;
    fields.origin = origin.ok_or_else(|| malformed("no Origin: field".into()))?;
    fields.time_ms = time_ms.ok_or_else(|| malformed("no Time: field".into()))?;
    fields.fingerprint = fingerprint.ok_or_else(|| malformed("no Fingerprint: field".into()))?;
    fields.request = match (request_kind, data) {
        (None, None) => None,
        (Some("cleartext"), Some(data)) => Some(SignedPart::Cleartext(text_of(&raw[0], data)?)),
        (Some("inline"), Some(data)) => Some(SignedPart::Inline(text_of(&raw[0], data)?)),
        (Some("detached"), Some(content)) => Some(SignedPart::Detached {
            content,
            text: request_text.ok_or_else(|| malformed("a detached request without its text".into()))?,
            signature: signature.ok_or_else(|| malformed("a detached request without its signature".into()))?,
        }),
        _ => return Err(malformed("a request that is incomplete or of an unknown form".into())),
    };
    Ok(fields)
}
