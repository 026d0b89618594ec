//! The UDP lookup protocol (port 1611), as RIPEM spoke it.
//!
//! Plain ASCII lines ended by `\n`; one trailing NUL after a request or a
//! response is allowed, and sent. A request is a command line then header
//! lines: `LOOKUSER\nUser: alice@example.com\n`. Answers are `USERINFO`
//! with the record, `NOTFOUND` with the address, `BADFMT`, `CMDUNREG` or
//! `REDIRECT` with a server. This module only encodes and decodes; the
//! lookup itself is [`answer`], over a [`KeyStore`]. Decoding never
//! panics and never allocates more than the datagram's size.

use std::collections::BTreeMap;

use crate::store::{KeyStore, StoreError};
use crate::types::{Email, Query};

/// The default UDP port.
pub const DEFAULT_PORT: u16 = 1611;
/// The largest UDP payload over IPv4; an answer must fit in one.
pub const MAX_DATAGRAM: usize = 65_507;
/// Bytes an answer adds around a record (`USERINFO\n` and the NUL).
pub const USERINFO_OVERHEAD: usize = "USERINFO\n".len() + 1;

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Look a key up.
    LookUser(Query),
    /// `LOOKUSER` without a usable `User:` line, or bytes that are not a request.
    Malformed,
    /// The old `QUIT` command.
    Quit,
    /// Any other command.
    Unknown,
}

/// An answer, borrowing the record text it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    /// The record of the key asked for.
    UserInfo(&'a [u8]),
    /// Nothing registered under the address asked for.
    NotFound(&'a str),
    /// The request was malformed.
    BadFormat,
    /// The command is not known (or not allowed).
    CommandUnrecognised,
    /// Another server keeps keys for this domain.
    Redirect(&'a str),
}

/// Splits a datagram into lines, dropping one trailing NUL and `\r`s.
fn lines(datagram: &[u8]) -> Option<Vec<&str>> {
    let body = datagram.strip_suffix(b"\0").unwrap_or(datagram);
    let text = std::str::from_utf8(body).ok()?;
    if text.contains('\0') {
        return None;
    }
    Some(text.lines().map(|line| line.trim_end_matches('\r')).collect())
}

/// Decodes a request datagram.
pub fn parse_request(datagram: &[u8]) -> Request {
    let Some(lines) = lines(datagram) else {
        return Request::Malformed;
    };
    let Some(command) = lines.first() else {
        return Request::Malformed;
    };
    match command.trim() {
        "LOOKUSER" => lines[1..]
            .iter()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim().eq_ignore_ascii_case("User").then_some(value)
            })
            .and_then(|value| Query::parse(value).ok())
            .map_or(Request::Malformed, Request::LookUser),
        "QUIT" => Request::Quit,
        "" => Request::Malformed,
        other if other.bytes().all(|b| b.is_ascii_uppercase()) => Request::Unknown,
        _ => Request::Malformed,
    }
}

/// Encodes a request for `query`, with RIPEM's trailing NUL.
pub fn encode_request(query: &Query) -> Vec<u8> {
    format!("LOOKUSER\nUser: {query}\n\0").into_bytes()
}

/// Encodes `response` into `out` (cleared first), with the trailing NUL.
pub fn encode_response(response: &Response<'_>, out: &mut Vec<u8>) {
    out.clear();
    match response {
        Response::UserInfo(record) => {
            out.extend_from_slice(b"USERINFO\n");
            out.extend_from_slice(record);
        }
        Response::NotFound(address) => {
            out.extend_from_slice(b"NOTFOUND\nUser: ");
            out.extend_from_slice(address.as_bytes());
            out.push(b'\n');
        }
        Response::BadFormat => out.extend_from_slice(b"BADFMT\n"),
        Response::CommandUnrecognised => out.extend_from_slice(b"CMDUNREG\n"),
        Response::Redirect(server) => {
            out.extend_from_slice(b"REDIRECT\nServer: ");
            out.extend_from_slice(server.as_bytes());
            out.push(b'\n');
        }
    }
    out.push(0);
}

/// A decoded answer, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The record text.
    UserInfo(String),
    /// Not registered.
    NotFound,
    /// The server found the request malformed.
    BadFormat,
    /// The server does not know the command.
    CommandUnrecognised,
    /// Ask this server instead.
    Redirect(String),
}

