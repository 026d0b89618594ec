//! hkpd's answers: one request in, one response out. Paths are matched
//! on their raw (still %-encoded) form, and a path that plays tricks — a
//! `.` or `..` segment, an encoded `/`, `\` or NUL — is refused (400)
//! before anything looks at it; only the one segment that carries an
//! address is decoded. Every database read runs on a blocking thread.
//!
//! * HKP: `GET /pks/lookup` (`op=get|index|vindex`, `options=mr`),
//!   `POST /pks/add` (form field `keytext`).
//! * VKS: `GET /vks/v1/by-fingerprint/…`, `…/by-keyid/…`,
//!   `…/by-email/…`, `POST /vks/v1/upload` (JSON `{"keytext": …}`).
//! * WKD: `GET /.well-known/openpgpkey/[<domain>/]hu/<hash>[?l=<local>]`,
//!   `…/policy`, `…/submission-address`.
// A refusal is the whole response, made once per refused request: boxing
// it would buy nothing.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ripem_core::ratelimit::source_network;
use ripem_core::record::Record;
use ripem_core::types::{Email, Fingerprint};

use crate::index::{self, IndexEntry};
use crate::search::{Search, SearchError};
use crate::service::Service;
use crate::submit;
use crate::wkd::{self, WkdPath};

/// The body every answer carries.
pub type Body = Full<Bytes>;

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const KEYS: &str = "application/pgp-keys";
const JSON: &str = "application/json";

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    respond(status, TEXT, format!("{message}\n"))
}

fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    respond(status, JSON, serde_json::json!({ "error": message }).to_string())
}

/// Answers one request from `peer`, within the rate limit of its network.
pub async fn handle(service: Arc<Service>, peer: SocketAddr, request: Request<Incoming>) -> Response<Body> {
    let limited = service
        .limiter
        .as_ref()
        .is_some_and(|limiter| !limiter.allow(source_network(&peer), Instant::now()));
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut response = if limited {
        let mut response = text(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from your network; slow down",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    } else {
        route(&service, request).await
    };
    response
        .headers_mut()
        .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    if service.settings.log_requests {
        crate::log(&format!("{peer} {method} {path}: {}", response.status().as_u16()));
    }
    response
}

/// Whether a raw path holds a trick: a dot segment, an encoded slash,
/// backslash or NUL, or a raw backslash.
fn tricky(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    ["%2f", "%5c", "%00", "%2e", "\\"].iter().any(|bad| lower.contains(bad))
        || path.split('/').any(|segment| segment == "." || segment == "..")
}

async fn route(service: &Arc<Service>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    if tricky(&path) {
        return text(StatusCode::BAD_REQUEST, "malformed path");
    }
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    let post = *request.method() == Method::POST;
    let wrong_method = |allow: &'static str| {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        response
    };
    if let Some(rest) = path.strip_prefix("/.well-known/openpgpkey/") {
        let Some(wkd_path) = wkd::parse_path(rest) else {
            return text(StatusCode::NOT_FOUND, "not found");
        };
        if !read {
            return wrong_method("GET, HEAD");
        }
        let host = host_of(&request);
        return web_key(service, wkd_path, host.as_deref(), &parameters(&query)).await;
    }
    if let Some(rest) = path.strip_prefix("/vks/v1/") {
        if rest == "upload" {
            return match post {
                true => vks_upload(service, request).await,
                false => wrong_method("POST"),
            };
        }
        let Some((kind, value)) = rest.split_once('/') else {
            return json_error(StatusCode::NOT_FOUND, "not found");
        };
        let search = match kind {
            "by-fingerprint" if value.len() != 16 => Search::from_hex(value),
            "by-fingerprint" => Err(SearchError::BadHex),
            "by-keyid" if value.len() == 16 => Search::from_hex(value),
            "by-keyid" => Err(SearchError::BadHex),
            "by-email" => match percent_encoding::percent_decode_str(value).decode_utf8() {
                Ok(address) if !address.contains(['/', '\0']) => Email::parse(&address)
                    .map(Search::Email)
                    .map_err(|_| SearchError::Unsupported),
                _ => Err(SearchError::Unsupported),
            },
            _ => return json_error(StatusCode::NOT_FOUND, "not found"),
        };
        if !read {
            return wrong_method("GET, HEAD");
        }
        return match search {
            Ok(search) => get_keys(service, search).await,
            Err(err) => text(StatusCode::BAD_REQUEST, &err.to_string()),
        };
    }
    match path.as_str() {
        "/pks/lookup" if read => lookup(service, &parameters(&query)).await,
        "/pks/lookup" => wrong_method("GET, HEAD"),
        "/pks/add" if post => hkp_add(service, request).await,
        "/pks/add" => wrong_method("POST"),
        "/" if read => respond(StatusCode::OK, HTML, front_page(service)),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The query string's parameters, the first of each name.
fn parameters(query: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        found.entry(name.into_owned()).or_insert_with(|| value.into_owned());
    }
    found
}

/// The `Host:` header's name, lower-cased, without its port.
fn host_of(request: &Request<Incoming>) -> Option<String> {
    let host = request.headers().get(header::HOST)?.to_str().ok()?;
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.split(':').next()?,
    };
    Some(name.to_ascii_lowercase())
}

