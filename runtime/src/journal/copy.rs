//! Copying a log from another journal under its own id: what `logbook
//! migrate` moves a data directory to PostgreSQL with.
//!
//! Unlike an import, a copy keeps the log's id, its fork point and only its
//! *own* events (a fork's parent is copied first and keeps the prefix), so
//! forks, `continued` and compactions still name the right logs.
//!
//! Invariants (every backend, see [`Journal::copy_log`](super::Journal::copy_log)):
//! - nothing is written unless the events chain: from the genesis hash for a
//!   log of its own, or from the hash of the parent's event at the fork point,
//!   which must already be stored here, in the same tenant;
//! - events keep their seqs, times, hashes and canonical bodies byte for byte;
//! - the current guest is folded from the events; the open effects and the
//!   finished / failed flags are taken as the source holds them, since a fork
//!   at its parent's head took over the parent's state of then, which its own
//!   events cannot tell;
//! - whether it is a session of its own (for the tenant's counts) is decided
//!   by the same rule as for a created log, against what is stored here;
//!   session limits are not checked: it is a copy of what was admitted.

use super::event::{Created, EventBody, LogPos, StoredEvent};
use super::info::{LogInfo, LogMeta, LogStatus, MetaChange, OpenEffect};
use super::tenants::{compacted_from, continues_into};
use super::{ChainCheck, ChainPos, Journal, JournalError, Kind, LogId};

/// A log from another journal, to be stored under its own id.
#[derive(Clone, Debug, PartialEq)]
pub struct CopiedLog {
    /// Its id, kept.
    pub id: LogId,
    /// The tenant that owns it.
    pub tenant: String,
    /// The name bound to it, if a name points at it.
    pub name: Option<String>,
    /// Its own events with their stored hashes: from seq 0, or for a fork
    /// from the seq after its fork point. The first is its `created`.
    pub events: Vec<StoredEvent>,
    /// Its open effects, as the source holds them.
    pub open: Vec<OpenEffect>,
    /// Whether the guest finished (or the log continued into another).
    pub finished: bool,
    /// Whether the guest failed and the session is parked.
    pub failed: bool,
    /// Whether the session is stopped (`stopped`, no `resumed` since).
    pub stopped: bool,
}

impl CopiedLog {
    /// A copy of the log `info` describes, with its own events. The flags
    /// are read from its status (a log both finished and failed shows as
    /// finished, and is copied as finished only: the same status).
    pub fn new(info: &LogInfo, events: Vec<StoredEvent>) -> Self {
        CopiedLog {
            id: info.id,
            tenant: info.tenant.clone(),
            name: info.name.clone(),
            events,
            open: info.open.clone(),
            finished: info.status == LogStatus::Finished,
            failed: info.status == LogStatus::Failed,
            stopped: info.stopped,
        }
    }

    /// Its `created`, the first of its events.
    pub fn created(&self) -> Result<&Created, JournalError> {
        match self.events.first().map(|e| &e.event.body) {
            Some(EventBody::Created(c)) => Ok(c),
            Some(_) => Err(bad(self, None, "the first event is not `created`".into())),
            None => Err(bad(self, None, "no events".into())),
        }
    }

    /// For a fork, its parent and fork point.
    pub fn parent(&self) -> Option<&LogPos> {
        self.created().ok().and_then(|c| c.parent.as_ref())
    }
}

/// What a copy writes besides its events, once [`prepare`] has checked it.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// Its metadata: tenant, name, current guest, flags, parent.
    pub(crate) meta: LogMeta,
    /// Whether it counts as a session of its own.
    pub(crate) session: bool,
    /// The seq its next event would get.
    pub(crate) next_seq: u64,
    /// The hash of its last event.
    pub(crate) last_hash: [u8; 32],
}

/// Checks a copy against what `journal` stores (its parent, the log it
/// continues) and computes its metadata, writing nothing. The stored events
/// it reads never change once written, so the backend may write after this
/// in a transaction of its own; only the id and the name are checked there.
pub(crate) async fn prepare<J: Journal + ?Sized>(
    journal: &J,
    copy: &CopiedLog,
) -> Result<Prepared, JournalError> {
    let created = copy.created()?;
    let first = &copy.events[0];
    let start = match &created.parent {
        None => ChainPos::START,
        Some(parent) => fork_point(journal, copy, parent).await?,
    };
    if first.event.seq != start.next_seq {
        return Err(bad(
            copy,
            None,
            format!(
                "its `created` is seq {}, not {}",
                first.event.seq, start.next_seq
            ),
        ));
    }
    let mut check = ChainCheck::resume(start);
    let mut meta = LogMeta {
        tenant: copy.tenant.clone(),
        name: copy.name.clone(),
        guest: created.guest.clone(),
        created_at: first.event.at,
        finished: false,
        failed: false,
        stopped: false,
        parent: created.parent.clone(),
    };
    for e in &copy.events {
        let body = &e.event.body;
        check.check(
            e.event.seq,
            e.event.at,
            &body.to_canonical(),
            Ok(Kind::of(body)),
            &e.hash,
        );
        if MetaChange::applies(body) {
            MetaChange::of(body, &mut meta);
        }
    }
    if let Some((seq, why)) = check.finish().first_bad {
        return Err(bad(copy, Some(seq), why));
    }
    meta.finished = copy.finished;
    meta.failed = copy.failed;
    meta.stopped = copy.stopped;
    let last = copy.events.last().unwrap_or(first);
    Ok(Prepared {
        session: !continuation(journal, copy, created).await?,
        meta,
        next_seq: last.event.seq.saturating_add(1),
        last_hash: last.hash,
    })
}

/// Where a fork's own events chain from: right after its parent's event at
/// the fork point, which must be stored here, in the fork's tenant.
async fn fork_point<J: Journal + ?Sized>(
    journal: &J,
    copy: &CopiedLog,
    parent: &LogPos,
) -> Result<ChainPos, JournalError> {
    let Ok(pid) = LogId::parse_str(&parent.log) else {
        return Err(bad(
            copy,
            None,
            format!("fork parent {:?} is not a log id", parent.log),
        ));
    };
    let here = journal.info(pid).await?;
    if here.is_none_or(|p| p.tenant != copy.tenant) {
        return Err(bad(
            copy,
            None,
            format!("its parent {pid} is not stored here (copy parents first)"),
        ));
    }
    match journal.read(pid, parent.seq, 1).await?.first() {
        Some(e) if e.event.seq == parent.seq => Ok(ChainPos::after(e)),
        _ => Err(bad(
            copy,
            None,
            format!("its parent {pid} has no seq {} here", parent.seq),
        )),
    }
}

/// Whether the copy is a compaction's continuation: the log it says it was
/// compacted from is stored here, in its tenant, and that log's event at
/// that seq is the `continued` naming it (see [`super::tenants`]).
async fn continuation<J: Journal + ?Sized>(
    journal: &J,
    copy: &CopiedLog,
    created: &Created,
) -> Result<bool, JournalError> {
    let Some((from, seq)) = compacted_from(created) else {
        return Ok(false);
    };
    let from = LogId::from_u128(from);
    if journal
        .info(from)
        .await?
        .is_none_or(|l| l.tenant != copy.tenant)
    {
        return Ok(false);
    }
    Ok(journal
        .read(from, seq, 1)
        .await?
        .first()
        .is_some_and(|e| e.event.seq == seq && continues_into(&e.event.body, copy.id)))
}

/// A copy that does not hold as a log.
fn bad(copy: &CopiedLog, seq: Option<u64>, why: String) -> JournalError {
    JournalError::BadLog {
        copy: Some(copy.id),
        seq,
        why,
    }
}