/// Decodes an answer datagram; `None` if it is not one.
pub fn parse_answer(datagram: &[u8]) -> Option<Answer> {
    let body = datagram.strip_suffix(b"\0").unwrap_or(datagram);
    let text = std::str::from_utf8(body).ok()?;
    let (command, rest) = text.split_once('\n').unwrap_or((text, ""));
    match command.trim_end_matches('\r') {
        "USERINFO" => Some(Answer::UserInfo(rest.to_string())),
        "NOTFOUND" => Some(Answer::NotFound),
        "BADFMT" => Some(Answer::BadFormat),
        "CMDUNREG" => Some(Answer::CommandUnrecognised),
        "REDIRECT" => rest.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == "Server" && !value.trim().is_empty()).then(|| Answer::Redirect(value.trim().to_string()))
        }),
        _ => None,
    }
}

/// The result of a lookup, owning the record text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Found: the record text.
    Found(Vec<u8>),
    /// Another server is responsible: its `host[:port]`.
    Redirect(String),
    /// Not registered here.
    NotFound,
}

/// Looks `query` up: the exact address, then (RIPEM's fallback) the same
/// mailbox one domain level up at a time, then the redirect map by domain
/// (most specific first). `store` is `None` while no database exists yet.
pub fn lookup(
    store: Option<&KeyStore>,
    redirects: &BTreeMap<String, String>,
    query: &Query,
) -> Result<Lookup, StoreError> {
    let email = match query {
        Query::Fingerprint(_) => {
            let found = match store {
                Some(store) => store.record_text(query)?,
                None => None,
            };
            return Ok(found.map_or(Lookup::NotFound, Lookup::Found));
        }
        Query::Email(email) => email,
    };
    if let Some(store) = store {
        let mut candidate: Option<Email> = Some(email.clone());
        while let Some(current) = candidate {
            if let Some(record) = store.record_text(&Query::Email(current.clone()))? {
                return Ok(Lookup::Found(record));
            }
            candidate = current.up_one_level();
        }
    }
    let mut domain = email.domain();
    loop {
        if let Some(server) = redirects.get(domain) {
            return Ok(Lookup::Redirect(server.clone()));
        }
        match domain.split_once('.') {
            Some((_, parent)) if parent.contains('.') => domain = parent,
            _ => return Ok(Lookup::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_decode() {
        let q = |s: &str| Query::parse(s).unwrap();
        assert_eq!(
            parse_request(b"LOOKUSER\nUser: Alice@Example.com\n\0"),
            Request::LookUser(q("alice@example.com"))
        );
        assert_eq!(
            parse_request(b"LOOKUSER\r\nuser:  bob@example.org\r\n"),
            Request::LookUser(q("bob@example.org"))
        );
        assert_eq!(
            parse_request(b"LOOKUSER\nUser: 0x3a0f000011112222333344445555666677778888\n"),
            Request::LookUser(q("0x3A0F000011112222333344445555666677778888"))
        );
        assert_eq!(parse_request(b"LOOKUSER\n"), Request::Malformed);
        assert_eq!(parse_request(b"LOOKUSER\nUser: not an address\n"), Request::Malformed);
        assert_eq!(parse_request(b"QUIT\n"), Request::Quit);
        assert_eq!(parse_request(b"GETALL\n"), Request::Unknown);
        for junk in [&b""[..], b"\0", b"\xff\xfe", b"LOOK\0USER\n", b"hello world"] {
            assert_eq!(parse_request(junk), Request::Malformed, "{junk:?}");
        }
    }

    #[test]
    fn responses_round_trip() {
        let mut out = Vec::new();
        encode_response(&Response::UserInfo(b"User: a@example.com\n"), &mut out);
        assert_eq!(out, b"USERINFO\nUser: a@example.com\n\0");
        assert_eq!(
            parse_answer(&out),
            Some(Answer::UserInfo("User: a@example.com\n".into()))
        );
        encode_response(&Response::NotFound("a@example.com"), &mut out);
        assert_eq!(out, b"NOTFOUND\nUser: a@example.com\n\0");
        assert_eq!(parse_answer(&out), Some(Answer::NotFound));
        encode_response(&Response::Redirect("keys.example.net:1611"), &mut out);
        assert_eq!(
            parse_answer(&out),
            Some(Answer::Redirect("keys.example.net:1611".into()))
        );
        encode_response(&Response::BadFormat, &mut out);
        assert_eq!(out, b"BADFMT\n\0");
        encode_response(&Response::CommandUnrecognised, &mut out);
        assert_eq!(parse_answer(&out), Some(Answer::CommandUnrecognised));
        assert_eq!(parse_answer(b"garbage"), None);
        assert_eq!(parse_answer(b"REDIRECT\n"), None);
    }

    #[test]
    fn request_encoding_is_ripem_style() {
        let query = Query::parse("a@example.com").unwrap();
        assert_eq!(encode_request(&query), b"LOOKUSER\nUser: a@example.com\n\0");
        assert_eq!(parse_request(&encode_request(&query)), Request::LookUser(query));
    }
}
