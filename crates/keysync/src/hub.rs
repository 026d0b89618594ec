//! The state every connection shares: the store, the peer book, who is
//! connected, and the configuration in force.
//!
//! One lock guards the store and the book, so an update is stored,
//! handed to keyreg (`spool/sync/`, received updates only) and counted in
//! the book in one step (the book is saved every second, see
//! [`Hub::save_book`]); announcing is a watch on the store's highest
//! sequence number, which each connection follows at its own pace (a slow
//! peer lags, it does not hold up the others). An update is announced to
//! every connected peer but the one it came from. At most one connection
//! per peer is kept: when both sides dial, the connection dialled by the
//! lower server id stays, which both sides decide alike.
//!
//! The hub also keeps the [`Summary`] of the stored ids that
//! reconciliation compares: built from the store at start, grown by each
//! append under the same lock, never saved, so it is never out of step
//! with the store, even after a crash.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ripem_core::config::{CertPin, Config, SyncConfig};
use ripem_core::spool::{QueueName, Spool};
use ripem_openpgp::KeyPolicy;
use ripem_reconcile::{Id, Summary};
use tokio::sync::{watch, Notify};

use crate::error::SyncError;
use crate::peers::PeerBook;
use crate::store::Store;
use crate::update::UpdateMeta;

/// What `--status` shows of one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStatus {
    /// A connection is up.
    pub connected: bool,
    /// The highest sequence number of theirs seen announced.
    pub their_high: u64,
    /// How far theirs have been fetched.
    pub fetched: u64,
    /// The last reconciliation with the peer (this run).
    pub recon: Option<ReconRecord>,
}

/// What the last reconciliation with a peer found and cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconRecord {
    /// When it ended, Unix seconds.
    pub at: u64,
    /// Ids the peer held and we lacked.
    pub lacked: u64,
    /// Ids we held and the peer lacked.
    pub they_lacked: u64,
    /// KX bytes of the session and of the fetches by id, both ways.
    pub bytes: u64,
    /// From the first message until what we lacked was stored.
    pub millis: u64,
}

struct Live {
    id: u64,
    dialled_by_us: bool,
    kill: Arc<Notify>,
}

struct Inner {
    store: Store,
    book: PeerBook,
    /// Sequence number → the peer a received update came from (this run).
    sources: HashMap<u64, String>,
    live: HashMap<String, Live>,
    their_high: BTreeMap<String, u64>,
    /// The ids in the store.
    summary: Summary,
    recons: BTreeMap<String, ReconRecord>,
    /// The book changed since it was last saved.
    dirty: bool,
}

/// The shared state.
pub struct Hub {
    inner: Mutex<Inner>,
    spool: Spool,
    newest: watch::Sender<u64>,
    config: watch::Sender<Arc<SyncConfig>>,
    policy: KeyPolicy,
    next_connection: AtomicU64,
}

/// A registered connection; dropping it unregisters it.
pub struct Registration {
    hub: Arc<Hub>,
    peer: String,
    id: u64,
    /// The pin the peer was authenticated by.
    pub pin: CertPin,
    /// Notified when this connection must close (a duplicate won, or the
    /// peer left the configuration).
    pub kill: Arc<Notify>,
}

impl Registration {
    /// The peer's name.
    pub fn peer_name(&self) -> &str {
        &self.peer
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        if inner.live.get(&self.peer).is_some_and(|live| live.id == self.id) {
            inner.live.remove(&self.peer);
        }
    }
}

