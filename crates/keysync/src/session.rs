//! One KX conversation with an authenticated peer.
//!
//! Three tasks per connection: a reader that turns bytes into whole
//! messages (bounded by `max_message_bytes` and [`wire::MAX_LINE`]), a
//! writer that sends queued messages with a timeout, and this session,
//! which answers and asks. Both sides send `HELO`, then `IHAVE NOTIFY`
//! with their newest update; each new update in our store is announced
//! unless it came from this peer. Their announcements go into `pending`
//! (by their sequence number); an id we hold costs a lookup, an unseen
//! one is fetched with `GETUPDATE` (one request of at most [`GET_BATCH`]
//! at a time), a gap is asked for with `LIST <fetched + 1>-`. An unseen
//! id under a number already counted means the peer's numbers went back
//! (it was restored from a copy): it is fetched by id with `GETID`. Our answer
//! to a `LIST` comes in `IHAVE`s of at most [`LIST_CHUNK`] lines, the last
//! one shorter (empty if need be), which is how the asker knows it is
//! complete. A received update is checked before anything else happens
//! to it; a refused one is answered with `ERROR` and skipped. The peer's
//! position advances only over updates stored or refused, in order.
//!
//! Bounds: a malformed message or one out of sequence gets `ERROR` and
//! the connection closes; so does a peer that lets more than
//! [`MAX_QUEUED`] messages' worth of our answers pile up (it does not
//! read), one that sends faster than [`RATE`] messages a second beyond a
//! burst, and one that announces more than [`MAX_PENDING`] updates ahead.
//!
//! Reconciliation (`RECON`, `GETID`) is the `recon` submodule's: it runs
//! on connect and every `reconcile_interval_s`, and the first `LIST` of a
//! connection waits for it.

mod recon;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ripem_core::types::Fingerprint;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::hub::{Hub, Registration};
use crate::update::{self, is_id};
use crate::wire::{self, Command, Message, WireError};

/// Most sequence numbers in one `GETUPDATE`.
pub const GET_BATCH: usize = 64;
/// Lines of one `IHAVE` answering a `LIST` (and of one `NOTIFY`).
pub const LIST_CHUNK: usize = 1000;
/// Most entries one `LIST` is answered with; the asker asks again.
const LIST_MAX: u64 = 20 * LIST_CHUNK as u64;
/// Most of their announcements waiting at once.
pub const MAX_PENDING: usize = 200_000;
/// Our queued answers may reach this many times `max_message_bytes`.
pub const MAX_QUEUED: u64 = 80;
/// Messages a second a peer may send on average, and in a burst.
pub const RATE: (f64, f64) = (5_000.0, 50_000.0);
/// How long one write may block before the peer counts as hung.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a conversation ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The connection or its framing failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The peer broke the protocol; it was sent `ERROR <code>`.
    #[error("{1} (sent ERROR {0})")]
    Protocol(u16, String),
    /// The peer reported an error on one of our requests.
    #[error("peer answered ERROR: {0}")]
    Peer(String),
    /// The peer does not read what we send.
    #[error("peer does not read (write timed out or too much queued)")]
    NotReading,
    /// Our own store failed.
    #[error(transparent)]
    Store(#[from] crate::error::SyncError),
}

enum State {
    Resolved,
    Wanted,
    Requested,
}

struct Pending {
    id: String,
    fingerprint: String,
    state: State,
}

struct Outstanding {
    tag: String,
    seqs: BTreeSet<u64>,
}

/// The sending half: queued bytes are counted so a peer that does not
/// read is noticed.
struct Out {
    sender: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicU64>,
    limit: u64,
    prefix: char,
    next_tag: u32,
}

impl Out {
    fn tag(&mut self) -> String {
        self.next_tag = (self.next_tag + 1) % 36u32.pow(3);
        let digit = |n: u32| char::from_digit(n % 36, 36).unwrap_or('0');
        let n = self.next_tag;
        format!("{}{}{}{}", self.prefix, digit(n / 1296), digit(n / 36), digit(n))
    }

