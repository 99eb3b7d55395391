//! The redb file behind a [`RedbJournal`](super::RedbJournal), reopened after
//! a failed write.
//!
//! redb latches its first I/O failure: once a write fails (a full disk),
//! every later read and write of that `Database` answers "Previous I/O
//! error" until it is closed and opened again, which repairs the file to its
//! last committed transaction. So the journal holds its database here, not
//! directly:
//!
//! - every operation takes the current `Database` for its own duration
//!   ([`RedbFile::get`]);
//! - an I/O failure anywhere ([`RedbFile::failed`]) takes the database out,
//!   so that nothing new holds it, and records why; until it is back,
//!   operations answer [`JournalError::Unwritable`] (503 over HTTP);
//! - the writer thread, which owns every write to the logs, reopens the file
//!   ([`RedbFile::reopen`]) before its next batch and between requests, with
//!   a backoff, once the operations that still held the old database have
//!   let go of it. Nothing is lost: a transaction that failed was never
//!   committed, and its callers were told so.
//!
//! A file that reopens may still not take a write (the disk is still full),
//! so whether the journal can write ([`RedbFile::unwritable`], `/readyz`) is
//! another matter: it cannot from a failed write until a write succeeds. The
//! writer, when idle in that state, tries a small write every
//! [`PROBE_EVERY`] ([`RedbFile::probe`]), so that readiness returns with the
//! space even when no request comes to prove it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use super::JournalError;
use super::tables::SNAPSHOTS;

/// The longest wait between two attempts to reopen.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How often an idle writer tries a write while the last one failed.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The bytes a probe writes (and removes in the same transaction): enough
/// to need pages of their own.
const PROBE_BYTES: usize = 16 * 1024;

/// The journal's redb database, and what went wrong with it if anything.
#[derive(Debug)]
pub(crate) struct RedbFile {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
    /// Set while the database is out, until it reopens.
    failure: Mutex<Option<Failure>>,
    /// Why the last write failed, until one succeeds.
    unwritable: Mutex<Option<String>>,
}

/// Why the database is out, and when to try it again.
#[derive(Debug)]
struct Failure {
    cause: String,
    next_try: Instant,
    backoff: Duration,
}

impl RedbFile {
    pub(crate) fn new(path: &Path, db: Database) -> RedbFile {
        RedbFile {
            path: path.to_path_buf(),
            db: RwLock::new(Some(Arc::new(db))),
            failure: Mutex::new(None),
            unwritable: Mutex::new(None),
        }
    }

    /// The database, for one operation; refused while it is out.
    pub(crate) fn get(&self) -> Result<Arc<Database>, JournalError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match &*db {
            Some(db) => Ok(db.clone()),
            None => Err(JournalError::Unwritable(self.cause())),
        }
    }

    /// Why the journal cannot write now: the last write failed and none has
    /// succeeded since. `None` when it can.
    pub(crate) fn unwritable(&self) -> Option<String> {
        self.unwritable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A write succeeded: the journal can write.
    pub(crate) fn wrote(&self) {
        let mut unwritable = self
            .unwritable
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if unwritable.take().is_some() {
            tracing::info!("journal: a write succeeded; the journal is ready again");
        }
    }

    fn cause(&self) -> String {
        self.unwritable()
            .unwrap_or_else(|| "the journal file is being reopened".into())
    }

    /// Tries a small durable write (into a row of the snapshot cache that no
    /// log can own, removed in the same transaction) while the last write
    /// failed: readiness returns when it succeeds.
    pub(crate) fn probe(&self) {
        if self.unwritable().is_none() {
            return;
        }
        let Ok(db) = self.get() else {
            return;
        };
        let write = || -> Result<(), JournalError> {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(SNAPSHOTS)?;
                let key = (0u128, 0u64, "probe");
                table.insert(key, [0u8; PROBE_BYTES].as_slice())?;
                table.remove(key)?;
            }
            txn.commit()?;
            Ok(())
        };
        match write() {
            Ok(()) => self.wrote(),
            Err(e) => {
                drop(db);
                self.failed(e);
            }
        }
    }

    /// Takes the database out when `e` is an I/O failure, which redb has
    /// latched; `e` itself when it is not one, or the error callers get
    /// from now on.
    pub(crate) fn failed(&self, e: JournalError) -> JournalError {
        let JournalError::Storage(inner) = &e else {
            return e;
        };
        let cause = match &**inner {
            redb::Error::Io(io) => io.to_string(),
            // A failure latched by an earlier operation: the first one
            // recorded its cause.
            redb::Error::PreviousIo => self.cause(),
            _ => return e,
        };
        *self
            .unwritable
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cause.clone());
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if failure.is_none() {
            tracing::error!(
                cause,
                "journal: a write failed; writes are refused until the file reopens"
            );
            *failure = Some(Failure {
                cause: cause.clone(),
                next_try: Instant::now(),
                backoff: Duration::from_millis(10),
            });
        }
        drop(failure);
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = None;
        JournalError::Unwritable(cause)
    }

    /// Whether the database is out.
    pub(crate) fn is_out(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// When the database is out and its next try is due, opens the file
    /// again (redb repairs it to its last commit). True when it is back (or
    /// was never out), false when it is still out: the file is still held,
    /// or cannot be repaired yet (the disk may still be full).
    pub(crate) fn reopen(&self) -> bool {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(f) = failure.as_mut() else {
            return true;
        };
        if Instant::now() < f.next_try {
            return false;
        }
        match Database::create(&self.path) {
            Ok(db) => {
                tracing::info!(
                    after = %f.cause,
                    "journal: the file reopened; writes resume"
                );
                *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
                *failure = None;
                true
            }
            Err(e) => {
                // Held still by an operation that began before the failure,
                // or the repair itself cannot write yet.
                tracing::debug!(error = %e, "journal: the file does not reopen yet");
                f.backoff = (f.backoff * 2).min(MAX_BACKOFF);
                f.next_try = Instant::now() + f.backoff;
                false
            }
        }
    }

    /// How long an idle writer may wait for a request before it must try
    /// to reopen the file or probe it; `None` when all is well.
    pub(crate) fn until_next_try(&self) -> Option<Duration> {
        let reopen = self
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|f| f.next_try.saturating_duration_since(Instant::now()));
        reopen.or_else(|| self.unwritable().map(|_| PROBE_EVERY))
    }
}
