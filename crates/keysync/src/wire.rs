//! KX messages on the wire (von Bidder 2003, appendix A).
//!
//! A message is `<tag>`, `<COMMAND>`, data lines, `.`, each line ended by
//! CRLF; a tag is 4 printable characters; a data line starting with `.`
//! is sent with one more `.`. Reading is bounded: a line over
//! [`MAX_LINE`] bytes or a message over the configured limit is an error
//! before it is buffered whole, and so is anything that is not UTF-8, a
//! bare LF, a bad tag or an unknown command. The reader never returns half
//! a message.

use std::fmt;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest line accepted, CRLF included.
pub const MAX_LINE: usize = 64 * 1024;

/// The commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Greeting; data `1.0`.
    Helo,
    /// `NOTIFY` or a LIST's tag, then `<seq> <fingerprint> <id>` lines.
    Ihave,
    /// A range of sequence numbers.
    List,
    /// Sequence numbers.
    GetUpdate,
    /// The GETUPDATE's tag, the `<seq> <fingerprint> <id>` line, the text.
    Update,
    /// A reconciliation message: `BEGIN` or `NEXT` (from the side that
    /// opened the session) or the tag of the `RECON` it answers, then the
    /// message's lines.
    Recon,
    /// Update ids, answered with an `UPDATE` each.
    GetId,
    /// Tag, code, text.
    Error,
    /// Goodbye.
    Close,
}

impl Command {
    const NAMES: [(Command, &'static str); 9] = [
        (Command::Helo, "HELO"),
        (Command::Ihave, "IHAVE"),
        (Command::List, "LIST"),
        (Command::GetUpdate, "GETUPDATE"),
        (Command::Update, "UPDATE"),
        (Command::Recon, "RECON"),
        (Command::GetId, "GETID"),
        (Command::Error, "ERROR"),
        (Command::Close, "CLOSE"),
    ];

    fn parse(word: &str) -> Option<Command> {
        Command::NAMES.iter().find(|(_, name)| *name == word).map(|(c, _)| *c)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Command::NAMES.iter().find(|(c, _)| c == self).map_or("?", |(_, n)| n);
        f.write_str(name)
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its tag.
    pub tag: String,
    /// Its command.
    pub command: Command,
    /// Its data lines, dot-stuffing undone, without line ends.
    pub lines: Vec<String>,
}

/// Why no message could be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The connection ended inside a message.
    #[error("connection closed inside a message")]
    Truncated,
    /// A line over [`MAX_LINE`].
    #[error("a line over {MAX_LINE} bytes")]
    LineTooLong,
    /// A message over the limit.
    #[error("a message over {0} bytes")]
    TooLarge(u64),
    /// Not a KX message.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// True for a valid tag: 4 printable ASCII characters, no space.
pub fn is_tag(text: &str) -> bool {
    text.len() == 4 && text.bytes().all(|b| b.is_ascii_graphic())
}

/// Reads one line (CRLF stripped) of at most [`MAX_LINE`] bytes; `None`
/// at the end of the stream before any byte.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<String>, WireError> {
    let mut line = Vec::new();
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(WireError::Truncated)
            };
        }
        let (taken, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (buffer.len(), false),
        };
        if line.len() + taken > MAX_LINE {
            return Err(WireError::LineTooLong);
        }
        line.extend_from_slice(&buffer[..taken]);
        reader.consume(taken);
        if done {
            break;
        }
    }
    if !line.ends_with(b"\r\n") {
        return Err(WireError::Malformed("a line not ended by CRLF".into()));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| WireError::Malformed("a line that is not UTF-8".into()))
}

/// Reads one whole message of at most `max_bytes`; `None` when the peer
/// closed the connection between messages.
pub async fn read_message<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max_bytes: u64,
) -> Result<Option<Message>, WireError> {
    let Some(tag) = read_line(reader).await? else {
        return Ok(None);
    };
    if !is_tag(&tag) {
        return Err(WireError::Malformed(format!("bad tag {:?}", truncate(&tag))));
    }
    let word = read_line(reader).await?.ok_or(WireError::Truncated)?;
    let command =
        Command::parse(&word).ok_or_else(|| WireError::Malformed(format!("unknown command {:?}", truncate(&word))))?;
    let mut size = (tag.len() + word.len() + 4) as u64;
    let mut lines = Vec::new();
    loop {
        let line = read_line(reader).await?.ok_or(WireError::Truncated)?;
        size += line.len() as u64 + 2;
        if size > max_bytes {
            return Err(WireError::TooLarge(max_bytes));
        }
        if line == "." {
            break;
        }
        lines.push(match line.strip_prefix('.') {
            Some(rest) => rest.to_string(),
            None => line,
        });
    }
    Ok(Some(Message { tag, command, lines }))
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The bytes [`encode`] makes of a message, without making them.
pub fn encoded_len<S: AsRef<str>>(tag: &str, command: Command, lines: &[S]) -> u64 {
    let data: usize = lines
        .iter()
        .map(|line| line.as_ref().len() + 2 + usize::from(line.as_ref().starts_with('.')))
        .sum();
    (tag.len() + 2 + command.to_string().len() + 2 + data + 3) as u64
}

impl Message {
    /// Its size on the wire.
    pub fn wire_len(&self) -> u64 {
        encoded_len(&self.tag, self.command, &self.lines)
    }
}

/// Encodes a message, dot-stuffing its data lines.
pub fn encode<S: AsRef<str>>(tag: &str, command: Command, lines: &[S]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + lines.iter().map(|l| l.as_ref().len() + 3).sum::<usize>());
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(command.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for line in lines {
        let line = line.as_ref();
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8], max: u64) -> Result<Option<Message>, WireError> {
        let mut reader = tokio::io::BufReader::new(bytes);
        read_message(&mut reader, max).await
    }

    #[tokio::test]
    async fn round_trip_with_dot_stuffing() {
        let lines = ["NOTIFY", ".hidden", "..", "1 AB 00"];
        let bytes = encode("a001", Command::Ihave, &lines);
        assert!(bytes.windows(11).any(|w| w == b"\r\n..hidden\r"));
        let message = parse(&bytes, 1 << 20).await.unwrap().unwrap();
        assert_eq!(message.tag, "a001");
        assert_eq!(message.command, Command::Ihave);
        assert_eq!(message.lines, lines);
        assert_eq!(message.wire_len(), bytes.len() as u64);
        assert!(parse(b"", 100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn refuses_what_is_not_kx() {
        let long = format!("a001\r\nIHAVE\r\n{}\r\n.\r\n", "x".repeat(MAX_LINE));
        assert!(matches!(
            parse(long.as_bytes(), u64::MAX).await,
            Err(WireError::LineTooLong)
        ));
        let big = encode("a001", Command::Ihave, &vec!["x".repeat(100); 20]);
        assert!(matches!(parse(&big, 1000).await, Err(WireError::TooLarge(1000))));
        for bad in [
            &b"toolong\r\nHELO\r\n.\r\n"[..],
            b"a001\r\nSTEAL\r\n.\r\n",
            b"a001\nHELO\n.\n",
            b"a001\r\nHELO\r\n1.0\r\n",
            b"a 01\r\nHELO\r\n.\r\n",
            b"a001\r\nHELO\r\n\xff\r\n.\r\n",
        ] {
            assert!(parse(bad, 1 << 20).await.is_err(), "{bad:?}");
        }
    }
}