    fn send<S: AsRef<str>>(&mut self, command: Command, lines: &[S]) -> Result<String, SessionError> {
        let tag = self.tag();
        self.send_tagged(&tag, command, lines)?;
        Ok(tag)
    }

    fn send_tagged<S: AsRef<str>>(&mut self, tag: &str, command: Command, lines: &[S]) -> Result<(), SessionError> {
        let bytes = wire::encode(tag, command, lines);
        let queued = self.queued.fetch_add(bytes.len() as u64, Ordering::SeqCst) + bytes.len() as u64;
        if queued > self.limit {
            return Err(SessionError::NotReading);
        }
        self.sender.send(bytes).map_err(|_| SessionError::NotReading)
    }

    fn error(&mut self, about: &str, code: u16, text: &str) -> Result<(), SessionError> {
        self.send(Command::Error, &[about, &code.to_string(), text]).map(|_| ())
    }

    /// Sends `ERROR` and ends the conversation with that reason.
    fn refuse(&mut self, about: &str, code: u16, text: String) -> SessionError {
        let _ = self.error(about, code, &text);
        SessionError::Protocol(code, text)
    }
}

/// A token bucket over received messages.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * RATE.0).min(RATE.1);
        self.at = now;
        self.tokens -= 1.0;
        self.tokens >= 0.0
    }
}

/// The conversation's state.
pub struct Session {
    hub: Arc<Hub>,
    peer: String,
    out: Out,
    greeted: bool,
    fetched: u64,
    known_high: u64,
    pending: BTreeMap<u64, Pending>,
    list: Option<String>,
    listed_at: Option<u64>,
    get: Option<Outstanding>,
    announced: u64,
    recon: recon::Recon,
}

/// Parses `<seq> <fingerprint> <id>`.
fn parse_entry(line: &str) -> Option<(u64, Fingerprint, String)> {
    let mut words = line.split(' ');
    let seq = words.next()?.parse::<u64>().ok().filter(|&s| s > 0)?;
    let fingerprint = Fingerprint::parse(words.next()?).ok()?;
    let id = words.next().filter(|id| is_id(id))?.to_string();
    words.next().is_none().then_some((seq, fingerprint, id))
}

/// Parses a LIST range: `<seq>`, `<low>-<high>` or `<low>-`.
fn parse_range(text: &str, max: u64) -> Option<(u64, u64)> {
    let number = |s: &str| s.parse::<u64>().ok().filter(|_| s.bytes().all(|b| b.is_ascii_digit()));
    let (low, high) = match text.split_once('-') {
        None => (number(text)?, number(text)?),
        // Open-ended: up to our newest, which may be below `low`.
        Some((low, "")) => (number(low)?, max.max(number(low)?)),
        Some((low, high)) => (number(low)?, number(high)?),
    };
    (low >= 1 && low <= high).then_some((low, high.min(max)))
}

impl Session {
    fn new(hub: Arc<Hub>, peer: &str, out: Out, dialled_by_us: bool) -> Session {
        let fetched = hub.fetched(peer);
        let recon = recon::Recon::new(dialled_by_us, hub.config().max_message_bytes);
        Session {
            hub,
            peer: peer.to_string(),
            out,
            greeted: false,
            fetched,
            known_high: fetched,
            pending: BTreeMap::new(),
            list: None,
            listed_at: None,
            get: None,
            announced: 0,
            recon,
        }
    }

    fn entry_line(&self, seq: u64) -> Option<(String, Option<String>)> {
        let (fingerprint, id, source) = self.hub.describe(seq)?;
        Some((format!("{seq} {fingerprint} {id}"), source))
    }

