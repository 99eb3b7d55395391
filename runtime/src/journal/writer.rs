//! The group-commit writer: one thread that owns every write to the event tables.
//!
//! It blocks for one request, drains whatever else is queued (up to
//! `max_batch_events`), applies them all in one write transaction, commits once
//! (one fsync), and only then answers every caller.
//!
//! Invariants:
//! - A request is validated in full (against the head cache and the tables as
//!   the batch has left them) before any of its parts is written, so a refused
//!   request writes nothing and the rest of its batch goes on.
//! - A failure of the transaction itself answers every caller of the batch with
//!   that error and empties the head cache, which may hold heads that never
//!   became durable.
//! - A new log is admitted against its tenant's counts as the batch has left
//!   them ([`tenants`]): a session limit holds however creates interleave.
//! - The head cache (log -> next seq, last hash) only ever holds heads written in
//!   a committed transaction, or in the transaction being built, which is
//!   reverted on failure by emptying the cache.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use redb::{Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::oneshot;

use super::chain::{GENESIS_HASH, event_hash};
use super::commit::{Commit, Committed};
use super::event::{Event, EventBody, StoredEvent};
use super::info::{LogMeta, MetaChange, OpenAction, OpenRecord};
use super::reopen::RedbFile;

mod fork;
mod tenants;
use self::tenants::TenantLog;
use super::tables::{self, EVENTS, LOGS, NAMES, OPEN, TENANT_COUNTS, TENANT_LOGS};
use super::{Heads, JournalConfig, JournalError, LocalLeases, LogId, WriterStats};

/// More logs than this in the head cache and it is emptied before the next
/// batch: each entry is small, but the number of logs is unbounded.
const HEAD_CACHE_MAX_LOGS: usize = 100_000;

/// What a caller of `commit` gets back.
type Answer = Result<Committed, JournalError>;

/// A commit waiting for the writer, with where to send its answer.
pub(crate) struct Request {
    pub(crate) commit: Commit,
    pub(crate) reply: oneshot::Sender<Answer>,
}

/// The writer's counters, shared with the journal handle.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    events: AtomicU64,
    requests: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> WriterStats {
        WriterStats {
            commits: self.commits.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// The end of a log.
#[derive(Clone, Copy, Debug)]
struct Head {
    next_seq: u64,
    last_hash: [u8; 32],
}

pub(crate) struct Writer {
    file: Arc<RedbFile>,
    config: JournalConfig,
    counters: Arc<Counters>,
    heads: HashMap<u128, Head>,
    /// The writer leases appends are checked against.
    leases: Arc<LocalLeases>,
    /// Who waits for logs to grow: told after each durable commit.
    waiters: Arc<Heads>,
}

/// The tables a batch writes, open in its transaction.
pub(crate) struct WriteTables<'t> {
    pub(crate) events: Table<'t, (u128, u64), &'static [u8]>,
    pub(crate) logs: Table<'t, u128, &'static [u8]>,
    pub(crate) names: Table<'t, (&'static str, &'static str), u128>,
    pub(crate) open: Table<'t, (u128, &'static str), &'static [u8]>,
    pub(crate) tenant_logs: Table<'t, (&'static str, u128), ()>,
    pub(crate) tenant_counts: Table<'t, &'static str, (u64, u64)>,
}

impl<'t> WriteTables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, JournalError> {
        Ok(WriteTables {
            events: txn.open_table(EVENTS)?,
            logs: txn.open_table(LOGS)?,
            names: txn.open_table(NAMES)?,
            open: txn.open_table(OPEN)?,
            tenant_logs: txn.open_table(TENANT_LOGS)?,
            tenant_counts: txn.open_table(TENANT_COUNTS)?,
        })
    }

    pub(crate) fn meta(&self, log: u128) -> Result<Option<LogMeta>, JournalError> {
        match self.logs.get(log)? {
            Some(v) => Ok(Some(decode_meta(v.value())?)),
            None => Ok(None),
        }
    }

    pub(crate) fn put_meta(&mut self, log: u128, meta: &LogMeta) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(meta)
            .map_err(|e| JournalError::Corrupt(format!("log metadata: {e}")))?;
        self.logs.insert(log, bytes.as_slice())?;
        Ok(())
    }
}

pub(crate) fn decode_meta(bytes: &[u8]) -> Result<LogMeta, JournalError> {
    serde_json::from_slice(bytes).map_err(|e| JournalError::Corrupt(format!("log metadata: {e}")))
}

