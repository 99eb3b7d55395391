//! Reads of a PostgreSQL journal: events through a log's ancestry, checked
//! or not, and the projections of logs.
//!
//! Invariants: each answer is one statement, so it sees one snapshot of the
//! database (a log's head and its open effects never come from two commits).
//! A fork stores only its own events; its reads walk its ancestry in SQL.

use tokio_postgres::{Client, Row, Statement};

use super::{back, bits, hash32};
use crate::journal::chain::{ChainCheck, ChainPos, Kind};
use crate::journal::event::{Event, GuestRef, RequestedEffect, StoredEvent};
use crate::journal::info::{LogInfo, LogStatus, OpenEffect};
use crate::journal::{JournalError, LogId, decode_body};

/// More forks of forks than this and a log's ancestry is taken as corrupt
/// (it could only be a cycle: each fork is created after its parent).
pub(super) const MAX_ANCESTRY: i64 = 10_000;

/// Up to `$3` events of log `$1` from seq `$2`, through its ancestry: each
/// ancestor gives the seqs up to the fork point below it, the log its own
/// rows. Each segment is read in index order up to the limit.
pub(super) const ANCESTRY_EVENTS: &str = "\
WITH RECURSIVE anc (id, lo, hi, parent_log, parent_seq, depth) AS (
    SELECT id, COALESCE(parent_seq + 1, 0), 9223372036854775807::int8, parent_log, parent_seq, 0
      FROM logs WHERE id = $1
  UNION ALL
    SELECT l.id, COALESCE(l.parent_seq + 1, 0), LEAST(a.hi, a.parent_seq), l.parent_log,
           l.parent_seq, a.depth + 1
      FROM logs l JOIN anc a ON l.id = a.parent_log
     WHERE a.depth < 10000
)
SELECT e.seq, e.at, e.hash, e.body, (SELECT max(depth) FROM anc) AS depth
  FROM anc a CROSS JOIN LATERAL (
    SELECT seq, at, hash, body FROM events
     WHERE log = a.id AND seq >= GREATEST(a.lo, $2) AND seq <= a.hi
     ORDER BY seq LIMIT $3) e
 ORDER BY e.seq LIMIT $3";

/// The columns of a log's projection, for [`info_of`]: `l` is the log's row.
pub(super) const INFO_COLUMNS: &str = "\
l.id, l.tenant, l.name, l.guest_name, l.guest_digest, l.created_at, l.next_seq, l.last_hash,
l.finished, l.failed,
ARRAY(SELECT key FROM open o WHERE o.log = l.id ORDER BY key) AS open_keys,
ARRAY(SELECT effect FROM open o WHERE o.log = l.id ORDER BY key) AS open_effects,
ARRAY(SELECT awaiting_approval FROM open o WHERE o.log = l.id ORDER BY key) AS open_awaiting";

/// One stored event, its body as stored.
#[derive(Debug)]
pub(super) struct RawEvent {
    pub(super) seq: u64,
    pub(super) at: u64,
    pub(super) hash: [u8; 32],
    pub(super) body: Vec<u8>,
}

/// Up to `limit` stored events of `log` from `from`, through its ancestry.
pub(super) async fn ancestry_rows(
    c: &Client,
    st: &Statement,
    log: LogId,
    from: u64,
    limit: usize,
) -> Result<Vec<RawEvent>, JournalError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = c.query(st, &[&log, &bits(from), &limit]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let depth: Option<i32> = row.try_get(4)?;
        if depth.is_some_and(|d| i64::from(d) >= MAX_ANCESTRY) {
            return Err(JournalError::Corrupt(format!(
                "log {log} has more than {MAX_ANCESTRY} ancestors"
            )));
        }
        out.push(RawEvent {
            seq: back(row.try_get(0)?),
            at: back(row.try_get(1)?),
            hash: hash32(row.try_get(2)?)?,
            body: row.try_get(3)?,
        });
    }
    Ok(out)
}

/// Decodes stored events.
pub(super) fn decode(rows: Vec<RawEvent>) -> Result<Vec<StoredEvent>, JournalError> {
    rows.into_iter()
        .map(|r| {
            Ok(StoredEvent {
                event: Event {
                    seq: r.seq,
                    at: r.at,
                    body: decode_body(&r.body)?,
                },
                hash: r.hash,
            })
        })
        .collect()
}

/// Checks stored events against their predecessors from `pos`, on their
/// stored bytes (what was hashed): the events before the first that does
/// not hold, or the break when the first one does not.
pub(super) fn checked(
    log: LogId,
    pos: &mut ChainPos,
    rows: Vec<RawEvent>,
) -> Result<Vec<StoredEvent>, JournalError> {
    let mut check = ChainCheck::resume(*pos);
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let decoded = decode_body(&r.body);
        let kind = match &decoded {
            Ok(b) => Ok(Kind::of(b)),
            Err(e) => Err(format!("body does not decode: {e}")),
        };
        check.check(r.seq, r.at, &r.body, kind, &r.hash);
        let Ok(body) = decoded else { break };
        if check.first_bad().is_some() {
            break;
        }
        *pos = ChainPos {
            next_seq: r.seq.saturating_add(1),
            prev_hash: r.hash,
        };
        out.push(StoredEvent {
            event: Event {
                seq: r.seq,
                at: r.at,
                body,
            },
            hash: r.hash,
        });
    }
    match check.finish().first_bad {
        Some((seq, why)) if out.is_empty() => Err(JournalError::ChainBroken { log, seq, why }),
        _ => Ok(out),
    }
}

/// Feeds stored events to a whole-log check: the hash covers the stored
/// bytes, and they must also be the canonical form of what they decode to,
/// or an export would hash differently.
pub(super) fn verify_rows(check: &mut ChainCheck, rows: &[RawEvent]) {
    for r in rows {
        let kind = match decode_body(&r.body) {
            Ok(b) if b.to_canonical() != r.body => Err("body is not in canonical form".into()),
            Ok(b) => Ok(Kind::of(&b)),
            Err(e) => Err(format!("body does not decode: {e}")),
        };
        check.check(r.seq, r.at, &r.body, kind, &r.hash);
    }
}

/// A log's projection from a row of [`INFO_COLUMNS`].
pub(super) fn info_of(row: &Row) -> Result<LogInfo, JournalError> {
    let keys: Vec<String> = row.try_get("open_keys")?;
    let effects: Vec<Vec<u8>> = row.try_get("open_effects")?;
    let awaiting: Vec<bool> = row.try_get("open_awaiting")?;
    let mut open = Vec::with_capacity(keys.len());
    for ((key, effect), awaiting_approval) in keys.into_iter().zip(effects).zip(awaiting) {
        let effect: RequestedEffect = serde_json::from_slice(&effect)
            .map_err(|e| JournalError::Corrupt(format!("open effect {key:?}: {e}")))?;
        open.push(OpenEffect {
            key,
            effect,
            awaiting_approval,
        });
    }
    let (finished, failed): (bool, bool) = (row.try_get("finished")?, row.try_get("failed")?);
    Ok(LogInfo {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        guest: GuestRef {
            name: row.try_get("guest_name")?,
            digest: row.try_get("guest_digest")?,
        },
        created_at: back(row.try_get("created_at")?),
        next_seq: back(row.try_get("next_seq")?),
        last_hash: hash32(row.try_get("last_hash")?)?,
        status: LogStatus::of(finished, failed, &open),
        open,
    })
}
