//! [`MemoryJournal`]: the whole [`Journal`] over plain maps in memory.
//!
//! It is written from the trait's documented contract, not from the redb
//! code: it is the model that [`RedbJournal`](super::RedbJournal) is checked
//! against (`tests/all/journal_contract.rs` and the model-based property
//! test), and a journal for tests that need no file. It shares with redb only
//! what defines the format itself: the hash chain ([`event_hash`],
//! [`verify_events`]), canonical bodies, [`LogStatus::of`] and the rule that
//! says which new log is a compaction's continuation.
//!
//! Invariants:
//! - All state is behind one `Mutex`; a commit is validated in full against
//!   the state as it is, then applied, before the lock is released. So
//!   commits are atomic and applied in submission order, and a refused commit
//!   changes nothing.
//! - A [`CommitTicket`] is answered before `commit` returns. Nothing is
//!   durable: dropping the journal loses everything.
//! - Each log stores only its own events (a fork's start after its fork
//!   point); reads walk the ancestry. The open effects and flags of a log are
//!   folded from its events as they are appended, by the rules documented on
//!   [`LogInfo`] and [`LogStatus`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::chain::{GENESIS_HASH, Verified, digest_of, event_hash, verify_events};
use super::commit::{Commit, CommitTicket, Committed, NewLog};
use super::copy::CopiedLog;
use super::event::{BlobRef, Event, EventBody, GuestRef, LogPos, RequestedEffect, StoredEvent};
use super::info::{LogInfo, LogStatus, OpenAction, OpenEffect, OpenRecord};
use super::tenants::{compacted_from, continues_into};
use super::{
    Heads, IndexedKey, IndexedKeys, Journal, JournalError, Lease, LocalLeases, LogId, LogPage,
    TenantCount, Timer, WriterStats,
};

/// A journal in memory: every call is answered at once, nothing survives it.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    state: Mutex<State>,
    leases: LocalLeases,
    heads: Heads,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(MemoryJournal::default())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change is validated before it is applied, so a panic cannot
        // leave a half-applied commit behind: the state is usable as it is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct State {
    logs: BTreeMap<LogId, MemLog>,
    names: BTreeMap<(String, String), LogId>,
    guests: HashMap<String, Vec<u8>>,
    blobs: HashMap<(String, String), Vec<u8>>,
    guest_names: BTreeMap<(String, String), String>,
    /// `(log, seq, digest) -> record`.
    snapshots: BTreeMap<(LogId, u64, String), Vec<u8>>,
    /// Each log's key index: its mark and `key -> decided`.
    key_index: HashMap<LogId, (u64, HashMap<String, bool>)>,
    stats: WriterStats,
}

#[derive(Clone, Debug)]
struct MemLog {
    tenant: String,
    name: Option<String>,
    guest: GuestRef,
    created_at: u64,
    finished: bool,
    failed: bool,
    /// `stopped` and no `resumed` since (a fork starts unstopped).
    stopped: bool,
    parent: Option<LogPos>,
    /// Whether it counts against its tenant's session limit.
    session: bool,
    /// Its own events: from seq 0, or from `parent.seq + 1` for a fork.
    events: Vec<StoredEvent>,
    /// Open effects by key.
    open: BTreeMap<String, OpenRecord>,
}

impl MemLog {
    fn next_seq(&self) -> u64 {
        self.events.last().map_or(0, |e| e.event.seq + 1)
    }

    fn last_hash(&self) -> [u8; 32] {
        self.events.last().map_or(GENESIS_HASH, |e| e.hash)
    }

