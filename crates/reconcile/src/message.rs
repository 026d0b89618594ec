//! The byte-exact form of a reconciliation message: text lines, one entry a
//! line, that fit KX's data lines as they are (no line starts with `.`, none
//! is longer than [`MAX_LINE`], every value lower-case hex or decimal).
//!
//! ```text
//! c <prefix> <child>×16   my 16 child summaries of <prefix>: "-" (empty)
//!                         or <count>:<first 16 bytes of the XOR, hex>
//! l <prefix> <id>…        every id I hold under <prefix> (at most 16, ascending)
//! h <id>                  under a prefix you listed: I hold it, you do not
//! w <id>                  of your list: I do not hold it
//! ack <n> | end <n>       the last line: I have answered your first n c/l
//!                         entries; "end": and I have nothing more to say
//! ```
//!
//! Rules: parsing is strict and total (each line is checked whole, one
//! spelling per value); a message over the byte limit is refused before it
//! is read; ids per message are bounded; whether an entry is allowed where
//! it stands is the session's business, not this module's.

use crate::error::{Error, Malformed};
use crate::id::{hex_value, write_hex, Id, Prefix, NIBBLES};
use crate::summary::{NodeStats, WIRE_DIGEST};

/// Ids an `l` entry may carry: a side lists a prefix when it holds at most
/// this many ids under it, and summarises the 16 children otherwise.
pub const LIST_MAX: usize = 16;

/// The longest `c` line: 16 children with 20-digit counts.
const C_LINE: usize = 2 + 1 + NIBBLES + 16 * (1 + 20 + 1 + 2 * WIRE_DIGEST) + 1;
/// The longest `l` line: 16 ids.
const L_LINE: usize = 2 + 1 + NIBBLES + LIST_MAX * (1 + NIBBLES) + 1;
/// The longest line an entry makes.
pub const MAX_LINE: usize = if C_LINE > L_LINE { C_LINE } else { L_LINE };
/// Bytes kept free in a message for its trailer line.
pub(crate) const TRAILER: usize = 32;

/// Bounds on one message, the same on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in one message (KX's `max_message_bytes`).
    pub max_message_bytes: usize,
    /// Ids (in `l`, `h` and `w` entries) in one message.
    pub max_ids_per_message: usize,
    /// Differing ids one session may find, both directions together.
    pub max_differences: usize,
}

impl Limits {
    /// These limits, each raised to the least a session works with: room
    /// for one whole answer to a `c` entry (16 lines) and a trailer. Both
    /// sides of a session apply this.
    pub fn raised(self) -> Limits {
        Limits {
            max_message_bytes: self.max_message_bytes.max(17 * MAX_LINE + TRAILER),
            max_ids_per_message: self.max_ids_per_message.max(17 * LIST_MAX),
            max_differences: self.max_differences,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 1 << 20,
            max_ids_per_message: 12_288,
            max_differences: 1 << 22,
        }
    }
}

/// One message of a session, as it goes on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    text: String,
}

impl Message {
    /// A message received from the peer (checked when the session reads it).
    pub fn from_text(text: String) -> Message {
        Message { text }
    }

    /// The text: lines each ending in `\n`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text, owned.
    pub fn into_text(self) -> String {
        self.text
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether it has no bytes at all (never true of a message a session
    /// writes: each ends with its `ack` or `end` line).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// One entry of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    Children { prefix: Prefix, kids: Box<[NodeStats; 16]> },
    List { prefix: Prefix, ids: Vec<Id> },
    Have(Id),
    Want(Id),
}

/// A parsed message: its entries with their line numbers, and its trailer.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub entries: Vec<(usize, Entry)>,
    pub ack: u64,
    pub end: bool,
}

/// Builds a message entry by entry, keeping count of its bytes and ids.
pub(crate) struct Writer {
    text: String,
    ids: usize,
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            text: String::new(),
            ids: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.text.len()
    }

    pub fn ids(&self) -> usize {
        self.ids
    }

