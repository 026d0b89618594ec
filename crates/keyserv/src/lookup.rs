//! keyserv's whole answer path for one request, over the key database:
//! look the key up (the exact address, then RIPEM's fallback one domain
//! level up at a time, then the redirect map), and encode the answer into
//! a buffer the caller reuses. A database error appends nothing, so a
//! half-written answer is never sent.

use std::collections::BTreeMap;

use ripem_core::protocol::{append_response, Request, Response, USERINFO_LINE};
use ripem_core::types::Query;
use ripem_keydb::{KeyStore, StoreError};

/// What [`answer`] did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The record of the key asked for (by the very address or
    /// fingerprint asked) was appended: this answer stays true until that
    /// key's record changes.
    Found,
    /// Another answer was appended: it may change with any write.
    Answered,
    /// An allowed `QUIT`: nothing appended; the server should stop.
    Quit,
}

/// keyserv's answer to one request (decoded by the caller, which warms
/// a batch's lookups before answering them), appended to `out`. A lookup
/// tries the exact address, then (RIPEM's fallback) the same mailbox one
/// domain level up at a time, then the redirect map by domain (most
/// specific first). `store` is `None` while no database exists yet. On a
/// database error nothing is appended.
pub fn answer(
    request: Request,
    store: Option<&KeyStore>,
    redirects: &BTreeMap<String, String>,
    allow_quit: bool,
    out: &mut Vec<u8>,
) -> Result<Handled, StoreError> {
    let query = match request {
        Request::LookUser(query) => query,
        Request::Malformed => {
            append_response(&Response::BadFormat, out);
            return Ok(Handled::Answered);
        }
        Request::Quit if allow_quit => return Ok(Handled::Quit),
        Request::Quit | Request::Unknown => {
            append_response(&Response::CommandUnrecognised, out);
            return Ok(Handled::Answered);
        }
    };
    let start = out.len();
    // The record is appended straight from the database, not copied
    // through a Response.
    out.extend_from_slice(USERINFO_LINE);
    if let Some(store) = store {
        let found = store.append_record(&query, out);
        let mut found = found.inspect_err(|_| out.truncate(start))?;
        if found {
            out.push(0);
            return Ok(Handled::Found);
        }
        let mut up = match &query {
            Query::Email(email) => email.up_one_level(),
            Query::Fingerprint(_) => None,
        };
        while let (false, Some(email)) = (found, up) {
            let candidate = Query::Email(email);
            found = store
                .append_record(&candidate, out)
                .inspect_err(|_| out.truncate(start))?;
            up = match candidate {
                Query::Email(email) => email.up_one_level(),
                Query::Fingerprint(_) => None,
            };
        }
        if found {
            out.push(0);
            return Ok(Handled::Answered);
        }
    }
    out.truncate(start);
    let response = match &query {
        Query::Email(email) => redirect_for(redirects, email.domain()),
        Query::Fingerprint(_) => None,
    };
    match response {
        Some(server) => append_response(&Response::Redirect(server), out),
        None => append_response(&Response::NotFound(&query.to_string()), out),
    }
    Ok(Handled::Answered)
}

/// The server keeping keys for `domain` or its nearest parent with more
/// than one label.
fn redirect_for<'a>(redirects: &'a BTreeMap<String, String>, mut domain: &str) -> Option<&'a str> {
    loop {
        if let Some(server) = redirects.get(domain) {
            return Some(server);
        }
        match domain.split_once('.') {
            Some((_, parent)) if parent.contains('.') => domain = parent,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ripem_core::protocol::parse_request;

    #[test]
    fn answers_without_a_database() {
        let redirects = BTreeMap::from([("example.net".to_string(), "keys.example.net:1611".to_string())]);
        let answer_text = |request: &[u8], allow_quit: bool| {
            let mut out = b"previous".to_vec();
            let handled = answer(parse_request(request), None, &redirects, allow_quit, &mut out).unwrap();
            (handled, String::from_utf8(out[8..].to_vec()).unwrap())
        };
        assert_eq!(
            answer_text(b"LOOKUSER\nUser: a@mail.example.net\n", false),
            (Handled::Answered, "REDIRECT\nServer: keys.example.net:1611\n\0".into())
        );
        assert_eq!(
            answer_text(b"LOOKUSER\nUser: a@example.org\n", false),
            (Handled::Answered, "NOTFOUND\nUser: a@example.org\n\0".into())
        );
        assert_eq!(answer_text(b"\xff", false), (Handled::Answered, "BADFMT\n\0".into()));
        assert_eq!(
            answer_text(b"QUIT\n", false),
            (Handled::Answered, "CMDUNREG\n\0".into())
        );
        assert_eq!(answer_text(b"QUIT\n", true), (Handled::Quit, String::new()));
    }
}
