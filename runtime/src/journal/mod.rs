//! The journal: the durable, hash-chained event logs that are the only source of
//! truth (DESIGN §2, §4, §5).
//!
//! [`Journal`] is the storage trait the rest of the host codes against;
//! [`RedbJournal`] is the embedded backend, [`PgJournal`] the one that many
//! workers share in PostgreSQL (`docs/postgres.md`), and [`MemoryJournal`]
//! the same contract over maps in memory (the model redb is tested against;
//! nothing in it is durable). The invariants of the contract:
//!
//! - **Append-only.** Events are never updated or deleted. Seqs of a log are
//!   dense from 0, and seq 0 is always `created`.
//! - **Chained.** Each event's hash covers its predecessor's hash, its seq, its
//!   `at` and its canonical body ([`chain`](event_hash)); the log id is not hashed.
//! - **Durable before acknowledged.** A [`CommitTicket`] resolves only after the
//!   redb transaction holding its [`Commit`] has been committed (fsync'd).
//! - **Atomic commits.** All parts of a [`Commit`] are written in one transaction,
//!   or none; a refused commit writes nothing and does not disturb the other
//!   commits of its group.
//! - **Single writer.** Appends carry the expected next seq and are refused with
//!   [`JournalError::Conflict`] otherwise.
//! - **Projections in step.** The head, flags, names and open effects of a log,
//!   and its tenant's index and counts, are updated in the same transaction as
//!   the events that change them.
//! - **Limits in the transaction.** A new log that carries its tenant's session
//!   limit is admitted against the count in the transaction that writes it, so
//!   concurrent creates never take a tenant past its limit.
//!
//! ```no_run
//! # async fn demo() -> Result<(), logbook::journal::JournalError> {
//! use logbook::journal::*;
//! let journal = RedbJournal::open("data/journal.redb".as_ref(), JournalConfig::default())?;
//! # let wasm: Vec<u8> = Vec::new();
//! let created = Created {
//!     guest: journal.put_guest(DEFAULT_TENANT, "support", &wasm).await?,
//!     config: serde_json::json!({}),
//!     seed: 7,
//!     parent: None,
//!     compacted_from: None,
//!     summary: None,
//!     tools: vec![],
//! };
//! let id = LogId::now_v7();
//! journal
//!     .commit(Commit::new_log(NewLog {
//!         id,
//!         tenant: DEFAULT_TENANT.into(),
//!         name: Some("support-bot".into()),
//!         at: 1_700_000_000_000,
//!         created,
//!         session_limit: None,
//!     }))
//!     .await?;
//! journal
//!     .commit(Commit::append(id, 1, vec![(1_700_000_000_001, EventBody::GuestFailed { message: "trap".into() })]))
//!     .await?;
//! assert_eq!(journal.read(id, 0, 100).await?.len(), 2);
//! # Ok(()) }
//! ```

mod chain;
mod commit;
mod copy;
mod error;
mod faulty;
mod import;
mod info;
mod lease;
mod memory;
mod migrate;
mod postgres;
mod reopen;
mod store;
#[doc(hidden)]
pub mod tables;
mod tenants;
mod writer;

pub use self::commit::{Append, Claim, Commit, CommitTicket, Committed, NameUpdate, NewLog};
pub use self::copy::CopiedLog;
pub use self::error::JournalError;
pub use self::event::*;
pub use self::faulty::{Fault, FaultyJournal};
pub use self::info::{LogInfo, LogStatus, OpenEffect};
pub(crate) use self::lease::{Heads, LocalLeases};
pub use self::lease::{Lease, Timer};
pub use self::memory::MemoryJournal;
pub use self::migrate::{MigrateError, MigrateProgress, migrate};
pub(crate) use self::postgres::connect_client as pg_connect;
pub use self::postgres::{PgConfig, PgJournal, SslMode};
pub use self::store::RedbJournal;
pub use logbook_log::event;
pub use logbook_log::{
    ChainCheck, ChainPos, FormatError, GENESIS_HASH, Kind, Utf8Lines, Verified, chain_events,
    decode_body, digest_of, event_from_json, event_hash, from_jsonl, to_jsonl, verify_events,
};

/// Runs a journal future to its end from synchronous code: the replayer,
/// which folds pages into a guest on the blocking pool. A backend that
/// answers from memory or a local file (redb) is ready at the first poll, so
/// this costs one poll; one that must wait (a database across the network)
/// is driven by the runtime the caller runs under.
///
/// # Panics
/// When a backend must wait and the caller is a task on a current-thread
/// runtime's own thread (run it on the blocking pool there).
pub(crate) fn blocking<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    use tokio::runtime::{Handle, RuntimeFlavor};
    let mut future = std::pin::pin!(future);
    if let Poll::Ready(out) = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        return out;
    }
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        Ok(handle) => handle.block_on(future),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for one journal call")
            .block_on(future),
    }
}

