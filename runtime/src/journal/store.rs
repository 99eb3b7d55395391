//! [`RedbJournal`]: the journal in one redb file.
//!
//! Writes to logs go through the group-commit writer thread ([`super::writer`]);
//! reads use their own redb read transactions (MVCC), so they see the last
//! committed state and never wait for the writer. Guest components are written
//! directly, in their own durable transaction: they touch no table the writer
//! writes.
//!
//! Invariant: while a `RedbJournal` exists its writer thread runs; dropping it
//! (or [`RedbJournal::close`]) stops the writer after its current batch and
//! releases the file.

use std::ops::{Bound, ControlFlow};
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use redb::{
    Database, Durability, ReadOnlyDatabase, ReadOnlyTable, ReadTransaction, ReadableDatabase,
    ReadableTable, ReadableTableMetadata,
};

use super::chain::{ChainCheck, ChainPos, Kind, Verified, digest_of};
use super::commit::{Commit, CommitTicket};
use super::copy::CopiedLog;
use super::decode_body;
use super::event::{BlobRef, Event, GuestRef, LogPos, StoredEvent};
use super::info::{LogInfo, LogMeta, LogStatus, OpenEffect};
use super::reopen::RedbFile;
use super::tables::{
    self, BLOBS, EVENTS, GUEST_NAMES, GUESTS, KEY_INDEX, KEY_MARKS, LOGS, NAMES, OPEN, SNAPSHOTS,
    TENANT_COUNTS, TENANT_LOGS,
};
use super::writer::{self, Counters, Request, Writer};
use super::{
    Heads, IndexedKey, IndexedKeys, Journal, JournalConfig, JournalError, Lease, LocalLeases,
    LogId, LogPage, TenantCount, Timer, WriterStats, tenants,
};

/// More forks of forks than this and a log's ancestry is taken as corrupt
/// (it could only be a cycle: each fork is created after its parent).
const MAX_ANCESTRY: usize = 10_000;

/// The redb file of a journal: open to write (with a writer thread, and
/// reopened after a failed write: [`RedbFile`]), or read-only (`logbook
/// migrate`'s source), when every write is refused.
enum Db {
    Writable(Arc<RedbFile>),
    ReadOnly(ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> Result<ReadTransaction, JournalError> {
        match self {
            Db::Writable(file) => {
                let db = file.get()?;
                db.begin_read().map_err(|e| file.failed(e.into()))
            }
            Db::ReadOnly(db) => Ok(db.begin_read()?),
        }
    }

    /// Runs one write outside the writer thread; an I/O failure takes the
    /// file out until it reopens.
    fn write<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        match self {
            Db::Writable(file) => {
                let db = file.get()?;
                let written = f(&db).map_err(|e| file.failed(e))?;
                file.wrote();
                Ok(written)
            }
            Db::ReadOnly(_) => Err(JournalError::ReadOnly),
        }
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Db::Writable(_) => "Db::Writable",
            Db::ReadOnly(_) => "Db::ReadOnly",
        })
    }
}

/// A journal in one redb file, with a group-commit writer thread.
#[derive(Debug)]
pub struct RedbJournal {
    db: Db,
    requests: RwLock<Option<Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    /// redb locks its file to one process, so its leases live here.
    leases: Arc<LocalLeases>,
    waiters: Arc<Heads>,
}