    /// Folds one event into the open effects (by the rules of
    /// [`OpenAction::of`]) and flags; `leased`: whether its append carried a lease.
    fn project(&mut self, body: &EventBody, leased: bool) {
        if let Some(key) = body.key() {
            match OpenAction::of(body, self.open.get(key).cloned(), leased) {
                OpenAction::Keep => {}
                OpenAction::Put(record) => {
                    self.open.insert(key.to_owned(), record);
                }
                OpenAction::Remove => {
                    self.open.remove(key);
                }
            }
        }
        match body {
            EventBody::Created(c) => {
                self.guest = c.guest.clone();
                self.stopped = false;
            }
            EventBody::Stopped { .. } => self.stopped = true,
            EventBody::Resumed { .. } => self.stopped = false,
            EventBody::Finished { .. } | EventBody::Continued { .. } => self.finished = true,
            EventBody::GuestFailed { .. } => self.failed = true,
            EventBody::Unparked { .. } => self.failed = false,
            EventBody::GuestChanged { to, .. } => {
                self.failed = false;
                self.guest = to.clone();
            }
            _ => {}
        }
    }

    fn push(&mut self, event: StoredEvent, leased: bool) {
        self.project(&event.event.body, leased);
        self.events.push(event);
    }
}

/// A new log, validated, waiting for the rest of its commit.
struct Planned {
    id: LogId,
    log: MemLog,
    created: StoredEvent,
}

impl State {
    /// The events of `log` up to `end` (inclusive), root first, through its
    /// ancestry; `None` when there is no such log.
    fn events_through(&self, log: LogId, end: u64) -> Option<Vec<&StoredEvent>> {
        let mut segments = Vec::new();
        let (mut id, mut end) = (log, end);
        loop {
            let l = self.logs.get(&id)?;
            segments.push(l.events.iter().filter(move |e| e.event.seq <= end));
            match &l.parent {
                Some(p) => {
                    end = end.min(p.seq);
                    id = LogId::parse_str(&p.log).ok()?;
                }
                None => break,
            }
        }
        Some(segments.into_iter().rev().flatten().collect())
    }

    fn info(&self, id: LogId, log: &MemLog) -> LogInfo {
        let open: Vec<OpenEffect> = log
            .open
            .iter()
            .map(|(key, record)| OpenEffect {
                key: key.clone(),
                effect: record.effect.clone(),
                awaiting_approval: record.awaiting_approval,
                unstarted: record.unstarted,
            })
            .collect();
        LogInfo {
            id,
            tenant: log.tenant.clone(),
            name: log.name.clone(),
            guest: log.guest.clone(),
            created_at: log.created_at,
            next_seq: log.next_seq(),
            last_hash: log.last_hash(),
            status: LogStatus::of(log.finished, log.failed, log.stopped, &open),
            stopped: log.stopped,
            open,
        }
    }

    fn sessions(&self, tenant: &str) -> u64 {
        self.logs
            .values()
            .filter(|l| l.tenant == tenant && l.session)
            .count() as u64
    }

    /// Validates a new log against the state before its commit and the new
    /// logs planned before it in the same commit.
    fn plan_new_log(
        &self,
        commit: &Commit,
        nl: &NewLog,
        planned: &[Planned],
    ) -> Result<Planned, JournalError> {
        if self.logs.contains_key(&nl.id) || planned.iter().any(|p| p.id == nl.id) {
            return Err(JournalError::LogExists(nl.id));
        }
        if let Some(name) = &nl.name {
            let key = (nl.tenant.clone(), name.clone());
            let taken_here = planned
                .iter()
                .any(|p| p.log.tenant == nl.tenant && p.log.name.as_ref() == Some(name));
            if self.names.contains_key(&key) || taken_here {
                return Err(JournalError::NameTaken {
                    tenant: nl.tenant.clone(),
                    name: name.clone(),
                });
            }
        }
        let mut log = MemLog {
            tenant: nl.tenant.clone(),
            name: nl.name.clone(),
            guest: nl.created.guest.clone(),
            created_at: nl.at,
            finished: false,
            failed: false,
            stopped: false,
            parent: None,
            session: true,
            events: Vec::new(),
            open: BTreeMap::new(),
        };
        let (seq, prev) = match &nl.created.parent {
            None => (0, GENESIS_HASH),
            Some(parent) => (parent.seq + 1, self.fork_point(nl, parent, &mut log)?),
        };
        log.session = !self.continues(commit, nl);
        if let Some(limit) = nl.session_limit.filter(|_| log.session) {
            let planned = planned
                .iter()
                .filter(|p| p.log.session && p.log.tenant == nl.tenant)
                .count() as u64;
            if self.sessions(&nl.tenant) + planned >= limit {
                return Err(JournalError::LimitReached {
                    tenant: nl.tenant.clone(),
                    limit,
                });
            }
        }
        let body = EventBody::Created(nl.created.clone());
        let hash = event_hash(&prev, seq, nl.at, &body.to_canonical());
        let created = StoredEvent {
            event: Event {
                seq,
                at: nl.at,
                body,
            },
            hash,
        };
        Ok(Planned {
            id: nl.id,
            log,
            created,
        })
    }