impl Hub {
    /// The hub over an open store and book; `spool` is where received
    /// updates go. Hands keyreg whatever a crash left undelivered.
    pub fn new(store: Store, book: PeerBook, spool: Spool, config: &Config) -> Result<Arc<Hub>, SyncError> {
        let newest = watch::Sender::new(store.max_seq());
        let summary = Summary::from_ids((1..=store.max_seq()).filter_map(|seq| {
            let entry = store.entry(seq)?;
            Id::parse_hex(&entry.id).ok()
        }));
        let hub = Arc::new(Hub {
            inner: Mutex::new(Inner {
                store,
                book,
                sources: HashMap::new(),
                live: HashMap::new(),
                their_high: BTreeMap::new(),
                summary,
                recons: BTreeMap::new(),
                dirty: false,
            }),
            spool,
            newest,
            config: watch::Sender::new(Arc::new(config.sync.clone())),
            policy: KeyPolicy::configured(&config.keyreg),
            next_connection: AtomicU64::new(1),
        });
        hub.redeliver()?;
        Ok(hub)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not stop replication; the data behind
        // the lock is only changed by whole steps.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn redeliver(&self) -> Result<(), SyncError> {
        let mut inner = self.lock();
        let from = inner.book.delivered + 1;
        let max = inner.store.max_seq();
        for seq in from..=max {
            self.deliver(&inner, seq)?;
        }
        if max >= from {
            crate::log(&format!(
                "handed updates {from} to {max} to keyreg again after a restart"
            ));
            inner.book.delivered = max;
            inner.book.save()?;
        }
        Ok(())
    }

    fn deliver(&self, inner: &Inner, seq: u64) -> Result<(), SyncError> {
        let Some(entry) = inner.store.entry(seq) else {
            return Ok(());
        };
        if entry.local {
            return Ok(());
        }
        let bytes = inner.store.read(seq)?;
        self.spool.deliver_named(QueueName::Sync, &entry.id, &bytes)?;
        Ok(())
    }

    /// Stores an update; `from` is the peer it came from (then it is
    /// handed to keyreg) or `None` for one keyreg made. Returns its new
    /// sequence number, or `None` if it was stored already.
    pub fn accept(&self, bytes: &[u8], meta: UpdateMeta, from: Option<&str>) -> Result<Option<u64>, SyncError> {
        let mut inner = self.lock();
        let Some(seq) = inner.store.append(bytes, meta, from.is_none())? else {
            return Ok(None);
        };
        if let Some(id) = inner.store.entry(seq).and_then(|entry| Id::parse_hex(&entry.id).ok()) {
            inner.summary.insert(id);
        }
        if let Some(peer) = from {
            inner.sources.insert(seq, peer.to_string());
        }
        self.deliver(&inner, seq)?;
        if inner.book.delivered + 1 == seq {
            inner.book.delivered = seq;
            inner.dirty = true;
        }
        drop(inner);
        self.newest.send_replace(seq);
        Ok(Some(seq))
    }

    /// True if an update with this id is stored.
    pub fn has(&self, id: &str) -> bool {
        self.lock().store.seq_of(id).is_some()
    }

    /// The sequence number of the update with this id, if stored.
    pub fn seq_of(&self, id: &str) -> Option<u64> {
        self.lock().store.seq_of(id)
    }

    /// Runs `f` on the summary of the stored ids (under the lock, so
    /// briefly: one reconciliation message).
    pub fn with_summary<T>(&self, f: impl FnOnce(&Summary) -> T) -> T {
        f(&self.lock().summary)
    }

    /// Records the last reconciliation with `peer`.
    pub fn record_recon(&self, peer: &str, record: ReconRecord) {
        self.lock().recons.insert(peer.to_string(), record);
    }

    /// How far `peer` has been fetched, or `None` if the book has no
    /// record of it (a fresh server, or a lost `sync/peers.state`).
    pub fn fetched_record(&self, peer: &str) -> Option<u64> {
        self.lock().book.fetched.get(peer).copied()
    }

    /// The highest sequence number stored.
    pub fn max_seq(&self) -> u64 {
        self.lock().store.max_seq()
    }

    /// `(fingerprint, id, the peer it came from)` of update `seq`.
    pub fn describe(&self, seq: u64) -> Option<(String, String, Option<String>)> {
        let inner = self.lock();
        let entry = inner.store.entry(seq)?;
        Some((
            entry.fingerprint.to_string(),
            entry.id.clone(),
            inner.sources.get(&seq).cloned(),
        ))
    }