impl RedbJournal {
    /// Opens (creating if needed) the journal file at `path` and its tables, and
    /// starts the writer thread. A file written before the per-tenant index
    /// and counts existed has them built here, once, in one pass over its logs.
    pub fn open(path: &Path, config: JournalConfig) -> Result<Arc<Self>, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(redb::Error::from)?;
        }
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(EVENTS)?;
        txn.open_table(LOGS)?;
        txn.open_table(NAMES)?;
        txn.open_table(GUESTS)?;
        txn.open_table(GUEST_NAMES)?;
        txn.open_table(BLOBS)?;
        txn.open_table(OPEN)?;
        txn.open_table(SNAPSHOTS)?;
        txn.open_table(KEY_INDEX)?;
        txn.open_table(KEY_MARKS)?;
        if let Some(rebuilt) = tenants::rebuild_if_missing(&txn)? {
            tracing::info!(
                logs = rebuilt.logs,
                tenants = rebuilt.tenants,
                "journal: built the per-tenant index and counts from the logs table \
                 (the file predates them); this happens once"
            );
        }
        txn.commit()?;

        let file = Arc::new(RedbFile::new(path, db));
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel();
        let leases = Arc::new(LocalLeases::default());
        let waiters = Arc::new(Heads::default());
        let writer = Writer::new(
            file.clone(),
            config,
            counters.clone(),
            leases.clone(),
            waiters.clone(),
        );
        let handle = std::thread::Builder::new()
            .name("logbook-journal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(redb::Error::from)?;
        Ok(Arc::new(RedbJournal {
            db: Db::Writable(file),
            requests: RwLock::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            counters,
            leases,
            waiters,
        }))
    }

    /// Opens an existing journal file to read only: nothing is written to
    /// it, not even at open, and another process may read it at the same
    /// time (not while one has it open to write). Commits fail with
    /// [`JournalError::Closed`], other writes with [`JournalError::ReadOnly`].
    /// Refused when the file predates the per-tenant index (which
    /// [`open`](RedbJournal::open) builds): open it to write once first.
    pub fn open_read_only(path: &Path) -> Result<Arc<Self>, JournalError> {
        let db = ReadOnlyDatabase::open(path)?;
        {
            let txn = db.begin_read()?;
            let logs = txn.open_table(LOGS)?;
            let index = txn.open_table(TENANT_LOGS)?;
            if index.len()? != logs.len()? {
                return Err(JournalError::Corrupt(format!(
                    "{}: the per-tenant index is not built ({} of {} logs); \
                     open it once with a command that writes (`logbook sessions`)",
                    path.display(),
                    index.len()?,
                    logs.len()?
                )));
            }
        }
        Ok(Arc::new(RedbJournal {
            db: Db::ReadOnly(db),
            requests: RwLock::new(None),
            writer: Mutex::new(None),
            counters: Arc::default(),
            leases: Arc::default(),
            waiters: Arc::default(),
        }))
    }

    /// Every tenant that holds a log or a guest name, by name.
    pub fn tenants(&self) -> Result<Vec<String>, JournalError> {
        let txn = self.db.begin_read()?;
        let mut out = std::collections::BTreeSet::new();
        for entry in txn.open_table(TENANT_COUNTS)?.iter()? {
            out.insert(entry?.0.value().to_owned());
        }
        for entry in txn.open_table(GUEST_NAMES)?.iter()? {
            out.insert(entry?.0.value().0.to_owned());
        }
        Ok(out.into_iter().collect())
    }

    /// Stops the writer once it has answered what it has been sent; later
    /// commits fail with [`JournalError::Closed`]. Reads keep working. The file is
    /// released when the last handle is dropped. Dropping the journal closes it.
    pub fn close(&self) {
        drop(
            self.requests
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("the journal writer thread panicked");
        }
    }

    fn begin_read(&self) -> Result<Reader, JournalError> {
        Reader::new(self.db.begin_read()?)
    }
}

impl Drop for RedbJournal {
    fn drop(&mut self) {
        self.close();
    }
}

/// The tables reads use, open in one read transaction.
struct Reader {
    events: ReadOnlyTable<(u128, u64), &'static [u8]>,
    logs: ReadOnlyTable<u128, &'static [u8]>,
    open: ReadOnlyTable<(u128, &'static str), &'static [u8]>,
}

impl Reader {
    fn new(txn: ReadTransaction) -> Result<Self, JournalError> {
        Ok(Reader {
            events: txn.open_table(EVENTS)?,
            logs: txn.open_table(LOGS)?,
            open: txn.open_table(OPEN)?,
        })
    }