    /// Checks a fork's parent (an existing log of the same tenant, with an
    /// event at `parent.seq`) and answers the hash its `created` chains from.
    /// A fork at the parent's head starts in the parent's state (flags and
    /// open effects; failed only on the same guest); an earlier fork starts
    /// with none.
    fn fork_point(
        &self,
        nl: &NewLog,
        parent: &LogPos,
        log: &mut MemLog,
    ) -> Result<[u8; 32], JournalError> {
        let Ok(pid) = LogId::parse_str(&parent.log) else {
            return Err(JournalError::BadParent {
                parent: parent.log.clone(),
            });
        };
        let Some(p) = self.logs.get(&pid).filter(|p| p.tenant == nl.tenant) else {
            return Err(JournalError::UnknownLog(pid));
        };
        if parent.seq >= p.next_seq() {
            return Err(JournalError::NoSeq {
                log: pid,
                seq: parent.seq,
                next: p.next_seq(),
            });
        }
        let prev = self
            .events_through(pid, parent.seq)
            .and_then(|events| events.last().map(|e| e.hash))
            .ok_or_else(|| JournalError::Corrupt(format!("log {pid} has no seq {}", parent.seq)))?;
        log.parent = Some(parent.clone());
        if parent.seq + 1 == p.next_seq() {
            log.finished = p.finished;
            log.failed = p.failed && p.guest == nl.created.guest;
            // The parent's holder may run an approved tool it has not
            // claimed yet: the fork must assume it may have run.
            log.open = p
                .open
                .iter()
                .map(|(key, record)| {
                    let record = OpenRecord {
                        unstarted: false,
                        ..record.clone()
                    };
                    (key.clone(), record)
                })
                .collect();
        }
        Ok(prev)
    }