/// A journal URL as it may be shown: its password, in the user part or as
/// a `password=` query parameter (libpq takes both), replaced by `***`.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (rest, query) = rest
        .split_once('?')
        .map_or((rest, None), |(r, q)| (r, Some(q)));
    let query = query.map_or(String::new(), |q| {
        let pairs: Vec<&str> = q
            .split('&')
            .map(|pair| {
                if pair.starts_with("password=") {
                    "password=***"
                } else {
                    pair
                }
            })
            .collect();
        format!("?{}", pairs.join("&"))
    });
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let shown = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    if rest.contains('/') {
        format!("{scheme}://{shown}/{path}{query}")
    } else {
        format!("{scheme}://{shown}{query}")
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redacted_url;

    #[test]
    fn passwords_are_hidden_wherever_the_url_holds_them() {
        assert_eq!(
            redacted_url("postgres://u:pw@h:5432/db?sslmode=require"),
            "postgres://u:***@h:5432/db?sslmode=require"
        );
        assert_eq!(
            redacted_url("postgres://u@h/db?password=pw&sslmode=verify-full"),
            "postgres://u@h/db?password=***&sslmode=verify-full"
        );
        assert_eq!(
            redacted_url("postgres://u:pw@h?password=x"),
            "postgres://u:***@h?password=***"
        );
    }
}

/// A log's id: a UUIDv7, so ids sort in creation order. Stored as a `u128`.
pub type LogId = uuid::Uuid;

/// The tenant of everything when no tenants are configured.
pub const DEFAULT_TENANT: &str = "default";

/// Settings of a [`RedbJournal`].
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// The most events the writer puts in one transaction (a commit larger than
    /// this still goes in whole, alone). Default 4096.
    pub max_batch_events: usize,
    /// Whether each transaction is fsync'd (`Durability::Immediate`). `false`
    /// (`Durability::None`) is for benchmarks only: it breaks the promise that
    /// an acknowledged event survives a crash. Default `true`.
    pub durable: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            max_batch_events: 4096,
            durable: true,
        }
    }
}

/// How many logs a tenant holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantCount {
    /// Every log of the tenant: what its list pages through.
    pub logs: u64,
    /// Those that are sessions of their own: every log but a compaction's
    /// continuation (which goes on the session it continues). A tenant's
    /// session limit counts these.
    pub sessions: u64,
}

/// One page of a tenant's logs, in id (creation) order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogPage {
    /// The logs of the page.
    pub logs: Vec<LogInfo>,
    /// The id to ask for the next page after: the page's last log, when more
    /// logs follow it; `None` when this page ends the list.
    pub next: Option<LogId>,
}

/// Counters of the group-commit writer since the journal was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// redb write transactions committed.
    pub commits: u64,
    /// Events written.
    pub events: u64,
    /// Commit requests answered (accepted or refused).
    pub requests: u64,
}

/// One effect key in a log's key index (see [`Journal::index_keys`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedKey {
    /// The key, as the guest chose it.
    pub key: String,
    /// Whether a human decided it (an `approval-decided` names it).
    pub decided: bool,
}

/// What a log's key index answers about some keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexedKeys {
    /// The index holds every key of the log closed at a seq below this.
    pub mark: u64,
    /// Those of the keys asked about that it holds.
    pub found: Vec<IndexedKey>,
}