pub(crate) fn decode_open(bytes: &[u8]) -> Result<OpenRecord, JournalError> {
    serde_json::from_slice(bytes).map_err(|e| JournalError::Corrupt(format!("open effect: {e}")))
}

/// The stored value of an open effect: [`decode_open`] reads it back.
pub(crate) fn encode_open(record: &OpenRecord) -> Result<Vec<u8>, JournalError> {
    serde_json::to_vec(record).map_err(|e| JournalError::Corrupt(format!("open effect: {e}")))
}

/// One event ready to write, with its canonical body.
struct Planned {
    log: u128,
    event: StoredEvent,
    body: Vec<u8>,
    /// Whether the append carried a lease (a new log's `created` counts as one).
    leased: bool,
}

/// What a validated request will write.
struct Plan {
    metas: Vec<(u128, LogMeta)>,
    /// The new logs' entries in their tenants' index and counts.
    tenants: Vec<TenantLog>,
    /// Open-effect rows a fork takes over from its parent: `(fork, key, value)`.
    opens: Vec<(u128, String, Vec<u8>)>,
    events: Vec<Planned>,
    heads: HashMap<u128, Head>,
}

impl Writer {
    pub(crate) fn new(
        file: Arc<RedbFile>,
        config: JournalConfig,
        counters: Arc<Counters>,
        leases: Arc<LocalLeases>,
        waiters: Arc<Heads>,
    ) -> Self {
        Writer {
            file,
            config,
            counters,
            heads: HashMap::new(),
            leases,
            waiters,
        }
    }