    /// Whether `nl` is a compaction's continuation: its `created` names a
    /// log of its tenant in `compacted_from`, and that log's event at that
    /// seq (stored, or appended by this same commit) is a `continued` naming
    /// `nl` back.
    fn continues(&self, commit: &Commit, nl: &NewLog) -> bool {
        let Some((from, seq)) = compacted_from(&nl.created) else {
            return false;
        };
        let from = LogId::from_u128(from);
        let Some(old) = self.logs.get(&from).filter(|l| l.tenant == nl.tenant) else {
            return false;
        };
        let stored = old
            .events
            .iter()
            .find(|e| e.event.seq == seq)
            .is_some_and(|e| continues_into(&e.event.body, nl.id));
        let in_commit = commit.appends.iter().any(|a| {
            a.log == from
                && seq
                    .checked_sub(a.expected_seq)
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| a.events.get(i))
                    .is_some_and(|(_, body)| continues_into(body, nl.id))
        });
        stored || in_commit
    }

    /// Validates a whole commit and applies it, or changes nothing.
    fn apply(&mut self, commit: &Commit, leases: &LocalLeases) -> Result<Committed, JournalError> {
        let mut planned: Vec<Planned> = Vec::with_capacity(commit.new_logs.len());
        for nl in &commit.new_logs {
            let p = self.plan_new_log(commit, nl, &planned)?;
            planned.push(p);
        }
        // Heads as the appends before leave them: (next seq, last hash).
        let mut heads: HashMap<LogId, (u64, [u8; 32])> = HashMap::new();
        let mut appended: Vec<(LogId, StoredEvent, bool)> = Vec::new();
        for ap in &commit.appends {
            let head = match heads.get(&ap.log) {
                Some(h) => *h,
                None => match planned.iter().find(|p| p.id == ap.log) {
                    Some(p) => (p.created.event.seq + 1, p.created.hash),
                    None => match self.logs.get(&ap.log) {
                        Some(l) => (l.next_seq(), l.last_hash()),
                        None => return Err(JournalError::UnknownLog(ap.log)),
                    },
                },
            };
            if !ap.at_head && ap.expected_seq != head.0 {
                return Err(JournalError::Conflict {
                    log: ap.log,
                    expected: ap.expected_seq,
                    actual: head.0,
                });
            }
            leases.check(ap.log, ap.lease)?;
            let (mut seq, mut prev) = head;
            for (at, body) in &ap.events {
                if matches!(body, EventBody::Created(_)) {
                    return Err(JournalError::CreatedNotFirst { log: ap.log });
                }
                let hash = event_hash(&prev, seq, *at, &body.to_canonical());
                appended.push((
                    ap.log,
                    StoredEvent {
                        event: Event {
                            seq,
                            at: *at,
                            body: body.clone(),
                        },
                        hash,
                    },
                    ap.lease.is_some(),
                ));
                (seq, prev) = (seq + 1, hash);
            }
            heads.insert(ap.log, (seq, prev));
        }
        for c in &commit.claims {
            if !self.logs.contains_key(&c.log) && !planned.iter().any(|p| p.id == c.log) {
                return Err(JournalError::UnknownLog(c.log));
            }
            leases.check(c.log, Some(c.lease))?;
        }
        for n in &commit.names {
            let tenant = match planned.iter().find(|p| p.id == n.log) {
                Some(p) => Some(&p.log.tenant),
                None => self.logs.get(&n.log).map(|l| &l.tenant),
            };
            if tenant != Some(&n.tenant) {
                return Err(JournalError::UnknownLog(n.log));
            }
        }

        // Everything holds: apply, in the documented order.
        let mut written = Vec::with_capacity(commit.event_count());
        for p in planned {
            if let Some(name) = &p.log.name {
                self.names
                    .insert((p.log.tenant.clone(), name.clone()), p.id);
            }
            let mut log = p.log;
            written.push((p.id, p.created.clone()));
            log.push(p.created, true);
            self.logs.insert(p.id, log);
        }
        for (id, event, leased) in appended {
            let log = self
                .logs
                .get_mut(&id)
                .expect("every append was checked against an existing or new log");
            written.push((id, event.clone()));
            log.push(event, leased);
        }
        for c in &commit.claims {
            if let Some(record) = self
                .logs
                .get_mut(&c.log)
                .and_then(|l| l.open.get_mut(&c.key))
            {
                record.unstarted = false;
            }
        }
        for n in &commit.names {
            let key = (n.tenant.clone(), n.name.clone());
            if let Some(prev) = self.names.insert(key, n.log).filter(|p| *p != n.log)
                && let Some(old) = self.logs.get_mut(&prev)
                && old.name.as_deref() == Some(n.name.as_str())
            {
                old.name = None;
            }
            if let Some(log) = self.logs.get_mut(&n.log) {
                log.name = Some(n.name.clone());
            }
        }
        Ok(Committed { events: written })
    }
}

#[async_trait::async_trait]
impl Journal for MemoryJournal {
    fn commit(&self, commit: Commit) -> CommitTicket {
        let (reply, ticket) = CommitTicket::new();
        let answer = {
            let mut state = self.state();
            let answer = state.apply(&commit, &self.leases);
            state.stats.commits += 1;
            state.stats.requests += 1;
            if let Ok(c) = &answer {
                state.stats.events += c.events.len() as u64;
            }
            answer
        };
        if let Ok(committed) = &answer {
            self.heads.committed(&committed.events);
        }
        // The ticket is alive in this frame, so the answer arrives.
        let _ = reply.send(answer);
        ticket
    }

