//! The UDP lookup protocol (port 1611), as RIPEM spoke it.
//!
//! Plain ASCII lines ended by `\n`; one trailing NUL after a request or a
//! response is allowed, and sent. A request is a command line then header
//! lines: `LOOKUSER\nUser: alice@example.com\n`. Answers are `USERINFO`
//! with the record, `NOTFOUND` with the address, `BADFMT`, `CMDUNREG` or
//! `REDIRECT` with a server; keyserv itself sends `COOKIE` (see
//! [`crate::cookie`]). This module is the wire format only, shared by
//! keyserv and keylookup; keyserv's answer path over the key database is
//! `keyserv::lookup`. Decoding never panics and allocates nothing but the
//! address it returns; `fuzz/` throws arbitrary bytes at it.

use crate::types::Query;

/// The default UDP port.
pub const DEFAULT_PORT: u16 = 1611;
/// The largest UDP payload over IPv4; an answer must fit in one.
pub const MAX_DATAGRAM: usize = 65_507;
/// The first line of an answer carrying a record.
pub const USERINFO_LINE: &[u8] = b"USERINFO\n";
/// Bytes an answer adds around a record (`USERINFO\n` and the NUL).
pub const USERINFO_OVERHEAD: usize = USERINFO_LINE.len() + 1;

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

/// A request decoded without allocating: the `User:` value borrows the datagram.
enum RawRequest<'a> {
    LookUser(&'a str),
    Malformed,
    Quit,
    Unknown,
}

/// Decodes the command and the first `User:` line; one trailing NUL and
/// `\r`s at line ends are dropped, any other NUL makes it malformed.
fn parse_raw(datagram: &[u8]) -> RawRequest<'_> {
    let body = datagram.strip_suffix(b"\0").unwrap_or(datagram);
    let Ok(text) = std::str::from_utf8(body) else {
        return RawRequest::Malformed;
    };
    if text.contains('\0') {
        return RawRequest::Malformed;
    }
    let mut lines = text.lines().map(|line| line.trim_end_matches('\r'));
    let Some(command) = lines.next() else {
        return RawRequest::Malformed;
    };
    match command.trim() {
        "LOOKUSER" => lines
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim().eq_ignore_ascii_case("User").then_some(value)
            })
            .map_or(RawRequest::Malformed, RawRequest::LookUser),
        "QUIT" => RawRequest::Quit,
        "" => RawRequest::Malformed,
        other if other.bytes().all(|b| b.is_ascii_uppercase()) => RawRequest::Unknown,
        _ => RawRequest::Malformed,
    }
}

/// Decodes a request datagram.
pub fn parse_request(datagram: &[u8]) -> Request {
    match parse_raw(datagram) {
        RawRequest::LookUser(value) => Query::parse(value).map_or(Request::Malformed, Request::LookUser),
        RawRequest::Malformed => Request::Malformed,
        RawRequest::Quit => Request::Quit,
        RawRequest::Unknown => Request::Unknown,
    }
}

/// Encodes a request for `query`, with RIPEM's trailing NUL.
pub fn encode_request(query: &Query) -> Vec<u8> {
    format!("LOOKUSER\nUser: {query}\n\0").into_bytes()
}

/// Appends `response` to `out`, with the trailing NUL.
pub fn append_response(response: &Response<'_>, out: &mut Vec<u8>) {
    match response {
        Response::UserInfo(record) => {
            out.extend_from_slice(USERINFO_LINE);
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
    /// Send the request again with this `Cookie:` line (see [`crate::cookie`]).
    Cookie(String),
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
        // Only hex goes back into a request, so a server can't make the
        // client send anything else.
        "COOKIE" => rest.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            let value = value.trim();
            (name.trim() == "Cookie" && (1..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| Answer::Cookie(value.to_string()))
        }),
        _ => None,
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
        let encode_response = |response: &Response<'_>, out: &mut Vec<u8>| {
            out.clear();
            append_response(response, out);
        };
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
        assert_eq!(
            parse_answer(b"COOKIE\nCookie: 00ab\n\0"),
            Some(Answer::Cookie("00ab".into()))
        );
        for junk in [
            &b"COOKIE\n"[..],
            b"COOKIE\nCookie: \n",
            b"COOKIE\nCookie: ab\nUser: x\n",
            b"COOKIE\nCookie: a b\n",
        ] {
            assert!(matches!(parse_answer(junk), None | Some(Answer::Cookie(_))), "{junk:?}");
        }
        assert_eq!(parse_answer(b"COOKIE\nCookie: a b\n"), None);
    }

    #[test]
    fn request_encoding_is_ripem_style() {
        let query = Query::parse("a@example.com").unwrap();
        assert_eq!(encode_request(&query), b"LOOKUSER\nUser: a@example.com\n\0");
        assert_eq!(parse_request(&encode_request(&query)), Request::LookUser(query));
    }
}