    pub fn children(&mut self, prefix: &Prefix, kids: &[NodeStats; 16]) {
        self.text.push('c');
        self.text.push(' ');
        prefix.write(&mut self.text);
        for kid in kids {
            self.text.push(' ');
            if kid.count == 0 {
                self.text.push('-');
            } else {
                self.text.push_str(&kid.count.to_string());
                self.text.push(':');
                write_hex(&kid.digest, &mut self.text);
            }
        }
        self.text.push('\n');
    }

    pub fn list(&mut self, prefix: &Prefix, ids: &[Id]) {
        self.text.push('l');
        self.text.push(' ');
        prefix.write(&mut self.text);
        for id in ids {
            self.text.push(' ');
            id.write_hex(&mut self.text);
        }
        self.text.push('\n');
        self.ids += ids.len();
    }

    pub fn have(&mut self, id: &Id) {
        self.id_line('h', id);
    }

    pub fn want(&mut self, id: &Id) {
        self.id_line('w', id);
    }

    fn id_line(&mut self, tag: char, id: &Id) {
        self.text.push(tag);
        self.text.push(' ');
        id.write_hex(&mut self.text);
        self.text.push('\n');
        self.ids += 1;
    }

    pub fn finish(mut self, ack: u64, end: bool) -> Message {
        self.text.push_str(if end { "end " } else { "ack " });
        self.text.push_str(&ack.to_string());
        self.text.push('\n');
        Message { text: self.text }
    }
}

/// Reads a message within `limits`.
pub(crate) fn parse(message: &Message, limits: &Limits) -> Result<Parsed, Error> {
    let text = message.as_str();
    if text.len() > limits.max_message_bytes {
        return Err(Error::TooLarge {
            size: text.len(),
            limit: limits.max_message_bytes,
        });
    }
    let body = text.strip_suffix('\n').ok_or(Error::Malformed {
        line: 1,
        what: Malformed::Lines,
    })?;
    let (body, trailer) = match body.rsplit_once('\n') {
        Some((body, trailer)) => (Some(body), trailer),
        None => (None, body),
    };
    let lines: Vec<&str> = body.map(|body| body.split('\n').collect()).unwrap_or_default();
    let trailer_line = lines.len() + 1;
    let (ack, end) = parse_trailer(trailer).ok_or(Error::Malformed {
        line: trailer_line,
        what: Malformed::Trailer,
    })?;
    let mut entries = Vec::with_capacity(lines.len());
    let mut ids = 0;
    for (i, line) in lines.into_iter().enumerate() {
        let entry = parse_entry(line).map_err(|what| match what {
            Ok(what) => Error::Malformed { line: i + 1, what },
            Err(what) => Error::Protocol { line: i + 1, what },
        })?;
        ids += match &entry {
            Entry::Children { .. } => 0,
            Entry::List { ids, .. } => ids.len(),
            Entry::Have(_) | Entry::Want(_) => 1,
        };
        if ids > limits.max_ids_per_message {
            return Err(Error::TooManyIds {
                count: ids,
                limit: limits.max_ids_per_message,
            });
        }
        entries.push((i + 1, entry));
    }
    Ok(Parsed { entries, ack, end })
}

fn parse_trailer(line: &str) -> Option<(u64, bool)> {
    let (word, number) = line.split_once(' ')?;
    let end = match word {
        "ack" => false,
        "end" => true,
        _ => return None,
    };
    Some((parse_decimal(number)?, end))
}