    async fn read(
        &self,
        log: LogId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        let state = self.state();
        Ok(state
            .events_through(log, u64::MAX)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.event.seq >= from_seq)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn read_checked(
        &self,
        log: LogId,
        pos: &mut super::ChainPos,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        let page = self.read(log, pos.next_seq, limit).await?;
        super::chain::check_page(log, pos, page)
    }

    async fn info(&self, log: LogId) -> Result<Option<LogInfo>, JournalError> {
        let state = self.state();
        Ok(state.logs.get(&log).map(|l| state.info(log, l)))
    }

    async fn resolve(&self, tenant: &str, name: &str) -> Result<Option<LogId>, JournalError> {
        let key = (tenant.to_owned(), name.to_owned());
        Ok(self.state().names.get(&key).copied())
    }

    async fn list_page(
        &self,
        tenant: &str,
        after: Option<LogId>,
        limit: usize,
    ) -> Result<LogPage, JournalError> {
        let limit = limit.max(1);
        let state = self.state();
        let mut logs = state
            .logs
            .iter()
            .filter(|(id, l)| l.tenant == tenant && after.is_none_or(|a| **id > a));
        let mut page = LogPage::default();
        for (id, l) in logs.by_ref().take(limit) {
            page.logs.push(state.info(*id, l));
        }
        if logs.next().is_some() {
            page.next = page.logs.last().map(|i| i.id);
        }
        Ok(page)
    }

    async fn count(&self, tenant: &str) -> Result<TenantCount, JournalError> {
        let state = self.state();
        Ok(TenantCount {
            logs: state.logs.values().filter(|l| l.tenant == tenant).count() as u64,
            sessions: state.sessions(tenant),
        })
    }

    async fn open_logs(
        &self,
        after: Option<LogId>,
        limit: usize,
    ) -> Result<Vec<LogId>, JournalError> {
        let state = self.state();
        let from = match after {
            Some(a) => std::ops::Bound::Excluded(a),
            None => std::ops::Bound::Unbounded,
        };
        Ok(state
            .logs
            .range((from, std::ops::Bound::Unbounded))
            .filter(|(_, l)| !l.open.is_empty())
            .map(|(id, _)| *id)
            .take(limit.max(1))
            .collect())
    }

    async fn put_guest(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<GuestRef, JournalError> {
        let digest = digest_of(bytes);
        let mut state = self.state();
        state
            .guests
            .entry(digest.clone())
            .or_insert_with(|| bytes.to_vec());
        state
            .guest_names
            .insert((tenant.to_owned(), name.to_owned()), digest.clone());
        Ok(GuestRef {
            name: name.to_owned(),
            digest,
        })
    }

    async fn guest_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self.state().guests.get(digest).cloned())
    }

    async fn put_blob(&self, tenant: &str, bytes: &[u8]) -> Result<BlobRef, JournalError> {
        let digest = digest_of(bytes);
        self.state()
            .blobs
            .entry((tenant.to_owned(), digest.clone()))
            .or_insert_with(|| bytes.to_vec());
        Ok(BlobRef {
            digest,
            size: bytes.len() as u64,
        })
    }

    async fn blob(&self, tenant: &str, digest: &str) -> Result<Option<Vec<u8>>, JournalError> {
        let key = (tenant.to_owned(), digest.to_owned());
        Ok(self.state().blobs.get(&key).cloned())
    }

    async fn guest_by_name(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<GuestRef>, JournalError> {
        let key = (tenant.to_owned(), name.to_owned());
        Ok(self.state().guest_names.get(&key).map(|digest| GuestRef {
            name: name.to_owned(),
            digest: digest.clone(),
        }))
    }

    async fn guests(&self, tenant: &str) -> Result<Vec<GuestRef>, JournalError> {
        Ok(self
            .state()
            .guest_names
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((_, name), digest)| GuestRef {
                name: name.clone(),
                digest: digest.clone(),
            })
            .collect())
    }