/// A database read on a blocking thread; 503 when the database can't be read.
async fn blocking<T: Send + 'static>(
    service: &Arc<Service>,
    read: impl FnOnce(&Service) -> Result<T, ripem_keydb::StoreError> + Send + 'static,
) -> Result<T, Response<Body>> {
    let service = Arc::clone(service);
    match tokio::task::spawn_blocking(move || read(&service)).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(err)) => {
            crate::log(&format!("cannot read the database: {err}"));
            Err(text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the key database can't be read now; try again later",
            ))
        }
        Err(_) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")),
    }
}

async fn get_keys(service: &Arc<Service>, search: Search) -> Response<Body> {
    match blocking(service, move |service| service.db.find(&search)).await {
        Ok(records) if records.is_empty() => text(StatusCode::NOT_FOUND, "no key found"),
        Ok(records) => respond(StatusCode::OK, KEYS, index::armored_keyring(&records)),
        Err(response) => response,
    }
}

async fn lookup(service: &Arc<Service>, parameters: &BTreeMap<String, String>) -> Response<Body> {
    let Some(op) = parameters.get("op") else {
        return text(StatusCode::BAD_REQUEST, "op= is missing");
    };
    if !matches!(op.as_str(), "get" | "index" | "vindex") {
        return text(
            StatusCode::NOT_IMPLEMENTED,
            "op not implemented: use get, index or vindex",
        );
    }
    let raw = parameters.get("search").map_or("", String::as_str);
    let search = match Search::parse_hkp(raw) {
        Ok(search) => search,
        Err(err) => return text(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    let machine = parameters
        .get("options")
        .is_some_and(|options| options.split(',').any(|option| option == "mr"));
    match op.as_str() {
        "get" => get_keys(service, search).await,
        "index" | "vindex" => {
            let found = blocking(service, move |service| {
                let now = chrono::Utc::now();
                let records = service.db.find(&search)?;
                Ok(entries(service, &records, now))
            })
            .await;
            match found {
                Ok(entries) if entries.is_empty() => text(StatusCode::NOT_FOUND, "no key found"),
                Ok(entries) if machine => respond(StatusCode::OK, TEXT, index::machine_readable(&entries)),
                Ok(entries) => respond(StatusCode::OK, HTML, index::html(&entries, raw)),
                Err(response) => response,
            }
        }
        _ => text(
            StatusCode::NOT_IMPLEMENTED,
            "op not implemented: use get, index or vindex",
        ),
    }
}

fn entries(service: &Service, records: &[Record], now: chrono::DateTime<chrono::Utc>) -> Vec<IndexEntry> {
    records
        .iter()
        .filter_map(|record| service.db.checked(record))
        .map(|key| IndexEntry::of(&key, now))
        .collect()
}

/// Reads a request body of at most `max_request_bytes`, within the timeout.
async fn body_of(service: &Service, request: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    let limit = service.settings.max_request_bytes;
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request larger than {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let body = Limited::new(request.into_body(), usize::try_from(limit).unwrap_or(usize::MAX));
    match tokio::time::timeout(service.settings.timeout, body.collect()).await {
        Err(_) => Err(text(StatusCode::REQUEST_TIMEOUT, "request body too slow")),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => Err(text(StatusCode::BAD_REQUEST, "unreadable request body")),
    }
}

/// What became of a submission: the key and each address's state now.
struct Accepted {
    fingerprint: Fingerprint,
    addresses: Vec<(Email, &'static str)>,
    token: String,
    refused: Vec<String>,
}

/// Checks and spools a submission (on a blocking thread).
async fn accept(
    service: &Arc<Service>,
    keytext: Vec<u8>,
    via: &'static str,
    max_keys: usize,
) -> Result<Vec<Accepted>, Response<Body>> {
    let service = Arc::clone(service);
    let done = tokio::task::spawn_blocking(move || {
        let submission = submit::read_keys(&keytext, &service.settings.policy, max_keys);
        if submission.keys.is_empty() {
            let reason = submission.refused.join("; ");
            return Err(text(StatusCode::BAD_REQUEST, &format!("no acceptable key: {reason}")));
        }
        let path = submit::spool(&service.spool, &submission.keys, via).map_err(|err| {
            crate::log(&format!("cannot spool a submitted key: {err}"));
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the key could not be queued; try again later",
            )
        })?;
        let token = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut accepted = Vec::new();
        for key in &submission.keys {
            let emails = key.emails().to_vec();
            let owners = service.db.owners(&emails).unwrap_or_else(|_| vec![None; emails.len()]);
            let addresses = emails
                .into_iter()
                .zip(owners)
                .map(|(email, owner)| {
                    let state = match owner {
                        Some(owner) if &owner == key.fingerprint() => "published",
                        Some(_) => "unpublished",
                        None => "pending",
                    };
                    (email, state)
                })
                .collect();
            accepted.push(Accepted {
                fingerprint: key.fingerprint().clone(),
                addresses,
                token: token.clone(),
                refused: Vec::new(),
            });
        }
        if let Some(first) = accepted.first_mut() {
            first.refused = submission.refused;
        }
        Ok(accepted)
    })
    .await;
    done.unwrap_or_else(|_| Err(text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")))
}

async fn hkp_add(service: &Arc<Service>, request: Request<Incoming>) -> Response<Body> {
    let body = match body_of(service, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let keytext = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "keytext")
        .map(|(_, value)| value.into_owned().into_bytes());
    let Some(keytext) = keytext else {
        return text(StatusCode::BAD_REQUEST, "no keytext field in the form");
    };
    let max_keys = service.settings.max_keys;
    match accept(service, keytext, "hkp", max_keys).await {
        Ok(accepted) => {
            let lines: Vec<String> = accepted
                .iter()
                .map(|key| {
                    let addresses: Vec<String> = key
                        .addresses
                        .iter()
                        .map(|(email, state)| format!("{email} ({state})"))
                        .collect();
                    let mut line = format!(
                        "key {} queued for registration: {}",
                        key.fingerprint,
                        addresses.join(", ")
                    );
                    if !key.refused.is_empty() {
                        line.push_str(&format!("; refused: {}", key.refused.join("; ")));
                    }
                    line
                })
                .collect();
            text(StatusCode::OK, &lines.join("; ").replace('\n', " "))
        }
        Err(response) => response,
    }
}

async fn vks_upload(service: &Arc<Service>, request: Request<Incoming>) -> Response<Body> {
    let body = match body_of(service, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    #[derive(serde::Deserialize)]
    struct Upload {
        keytext: String,
    }
    let upload: Upload = match serde_json::from_slice(&body) {
        Ok(upload) => upload,
        Err(_) => return json_error(StatusCode::BAD_REQUEST, "expected JSON {\"keytext\": \"…\"}"),
    };
    match accept(service, upload.keytext.into_bytes(), "vks", 1).await {
        Ok(accepted) => {
            let Some(key) = accepted.first() else {
                return json_error(StatusCode::BAD_REQUEST, "no acceptable key");
            };
            let status: serde_json::Map<String, serde_json::Value> = key
                .addresses
                .iter()
                .map(|(email, state)| (email.to_string(), serde_json::Value::from(*state)))
                .collect();
            let answer = serde_json::json!({
                "key_fpr": key.fingerprint.to_string(),
                "status": status,
                "token": key.token,
            });
            respond(StatusCode::OK, JSON, answer.to_string())
        }
        Err(response) => {
            let status = response.status();
            let message = match status {
                StatusCode::PAYLOAD_TOO_LARGE => "request too large".to_string(),
                _ => "no acceptable key".to_string(),
            };
            json_error(status, &message)
        }
    }
}

/// The WKD domains a request may be answered for: the one the path
/// names (advanced layout) or the `Host:` names, if served; for a direct
/// request to another host name (a proxy, a test on 127.0.0.1) every
/// served domain, in the configured order.
fn wkd_domains(service: &Service, named: Option<&str>, host: Option<&str>) -> Vec<String> {
    let served = &service.settings.wkd_domains;
    match (named, host) {
        (Some(domain), _) => served.iter().filter(|d| *d == domain).cloned().collect(),
        (None, Some(host)) if served.iter().any(|d| d == host) => vec![host.to_string()],
        (None, _) => served.clone(),
    }
}

async fn web_key(
    service: &Arc<Service>,
    path: WkdPath,
    host: Option<&str>,
    parameters: &BTreeMap<String, String>,
) -> Response<Body> {
    let not_found = || text(StatusCode::NOT_FOUND, "no key for that address here");
    let (domain, hash) = match path {
        WkdPath::Policy(domain) => {
            return match wkd_domains(service, domain.as_deref(), host).is_empty() {
                true => not_found(),
                false => respond(StatusCode::OK, TEXT, ""),
            };
        }
        WkdPath::SubmissionAddress(domain) => {
            return match wkd_domains(service, domain.as_deref(), host).is_empty() {
                true => not_found(),
                false => text(StatusCode::OK, &service.settings.submission_address),
            };
        }
        WkdPath::Key { domain, hash } => (domain, hash),
    };
    let domains = wkd_domains(service, domain.as_deref(), host);
    let local = parameters.get("l").cloned();
    let found = blocking(service, move |service| {
        for domain in &domains {
            let email = match &local {
                Some(local) if wkd::local_part_hash(local) == hash => Email::parse(&format!("{local}@{domain}")).ok(),
                Some(_) => None,
                None => service.db.wkd_address(&service.settings.wkd_domains, domain, &hash)?,
            };
            let Some(email) = email else {
                continue;
            };
            let records = service.db.find(&Search::Email(email.clone()))?;
            let Some(record) = records.first().filter(|record| record.users.contains(&email)) else {
                continue;
            };
            if let Some(key) = service.db.checked(record) {
                return Ok(Some(index::wkd_binary(&key, domain)));
            }
        }
        Ok(None)
    })
    .await;
    match found {
        Ok(Some(binary)) => respond(StatusCode::OK, "application/octet-stream", binary),
        Ok(None) => not_found(),
        Err(response) => response,
    }
}

fn front_page(service: &Service) -> String {
    let domains = service.settings.wkd_domains.join(", ");
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>RIPEM key server</title></head>\n<body><h1>RIPEM key server</h1>\n\
<p>Keys are registered first come, first served, by mail to {register}, by <code>gpg --send-keys</code> (HKP) or by VKS upload.</p>\n\
<form action=\"/pks/lookup\" method=\"get\"><input type=\"hidden\" name=\"op\" value=\"index\">\
<input name=\"search\" placeholder=\"address, 0x key ID or fingerprint\"> <button>Search</button></form>\n\
<p>HKP: <code>/pks/lookup</code>, <code>/pks/add</code>. VKS: <code>/vks/v1/by-fingerprint/…</code>, <code>by-keyid</code>, <code>by-email</code>, <code>upload</code>. WKD domains: {domains}.</p>\n</body></html>\n",
        register = html_escape_minimal(&service.settings.submission_address),
        domains = html_escape_minimal(if domains.is_empty() { "none" } else { &domains }),
    )
}

fn html_escape_minimal(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tricks() {
        for bad in [
            "/vks/v1/by-email/a%2Fb",
            "/.well-known/openpgpkey/../etc/passwd",
            "/pks/./lookup",
            "/vks/v1/by-email/a%00b",
            "/x%2e%2e/y",
            "/a\\b",
        ] {
            assert!(tricky(bad), "{bad}");
        }
        assert!(!tricky("/vks/v1/by-email/alice%40example.org"));
        assert!(!tricky("/.well-known/openpgpkey/example.org/hu/abc"));
    }
}
