//! Configuration shared by every program.
//!
//! One TOML file: `--config PATH`, else `$RIPEM_KEYSERVER_CONFIG`, else
//! `/etc/ripem-keyserver/keyserver.toml`; a missing default file means
//! built-in defaults, a missing named file is an error. Every path derives
//! from `state_dir` unless the file sets it on its own, and command-line
//! flags override the file. Unknown keys are refused, so a typo is caught
//! when the program starts rather than silently ignored, and a syntax
//! error names its line. The state directory itself must exist: programs
//! create what lies inside it, never the directory, so a mistyped
//! `state_dir` is an error rather than a fresh empty server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::exit::{self, ExitStatus};
use serde::Deserialize;

/// Where the configuration is looked for when nothing names it.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ripem-keyserver/keyserver.toml";
/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "RIPEM_KEYSERVER_CONFIG";
/// The state directory when the configuration names none.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ripem-keyserver";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("{path}: {message}")]
    Syntax {
        /// The configuration file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{path}: {message}")]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The state directory is missing or is not a directory.
    #[error("state directory {path}: {problem}")]
    StateDir {
        /// The state directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

impl ExitStatus for ConfigError {
    fn exit_code(&self) -> u8 {
        exit::CONFIG
    }
}

/// How replies are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Pipe to the system's sendmail program.
    Sendmail,
    /// Speak SMTP to a relay.
    Smtp,
    /// Write each message as an `.eml` file in the outbox directory.
    File,
}

/// The file as written; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    state_dir: Option<PathBuf>,
    database: Option<PathBuf>,
    spool_dir: Option<PathBuf>,
    transaction_log: Option<PathBuf>,
    pub_dir: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    #[serde(default)]
    keyserv: FileKeyserv,
    #[serde(default)]
    keyreg: FileKeyreg,
    #[serde(default)]
    mail: FileMail,
    #[serde(default)]
    addresses: FileAddresses,
    #[serde(default)]
    keylookup: FileKeylookup,
    #[serde(default)]
    hkpd: FileHkpd,
    #[serde(default)]
    sync: FileSync,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHkpd {
    listen: Option<Vec<String>>,
    wkd_domains: Option<Vec<String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_request_bytes: Option<u64>,
    max_connections: Option<usize>,
    timeout_seconds: Option<u64>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    log_requests: Option<bool>,
    pid_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeyserv {
    listen: Option<Vec<String>>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    log_requests: Option<bool>,
    log_answers: Option<bool>,
    allow_quit: Option<bool>,
    answer_cache_mb: Option<u64>,
    #[serde(default)]
    redirect: BTreeMap<String, String>,
    rate_bytes: Option<u64>,
    rate_burst_bytes: Option<u64>,
    cookies: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeylookup {
    servers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeyreg {
    rescan_seconds: Option<u64>,
    writer_timeout_seconds: Option<u64>,
    max_request_age_days: Option<u64>,
    max_message_bytes: Option<u64>,
    min_rsa_bits: Option<usize>,
    max_keys_per_request: Option<usize>,
    policy: Option<Policy>,
    max_pending: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMail {
    transport: Option<Transport>,
    from: Option<String>,
    outbox: Option<PathBuf>,
    sendmail: Option<PathBuf>,
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    smtp_starttls: Option<bool>,
    smtp_user: Option<String>,
    smtp_password: Option<String>,
    givepubs_subject: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAddresses {
    register: Option<String>,
    change: Option<String>,
    remove: Option<String>,
    get: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSync {
    server_id: Option<String>,
    listen: Option<Vec<String>>,
    max_clock_skew_s: Option<u64>,
    replica: Option<bool>,
    reject: Option<Vec<String>>,
    reject_origin: Option<Vec<String>>,
    max_message_bytes: Option<u64>,
    reconcile_interval_s: Option<u64>,
    #[serde(default)]
    peer: Vec<FilePeer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePeer {
    name: String,
    address: String,
    pin: String,
    priority: Option<u32>,
}

/// Where each file lives.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The state directory everything else defaults under.
    pub state_dir: PathBuf,
    /// The GDBM key database.
    pub database: PathBuf,
    /// Root of the spool queues (`add`, `change`, `remove`, `failed`).
    pub spool_dir: PathBuf,
    /// The append-only transaction log.
    pub transaction_log: PathBuf,
    /// Directory of the flat keyring files.
    pub pub_dir: PathBuf,
    /// keyserv's pid file.
    pub pid_file: PathBuf,
    /// Outbox for the `file` mail transport.
    pub outbox: PathBuf,
}

impl Paths {
    /// The RIPEM-style text flat file.
    pub fn flat_text(&self) -> PathBuf {
        self.pub_dir.join("pubkeys.txt")
    }

    /// The armored keyring flat file.
    pub fn flat_armored(&self) -> PathBuf {
        self.pub_dir.join("pubkeys.asc")
    }

    /// The lock file that orders database writers and readers (see `store`).
    pub fn database_lock(&self) -> PathBuf {
        let mut name = self.database.clone().into_os_string();
        name.push(".lock");
        PathBuf::from(name)
    }
}

/// keyserv's settings.
#[derive(Debug, Clone)]
pub struct KeyservConfig {
    /// Addresses to answer on.
    pub listen: Vec<SocketAddr>,
    /// Answers per second per source network; 0 turns limiting off.
    pub rate_limit: u32,
    /// How many answers a network may send in a burst.
    pub rate_burst: u32,
    /// Log each requester's address with its answer (off for privacy).
    pub log_requests: bool,
    /// Log the type of each answer, without the requester (`keyserv -v`).
    pub log_answers: bool,
    /// Honour the old `QUIT` command (off: a UDP source can be forged).
    pub allow_quit: bool,
    /// Bytes of answers kept in memory, shared by the worker threads.
    pub answer_cache_bytes: usize,
    /// Domain → `host[:port]` of the key server responsible for it.
    pub redirect: BTreeMap<String, String>,
    /// Bytes of answers per second per source network; 0 turns it off.
    pub rate_bytes: u64,
    /// How many bytes a network may have in a burst.
    pub rate_burst_bytes: u64,
    /// Send an answer larger than three times its request only to a source
    /// that proved with a cookie that it receives (off: a closed network).
    pub cookies: bool,
}

/// hkpd's settings: HKP, WKD and VKS over HTTP(S).
#[derive(Debug, Clone)]
pub struct HkpdConfig {
    /// Addresses to answer on (default `127.0.0.1:11371`: a public server
    /// names its public address, or sits behind a reverse proxy).
    pub listen: Vec<SocketAddr>,
    /// Lower-cased domains whose Web Key Directory is served.
    pub wkd_domains: Vec<String>,
    /// PEM certificate chain for HTTPS (hkps); with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS; with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Largest request body (a submitted key) accepted; larger gets 413.
    pub max_request_bytes: u64,
    /// Connections served at once; more wait in the kernel's queue.
    pub max_connections: usize,
    /// How long a client may take to send its request headers, and how
    /// long an idle connection is kept (slow clients are cut off).
    pub timeout: Duration,
    /// Requests per second per source network; 0 turns limiting off.
    pub rate_limit: u32,
    /// How many requests a network may send in a burst.
    pub rate_burst: u32,
    /// Log each request with the client's address (off for privacy).
    pub log_requests: bool,
    /// hkpd's pid file (locked while it runs).
    pub pid_file: PathBuf,
}

impl HkpdConfig {
    /// The `[hkpd]` section with its defaults, or what is out of range.
    fn from_file(file: FileHkpd, state_dir: &Path) -> Result<HkpdConfig, String> {
        let listen = file
            .listen
            .unwrap_or_else(|| vec!["127.0.0.1:11371".to_string()])
            .iter()
            .map(|addr| {
                addr.parse::<SocketAddr>()
                    .map_err(|_| format!("hkpd.listen: {addr:?} is not ADDRESS:PORT"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut wkd_domains = Vec::new();
        for domain in file.wkd_domains.unwrap_or_default() {
            let lower = domain.trim().to_ascii_lowercase();
            // A domain is valid where an address at it is.
            if crate::types::Email::parse(&format!("x@{lower}")).is_err() {
                return Err(format!("hkpd.wkd_domains: {domain:?} is not a domain name"));
            }
            if !wkd_domains.contains(&lower) {
                wkd_domains.push(lower);
            }
        }
        if file.tls_cert.is_some() != file.tls_key.is_some() {
            return Err("hkpd.tls_cert and hkpd.tls_key go together: set both or neither".into());
        }
        let hkpd = HkpdConfig {
            listen,
            wkd_domains,
            tls_cert: file.tls_cert,
            tls_key: file.tls_key,
            max_request_bytes: file.max_request_bytes.unwrap_or(1 << 20),
            max_connections: file.max_connections.unwrap_or(1024),
            timeout: Duration::from_secs(file.timeout_seconds.unwrap_or(10)),
            rate_limit: file.rate_limit.unwrap_or(20),
            rate_burst: file.rate_burst.unwrap_or(40),
            log_requests: file.log_requests.unwrap_or(false),
            pid_file: file.pid_file.unwrap_or_else(|| state_dir.join("hkpd.pid")),
        };
        if hkpd.max_request_bytes < 1024 {
            return Err("hkpd.max_request_bytes must be at least 1024".into());
        }
        if hkpd.max_connections == 0 {
            return Err("hkpd.max_connections must be at least 1".into());
        }
        if hkpd.timeout.is_zero() {
            return Err("hkpd.timeout_seconds must be at least 1".into());
        }
        Ok(hkpd)
    }
}

/// keylookup's settings.
#[derive(Debug, Clone)]
pub struct KeylookupConfig {
    /// Key servers asked in turn, `host[:port]`, when no `--server` is given.
    pub servers: Vec<String>,
}

/// keyreg's settings.
#[derive(Debug, Clone)]
pub struct KeyregConfig {
    /// Rescan the queues this often even without a notify event.
    pub rescan_interval: Duration,
    /// Give up on a batch if the database can't be opened for writing in this time.
    pub writer_timeout: Duration,
    /// Signed requests older than this are refused.
    pub max_request_age: Duration,
    /// copymail refuses larger messages.
    pub max_message_bytes: u64,
    /// Smallest RSA key accepted.
    pub min_rsa_bits: usize,
    /// Keys considered in one registration mail; the rest are refused.
    pub max_keys_per_request: usize,
    /// Whether a new address is published at once or after its owner confirms it.
    pub policy: Policy,
    /// Most addresses waiting for confirmation at once (the oldest expire first).
    pub max_pending: usize,
}

/// `[keyreg] policy`: how a new address of a registered key is published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// First come, first served, as RIPEM: published at once.
    #[default]
    Fcfs,
    /// Published once its owner answers a confirmation request encrypted
    /// to the key (the Web Key Service protocol).
    Confirm,
}

impl KeyregConfig {
    /// The `[keyreg]` section with its defaults, or what is out of range.
    fn from_file(file: &FileKeyreg) -> Result<KeyregConfig, String> {
        let keyreg = KeyregConfig {
            rescan_interval: Duration::from_secs(file.rescan_seconds.unwrap_or(30).max(1)),
            writer_timeout: Duration::from_secs(file.writer_timeout_seconds.unwrap_or(60)),
            max_request_age: Duration::from_secs(file.max_request_age_days.unwrap_or(7) * 86_400),
            max_message_bytes: file.max_message_bytes.unwrap_or(50 * 1024 * 1024),
            min_rsa_bits: file.min_rsa_bits.unwrap_or(2048),
            max_keys_per_request: file.max_keys_per_request.unwrap_or(100),
            policy: file.policy.unwrap_or_default(),
            max_pending: file.max_pending.unwrap_or(100_000),
        };
        if keyreg.min_rsa_bits < 1024 {
            return Err("keyreg.min_rsa_bits must be at least 1024".into());
        }
        if keyreg.max_keys_per_request == 0 {
            return Err("keyreg.max_keys_per_request must be at least 1".into());
        }
        if keyreg.max_pending == 0 {
            return Err("keyreg.max_pending must be at least 1".into());
        }
        Ok(keyreg)
    }
}

/// Outgoing mail settings.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// How replies leave.
    pub transport: Transport,
    /// The server's own address, used as From:.
    pub from: String,
    /// The sendmail program for the `sendmail` transport.
    pub sendmail: PathBuf,
    /// SMTP relay host.
    pub smtp_host: String,
    /// SMTP relay port.
    pub smtp_port: u16,
    /// Require STARTTLS with the relay.
    pub smtp_starttls: bool,
    /// SMTP login name, if the relay wants one.
    pub smtp_user: Option<String>,
    /// SMTP password.
    pub smtp_password: Option<String>,
    /// Subject of givepubs' answer.
    pub givepubs_subject: String,
}

/// The addresses people write to.
#[derive(Debug, Clone)]
pub struct Addresses {
    /// Registration requests.
    pub register: String,
    /// Key change requests.
    pub change: String,
    /// Removal requests.
    pub remove: String,
    /// Requests for the flat keyring.
    pub get: String,
}

/// The whole configuration, with every default applied.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
    /// File locations.
    pub paths: Paths,
    /// keyserv.
    pub keyserv: KeyservConfig,
    /// keyreg.
    pub keyreg: KeyregConfig,
    /// Outgoing mail.
    pub mail: MailConfig,
    /// Request addresses.
    pub addresses: Addresses,
    /// keylookup.
    pub keylookup: KeylookupConfig,
    /// hkpd.
    pub hkpd: HkpdConfig,
    /// keysync, and keyreg's part in replication.
    pub sync: SyncConfig,
}

impl KeyservConfig {
    /// The `[keyserv]` section, defaults filled in; the error names the bad key.
    fn from_file(file: FileKeyserv) -> Result<KeyservConfig, String> {
        let listen = file
            .listen
            .unwrap_or_else(|| vec!["0.0.0.0:1611".to_string()])
            .iter()
            .map(|addr| {
                addr.parse::<SocketAddr>()
                    .map_err(|_| format!("keyserv.listen: {addr:?} is not ADDRESS:PORT"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut redirect = BTreeMap::new();
        for (domain, server) in file.redirect {
            redirect.insert(domain.to_ascii_lowercase(), server);
        }
        Ok(KeyservConfig {
            listen,
            rate_limit: file.rate_limit.unwrap_or(20),
            rate_burst: file.rate_burst.unwrap_or(40),
            log_requests: file.log_requests.unwrap_or(false),
            log_answers: file.log_answers.unwrap_or(false),
            allow_quit: file.allow_quit.unwrap_or(false),
            answer_cache_bytes: usize::try_from(file.answer_cache_mb.unwrap_or(64).saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            redirect,
            rate_bytes: file.rate_bytes.unwrap_or(64 * 1024),
            rate_burst_bytes: file.rate_burst_bytes.unwrap_or(256 * 1024),
            cookies: file.cookies.unwrap_or(true),
        })
    }
}

impl MailConfig {
    /// The `[mail]` section, defaults filled in (addresses at `host`).
    fn from_file(file: FileMail, host: &str) -> MailConfig {
        let default_address = |local: &str| format!("{local}@{host}");
        MailConfig {
            transport: file.transport.unwrap_or(Transport::Sendmail),
            from: file.from.unwrap_or_else(|| default_address("keyserver")),
            sendmail: file.sendmail.unwrap_or_else(|| PathBuf::from("/usr/sbin/sendmail")),
            smtp_host: file.smtp_host.unwrap_or_else(|| "localhost".into()),
            smtp_port: file.smtp_port.unwrap_or(25),
            smtp_starttls: file.smtp_starttls.unwrap_or(false),
            smtp_user: file.smtp_user,
            smtp_password: file.smtp_password,
            givepubs_subject: file
                .givepubs_subject
                .unwrap_or_else(|| "Public keys from the RIPEM key server".into()),
        }
    }
}

impl Addresses {
    /// The `[addresses]` section, defaults filled in (at `host`).
    fn from_file(file: FileAddresses, host: &str) -> Addresses {
        let default_address = |local: &str| format!("{local}@{host}");
        Addresses {
            register: file.register.unwrap_or_else(|| default_address("ripem-register-keys")),
            change: file.change.unwrap_or_else(|| default_address("ripem-change-keys")),
            remove: file.remove.unwrap_or_else(|| default_address("ripem-remove-keys")),
            get: file.get.unwrap_or_else(|| default_address("ripem-get-keys")),
        }
    }
}

impl Config {
    /// Loads the configuration as every program does: `explicit` (from
    /// `--config`), else the environment variable, else the default path;
    /// then `state_dir` (from `--state-dir`) overrides the file's.
    pub fn load(explicit: Option<&Path>, state_dir: Option<&Path>) -> Result<Config, ConfigError> {
        let from_env = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        let (path, must_exist) = match (explicit, from_env) {
            (Some(path), _) => (path.to_path_buf(), true),
            (None, Some(path)) => (path, true),
            (None, None) => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::from_toml(&text, Some(&path), state_dir),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                Config::from_toml("", None, state_dir)
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Builds the configuration from TOML text (`source` names it in errors).
    pub fn from_toml(text: &str, source: Option<&Path>, state_dir: Option<&Path>) -> Result<Config, ConfigError> {
        let source_name = source.map_or_else(|| PathBuf::from("(built-in defaults)"), Path::to_path_buf);
        let file: FileConfig = toml::from_str(text).map_err(|err| ConfigError::Syntax {
            path: source_name.clone(),
            message: syntax_message(text, &err),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: source_name.clone(),
            message,
        };

        let state_dir = state_dir
            .map(Path::to_path_buf)
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let under = |own: Option<PathBuf>, default: &str| own.unwrap_or_else(|| state_dir.join(default));
        let paths = Paths {
            database: under(file.database, "keys.gdbm"),
            spool_dir: under(file.spool_dir, "spool"),
            transaction_log: under(file.transaction_log, "transactions.log"),
            pub_dir: under(file.pub_dir, "pub"),
            pid_file: under(file.pid_file, "keyserv.pid"),
            outbox: under(file.mail.outbox.clone(), "outbox"),
            state_dir: state_dir.clone(),
        };

        let keyserv = KeyservConfig::from_file(file.keyserv).map_err(invalid)?;
        let keyreg = KeyregConfig::from_file(&file.keyreg).map_err(invalid)?;
        let hkpd = HkpdConfig::from_file(file.hkpd, &state_dir).map_err(invalid)?;
        let host = hostname();
        let sync = SyncConfig::from_file(file.sync, &host).map_err(invalid)?;

        let mail = MailConfig::from_file(file.mail, &host);
        let addresses = Addresses::from_file(file.addresses, &host);
        Ok(Config {
            source: source.map(Path::to_path_buf),
            paths,
            keyserv,
            keyreg,
            mail,
            addresses,
            keylookup: KeylookupConfig {
                servers: file.keylookup.servers.unwrap_or_else(|| vec!["localhost".to_string()]),
            },
            hkpd,
            sync,
        })
    }

    /// Checks that the state directory exists and is a directory.
    pub fn check_state_dir(&self) -> Result<(), ConfigError> {
        let path = &self.paths.state_dir;
        let problem = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => "not a directory".to_string(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                "does not exist (create it, owned by the user that runs keyreg and keyserv)".to_string()
            }
            Err(err) => err.to_string(),
        };
        Err(ConfigError::StateDir {
            path: path.clone(),
            problem,
        })
    }
}

/// A peer's certificate pin: the SHA-256 of its certificate (DER),
/// written `sha256:<64 hex digits>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertPin(pub [u8; 32]);

impl CertPin {
    /// Parses `sha256:<hex>` (hex in either case).
    pub fn parse(raw: &str) -> Result<CertPin, String> {
        let bad = || format!("{raw:?} is not sha256:<64 hex digits>");
        let hex = raw.trim().strip_prefix("sha256:").ok_or_else(bad)?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut pin = [0u8; 32];
        for (i, byte) in pin.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(CertPin(pin))
    }
}

impl std::fmt::Display for CertPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// One `[[sync.peer]]`: a server keysync exchanges updates with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPeer {
    /// The peer's `server_id` (which side keeps a doubly dialled
    /// connection is decided by comparing it with ours).
    pub name: String,
    /// Where it listens, `host:port`.
    pub address: String,
    /// The pin of its certificate.
    pub pin: CertPin,
    /// Lower first: the order peers are dialled in.
    pub priority: u32,
}

/// An entry of `[sync] reject`: never applied or served here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// A key, by fingerprint.
    Fingerprint(crate::types::Fingerprint),
    /// An address.
    Address(crate::types::Email),
}

/// The `[sync]` section: replication between servers.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// This server's id: the `Origin:` of the updates it makes.
    pub server_id: String,
    /// Addresses keysync listens on for peers (KX over TLS).
    pub listen: Vec<SocketAddr>,
    /// An update dated further in the future than this waits.
    pub max_clock_skew: Duration,
    /// Apply what peers send, accept no local request.
    pub replica: bool,
    /// Keys and addresses never applied or served here.
    pub reject: Vec<Rejected>,
    /// Origins whose updates are refused outright.
    pub reject_origin: Vec<String>,
    /// Largest KX message accepted from a peer.
    pub max_message_bytes: u64,
    /// How often peers reconcile their sets of updates.
    pub reconcile_interval: Duration,
    /// The peers, lowest priority number first.
    pub peers: Vec<SyncPeer>,
}

/// A server id or peer name: printable ASCII without spaces, as it is
/// written in `Origin:` lines and logs.
fn check_server_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 255 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{what}: {id:?} must be 1 to 255 printable characters without spaces"
        ));
    }
    Ok(())
}

impl SyncConfig {
    /// The `[sync]` section with its defaults (the id defaults to the
    /// host name), or what is out of range.
    fn from_file(file: FileSync, host: &str) -> Result<SyncConfig, String> {
        let server_id = file.server_id.unwrap_or_else(|| host.to_string());
        check_server_id("sync.server_id", &server_id)?;
        let listen = file
            .listen
            .unwrap_or_else(|| vec!["127.0.0.1:11611".to_string()])
            .iter()
            .map(|addr| {
                addr.parse::<SocketAddr>()
                    .map_err(|_| format!("sync.listen: {addr:?} is not ADDRESS:PORT"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let reject = file
            .reject
            .unwrap_or_default()
            .iter()
            .map(|entry| {
                if entry.contains('@') {
                    crate::types::Email::parse(entry).map(Rejected::Address)
                } else {
                    crate::types::Fingerprint::parse(entry).map(Rejected::Fingerprint)
                }
                .map_err(|err| format!("sync.reject: {entry:?}: {err}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut peers = Vec::new();
        for peer in file.peer {
            check_server_id("sync.peer.name", &peer.name)?;
            if peer.name == server_id || peers.iter().any(|p: &SyncPeer| p.name == peer.name) {
                return Err(format!("sync.peer: {:?} is named twice (or is this server)", peer.name));
            }
            match peer.address.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                _ => return Err(format!("sync.peer.address: {:?} is not HOST:PORT", peer.address)),
            }
            let pin = CertPin::parse(&peer.pin).map_err(|err| format!("sync.peer.pin: {err}"))?;
            if peers.iter().any(|p: &SyncPeer| p.pin == pin) {
                return Err(format!("sync.peer.pin: {pin} is given to two peers"));
            }
            peers.push(SyncPeer {
                name: peer.name,
                address: peer.address,
                pin,
                priority: peer.priority.unwrap_or(100),
            });
        }
        peers.sort_by_key(|peer| peer.priority);
        let reject_origin = file.reject_origin.unwrap_or_default();
        for origin in &reject_origin {
            check_server_id("sync.reject_origin", origin)?;
        }
        let sync = SyncConfig {
            server_id,
            listen,
            max_clock_skew: Duration::from_secs(file.max_clock_skew_s.unwrap_or(300)),
            replica: file.replica.unwrap_or(false),
            reject,
            reject_origin,
            max_message_bytes: file.max_message_bytes.unwrap_or(1 << 20),
            reconcile_interval: Duration::from_secs(file.reconcile_interval_s.unwrap_or(3600)),
            peers,
        };
        if sync.max_message_bytes < 4096 {
            return Err("sync.max_message_bytes must be at least 4096".into());
        }
        if sync.reconcile_interval.is_zero() {
            return Err("sync.reconcile_interval_s must be at least 1".into());
        }
        Ok(sync)
    }
}

/// The parser's message on one line, led by the line and column of the
/// error: `line 3, column 10: invalid type: integer `3`, expected a sequence`.
fn syntax_message(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end().replace('\n', " ");
    let Some(span) = err.span() else {
        return message;
    };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    format!("line {line}, column {column}: {message}")
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| name.contains('.'))
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_derive_from_state_dir() {
        let config = Config::from_toml("state_dir = \"/srv/ks\"\n", None, None).unwrap();
        assert_eq!(config.paths.database, PathBuf::from("/srv/ks/keys.gdbm"));
        assert_eq!(config.paths.flat_text(), PathBuf::from("/srv/ks/pub/pubkeys.txt"));
        let config = Config::from_toml(
            "state_dir = \"/srv/ks\"\ndatabase = \"/data/k.gdbm\"\n",
            None,
            Some(Path::new("demo")),
        )
        .unwrap();
        assert_eq!(config.paths.database, PathBuf::from("/data/k.gdbm"));
        assert_eq!(config.paths.spool_dir, PathBuf::from("demo/spool"));
    }

    #[test]
    fn sections_and_defaults() {
        let text = r#"
[keyserv]
listen = ["127.0.0.1:16110", "[::1]:16110"]
rate_limit = 0
[keyserv.redirect]
"Example.NET" = "keys.example.net:1611"
[mail]
transport = "file"
from = "keys@example.org"
"#;
        let config = Config::from_toml(text, None, None).unwrap();
        assert_eq!(config.keyserv.listen.len(), 2);
        assert_eq!(config.keyserv.rate_limit, 0);
        assert_eq!(config.keyserv.redirect["example.net"], "keys.example.net:1611");
        assert_eq!(config.mail.transport, Transport::File);
        assert_eq!(config.keyreg.max_request_age, Duration::from_secs(7 * 86_400));
        assert_eq!(config.keyreg.max_keys_per_request, 100);
        assert!(Config::from_toml("[keyreg]\nmax_keys_per_request = 0\n", None, None).is_err());
        assert_eq!(config.keyreg.policy, Policy::Fcfs);
        let confirm = Config::from_toml("[keyreg]\npolicy = \"confirm\"\n", None, None).unwrap();
        assert_eq!(confirm.keyreg.policy, Policy::Confirm);
        let unknown = Config::from_toml("[keyreg]\npolicy = \"trust\"\n", None, None).unwrap_err();
        assert!(unknown.to_string().contains("unknown variant `trust`"), "{unknown}");
        assert!(config.keyserv.cookies);
        assert_eq!(config.keyserv.rate_bytes, 65_536);
        assert_eq!(config.keylookup.servers, ["localhost"]);
    }

    #[test]
    fn cookies_byte_limits_and_keylookup_servers() {
        let text = "[keyserv]\ncookies = false\nrate_bytes = 0\nrate_burst_bytes = 9\n[keylookup]\nservers = [\"keys.example.org\", \"127.0.0.1:16110\"]\n";
        let config = Config::from_toml(text, None, None).unwrap();
        assert!(!config.keyserv.cookies);
        assert_eq!((config.keyserv.rate_bytes, config.keyserv.rate_burst_bytes), (0, 9));
        assert_eq!(config.keylookup.servers, ["keys.example.org", "127.0.0.1:16110"]);
    }

    #[test]
    fn hkpd_section() {
        let config = Config::from_toml("state_dir = \"/srv/ks\"\n", None, None).unwrap();
        assert_eq!(config.hkpd.listen, ["127.0.0.1:11371".parse::<SocketAddr>().unwrap()]);
        assert_eq!(config.hkpd.pid_file, PathBuf::from("/srv/ks/hkpd.pid"));
        assert_eq!(config.hkpd.max_request_bytes, 1 << 20);
        assert!(config.hkpd.wkd_domains.is_empty() && config.hkpd.tls_cert.is_none());
        assert!(!config.hkpd.log_requests);
        let text = "[hkpd]\nlisten = [\"[::1]:8080\"]\nwkd_domains = [\"Example.ORG\", \"example.org\", \"lists.example.net\"]\nmax_request_bytes = 4096\nrate_limit = 0\n";
        let config = Config::from_toml(text, None, None).unwrap();
        assert_eq!(config.hkpd.wkd_domains, ["example.org", "lists.example.net"]);
        assert_eq!((config.hkpd.max_request_bytes, config.hkpd.rate_limit), (4096, 0));
        for bad in [
            "[hkpd]\nlisten = [\"nowhere\"]\n",
            "[hkpd]\nwkd_domains = [\"not a domain\"]\n",
            "[hkpd]\ntls_cert = \"/etc/cert.pem\"\n",
            "[hkpd]\nmax_request_bytes = 10\n",
            "[hkpd]\nmax_connections = 0\n",
            "[hkpd]\ntimeout_seconds = 0\n",
            "[hkpd]\nlisen = []\n",
        ] {
            assert!(Config::from_toml(bad, None, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn sync_section() {
        let config = Config::from_toml("", None, None).unwrap();
        assert_eq!(config.sync.max_clock_skew, Duration::from_secs(300));
        assert_eq!(config.sync.max_message_bytes, 1 << 20);
        assert_eq!(config.sync.reconcile_interval, Duration::from_secs(3600));
        assert!(!config.sync.replica && config.sync.peers.is_empty());
        let pin_b = format!("sha256:{}", "Ab".repeat(32));
        let pin_c = format!("sha256:{}", "0c".repeat(32));
        let text = format!(
            "[sync]\nserver_id = \"a.example.org\"\nlisten = [\"127.0.0.1:1\"]\nreplica = true\nreject = [\"spam@example.net\", \"0x{}\"]\nreject_origin = [\"x.example.org\"]\n[[sync.peer]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\npin = \"{pin_b}\"\npriority = 20\n[[sync.peer]]\nname = \"c\"\naddress = \"keys-c.example.org:11611\"\npin = \"{pin_c}\"\npriority = 10\n",
            "AB".repeat(20)
        );
        let sync = Config::from_toml(&text, None, None).unwrap().sync;
        assert_eq!(sync.server_id, "a.example.org");
        assert!(sync.replica);
        assert_eq!(sync.reject.len(), 2);
        assert_eq!(sync.reject_origin, ["x.example.org"]);
        let names: Vec<_> = sync.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["c", "b"]);
        assert_eq!(sync.peers[1].pin.to_string(), pin_b.to_ascii_lowercase());
        let peer = |name: &str, address: &str, pin: &str| {
            format!("[sync]\nserver_id = \"a\"\n[[sync.peer]]\nname = \"{name}\"\naddress = \"{address}\"\npin = \"{pin}\"\n")
        };
        for bad in [
            peer("b", "127.0.0.1:2", "sha256:00"),
            peer("b", "127.0.0.1", &pin_b),
            peer("a", "127.0.0.1:2", &pin_b),
            peer("b c", "127.0.0.1:2", &pin_b),
            format!(
                "{}[[sync.peer]]\nname = \"c\"\naddress = \"h:1\"\npin = \"{pin_b}\"\n",
                peer("b", "h:2", &pin_b)
            ),
            "[sync]\nreject = [\"not a key\"]\n".to_string(),
            "[sync]\nmax_message_bytes = 10\n".to_string(),
            "[sync]\nreconcile_interval_s = 0\n".to_string(),
            "[sync]\nlisten = [\"nowhere\"]\n".to_string(),
            "[sync]\nserverid = \"a\"\n".to_string(),
            format!("{}port = 3\n", peer("b", "h:2", &pin_b)),
        ] {
            assert!(Config::from_toml(&bad, None, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let err = Config::from_toml("state_dir = \n", Some(Path::new("k.toml")), None).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("k.toml: line 1, column "), "{text}");
        let err = Config::from_toml("# c\n[keyserv]\nlisten = 3\n", Some(Path::new("k.toml")), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "k.toml: line 3, column 10: invalid type: integer `3`, expected a sequence"
        );
        let err = Config::from_toml("[keyserv]\nlisten = [\"nowhere\"]\n", None, None).unwrap_err();
        assert!(err.to_string().contains("nowhere"));
        assert!(Config::from_toml("statedir = \"x\"\n", None, None).is_err());
    }

    #[test]
    fn state_dir_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let at = |path: &Path| Config::from_toml("", None, Some(path)).unwrap().check_state_dir();
        assert!(at(dir.path()).is_ok());
        let missing = at(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(missing.contains("nope: does not exist"), "{missing}");
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(at(&file).unwrap_err().to_string().ends_with("not a directory"));
    }
}