    fn meta(&self, id: u128) -> Result<Option<LogMeta>, JournalError> {
        match self.logs.get(id)? {
            Some(v) => Ok(Some(writer::decode_meta(v.value())?)),
            None => Ok(None),
        }
    }

    /// The rows that make up a log's events, root first: `(log, first seq,
    /// last seq)` of each ancestor's shared prefix, then the log's own rows.
    /// Costs one metadata read per ancestor, whatever the history's length.
    fn segments(&self, id: u128) -> Result<Vec<(u128, u64, u64)>, JournalError> {
        let mut out = Vec::new();
        let (mut log, mut end) = (id, u64::MAX);
        while let Some(meta) = self.meta(log)? {
            match meta.parent {
                Some(parent) => {
                    out.push((log, parent.seq.saturating_add(1), end));
                    let Ok(parent_id) = LogId::parse_str(&parent.log) else {
                        return Err(JournalError::Corrupt(format!(
                            "log {} names parent {:?}, which is not a log id",
                            LogId::from_u128(log),
                            parent.log
                        )));
                    };
                    if out.len() > MAX_ANCESTRY {
                        return Err(JournalError::Corrupt(format!(
                            "log {} has more than {MAX_ANCESTRY} ancestors",
                            LogId::from_u128(id)
                        )));
                    }
                    log = parent_id.as_u128();
                    // A fork of a fork may branch off before its parent's
                    // own fork point: the nearer bound holds.
                    end = end.min(parent.seq);
                }
                None => {
                    out.push((log, 0, end));
                    break;
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Calls `each` with the seq and stored value of each of the log's events
    /// from `from_seq`, in order, through its ancestry, until it breaks.
    fn scan(
        &self,
        log: LogId,
        from_seq: u64,
        mut each: impl FnMut(u64, &[u8]) -> Result<ControlFlow<()>, JournalError>,
    ) -> Result<(), JournalError> {
        for (id, start, end) in self.segments(log.as_u128())? {
            if end < from_seq {
                continue;
            }
            for entry in self.events.range((id, from_seq.max(start))..=(id, end))? {
                let (k, v) = entry?;
                if each(k.value().1, v.value())?.is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The log's next seq and last hash, from its own last event.
    fn head(&self, id: u128) -> Result<(u64, [u8; 32]), JournalError> {
        Ok(
            match self.events.range((id, 0)..=(id, u64::MAX))?.next_back() {
                Some(entry) => {
                    let (k, v) = entry?;
                    let (_, hash, _) = tables::split_event(v.value())?;
                    (k.value().1 + 1, hash)
                }
                None => (0, [0; 32]),
            },
        )
    }

    fn info(&self, id: u128, meta: LogMeta) -> Result<LogInfo, JournalError> {
        let (next_seq, last_hash) = self.head(id)?;
        let mut open = Vec::new();
        for entry in self.open.range((id, "")..)? {
            let (k, v) = entry?;
            let (log, key) = k.value();
            if log != id {
                break;
            }
            let record = writer::decode_open(v.value())?;
            open.push(OpenEffect {
                key: key.to_owned(),
                effect: record.effect,
                awaiting_approval: record.awaiting_approval,
                unstarted: record.unstarted,
            });
        }
        Ok(LogInfo {
            id: LogId::from_u128(id),
            status: LogStatus::of(meta.finished, meta.failed, meta.stopped, &open),
            stopped: meta.stopped,
            tenant: meta.tenant,
            name: meta.name,
            guest: meta.guest,
            created_at: meta.created_at,
            next_seq,
            last_hash,
            open,
        })
    }
}

#[async_trait::async_trait]
impl Journal for RedbJournal {
    fn commit(&self, commit: Commit) -> CommitTicket {
        let (reply, ticket) = CommitTicket::new();
        let requests = self.requests.read().unwrap_or_else(PoisonError::into_inner);
        let refused = match requests.as_ref() {
            Some(tx) => tx.send(Request { commit, reply }).err().map(|e| e.0.reply),
            None => Some(reply),
        };
        if let Some(reply) = refused {
            // The ticket is alive in this frame, so the answer arrives.
            let _ = reply.send(Err(JournalError::Closed));
        }
        ticket
    }

    async fn read(
        &self,
        log: LogId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.begin_read()?.scan(log, from_seq, |seq, value| {
            let (at, hash, body) = tables::split_event(value)?;
            out.push(StoredEvent {
                event: Event {
                    seq,
                    at,
                    body: decode_body(body)?,
                },
                hash,
            });
            Ok(if out.len() == limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })?;
        Ok(out)
    }

    async fn read_checked(
        &self,
        log: LogId,
        pos: &mut ChainPos,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut check = ChainCheck::resume(*pos);
        self.begin_read()?.scan(log, pos.next_seq, |seq, value| {
            let Ok((at, hash, body)) = tables::split_event(value) else {
                check.check(
                    seq,
                    0,
                    &[],
                    Err("event value is truncated".into()),
                    &[0; 32],
                );
                return Ok(ControlFlow::Break(()));
            };
            let decoded = decode_body(body);
            let kind = match &decoded {
                Ok(b) => Ok(Kind::of(b)),
                Err(e) => Err(format!("body does not decode: {e}")),
            };
            // The stored bytes are what was hashed: no re-encoding needed.
            check.check(seq, at, body, kind, &hash);
            let Ok(body) = decoded else {
                return Ok(ControlFlow::Break(()));
            };
            if check.first_bad().is_some() {
                return Ok(ControlFlow::Break(()));
            }
            out.push(StoredEvent {
                event: Event { seq, at, body },
                hash,
            });
            *pos = ChainPos {
                next_seq: seq.saturating_add(1),
                prev_hash: hash,
            };
            Ok(if out.len() == limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })?;
        match check.finish().first_bad {
            Some((seq, why)) if out.is_empty() => Err(JournalError::ChainBroken { log, seq, why }),
            _ => Ok(out),
        }
    }

    async fn info(&self, log: LogId) -> Result<Option<LogInfo>, JournalError> {
        let r = self.begin_read()?;
        let id = log.as_u128();
        match r.meta(id)? {
            Some(meta) => Ok(Some(r.info(id, meta)?)),
            None => Ok(None),
        }
    }

    async fn resolve(&self, tenant: &str, name: &str) -> Result<Option<LogId>, JournalError> {
        let txn = self.db.begin_read()?;
        let names = txn.open_table(NAMES)?;
        Ok(names
            .get((tenant, name))?
            .map(|v| LogId::from_u128(v.value())))
    }

    async fn list_page(
        &self,
        tenant: &str,
        after: Option<LogId>,
        limit: usize,
    ) -> Result<LogPage, JournalError> {
        let limit = limit.max(1);
        let txn = self.db.begin_read()?;
        let index = txn.open_table(TENANT_LOGS)?;
        let r = Reader::new(txn)?;
        let start = match after {
            Some(after) => Bound::Excluded((tenant, after.as_u128())),
            None => Bound::Included((tenant, 0)),
        };
        let mut ids = index.range::<(&str, u128)>((start, Bound::Included((tenant, u128::MAX))))?;
        let mut page = LogPage::default();
        for entry in ids.by_ref().take(limit) {
            let (k, _) = entry?;
            let id = k.value().1;
            let Some(meta) = r.meta(id)? else {
                return Err(JournalError::Corrupt(format!(
                    "tenant {tenant:?} lists log {}, which has no metadata",
                    LogId::from_u128(id)
                )));
            };
            page.logs.push(r.info(id, meta)?);
        }
        if ids.next().is_some() {
            page.next = page.logs.last().map(|info| info.id);
        }
        Ok(page)
    }

    async fn count(&self, tenant: &str) -> Result<TenantCount, JournalError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TENANT_COUNTS)?;
        let (logs, sessions) = tenants::counts(&table, tenant)?;
        Ok(TenantCount { logs, sessions })
    }

    async fn open_logs(
        &self,
        after: Option<LogId>,
        limit: usize,
    ) -> Result<Vec<LogId>, JournalError> {
        let r = self.begin_read()?;
        let limit = limit.max(1);
        let mut out: Vec<LogId> = Vec::new();
        // The table is keyed (log, key): after `after`, the next log starts
        // at its first key, which sorts after ("" is the least key, and a
        // key of `after` itself is skipped by the check below).
        let range = match after {
            Some(a) => r.open.range((a.as_u128(), "")..)?,
            None => r.open.range::<(u128, &str)>(..)?,
        };
        for entry in range {
            let (k, _) = entry?;
            let log = LogId::from_u128(k.value().0);
            if Some(log) == after || out.last() == Some(&log) {
                continue;
            }
            if out.len() == limit {
                break;
            }
            out.push(log);
        }
        Ok(out)
    }

    async fn put_guest(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<GuestRef, JournalError> {
        let digest = digest_of(bytes);
        self.db.write(|db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut guests = txn.open_table(GUESTS)?;
                if guests.get(digest.as_str())?.is_none() {
                    guests.insert(digest.as_str(), bytes)?;
                }
                let mut names = txn.open_table(GUEST_NAMES)?;
                names.insert((tenant, name), digest.as_str())?;
            }
            Ok(txn.commit()?)
        })?;
        Ok(GuestRef {
            name: name.to_owned(),
            digest,
        })
    }

    async fn guest_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, JournalError> {
        let txn = self.db.begin_read()?;
        let guests = txn.open_table(GUESTS)?;
        Ok(guests.get(digest)?.map(|v| v.value().to_vec()))
    }

    async fn put_blob(&self, tenant: &str, bytes: &[u8]) -> Result<BlobRef, JournalError> {
        let digest = digest_of(bytes);
        self.db.write(|db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut blobs = txn.open_table(BLOBS)?;
                if blobs.get((tenant, digest.as_str()))?.is_none() {
                    blobs.insert((tenant, digest.as_str()), bytes)?;
                }
            }
            Ok(txn.commit()?)
        })?;
        Ok(BlobRef {
            digest,
            size: bytes.len() as u64,
        })
    }

    async fn blob(&self, tenant: &str, digest: &str) -> Result<Option<Vec<u8>>, JournalError> {
        let txn = self.db.begin_read()?;
        let blobs = txn.open_table(BLOBS)?;
        Ok(blobs.get((tenant, digest))?.map(|v| v.value().to_vec()))
    }

    async fn guest_by_name(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<GuestRef>, JournalError> {
        let txn = self.db.begin_read()?;
        let names = txn.open_table(GUEST_NAMES)?;
        Ok(names.get((tenant, name))?.map(|v| GuestRef {
            name: name.to_owned(),
            digest: v.value().to_owned(),
        }))
    }

    async fn guests(&self, tenant: &str) -> Result<Vec<GuestRef>, JournalError> {
        let txn = self.db.begin_read()?;
        let names = txn.open_table(GUEST_NAMES)?;
        let mut out = Vec::new();
        // Names of one tenant are contiguous: (tenant, "") sorts first.
        for entry in names.range((tenant, "")..)? {
            let (k, v) = entry?;
            let (t, name) = k.value();
            if t != tenant {
                break;
            }
            out.push(GuestRef {
                name: name.to_owned(),
                digest: v.value().to_owned(),
            });
        }
        Ok(out)
    }

    async fn count_logs(&self) -> Result<usize, JournalError> {
        let r = self.begin_read()?;
        Ok(r.logs.len()? as usize)
    }

    async fn verify(&self, log: LogId) -> Result<Verified, JournalError> {
        let r = self.begin_read()?;
        if r.meta(log.as_u128())?.is_none() {
            return Err(JournalError::UnknownLog(log));
        }
        let mut check = ChainCheck::new();
        r.scan(log, 0, |seq, value| {
            let Ok((at, hash, body)) = tables::split_event(value) else {
                check.check(
                    seq,
                    0,
                    &[],
                    Err("event value is truncated".into()),
                    &[0; 32],
                );
                return Ok(ControlFlow::Continue(()));
            };
            // The hash covers the stored bytes; they must also be the canonical
            // form of what they decode to, or an export would hash differently.
            let kind = match decode_body(body) {
                Ok(b) if b.to_canonical() != body => Err("body is not in canonical form".into()),
                Ok(b) => Ok(Kind::of(&b)),
                Err(e) => Err(format!("body does not decode: {e}")),
            };
            check.check(seq, at, body, kind, &hash);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(check.finish())
    }

    async fn put_snapshot(
        &self,
        log: LogId,
        seq: u64,
        digest: &str,
        record: &[u8],
    ) -> Result<(), JournalError> {
        self.db.write(|db| {
            let mut txn = db.begin_write()?;
            // A cache: losing it in a crash costs a full replay, nothing more.
            txn.set_durability(Durability::None)?;
            {
                let mut table = txn.open_table(SNAPSHOTS)?;
                let id = log.as_u128();
                // Only the newest of a guest is ever restored: older ones would
                // only pile up (each holds the log's key ledger).
                let mut older = Vec::new();
                for entry in table.range((id, 0, "")..(id, seq, ""))? {
                    let (k, _) = entry?;
                    let (_, s, d) = k.value();
                    if d == digest {
                        older.push(s);
                    }
                }
                for s in older {
                    table.remove((id, s, digest))?;
                }
                table.insert((id, seq, digest), record)?;
            }
            Ok(txn.commit()?)
        })
    }

    async fn latest_snapshot(
        &self,
        log: LogId,
        digest: &str,
        before: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, JournalError> {
        if before == 0 {
            return Ok(None);
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SNAPSHOTS)?;
        let id = log.as_u128();
        for entry in table.range((id, 0, "")..(id, before, ""))?.rev() {
            let (k, v) = entry?;
            let (_, seq, d) = k.value();
            if d == digest {
                return Ok(Some((seq, v.value().to_vec())));
            }
        }
        Ok(None)
    }

    async fn indexed_keys(&self, log: LogId, keys: &[&str]) -> Result<IndexedKeys, JournalError> {
        let txn = self.db.begin_read()?;
        let id = log.as_u128();
        // A file opened read-only from before the index has no such tables.
        let (marks, index) = match (txn.open_table(KEY_MARKS), txn.open_table(KEY_INDEX)) {
            (Ok(marks), Ok(index)) => (marks, index),
            (Err(redb::TableError::TableDoesNotExist(_)), _)
            | (_, Err(redb::TableError::TableDoesNotExist(_))) => {
                return Ok(IndexedKeys::default());
            }
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        let mark = marks.get(id)?.map_or(0, |m| m.value());
        let mut found = Vec::new();
        if mark > 0 {
            for key in keys {
                if let Some(decided) = index.get((id, *key))? {
                    found.push(IndexedKey {
                        key: (*key).to_owned(),
                        decided: decided.value(),
                    });
                }
            }
        }
        Ok(IndexedKeys { mark, found })
    }

    async fn index_keys(
        &self,
        log: LogId,
        mark: u64,
        keys: &[IndexedKey],
    ) -> Result<(), JournalError> {
        self.db.write(|db| {
            let txn = db.begin_write()?;
            {
                let id = log.as_u128();
                let mut index = txn.open_table(KEY_INDEX)?;
                for k in keys {
                    // A decision once indexed stays: the log cannot undo it.
                    let decided =
                        k.decided || index.get((id, k.key.as_str()))?.is_some_and(|d| d.value());
                    index.insert((id, k.key.as_str()), decided)?;
                }
                let mut marks = txn.open_table(KEY_MARKS)?;
                let old = marks.get(id)?.map_or(0, |m| m.value());
                marks.insert(id, old.max(mark))?;
            }
            Ok(txn.commit()?)
        })
    }

    async fn snapshots(&self, log: LogId) -> Result<Vec<(u64, String, Vec<u8>)>, JournalError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SNAPSHOTS)?;
        let id = log.as_u128();
        let mut out = Vec::new();
        for entry in table.range((id, 0, "")..=(id, u64::MAX, "\u{10ffff}"))? {
            let (k, v) = entry?;
            let (_, seq, d) = k.value();
            out.push((seq, d.to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    async fn parent(&self, log: LogId) -> Result<Option<LogPos>, JournalError> {
        let r = self.begin_read()?;
        match r.meta(log.as_u128())? {
            Some(meta) => Ok(meta.parent),
            None => Err(JournalError::UnknownLog(log)),
        }
    }

    async fn import(
        &self,
        tenant: &str,
        name: Option<&str>,
        events: &[StoredEvent],
        session_limit: Option<u64>,
    ) -> Result<LogId, JournalError> {
        self.db
            .write(|db| super::import::import(db, tenant, name, events, session_limit))
    }

    async fn copy_log(&self, log: &CopiedLog) -> Result<(), JournalError> {
        let prepared = super::copy::prepare(self, log).await?;
        self.db.write(|db| super::import::copy(db, log, prepared))
    }

    fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

    fn unwritable(&self) -> Option<String> {
        match &self.db {
            Db::Writable(file) => file.unwritable(),
            Db::ReadOnly(_) => Some("the journal is open read-only".into()),
        }
    }

    async fn acquire_lease(&self, log: LogId) -> Result<Lease, JournalError> {
        if self.begin_read()?.meta(log.as_u128())?.is_none() {
            return Err(JournalError::UnknownLog(log));
        }
        Ok(self.leases.acquire(log))
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), JournalError> {
        self.leases.release(lease);
        Ok(())
    }

    /// Costs a scan of every open effect: redb keeps no index by deadline,
    /// and one process asks only when it starts.
    async fn timers(&self, due_by: u64, limit: usize) -> Result<Vec<Timer>, JournalError> {
        let r = self.begin_read()?;
        let mut timers = Vec::new();
        for entry in r.open.iter()? {
            let (k, v) = entry?;
            let (log, key) = k.value();
            if let crate::journal::RequestedEffect::Sleep { until } =
                writer::decode_open(v.value())?.effect
                && until <= due_by
                && !r.meta(log)?.is_some_and(|m| m.stopped)
            {
                timers.push(Timer {
                    log: LogId::from_u128(log),
                    key: key.to_owned(),
                    until,
                });
            }
        }
        timers.sort_by(|a, b| (a.until, a.log, &a.key).cmp(&(b.until, b.log, &b.key)));
        timers.truncate(limit.max(1));
        Ok(timers)
    }

    fn watch_head(&self, log: LogId) -> tokio::sync::watch::Receiver<u64> {
        self.waiters.subscribe(log)
    }

    /// Costs a scan of every open effect, as [`timers`](Journal::timers).
    async fn orphans(&self, limit: usize) -> Result<Vec<LogId>, JournalError> {
        let r = self.begin_read()?;
        let mut out: Vec<LogId> = Vec::new();
        for entry in r.open.iter()? {
            let (k, v) = entry?;
            let log = LogId::from_u128(k.value().0);
            if out.last() == Some(&log) || self.leases.is_held(log) {
                continue;
            }
            let open = writer::decode_open(v.value())?;
            if !open.awaiting_approval
                && !matches!(open.effect, crate::journal::RequestedEffect::Sleep { .. })
                && !r.meta(log.as_u128())?.is_some_and(|m| m.stopped)
            {
                out.push(log);
                if out.len() >= limit.max(1) {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn wait_events(&self, log: LogId, from_seq: u64) -> Result<u64, JournalError> {
        // The head alone: its open effects are not wanted here.
        let stored = async { Ok(self.begin_read()?.head(log.as_u128())?.0) };
        self.waiters.wait(log, from_seq, stored).await
    }
}