    /// Announces our updates after `announced`, up to `newest`, but those
    /// that came from this peer.
    fn announce(&mut self, newest: u64) -> Result<(), SessionError> {
        let mut lines = vec!["NOTIFY".to_string()];
        for seq in self.announced + 1..=newest {
            if let Some((line, source)) = self.entry_line(seq) {
                if source.as_deref() != Some(self.peer.as_str()) {
                    lines.push(line);
                }
            }
            if lines.len() > LIST_CHUNK {
                self.out.send(Command::Ihave, &lines)?;
                lines.truncate(1);
            }
        }
        self.announced = self.announced.max(newest);
        if lines.len() > 1 {
            self.out.send(Command::Ihave, &lines)?;
        }
        Ok(())
    }

    fn greet(&mut self) -> Result<(), SessionError> {
        self.out.send(Command::Helo, &["1.0"])?;
        let newest = self.hub.max_seq();
        let mut lines = vec!["NOTIFY".to_string()];
        if let Some((line, _)) = self.entry_line(newest) {
            lines.push(line);
        }
        self.out.send(Command::Ihave, &lines)?;
        self.announced = newest;
        Ok(())
    }

    fn handle(&mut self, message: Message) -> Result<bool, SessionError> {
        if !self.greeted {
            if message.command != Command::Helo || message.lines != ["1.0"] {
                return Err(self
                    .out
                    .refuse(&message.tag, 551, format!("expected HELO 1.0, got {}", message.command)));
            }
            self.greeted = true;
            return Ok(true);
        }
        match message.command {
            Command::Helo => Err(self.out.refuse(&message.tag, 551, "HELO twice".into())),
            Command::Ihave => self.on_ihave(&message),
            Command::List => self.on_list(&message),
            Command::GetUpdate => self.on_getupdate(&message),
            Command::Update => self.on_update(&message),
            Command::Recon => self.on_recon(&message),
            Command::GetId => self.on_getid(&message),
            Command::Error => self.on_error(&message),
            Command::Close => return Ok(false),
        }?;
        self.recon_request(message.command)?;
        self.advance()?;
        self.request()?;
        Ok(true)
    }

    fn on_ihave(&mut self, message: &Message) -> Result<(), SessionError> {
        let Some((first, entries)) = message.lines.split_first() else {
            return Err(self
                .out
                .refuse(&message.tag, 501, "IHAVE without NOTIFY or a tag".into()));
        };
        let answers_list = self.list.as_deref() == Some(first.as_str());
        if first != "NOTIFY" && !answers_list {
            return Err(self
                .out
                .refuse(&message.tag, 551, format!("IHAVE for no LIST of ours ({first:?})")));
        }
        for line in entries {
            let Some((seq, fingerprint, id)) = parse_entry(line) else {
                return Err(self.out.refuse(&message.tag, 501, format!("bad IHAVE line {line:?}")));
            };
            self.hub.saw(&self.peer, seq);
            self.known_high = self.known_high.max(seq);
            if seq <= self.fetched {
                // A number we have counted, naming an update we lack: the
                // peer's numbers went back (restored from a copy). Fetch
                // it by id rather than wait for the next reconciliation.
                if !self.hub.has(&id) && !self.recon.want(id) {
                    return Err(self
                        .out
                        .refuse(&message.tag, 500, "too many unseen updates announced".into()));
                }
                continue;
            }
            if self.pending.contains_key(&seq) {
                continue;
            }
            if self.pending.len() >= MAX_PENDING {
                return Err(self
                    .out
                    .refuse(&message.tag, 500, "too many announcements ahead".into()));
            }
            let state = if self.hub.has(&id) {
                State::Resolved
            } else {
                State::Wanted
            };
            let fingerprint = fingerprint.to_string();
            self.pending.insert(seq, Pending { id, fingerprint, state });
        }
        if answers_list && entries.len() < LIST_CHUNK {
            self.list = None;
        }
        Ok(())
    }