    async fn count_logs(&self) -> Result<usize, JournalError> {
        Ok(self.state().logs.len())
    }

    async fn verify(&self, log: LogId) -> Result<Verified, JournalError> {
        let state = self.state();
        match state.events_through(log, u64::MAX) {
            Some(events) => Ok(verify_events(events)),
            None => Err(JournalError::UnknownLog(log)),
        }
    }

    async fn put_snapshot(
        &self,
        log: LogId,
        seq: u64,
        digest: &str,
        record: &[u8],
    ) -> Result<(), JournalError> {
        let mut state = self.state();
        state
            .snapshots
            .retain(|(l, s, d), _| !(*l == log && *s < seq && d == digest));
        state
            .snapshots
            .insert((log, seq, digest.to_owned()), record.to_vec());
        Ok(())
    }

    async fn indexed_keys(&self, log: LogId, keys: &[&str]) -> Result<IndexedKeys, JournalError> {
        let state = self.state();
        let Some((mark, index)) = state.key_index.get(&log) else {
            return Ok(IndexedKeys::default());
        };
        let found = keys
            .iter()
            .filter_map(|k| {
                index.get(*k).map(|decided| IndexedKey {
                    key: (*k).to_owned(),
                    decided: *decided,
                })
            })
            .collect();
        Ok(IndexedKeys { mark: *mark, found })
    }

    async fn index_keys(
        &self,
        log: LogId,
        mark: u64,
        keys: &[IndexedKey],
    ) -> Result<(), JournalError> {
        let mut state = self.state();
        let (old, index) = state.key_index.entry(log).or_default();
        for k in keys {
            *index.entry(k.key.clone()).or_default() |= k.decided;
        }
        *old = (*old).max(mark);
        Ok(())
    }

