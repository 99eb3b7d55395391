//! Per-tenant projections: each tenant's logs in id order (`tenant_logs`) and
//! its counts of logs and of sessions (`tenant_counts`), so that a page of a
//! tenant's list costs the page, and a session limit is checked in O(1) in
//! the very transaction that creates the session.
//!
//! Invariants:
//! - `tenant_logs` holds exactly one `(tenant, id)` per row of `logs`;
//!   `tenant_counts[t]` is `(logs, sessions)`: the number of those rows of
//!   tenant `t`, and how many of them are sessions of their own.
//! - Every log is a session of its own but a compaction's continuation: a log
//!   whose `created` has no parent, names a log of the same tenant in
//!   `compacted_from`, and that log's event at that seq is the `continued`
//!   that names it back. The back-pointer decides: an imported log gets a new
//!   id that no `continued` names, so an import is always a session, whatever
//!   its `created` says.
//! - The writer (and an import) updates both tables in the transaction that
//!   writes the log. A file written before they existed, or since written by
//!   a build that did not keep them (the index then has fewer rows than
//!   `logs`), has them rebuilt at open from `logs` and `events` (O(logs),
//!   said in the trace).

use std::collections::BTreeMap;

use redb::{ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

use super::decode_body;
use super::event::{Created, EventBody};
use super::tables::{self, EVENTS, LOGS, TENANT_COUNTS, TENANT_LOGS};
use super::writer::{WriteTables, decode_meta};
use super::{JournalError, LogId};

/// The log `created` says it was compacted from, and the seq of that log's
/// `continued`: `None` for a log that does not claim to be a continuation.
pub(crate) fn compacted_from(created: &Created) -> Option<(u128, u64)> {
    let from = created
        .compacted_from
        .as_ref()
        .filter(|_| created.parent.is_none())?;
    let log = LogId::parse_str(&from.log).ok()?;
    Some((log.as_u128(), from.seq))
}

/// Whether `body` is a `continued` into `log`.
pub(crate) fn continues_into(body: &EventBody, log: LogId) -> bool {
    matches!(body, EventBody::Continued { log: next } if LogId::parse_str(next).ok() == Some(log))
}

/// Whether the stored event at `(from, seq)` is a `continued` into `log`.
pub(crate) fn stored_continued(
    events: &impl ReadableTable<(u128, u64), &'static [u8]>,
    from: u128,
    seq: u64,
    log: LogId,
) -> Result<bool, JournalError> {
    let Some(value) = events.get((from, seq))? else {
        return Ok(false);
    };
    let (_, _, body) = tables::split_event(value.value())?;
    Ok(continues_into(&decode_body(body)?, log))
}

/// A tenant's `(logs, sessions)`.
pub(crate) fn counts(
    table: &impl ReadableTable<&'static str, (u64, u64)>,
    tenant: &str,
) -> Result<(u64, u64), JournalError> {
    Ok(table.get(tenant)?.map(|v| v.value()).unwrap_or((0, 0)))
}

/// Records a new log of `tenant` in the index and the counts.
pub(crate) fn add(
    t: &mut WriteTables<'_>,
    tenant: &str,
    log: u128,
    session: bool,
) -> Result<(), JournalError> {
    t.tenant_logs.insert((tenant, log), ())?;
    let (logs, sessions) = counts(&t.tenant_counts, tenant)?;
    t.tenant_counts
        .insert(tenant, (logs + 1, sessions + u64::from(session)))?;
    Ok(())
}

/// What a rebuild found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Rebuilt {
    pub(crate) logs: u64,
    pub(crate) tenants: usize,
}

/// Rebuilds `tenant_logs` and `tenant_counts` from `logs` and `events` when
/// they cannot be in step: logs exist but no counts do, or the index has not
/// one row per log (both lengths are O(1) in redb). `None` when there was
/// nothing to do. One pass over every log, reading one event of each log
/// that is not a fork.
pub(crate) fn rebuild_if_missing(txn: &WriteTransaction) -> Result<Option<Rebuilt>, JournalError> {
    let logs = txn.open_table(LOGS)?;
    let mut index = txn.open_table(TENANT_LOGS)?;
    let mut counts = txn.open_table(TENANT_COUNTS)?;
    if logs.is_empty()? || (index.len()? == logs.len()? && !counts.is_empty()?) {
        return Ok(None);
    }
    let events = txn.open_table(EVENTS)?;
    clear(&mut index)?;
    clear(&mut counts)?;
    let mut by_tenant: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut rebuilt = Rebuilt::default();
    for entry in logs.iter()? {
        let (k, v) = entry?;
        let id = k.value();
        let meta = decode_meta(v.value())?;
        let session = !is_continuation(&logs, &events, id, &meta.tenant, meta.parent.is_some())?;
        index.insert((meta.tenant.as_str(), id), ())?;
        let count = by_tenant.entry(meta.tenant).or_default();
        count.0 += 1;
        count.1 += u64::from(session);
        rebuilt.logs += 1;
    }
    for (tenant, count) in &by_tenant {
        counts.insert(tenant.as_str(), *count)?;
    }
    rebuilt.tenants = by_tenant.len();
    Ok(Some(rebuilt))
}

/// Whether a stored log is a compaction's continuation (module invariants).
fn is_continuation(
    logs: &impl ReadableTable<u128, &'static [u8]>,
    events: &impl ReadableTable<(u128, u64), &'static [u8]>,
    id: u128,
    tenant: &str,
    forked: bool,
) -> Result<bool, JournalError> {
    if forked {
        return Ok(false);
    }
    let Some(first) = events.get((id, 0))? else {
        return Ok(false);
    };
    let (_, _, body) = tables::split_event(first.value())?;
    let EventBody::Created(created) = decode_body(body)? else {
        return Ok(false);
    };
    let Some((from, seq)) = compacted_from(&created) else {
        return Ok(false);
    };
    let same_tenant = match logs.get(from)? {
        Some(v) => decode_meta(v.value())?.tenant == tenant,
        None => false,
    };
    Ok(same_tenant && stored_continued(events, from, seq, LogId::from_u128(id))?)
}

fn clear<K: redb::Key + 'static, V: redb::Value + 'static>(
    table: &mut Table<'_, K, V>,
) -> Result<(), JournalError> {
    table.retain(|_, _| false)?;
    Ok(())
}