    fn on_list(&mut self, message: &Message) -> Result<(), SessionError> {
        let max = self.hub.max_seq();
        let range = match message.lines.as_slice() {
            [one] => parse_range(one, max),
            _ => None,
        };
        let Some((low, high)) = range else {
            return Err(self.out.refuse(&message.tag, 501, "LIST needs one range".into()));
        };
        let high = high.min(low.saturating_add(LIST_MAX - 1));
        let mut lines = vec![message.tag.clone()];
        for seq in low..=high {
            if let Some((line, _)) = self.entry_line(seq) {
                lines.push(line);
            }
            if lines.len() > LIST_CHUNK {
                self.out.send(Command::Ihave, &lines)?;
                lines.truncate(1);
            }
        }
        self.out.send(Command::Ihave, &lines)?;
        Ok(())
    }

    fn on_getupdate(&mut self, message: &Message) -> Result<(), SessionError> {
        if message.lines.is_empty() || message.lines.len() > GET_BATCH {
            return Err(self
                .out
                .refuse(&message.tag, 501, format!("GETUPDATE of 1 to {GET_BATCH} updates")));
        }
        for line in &message.lines {
            let Some(seq) = line.parse::<u64>().ok() else {
                return Err(self
                    .out
                    .refuse(&message.tag, 501, format!("bad sequence number {line:?}")));
            };
            match (self.entry_line(seq), self.hub.read(seq)) {
                (Some((entry, _)), Ok(bytes)) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let mut lines = vec![message.tag.as_str(), entry.as_str()];
                    lines.extend(text.strip_suffix('\n').unwrap_or(&text).split('\n'));
                    self.out.send(Command::Update, &lines)?;
                }
                _ => self.out.error(&message.tag, 500, &format!("no update {seq}"))?,
            }
        }
        Ok(())
    }

    fn on_update(&mut self, message: &Message) -> Result<(), SessionError> {
        let (tag, entry, text) = match message.lines.as_slice() {
            [tag, entry, text @ ..] if !text.is_empty() => (tag, entry, text),
            _ => {
                return Err(self
                    .out
                    .refuse(&message.tag, 501, "UPDATE needs a tag, an entry and text".into()))
            }
        };
        if self.recon.asked(tag) {
            return self.on_recon_update(message, entry, text);
        }
        let parsed = parse_entry(entry);
        let requested = match (&self.get, &parsed) {
            (Some(get), Some((seq, _, _))) => get.tag == *tag && get.seqs.contains(seq),
            _ => false,
        };
        let Some((seq, fingerprint, id)) = parsed.filter(|_| requested) else {
            return Err(self
                .out
                .refuse(&message.tag, 551, format!("UPDATE not asked for ({entry:?})")));
        };
        let mut bytes = text.join("\n").into_bytes();
        bytes.push(b'\n');
        let announced = self.pending.get(&seq).map(|p| (p.id.clone(), p.fingerprint.clone()));
        match self.check(&bytes, &id, &fingerprint, announced) {
            Ok(meta) => {
                if let Some(ours) = self.hub.accept(&bytes, meta, Some(&self.peer))? {
                    crate::log(&format!("stored update {id} from {} as {ours}", self.peer));
                }
            }
            Err(reason) => {
                crate::log(&format!("refused update {seq} ({id}) from {}: {reason}", self.peer));
                self.out.error(&message.tag, 500, &format!("refused: {reason}"))?;
            }
        }
        if let Some(pending) = self.pending.get_mut(&seq) {
            pending.state = State::Resolved;
        }
        if let Some(get) = &mut self.get {
            get.seqs.remove(&seq);
            if get.seqs.is_empty() {
                self.get = None;
            }
        }
        Ok(())
    }

    /// The checks a received update passes before it is stored.
    fn check(
        &self,
        bytes: &[u8],
        id: &str,
        fingerprint: &Fingerprint,
        announced: Option<(String, String)>,
    ) -> Result<update::UpdateMeta, String> {
        let meta = update::verify(bytes, self.hub.policy()).map_err(|err| err.to_string())?;
        if meta.id != id || announced.as_ref().is_some_and(|(a, _)| a != id) {
            return Err(format!("its bytes have id {}, not the id announced", meta.id));
        }
        if &meta.fingerprint != fingerprint || announced.is_some_and(|(_, f)| f != fingerprint.as_str()) {
            return Err("its Fingerprint: is not the one announced".into());
        }
        if self.hub.config().reject_origin.contains(&meta.origin) {
            return Err(format!("origin {} is rejected here", meta.origin));
        }
        Ok(meta)
    }

    fn on_error(&mut self, message: &Message) -> Result<(), SessionError> {
        let text = message.lines.join(" ");
        let about_request = match (&self.get, message.lines.first()) {
            (Some(get), Some(tag)) => &get.tag == tag,
            _ => false,
        } || self.list.as_ref() == message.lines.first()
            || message.lines.first().is_some_and(|tag| self.recon.asked(tag));
        if about_request {
            return Err(SessionError::Peer(text));
        }
        crate::log(&format!("{} reported: {text}", self.peer));
        Ok(())
    }

    /// Moves `fetched` over the resolved announcements that follow it.
    fn advance(&mut self) -> Result<(), SessionError> {
        let before = self.fetched;
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.fetched + 1 || !matches!(entry.get().state, State::Resolved) {
                break;
            }
            entry.remove();
            self.fetched += 1;
        }
        if self.fetched != before {
            self.hub.set_fetched(&self.peer, self.fetched);
        }
        Ok(())
    }

    /// Asks for what is missing: a gap with LIST, unseen ids with GETUPDATE.
    fn request(&mut self) -> Result<(), SessionError> {
        let gap = (self.pending.len() as u64) < self.known_high - self.fetched;
        if gap && self.list.is_none() && self.listed_at != Some(self.fetched) && !self.recon.holds_list() {
            let range = format!("{}-", self.fetched + 1);
            self.list = Some(self.out.send(Command::List, &[range])?);
            self.listed_at = Some(self.fetched);
        }
        if self.get.is_some() {
            return Ok(());
        }
        let wanted: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p.state, State::Wanted))
            .map(|(seq, _)| *seq)
            .take(GET_BATCH)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        for seq in &wanted {
            if let Some(pending) = self.pending.get_mut(seq) {
                pending.state = State::Requested;
            }
        }
        let lines: Vec<String> = wanted.iter().map(u64::to_string).collect();
        let tag = self.out.send(Command::GetUpdate, &lines)?;
        self.get = Some(Outstanding {
            tag,
            seqs: wanted.into_iter().collect(),
        });
        Ok(())
    }
}