    async fn latest_snapshot(
        &self,
        log: LogId,
        digest: &str,
        before: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, JournalError> {
        let state = self.state();
        Ok(state
            .snapshots
            .iter()
            .filter(|((l, s, d), _)| *l == log && *s < before && d == digest)
            .max_by_key(|((_, s, _), _)| *s)
            .map(|((_, s, _), record)| (*s, record.clone())))
    }

    async fn snapshots(&self, log: LogId) -> Result<Vec<(u64, String, Vec<u8>)>, JournalError> {
        let state = self.state();
        Ok(state
            .snapshots
            .iter()
            .filter(|((l, _, _), _)| *l == log)
            .map(|((_, s, d), record)| (*s, d.clone(), record.clone()))
            .collect())
    }

    async fn parent(&self, log: LogId) -> Result<Option<LogPos>, JournalError> {
        match self.state().logs.get(&log) {
            Some(l) => Ok(l.parent.clone()),
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
        let (first, created) = super::import::checked(events)?;
        let mut log = MemLog {
            tenant: tenant.to_owned(),
            name: name.map(str::to_owned),
            guest: created.guest.clone(),
            created_at: first.event.at,
            finished: false,
            failed: false,
            stopped: false,
            // The whole history comes with it: an imported fork stands alone.
            parent: None,
            session: true,
            events: Vec::with_capacity(events.len()),
            open: BTreeMap::new(),
        };
        for e in events {
            log.push(e.clone(), true);
        }
        let mut state = self.state();
        if !state.guests.contains_key(&log.guest.digest) {
            return Err(JournalError::GuestNotStored {
                name: log.guest.name.clone(),
                digest: log.guest.digest.clone(),
            });
        }
        if let Some(name) = name
            && state
                .names
                .contains_key(&(tenant.to_owned(), name.to_owned()))
        {
            return Err(JournalError::NameTaken {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
            });
        }
        if let Some(limit) = session_limit
            && state.sessions(tenant) >= limit
        {
            return Err(JournalError::LimitReached {
                tenant: tenant.to_owned(),
                limit,
            });
        }
        let id = LogId::now_v7();
        if let Some(name) = name {
            state.names.insert((tenant.to_owned(), name.to_owned()), id);
        }
        state.logs.insert(id, log);
        Ok(id)
    }

    async fn copy_log(&self, copy: &CopiedLog) -> Result<(), JournalError> {
        let prepared = super::copy::prepare(self, copy).await?;
        let meta = prepared.meta;
        let log = MemLog {
            tenant: meta.tenant,
            name: meta.name,
            guest: meta.guest,
            created_at: meta.created_at,
            finished: meta.finished,
            failed: meta.failed,
            stopped: meta.stopped,
            parent: meta.parent,
            session: prepared.session,
            events: copy.events.clone(),
            open: copy
                .open
                .iter()
                .map(|o| {
                    let record = OpenRecord {
                        effect: o.effect.clone(),
                        awaiting_approval: o.awaiting_approval,
                        unstarted: o.unstarted,
                    };
                    (o.key.clone(), record)
                })
                .collect(),
        };
        let mut state = self.state();
        if state.logs.contains_key(&copy.id) {
            return Err(JournalError::LogExists(copy.id));
        }
        if !state.guests.contains_key(&log.guest.digest) {
            return Err(JournalError::GuestNotStored {
                name: log.guest.name.clone(),
                digest: log.guest.digest.clone(),
            });
        }
        if let Some(name) = &copy.name {
            let key = (copy.tenant.clone(), name.clone());
            if state.names.contains_key(&key) {
                return Err(JournalError::NameTaken {
                    tenant: copy.tenant.clone(),
                    name: name.clone(),
                });
            }
            state.names.insert(key, copy.id);
        }
        state.logs.insert(copy.id, log);
        Ok(())
    }

    async fn acquire_lease(&self, log: LogId) -> Result<Lease, JournalError> {
        if !self.state().logs.contains_key(&log) {
            return Err(JournalError::UnknownLog(log));
        }
        Ok(self.leases.acquire(log))
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), JournalError> {
        self.leases.release(lease);
        Ok(())
    }

    async fn timers(&self, due_by: u64, limit: usize) -> Result<Vec<Timer>, JournalError> {
        let state = self.state();
        let mut timers: Vec<Timer> = state
            .logs
            .iter()
            .filter(|(_, l)| !l.stopped)
            .flat_map(|(id, l)| {
                l.open
                    .iter()
                    .filter_map(|(key, record)| match &record.effect {
                        RequestedEffect::Sleep { until } if *until <= due_by => Some(Timer {
                            log: *id,
                            key: key.clone(),
                            until: *until,
                        }),
                        _ => None,
                    })
            })
            .collect();
        timers.sort_by(|a, b| (a.until, a.log, &a.key).cmp(&(b.until, b.log, &b.key)));
        timers.truncate(limit.max(1));
        Ok(timers)
    }

    fn watch_head(&self, log: LogId) -> tokio::sync::watch::Receiver<u64> {
        self.heads.subscribe(log)
    }

    async fn orphans(&self, limit: usize) -> Result<Vec<LogId>, JournalError> {
        let running: Vec<LogId> = self
            .state()
            .logs
            .iter()
            .filter(|(_, l)| {
                !l.stopped
                    && l.open.values().any(|record| {
                        !record.awaiting_approval
                            && !matches!(record.effect, RequestedEffect::Sleep { .. })
                    })
            })
            .map(|(id, _)| *id)
            .collect();
        Ok(running
            .into_iter()
            .filter(|id| !self.leases.is_held(*id))
            .take(limit.max(1))
            .collect())
    }

    async fn wait_events(&self, log: LogId, from_seq: u64) -> Result<u64, JournalError> {
        let stored = async { Ok(self.state().logs.get(&log).map_or(0, MemLog::next_seq)) };
        self.heads.wait(log, from_seq, stored).await
    }

    fn stats(&self) -> WriterStats {
        self.state().stats
    }
}
