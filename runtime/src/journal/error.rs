//! The one error type of the journal.
//!
//! Errors are `Clone` because a failed group commit answers every caller of the
//! batch with the same error; sources from redb and serde_json are therefore
//! held in an `Arc`.

use std::sync::Arc;

use super::LogId;

/// Everything a journal operation can fail with.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// An append's expected seq is not the log's next seq: another writer got
    /// there first, or the caller's view of the log is stale. Nothing was written.
    #[error("log {log}: expected next seq {expected}, but it is {actual}")]
    Conflict {
        /// The log appended to.
        log: LogId,
        /// The seq the caller expected its first event to get.
        expected: u64,
        /// The log's actual next seq.
        actual: u64,
    },
    /// No log has this id (in the tenant that asked, where a tenant is involved).
    #[error("no log {0}")]
    UnknownLog(LogId),
    /// A new log reused an id that already exists.
    #[error("log {0} already exists")]
    LogExists(LogId),
    /// A new log asked for a name that its tenant already uses.
    #[error("name {name:?} is already taken in tenant {tenant:?}")]
    NameTaken {
        /// The tenant of the name.
        tenant: String,
        /// The name.
        name: String,
    },
    /// A new session would take its tenant past its limit of sessions
    /// ([`NewLog::session_limit`](super::NewLog::session_limit)). Nothing
    /// was written.
    #[error("the tenant's limit of {limit} sessions is reached")]
    LimitReached {
        /// The tenant.
        tenant: String,
        /// Its limit.
        limit: u64,
    },
    /// An append carried a `created` event: only a new log's first event may
    /// be one. The caller, which builds commits, has a bug. Nothing was written.
    #[error("log {log}: `created` may only be seq 0")]
    CreatedNotFirst {
        /// The log appended to.
        log: LogId,
    },
    /// A fork (or a copy of one) names a parent that is not a log id.
    /// Nothing was written.
    #[error("fork parent {parent:?} is not a log id")]
    BadParent {
        /// The parent as given.
        parent: String,
    },
    /// A fork names a seq its parent does not have. Nothing was written.
    #[error("log {log} has no seq {seq} (its next seq is {next})")]
    NoSeq {
        /// The parent log.
        log: LogId,
        /// The seq asked for.
        seq: u64,
        /// The parent's next seq.
        next: u64,
    },
    /// A log to import or copy runs on a guest that is not stored here.
    /// Nothing was written.
    #[error("the log runs on guest {name} ({digest}), which is not stored here: add it first")]
    GuestNotStored {
        /// The guest's name in the log.
        name: String,
        /// Its digest.
        digest: String,
    },
    /// A log to import or copy that does not hold as a log: it has no events,
    /// its first is not `created`, its chain breaks at `seq`, or a fork's
    /// parent is not stored here. Nothing was written.
    #[error("{}", bad_log(*copy, *seq, why))]
    BadLog {
        /// For a copy, the id of the log copied; `None` for an import.
        copy: Option<LogId>,
        /// The first seq that does not hold, where one does not.
        seq: Option<u64>,
        /// What is wrong.
        why: String,
    },
    /// Stored or imported data that cannot be what the journal wrote.
    #[error("corrupt journal data: {0}")]
    Corrupt(String),
    /// Bytes or a line that are not an event of the log format: a line of
    /// an export that is not a valid event or not in canonical form (the
    /// hash chain, which covers the canonical body, would not protect what
    /// differs), or a stored body that does not decode.
    #[error(transparent)]
    Format(#[from] logbook_log::FormatError),
    /// A checked read ([`Journal::read_checked`](super::Journal::read_checked))
    /// met an event that does not hold against its predecessor: the log was
    /// altered or damaged after it was written.
    #[error("log {log}: the hash chain breaks at seq {seq}: {why}")]
    ChainBroken {
        /// The log read.
        log: LogId,
        /// The first event that does not hold.
        seq: u64,
        /// Why it does not hold.
        why: String,
    },
    /// Another live worker holds the log's writer lease
    /// ([`Journal::acquire_lease`](super::Journal::acquire_lease)).
    #[error("log {log}: another worker holds its lease")]
    Leased {
        /// The log.
        log: LogId,
    },
    /// An append carried a lease epoch that is no longer the log's: the lease
    /// was taken over, and this writer must stop. Nothing was written.
    #[error("log {log}: the lease at epoch {epoch} was taken over")]
    Fenced {
        /// The log.
        log: LogId,
        /// The stale epoch the append carried.
        epoch: u64,
    },
    /// The PostgreSQL server failed, or the connection to it did; for a
    /// commit, whether it was written is unknown to the caller.
    #[error("postgres: {0}")]
    Postgres(#[source] Arc<tokio_postgres::Error>),
    /// A journal URL that cannot be used as written (an unknown `sslmode`,
    /// an `sslrootcert` that cannot be read). The message names the
    /// parameter, never the password.
    #[error("the journal URL: {0}")]
    BadUrl(String),
    /// TLS to PostgreSQL failed a check the URL's `sslmode` asks for (the
    /// server's certificate is not signed by a trusted CA, or does not name
    /// the host).
    #[error("TLS to PostgreSQL: {0}")]
    Tls(String),
    /// The PostgreSQL database holds a schema newer than this build knows:
    /// a newer build migrated it, and this one must not write to it.
    #[error(
        "the database's journal schema is at version {found}, newer than the {known} this build knows: run a newer logbook"
    )]
    SchemaTooNew {
        /// The version the database is at.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The redb file failed.
    #[error("storage: {0}")]
    Storage(#[source] Arc<redb::Error>),
    /// The journal's file failed a write (a full disk) and is out until it
    /// reopens, which it retries on its own. Commits refused while it is out
    /// wrote nothing; the one that failed was not committed. Writes resume
    /// once the file can be written again, with no restart.
    #[error("the journal cannot write now ({0}); writes resume once it can")]
    Unwritable(String),
    /// The writer has stopped (the journal was closed or its thread died);
    /// whether the commit was written is unknown to the caller.
    #[error("the journal writer has stopped")]
    Closed,
    /// A write to a journal opened read-only
    /// ([`RedbJournal::open_read_only`](super::RedbJournal::open_read_only)).
    #[error("the journal is open read-only")]
    ReadOnly,
}

/// How [`JournalError::BadLog`] reads: `copy of log L: seq S: why`, each
/// part where it applies.
fn bad_log(copy: Option<LogId>, seq: Option<u64>, why: &str) -> String {
    let copy = copy
        .map(|log| format!("copy of log {log}: "))
        .unwrap_or_default();
    let seq = seq.map(|seq| format!("seq {seq}: ")).unwrap_or_default();
    format!("{copy}{seq}{why}")
}

impl From<tokio_postgres::Error> for JournalError {
    fn from(e: tokio_postgres::Error) -> Self {
        JournalError::Postgres(Arc::new(e))
    }
}

impl From<redb::Error> for JournalError {
    fn from(e: redb::Error) -> Self {
        JournalError::Storage(Arc::new(e))
    }
}

/// redb has one error type per operation; all of them are storage failures here.
macro_rules! from_redb {
    ($($t:ident),*) => {$(
        impl From<redb::$t> for JournalError {
            fn from(e: redb::$t) -> Self {
                JournalError::Storage(Arc::new(redb::Error::from(e)))
            }
        }
    )*};
}

from_redb!(
    DatabaseError,
    TransactionError,
    TableError,
    StorageError,
    CommitError,
    SetDurabilityError
);