/// Writes queued messages, each within [`WRITE_TIMEOUT`].
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicU64>,
) -> Result<(), SessionError> {
    while let Some(bytes) = queue.recv().await {
        let write = async {
            writer.write_all(&bytes).await?;
            if queue.is_empty() {
                writer.flush().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => queued.fetch_sub(bytes.len() as u64, Ordering::SeqCst),
            Ok(Err(err)) => return Err(WireError::Io(err).into()),
            Err(_) => return Err(SessionError::NotReading),
        };
    }
    let _ = writer.shutdown().await;
    Ok(())
}

/// Reads whole messages and hands them on, one at a time.
async fn read_loop<R: AsyncRead + Unpin>(
    reader: R,
    max_bytes: u64,
    messages: mpsc::Sender<Result<Message, WireError>>,
) {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    loop {
        let next = wire::read_message(&mut reader, max_bytes).await;
        let stop = !matches!(next, Ok(Some(_)));
        let item = match next {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(WireError::Truncated),
            Err(err) => Err(err),
        };
        if messages.send(item).await.is_err() || stop {
            return;
        }
    }
}

/// Runs the conversation until either side closes, the peer misbehaves,
/// the connection is told to close, or `shutdown` turns true.
pub async fn run<S: AsyncRead + AsyncWrite + Send + 'static>(
    hub: Arc<Hub>,
    registration: Registration,
    stream: S,
    dialled_by_us: bool,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let peer = registration.peer_name().to_string();
    let max_bytes = hub.config().max_message_bytes;
    let (read_half, write_half) = tokio::io::split(stream);
    let (sender, queue) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicU64::new(0));
    let mut writer = tokio::spawn(write_loop(write_half, queue, Arc::clone(&queued)));
    let (message_sender, mut messages) = mpsc::channel(16);
    let reader = tokio::spawn(read_loop(read_half, max_bytes, message_sender));
    let out = Out {
        sender,
        queued,
        limit: max_bytes.saturating_mul(MAX_QUEUED),
        prefix: if dialled_by_us { 'd' } else { 'a' },
        next_tag: 0,
    };
    let mut session = Session::new(Arc::clone(&hub), &peer, out, dialled_by_us);
    let every = hub.config().reconcile_interval;
    let mut reconcile = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut newest = hub.subscribe();
    let mut config = hub.watch_config();
    let mut bucket = Bucket {
        tokens: RATE.1,
        at: Instant::now(),
    };
    let mut writer_finished = false;
    let result = async {
        session.greet()?;
        loop {
            tokio::select! {
                next = messages.recv() => {
                    let message = match next.ok_or(WireError::Truncated)? {
                        Ok(message) => message,
                        Err(err) => {
                            if !matches!(err, WireError::Io(_) | WireError::Truncated) {
                                // No tag could be read: the error names none.
                                let _ = session.out.error("????", 501, &err.to_string());
                            }
                            return Err(err.into());
                        }
                    };
                    if !bucket.take() {
                        return Err(session.out.refuse(&message.tag, 500, "too many messages too fast".into()));
                    }
                    if !session.handle(message)? {
                        return Ok(());
                    }
                }
                Ok(()) = newest.changed() => {
                    let seq = *newest.borrow_and_update();
                    session.announce(seq)?;
                }
                _ = reconcile.tick() => session.recon_due()?,
                Ok(()) = config.changed() => {
                    let gone = !config.borrow_and_update().peers.iter().any(|p| p.name == peer && p.pin == registration.pin);
                    if gone {
                        return Err(SessionError::Peer("removed from the configuration".into()));
                    }
                }
                () = registration.kill.notified() => return Err(SessionError::Peer("a duplicate connection won".into())),
                _ = shutdown.changed() => {
                    session.out.send(Command::Close, &[] as &[&str])?;
                    return Ok(());
                }
                done = &mut writer => {
                    writer_finished = true;
                    return match done { Ok(result) => result, Err(_) => Err(SessionError::NotReading) };
                }
            }
        }
    }
    .await;
    reader.abort();
    drop(session);
    if !writer_finished {
        // Let the writer send what is queued (CLOSE, an ERROR), briefly.
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_ranges_from_a_peer_are_checked() {
        let id = "ab".repeat(32);
        let fingerprint = "AB".repeat(20);
        let (seq, parsed, got) = parse_entry(&format!("7 {fingerprint} {id}")).unwrap();
        assert_eq!(
            (seq, parsed.as_str(), got.as_str()),
            (7, fingerprint.as_str(), id.as_str())
        );
        for bad in [
            format!("0 {fingerprint} {id}"),
            format!("-1 {fingerprint} {id}"),
            format!("7 {fingerprint} {}", id.to_uppercase()),
            format!("7 nope {id}"),
            format!("7 {fingerprint} {id} extra"),
            format!("7 {fingerprint}"),
            "99999999999999999999999 x y".to_string(),
        ] {
            assert!(parse_entry(&bad).is_none(), "{bad}");
        }
        assert_eq!(parse_range("5", 9), Some((5, 5)));
        assert_eq!(parse_range("3-", 9), Some((3, 9)));
        assert_eq!(parse_range("3-100", 9), Some((3, 9)));
        assert_eq!(parse_range("12-", 9), Some((12, 9)), "past our newest: an empty answer");
        for bad in ["", "0", "0-", "-5", "a-b", "5-3", "+5", "1-2-3", "1--"] {
            assert_eq!(parse_range(bad, 9), None, "{bad}");
        }
    }
}