    /// The bytes of update `seq`.
    pub fn read(&self, seq: u64) -> Result<Vec<u8>, SyncError> {
        self.lock().store.read(seq)
    }

    /// How far `peer` has been fetched.
    pub fn fetched(&self, peer: &str) -> u64 {
        self.lock().book.fetched(peer)
    }

    /// Records that `peer` is fetched up to `seq` (all of it stored);
    /// saved by the next [`Hub::save_book`].
    pub fn set_fetched(&self, peer: &str, seq: u64) {
        let mut inner = self.lock();
        inner.book.fetched.insert(peer.to_string(), seq);
        inner.dirty = true;
    }

    /// Saves the peer book if it changed. It counts only what is stored
    /// and delivered already, so saving late loses nothing: after a
    /// crash, the steps since are fetched or delivered again, by id.
    pub fn save_book(&self) -> Result<(), SyncError> {
        let mut inner = self.lock();
        if inner.dirty {
            inner.book.save()?;
            inner.dirty = false;
        }
        Ok(())
    }

    /// Records the highest sequence number `peer` announced.
    pub fn saw(&self, peer: &str, seq: u64) {
        let mut inner = self.lock();
        let high = inner.their_high.entry(peer.to_string()).or_default();
        *high = (*high).max(seq);
    }

    /// Follows the store's highest sequence number.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<SyncConfig> {
        self.config.borrow().clone()
    }

    /// The key policy received updates are checked under (`[keyreg]`
    /// as at start).
    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    /// Follows the configuration (SIGHUP).
    pub fn watch_config(&self) -> watch::Receiver<Arc<SyncConfig>> {
        self.config.subscribe()
    }

    /// Puts a reloaded configuration in force.
    pub fn set_config(&self, config: SyncConfig) {
        self.config.send_replace(Arc::new(config));
    }

    /// True if a connection with `peer` is up.
    pub fn connected(&self, peer: &str) -> bool {
        self.lock().live.contains_key(peer)
    }

    /// Registers a connection with `peer`, or refuses it (`None`) when
    /// one that wins the tie is up already; a losing one is told to close.
    pub fn register(self: &Arc<Hub>, peer: &str, pin: CertPin, dialled_by_us: bool) -> Option<Registration> {
        let ours = self.config().server_id.clone();
        let dialler_is_lower = |by_us: bool| {
            if by_us {
                ours.as_str() < peer
            } else {
                peer < ours.as_str()
            }
        };
        let mut inner = self.lock();
        if let Some(live) = inner.live.get(peer) {
            // The same direction again: the peer (or we) reconnected and
            // the old connection is dead but not yet noticed.
            if live.dialled_by_us != dialled_by_us && !dialler_is_lower(dialled_by_us) {
                return None;
            }
            live.kill.notify_one();
        }
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let kill = Arc::new(Notify::new());
        inner.live.insert(
            peer.to_string(),
            Live {
                id,
                dialled_by_us,
                kill: Arc::clone(&kill),
            },
        );
        Some(Registration {
            hub: Arc::clone(self),
            peer: peer.to_string(),
            id,
            pin,
            kill,
        })
    }

    /// Every configured peer's status, in priority order, and our highest
    /// sequence number.
    pub fn status(&self) -> (Vec<(String, PeerStatus)>, u64) {
        let config = self.config();
        let inner = self.lock();
        let peers = config
            .peers
            .iter()
            .map(|peer| {
                let status = PeerStatus {
                    connected: inner.live.contains_key(&peer.name),
                    their_high: inner.their_high.get(&peer.name).copied().unwrap_or(0),
                    fetched: inner.book.fetched(&peer.name),
                    recon: inner.recons.get(&peer.name).copied(),
                };
                (peer.name.clone(), status)
            })
            .collect();
        (peers, inner.store.max_seq())
    }
}