/// The storage of logs: what the host needs, whatever the backend (DESIGN §7).
///
/// Async, so that a backend may be a database across the network; nothing
/// above it assumes the log lives in this process. Reads see the state as of
/// the last durable commit. Histories are read in pages, never whole.
///
/// Writers are fenced by leases: an actor takes its log's lease before it
/// advances it, and every append it makes carries the lease's epoch
/// ([`Append::lease`]), which the journal checks in the transaction. A
/// journal that one process owns (redb, memory) keeps leases in memory; a
/// shared one (PostgreSQL) keeps them with the log, with an expiry.
#[async_trait::async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Submits a commit to the writer; the ticket resolves once it is durable
    /// or refused.
    fn commit(&self, commit: Commit) -> CommitTicket;

    /// Up to `limit` events of `log` from `from_seq`, in ascending seq. Empty when
    /// the log does not exist or has no events from there.
    async fn read(
        &self,
        log: LogId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError>;

    /// Like [`read`](Journal::read) from `pos.next_seq`, but each event is
    /// checked against its predecessor as it is read: its seq must be
    /// `pos.next_seq`, its hash must be what the chain gives from
    /// `pos.prev_hash`, its seq, `at` and body (the stored bytes, so no
    /// re-encoding), and a `created` must stand where the rules put it.
    /// `pos` moves past every event returned, so one `ChainPos` threaded
    /// through the pages checks a whole log ([`ChainPos::START`]) or the part
    /// after a known event ([`ChainPos::after`]).
    ///
    /// Returns the events before the first that does not hold; a call that
    /// starts at that event fails with [`JournalError::ChainBroken`]. Costs
    /// one SHA-256 of each event's bytes more than `read`.
    async fn read_checked(
        &self,
        log: LogId,
        pos: &mut ChainPos,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError>;

    /// The log's metadata, head and open effects; `None` when it does not exist.
    async fn info(&self, log: LogId) -> Result<Option<LogInfo>, JournalError>;

    /// The log a name points at.
    async fn resolve(&self, tenant: &str, name: &str) -> Result<Option<LogId>, JournalError>;

    /// Up to `limit` (at least 1) of the tenant's logs with ids after `after`
    /// (from the first when `None`), in id (creation) order. Costs the page,
    /// whatever the number of logs of this or any other tenant.
    async fn list_page(
        &self,
        tenant: &str,
        after: Option<LogId>,
        limit: usize,
    ) -> Result<LogPage, JournalError>;

    /// How many logs and sessions the tenant holds. O(1).
    async fn count(&self, tenant: &str) -> Result<TenantCount, JournalError>;

    /// Up to `limit` (at least 1) logs with an open effect, of every tenant,
    /// with ids after `after`, in id order: what to resume after a restart.
    async fn open_logs(
        &self,
        after: Option<LogId>,
        limit: usize,
    ) -> Result<Vec<LogId>, JournalError>;

    /// Stores a guest component (once per digest) and binds `(tenant, name)` to it.
    /// Its digest is `sha256:` and the hex SHA-256 of `bytes`. Durable on return.
    async fn put_guest(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<GuestRef, JournalError>;

    /// A guest component's bytes by digest.
    async fn guest_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, JournalError>;

    /// Stores the bytes of a large tool part once per tenant and digest, so
    /// that the event that holds the part carries only a [`BlobRef`]. Its
    /// digest is `sha256:` and the hex SHA-256 of `bytes`. Durable on return:
    /// store it before the event that refers to it.
    async fn put_blob(&self, tenant: &str, bytes: &[u8]) -> Result<BlobRef, JournalError>;

    /// A blob's bytes, if `tenant` stored one with this digest. A tenant
    /// never reads another's blobs.
    async fn blob(&self, tenant: &str, digest: &str) -> Result<Option<Vec<u8>>, JournalError>;

    /// The guest a name is bound to in a tenant.
    async fn guest_by_name(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<GuestRef>, JournalError>;

    /// Every guest name of a tenant, with its digest, by name.
    async fn guests(&self, tenant: &str) -> Result<Vec<GuestRef>, JournalError>;

    /// How many logs the journal holds, of every tenant.
    async fn count_logs(&self) -> Result<usize, JournalError>;

    /// Recomputes the log's hash chain from seq 0, through its ancestry.
    async fn verify(&self, log: LogId) -> Result<Verified, JournalError>;

    /// Stores a snapshot record of `log` at `seq` made by guest `digest`
    /// (a cache: written without fsync). Older records of the same log and
    /// guest are removed: only the newest is ever restored.
    async fn put_snapshot(
        &self,
        log: LogId,
        seq: u64,
        digest: &str,
        record: &[u8],
    ) -> Result<(), JournalError>;

    /// The newest snapshot record of `log` by guest `digest` at a seq below
    /// `before`: `(seq, record)`.
    async fn latest_snapshot(
        &self,
        log: LogId,
        digest: &str,
        before: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, JournalError>;

    /// Every snapshot of `log`: `(seq, guest digest, record)`, by seq.
    async fn snapshots(&self, log: LogId) -> Result<Vec<(u64, String, Vec<u8>)>, JournalError>;

    /// The log's key index: its mark, and which of `keys` it holds.
    ///
    /// The index is a cache of the effect keys a log has closed, so that a
    /// resident session need not hold every key of its history
    /// (session::keys): it holds every key of the log's whole view (a fork's
    /// inherited events included) that an event at a seq below the mark
    /// closed, and maybe others. A log that was never indexed has mark 0.
    /// Losing it costs only speed: the next replay rebuilds what it lacks.
    async fn indexed_keys(&self, log: LogId, keys: &[&str]) -> Result<IndexedKeys, JournalError>;

    /// Adds `keys` to `log`'s key index and moves its mark to `mark`,
    /// never back (see [`Journal::indexed_keys`]). The caller vouches that
    /// every key of the log closed below `mark` is now in the index. Durable
    /// when it returns.
    async fn index_keys(
        &self,
        log: LogId,
        mark: u64,
        keys: &[IndexedKey],
    ) -> Result<(), JournalError>;

    /// For a fork, the parent log and the last seq it shares with it (the
    /// fork's own events start after it); `None` for a log of its own.
    async fn parent(&self, log: LogId) -> Result<Option<LogPos>, JournalError>;

    /// Stores a whole log from elsewhere (an export) under a new id, in one
    /// durable transaction, after checking its chain: refused with
    /// [`JournalError::BadLog`] naming the first bad seq (or
    /// [`JournalError::GuestNotStored`]). Its guests must be
    /// stored first. Its events become its own rows, so an imported fork
    /// stands alone. It is a new session of `tenant`: refused with
    /// [`JournalError::LimitReached`] when the tenant holds `session_limit`
    /// sessions already.
    async fn import(
        &self,
        tenant: &str,
        name: Option<&str>,
        events: &[StoredEvent],
        session_limit: Option<u64>,
    ) -> Result<LogId, JournalError>;

    /// Stores a log from another journal under its own id, with its own
    /// events and their stored hashes, in one durable transaction (what
    /// `logbook migrate` copies with; see [`CopiedLog`]). A fork's parent
    /// must be stored first, in the same tenant, and the fork's events must
    /// chain from the parent's event at the fork point; a log of its own
    /// chains from the genesis hash. Refused with [`JournalError::BadLog`]
    /// when the chain does not hold, [`JournalError::LogExists`] when the id
    /// is taken, [`JournalError::NameTaken`] when its name is bound to
    /// another log; nothing is written then. Every projection (head, flags,
    /// open effects, name, tenant index and counts) is written with it; the
    /// tenant's session limit is not checked: it is a copy.
    async fn copy_log(&self, log: &CopiedLog) -> Result<(), JournalError>;

    /// The writer's counters.
    fn stats(&self) -> WriterStats;

    /// Why the journal cannot write now, when it knows it cannot (redb's
    /// file out after a failed write, until it reopens); `None` when it can
    /// or cannot tell. What `/readyz` reports.
    fn unwritable(&self) -> Option<String> {
        None
    }

    /// Takes the writer lease of `log` for this journal's worker. Succeeds
    /// when no live worker holds it, when this worker does, or when the
    /// holder's lease has expired; every success returns an epoch higher than
    /// any before for the log, so an older holder (even an older actor in this
    /// process) is fenced. Refused with [`JournalError::Leased`] while another
    /// live worker holds it.
    async fn acquire_lease(&self, log: LogId) -> Result<Lease, JournalError>;

    /// Gives the lease up if it is still held at its epoch; otherwise does
    /// nothing.
    async fn release_lease(&self, lease: Lease) -> Result<(), JournalError>;

    /// Up to `limit` open `sleep` effects due at or before `due_by` (unix ms),
    /// earliest first, of logs that no other live worker holds: the timers
    /// this worker may fire (by taking the log's lease). `timers(u64::MAX, 1)`
    /// is the next one. A stopped log's timers are not among them: nobody
    /// fires them until it is resumed.
    async fn timers(&self, due_by: u64, limit: usize) -> Result<Vec<Timer>, JournalError>;

    /// Resolves once `log` holds an event at `from_seq` or later (at once if
    /// it already does) with the log's next seq, whoever committed it.
    /// Cancel-safe: dropping the future leaves nothing behind.
    async fn wait_events(&self, log: LogId, from_seq: u64) -> Result<u64, JournalError>;

    /// A watch of `log`'s next seq, moved by every commit to the log that
    /// this journal learns of (this process's, and with a shared journal,
    /// other workers'). It only grows, but starts at 0 or at the last head
    /// announced, not at the stored one: compare it with what you know, and
    /// subscribe before you read. Costs nothing per commit while unchanged.
    fn watch_head(&self, log: LogId) -> tokio::sync::watch::Receiver<u64>;

    /// Up to `limit` logs with a model or tool call open (not one waiting
    /// for a human, not a timer) whose lease no live worker holds: sessions
    /// that a worker left running when it died (or, for a journal one
    /// process owns, that no actor here runs), for this worker to resume;
    /// not a stopped log, which nobody advances until it is resumed.
    async fn orphans(&self, limit: usize) -> Result<Vec<LogId>, JournalError>;

    /// How long a lease outlives its holder's last sign of life, for a
    /// journal that several workers share: they look for the logs and
    /// timers of dead workers about twice per TTL. `None` for a journal one
    /// process owns, whose leases never expire.
    fn lease_ttl_ms(&self) -> Option<u64> {
        None
    }
}