    /// Serves requests until every sender is gone. While the file is out
    /// after a failed write ([`RedbFile`]), it tries to reopen it between
    /// requests and before each batch, and refuses a batch it cannot write.
    pub(crate) fn run(mut self, requests: Receiver<Request>) {
        loop {
            let first = match self.file.until_next_try() {
                None => match requests.recv() {
                    Ok(r) => r,
                    Err(_) => return,
                },
                Some(wait) => match requests.recv_timeout(wait) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => {
                        if self.file.reopen() {
                            self.file.probe();
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                },
            };
            let mut events = first.commit.event_count();
            let mut batch = vec![first];
            while events < self.config.max_batch_events {
                match requests.try_recv() {
                    Ok(r) => {
                        events += r.commit.event_count();
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            if self.file.is_out() && !self.file.reopen() {
                for r in batch {
                    let _ =
                        r.reply
                            .send(Err(self.file.get().err().unwrap_or(JournalError::Closed)));
                }
                continue;
            }
            self.run_batch(batch);
        }
    }

    fn run_batch(&mut self, batch: Vec<Request>) {
        if self.heads.len() > HEAD_CACHE_MAX_LOGS {
            self.heads.clear();
        }
        let requests = batch.len() as u64;
        let (replies, commits): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|r| (r.reply, r.commit)).unzip();
        let outcome = self.write_batch(commits);
        self.counters
            .requests
            .fetch_add(requests, Ordering::Relaxed);
        match outcome {
            Ok(results) => {
                self.file.wrote();
                let events: usize = results
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .map(|c| c.events.len())
                    .sum();
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .events
                    .fetch_add(events as u64, Ordering::Relaxed);
                for (reply, result) in replies.into_iter().zip(results) {
                    if let Ok(committed) = &result {
                        self.waiters.committed(&committed.events);
                    }
                    // A caller that dropped its ticket does not want the answer.
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "journal transaction failed");
                let e = self.file.failed(e);
                self.heads.clear();
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Writes a batch in one transaction. The outer error fails the whole batch;
    /// the inner results are each request's own answer.
    fn write_batch(&mut self, commits: Vec<Commit>) -> Result<Vec<Answer>, JournalError> {
        let db = self.file.get()?;
        let mut txn = db.begin_write()?;
        txn.set_durability(if self.config.durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        let mut results = Vec::with_capacity(commits.len());
        {
            let mut t = WriteTables::open(&txn)?;
            for commit in commits {
                results.push(self.apply(&mut t, commit)?);
            }
        }
        txn.commit()?;
        Ok(results)
    }

    /// Validates and writes one request.
    fn apply(&mut self, t: &mut WriteTables<'_>, commit: Commit) -> Result<Answer, JournalError> {
        let plan = match self.plan(t, &commit)? {
            Ok(plan) => plan,
            Err(refused) => return Ok(Err(refused)),
        };
        for (log, meta) in &plan.metas {
            t.put_meta(*log, meta)?;
            if let Some(name) = &meta.name {
                t.names
                    .insert((meta.tenant.as_str(), name.as_str()), *log)?;
            }
        }
        for n in &plan.tenants {
            super::tenants::add(t, &n.tenant, n.log, n.session)?;
        }
        for (log, key, value) in &plan.opens {
            t.open.insert((*log, key.as_str()), value.as_slice())?;
        }
        for p in &plan.events {
            let value = tables::encode_event(p.event.event.at, &p.event.hash, &p.body);
            t.events
                .insert((p.log, p.event.event.seq), value.as_slice())?;
            project(t, p.log, &p.event.event.body, p.leased)?;
        }
        for c in &commit.claims {
            claim(t, c.log.as_u128(), &c.key)?;
        }
        for n in &commit.names {
            let log = n.log.as_u128();
            let previous = t
                .names
                .insert((n.tenant.as_str(), n.name.as_str()), log)?
                .map(|g| g.value());
            if let Some(prev) = previous.filter(|p| *p != log)
                && let Some(mut meta) = t.meta(prev)?
                && meta.name.as_deref() == Some(n.name.as_str())
            {
                meta.name = None;
                t.put_meta(prev, &meta)?;
            }
            if let Some(mut meta) = t.meta(log)?
                && meta.name.as_deref() != Some(n.name.as_str())
            {
                meta.name = Some(n.name.clone());
                t.put_meta(log, &meta)?;
            }
        }
        self.heads.extend(plan.heads);
        Ok(Ok(Committed {
            events: plan
                .events
                .into_iter()
                .map(|p| (LogId::from_u128(p.log), p.event))
                .collect(),
        }))
    }

    /// Checks a request against the state the batch has reached and computes
    /// what it writes, writing nothing.
    fn plan(
        &mut self,
        t: &WriteTables<'_>,
        commit: &Commit,
    ) -> Result<Result<Plan, JournalError>, JournalError> {
        let mut plan = Plan {
            metas: Vec::with_capacity(commit.new_logs.len()),
            tenants: Vec::with_capacity(commit.new_logs.len()),
            opens: Vec::new(),
            events: Vec::with_capacity(commit.event_count()),
            heads: HashMap::new(),
        };
        let mut new_names = HashSet::new();
        for nl in &commit.new_logs {
            let id = nl.id.as_u128();
            if plan.heads.contains_key(&id)
                || self.heads.contains_key(&id)
                || t.logs.get(id)?.is_some()
            {
                return Ok(Err(JournalError::LogExists(nl.id)));
            }
            if let Some(name) = &nl.name
                && (t.names.get((nl.tenant.as_str(), name.as_str()))?.is_some()
                    || !new_names.insert((nl.tenant.as_str(), name.as_str())))
            {
                return Ok(Err(JournalError::NameTaken {
                    tenant: nl.tenant.clone(),
                    name: name.clone(),
                }));
            }
            let mut meta = LogMeta {
                tenant: nl.tenant.clone(),
                name: nl.name.clone(),
                guest: nl.created.guest.clone(),
                created_at: nl.at,
                finished: false,
                failed: false,
                stopped: false,
                parent: None,
            };
            let (seq, prev) = match &nl.created.parent {
                None => (0, GENESIS_HASH),
                Some(parent) => match self.fork_point(t, nl, parent, &mut meta, &mut plan)? {
                    Ok(prev) => (parent.seq + 1, prev),
                    Err(refused) => return Ok(Err(refused)),
                },
            };
            let session = match tenants::admit(t, commit, nl, &plan)? {
                Ok(session) => session,
                Err(refused) => return Ok(Err(refused)),
            };
            plan.tenants.push(TenantLog {
                log: id,
                tenant: nl.tenant.clone(),
                session,
            });
            let body = EventBody::Created(nl.created.clone());
            let canonical = body.to_canonical();
            let hash = event_hash(&prev, seq, nl.at, &canonical);
            plan.heads.insert(
                id,
                Head {
                    next_seq: seq + 1,
                    last_hash: hash,
                },
            );
            plan.metas.push((id, meta));
            plan.events.push(Planned {
                log: id,
                event: StoredEvent {
                    event: Event {
                        seq,
                        at: nl.at,
                        body,
                    },
                    hash,
                },
                body: canonical,
                leased: true,
            });
        }
        for ap in &commit.appends {
            let id = ap.log.as_u128();
            let head = match plan.heads.get(&id) {
                Some(h) => *h,
                None => match self.head(t, id)? {
                    Some(h) => h,
                    None => return Ok(Err(JournalError::UnknownLog(ap.log))),
                },
            };
            if !ap.at_head && ap.expected_seq != head.next_seq {
                return Ok(Err(JournalError::Conflict {
                    log: ap.log,
                    expected: ap.expected_seq,
                    actual: head.next_seq,
                }));
            }
            if let Err(fenced) = self.leases.check(ap.log, ap.lease) {
                return Ok(Err(fenced));
            }
            let mut head = head;
            for (at, body) in &ap.events {
                if matches!(body, EventBody::Created(_)) {
                    return Ok(Err(JournalError::CreatedNotFirst { log: ap.log }));
                }
                let canonical = body.to_canonical();
                let seq = head.next_seq;
                let hash = event_hash(&head.last_hash, seq, *at, &canonical);
                plan.events.push(Planned {
                    log: id,
                    event: StoredEvent {
                        event: Event {
                            seq,
                            at: *at,
                            body: body.clone(),
                        },
                        hash,
                    },
                    body: canonical,
                    leased: ap.lease.is_some(),
                });
                head = Head {
                    next_seq: seq + 1,
                    last_hash: hash,
                };
            }
            plan.heads.insert(id, head);
        }
        for c in &commit.claims {
            let id = c.log.as_u128();
            if !plan.heads.contains_key(&id) && self.head(t, id)?.is_none() {
                return Ok(Err(JournalError::UnknownLog(c.log)));
            }
            if let Err(fenced) = self.leases.check(c.log, Some(c.lease)) {
                return Ok(Err(fenced));
            }
        }
        for n in &commit.names {
            let id = n.log.as_u128();
            let tenant = match plan.metas.iter().find(|(l, _)| *l == id) {
                Some((_, meta)) => Some(meta.tenant.clone()),
                None => t.meta(id)?.map(|m| m.tenant),
            };
            if tenant.as_deref() != Some(n.tenant.as_str()) {
                return Ok(Err(JournalError::UnknownLog(n.log)));
            }
        }
        Ok(Ok(plan))
    }

    /// A log's head: from the cache, else from its last stored event.
    fn head(&mut self, t: &WriteTables<'_>, log: u128) -> Result<Option<Head>, JournalError> {
        if let Some(h) = self.heads.get(&log) {
            return Ok(Some(*h));
        }
        let last = t.events.range((log, 0)..=(log, u64::MAX))?.next_back();
        let Some(entry) = last else {
            return Ok(None);
        };
        let (key, value) = entry?;
        let (_, hash, _) = tables::split_event(value.value())?;
        let head = Head {
            next_seq: key.value().1 + 1,
            last_hash: hash,
        };
        self.heads.insert(log, head);
        Ok(Some(head))
    }
}

/// Keeps the `open` table and the log's metadata in step with one event.
pub(crate) fn project(
    t: &mut WriteTables<'_>,
    log: u128,
    body: &EventBody,
    leased: bool,
) -> Result<(), JournalError> {
    if let Some(key) = body.key() {
        let current = if OpenAction::needs_current(body) {
            match t.open.get((log, key))? {
                Some(v) => Some(decode_open(v.value())?),
                None => None,
            }
        } else {
            None
        };
        match OpenAction::of(body, current, leased) {
            OpenAction::Keep => {}
            OpenAction::Put(record) => {
                t.open
                    .insert((log, key), encode_open(&record)?.as_slice())?;
            }
            OpenAction::Remove => {
                t.open.remove((log, key))?;
            }
        }
    }
    if MetaChange::applies(body) {
        let Some(mut meta) = t.meta(log)? else {
            return Err(JournalError::Corrupt(format!(
                "log {} has events but no metadata",
                LogId::from_u128(log)
            )));
        };
        MetaChange::of(body, &mut meta);
        t.put_meta(log, &meta)?;
    }
    Ok(())
}

/// Marks an unstarted approved tool as claimed by the lease holder ([`Claim`](super::Claim)).
fn claim(t: &mut WriteTables<'_>, log: u128, key: &str) -> Result<(), JournalError> {
    let current = match t.open.get((log, key))? {
        Some(v) => decode_open(v.value())?,
        None => return Ok(()),
    };
    if current.unstarted {
        let record = OpenRecord {
            unstarted: false,
            ..current
        };
        t.open
            .insert((log, key), encode_open(&record)?.as_slice())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::event::{Created, GuestRef};
    use crate::journal::{NewLog, verify_events};
    use redb::{Database, ReadableDatabase};

    pub(super) fn writer(dir: &tempfile::TempDir) -> (Writer, Arc<Counters>) {
        let path = dir.path().join("j.redb");
        let db = Database::create(&path).expect("create");
        let counters = Arc::new(Counters::default());
        (
            Writer::new(
                Arc::new(RedbFile::new(&path, db)),
                JournalConfig::default(),
                counters.clone(),
                Arc::default(),
                Arc::default(),
            ),
            counters,
        )
    }

    pub(super) fn new_log() -> NewLog {
        NewLog {
            id: LogId::now_v7(),
            tenant: "t".into(),
            name: None,
            at: 1,
            created: Created {
                guest: GuestRef {
                    name: "g".into(),
                    digest: "sha256:00".into(),
                },
                config: serde_json::json!({}),
                seed: 0,
                parent: None,
                compacted_from: None,
                summary: None,
                tools: vec![],
            },
            session_limit: None,
        }
    }

    pub(super) fn cancel(log: LogId, expected_seq: u64, key: &str) -> Commit {
        Commit::append(
            log,
            expected_seq,
            vec![(2, EventBody::Cancelled { key: key.into() })],
        )
    }

    pub(super) fn request(
        commit: Commit,
    ) -> (Request, oneshot::Receiver<Result<Committed, JournalError>>) {
        let (reply, rx) = oneshot::channel();
        (Request { commit, reply }, rx)
    }

    #[test]
    fn one_batch_answers_each_request_on_its_own() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let (mut w, counters) = writer(&dir);
        let nl = new_log();
        let id = nl.id;
        let again = nl.clone();
        let ghost = LogId::now_v7();
        let (reqs, mut answers): (Vec<_>, Vec<_>) = [
            Commit::new_log(nl),
            cancel(id, 1, "a"),
            cancel(id, 1, "stale"),
            cancel(id, 2, "b"),
            Commit::new_log(again),
            cancel(ghost, 0, "x"),
        ]
        .into_iter()
        .map(request)
        .unzip();
        w.run_batch(reqs);

        let mut answer = |i: usize| answers[i].try_recv().expect("answered");
        assert_eq!(answer(0).expect("created").events[0].1.event.seq, 0);
        assert_eq!(answer(1).expect("appended").events[0].1.event.seq, 1);
        assert!(matches!(
            answer(2),
            Err(JournalError::Conflict {
                expected: 1,
                actual: 2,
                ..
            })
        ));
        assert_eq!(answer(3).expect("appended").events[0].1.event.seq, 2);
        assert!(matches!(answer(4), Err(JournalError::LogExists(l)) if l == id));
        assert!(matches!(answer(5), Err(JournalError::UnknownLog(l)) if l == ghost));
        assert_eq!(
            counters.snapshot(),
            WriterStats {
                commits: 1,
                events: 3,
                requests: 6
            }
        );

        // What is stored chains, and the head cache agrees with it.
        let txn = w.file.get().expect("the file").begin_read().expect("read");
        let table = txn.open_table(EVENTS).expect("events");
        let mut stored = Vec::new();
        for entry in table
            .range((id.as_u128(), 0)..=(id.as_u128(), u64::MAX))
            .expect("range")
        {
            let (k, v) = entry.expect("row");
            let (at, hash, body) = tables::split_event(v.value()).expect("value");
            stored.push(StoredEvent {
                event: Event {
                    seq: k.value().1,
                    at,
                    body: crate::journal::decode_body(body).expect("body"),
                },
                hash,
            });
        }
        assert_eq!(stored.len(), 3);
        assert!(verify_events(&stored).is_ok());
        let head = w.heads[&id.as_u128()];
        assert_eq!(head.next_seq, 3);
        assert_eq!(head.last_hash, stored[2].hash);
    }

    #[test]
    fn the_head_is_read_from_the_table_when_not_cached() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let (mut w, _) = writer(&dir);
        let nl = new_log();
        let id = nl.id;
        let results = w
            .write_batch(vec![Commit::new_log(nl), cancel(id, 1, "a")])
            .expect("batch");
        assert!(results.iter().all(Result::is_ok));
        w.heads.clear();
        let results = w
            .write_batch(vec![cancel(id, 1, "stale"), cancel(id, 2, "b")])
            .expect("batch");
        assert!(matches!(
            results[0],
            Err(JournalError::Conflict { actual: 2, .. })
        ));
        let (_, last) = &results[1].as_ref().expect("appended").events[0];
        assert_eq!(last.event.seq, 2);
    }
}