/// A decimal number in its one spelling (no sign, no leading zero).
fn parse_decimal(text: &str) -> Option<u64> {
    let value: u64 = text.parse().ok()?;
    (text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'))).then_some(value)
}

/// One entry line. `Err(Ok(_))`: it does not parse; `Err(Err(_))`: it
/// parses but breaks a rule of the format itself (depth, length, order).
fn parse_entry(line: &str) -> Result<Entry, Result<Malformed, &'static str>> {
    let mut fields = line.split(' ');
    let tag = fields.next().unwrap_or_default();
    match tag {
        "c" => {
            let prefix = Prefix::parse(fields.next().ok_or(Ok(Malformed::Fields))?).map_err(Ok)?;
            if prefix.digits() >= NIBBLES {
                return Err(Err("a c entry at full depth (an id has no children)"));
            }
            let mut kids = [NodeStats::default(); 16];
            for kid in kids.iter_mut() {
                *kid = parse_kid(fields.next().ok_or(Ok(Malformed::Fields))?).ok_or(Ok(Malformed::Child))?;
            }
            if fields.next().is_some() {
                return Err(Ok(Malformed::Fields));
            }
            Ok(Entry::Children {
                prefix,
                kids: Box::new(kids),
            })
        }
        "l" => {
            let prefix = Prefix::parse(fields.next().ok_or(Ok(Malformed::Fields))?).map_err(Ok)?;
            let mut ids = Vec::new();
            for field in fields {
                if ids.len() == LIST_MAX {
                    return Err(Err("an l entry with more than 16 ids"));
                }
                let id = Id::parse_hex(field).map_err(Ok)?;
                if !prefix.contains(&id) {
                    return Err(Err("an l entry with an id outside its prefix"));
                }
                if ids.last().is_some_and(|last| *last >= id) {
                    return Err(Err("an l entry whose ids are not strictly ascending"));
                }
                ids.push(id);
            }
            Ok(Entry::List { prefix, ids })
        }
        "h" | "w" => {
            let id = Id::parse_hex(fields.next().ok_or(Ok(Malformed::Fields))?).map_err(Ok)?;
            if fields.next().is_some() {
                return Err(Ok(Malformed::Fields));
            }
            Ok(if tag == "h" { Entry::Have(id) } else { Entry::Want(id) })
        }
        _ => Err(Ok(Malformed::Tag)),
    }
}

fn parse_kid(field: &str) -> Option<NodeStats> {
    if field == "-" {
        return Some(NodeStats::default());
    }
    let (count, hex) = field.split_once(':')?;
    let count = parse_decimal(count).filter(|&count| count > 0)?;
    let hex = hex.as_bytes();
    if hex.len() != 2 * WIRE_DIGEST {
        return None;
    }
    let mut digest = [0u8; WIRE_DIGEST];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        digest[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(NodeStats { count, digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written() -> Message {
        let mut writer = Writer::new();
        let mut kids = [NodeStats::default(); 16];
        kids[3] = NodeStats {
            count: 12,
            digest: [0xab; WIRE_DIGEST],
        };
        writer.children(&Prefix::ROOT, &kids);
        let id = Id([0x5c; 32]);
        writer.list(&Prefix::parse("/5c").unwrap(), &[id]);
        writer.have(&id);
        writer.want(&id);
        writer.finish(7, true)
    }

    #[test]
    fn what_is_written_reads_back() {
        let message = written();
        let parsed = parse(&message, &Limits::default()).unwrap();
        assert_eq!(parsed.entries.len(), 4);
        assert_eq!((parsed.ack, parsed.end), (7, true));
        let Entry::Children { kids, .. } = &parsed.entries[0].1 else {
            panic!("not a c entry")
        };
        assert_eq!(kids[3].count, 12);
        assert!(message
            .as_str()
            .lines()
            .all(|line| line.len() <= MAX_LINE && !line.starts_with('.')));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let text = written().into_text();
        for cut in 0..text.len() {
            let message = Message::from_text(text[..cut].to_string());
            assert!(parse(&message, &Limits::default()).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn second_spellings_are_refused() {
        let kid = format!("5:{}", "0".repeat(32));
        let kids = vec![kid.as_str(); 16].join(" ");
        for bad in [
            format!("c / {}\nack 0\n", kids.replacen("5:", "05:", 1)),
            format!("c / {}\nack 0\n", kids.replacen("5:", "0:", 1)),
            format!("c / {}\nack 00\n", kids),
            format!("c / {}\nack 0\r\n", kids),
            format!("c /  {}\nack 0\n", kids),
            format!("c / {} -\nack 0\n", kids),
            "x /\nack 0\n".to_string(),
            "ack 0\nack 0\n".to_string(),
        ] {
            assert!(
                parse(&Message::from_text(bad.clone()), &Limits::default()).is_err(),
                "{bad:?}"
            );
        }
        assert!(parse(&Message::from_text(format!("c / {kids}\nack 0\n")), &Limits::default()).is_ok());
    }
}
