//! Reads of a PostgreSQL journal, on the read pool: events through a log's
//! ancestry, checked or not, and the projections of logs.
//!
//! Invariants: each answer is one statement, so it sees one snapshot of the
//! database (a log's head and its open effects never come from two commits).
//! A fork stores only its own events; its reads walk its ancestry in SQL.

use tokio_postgres::{Client, Row, Statement};

use super::{PgJournal, back, bits, hash32};
use crate::journal::chain::{ChainCheck, ChainPos, Kind, Verified};
use crate::journal::event::{Event, GuestRef, LogPos, RequestedEffect, StoredEvent};
use crate::journal::info::{LogInfo, LogStatus, OpenEffect};
use crate::journal::{JournalError, LogId, LogPage, TenantCount, decode_body};

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
l.finished, l.failed, l.stopped,
ARRAY(SELECT key FROM open o WHERE o.log = l.id ORDER BY key) AS open_keys,
ARRAY(SELECT effect FROM open o WHERE o.log = l.id ORDER BY key) AS open_effects,
ARRAY(SELECT awaiting_approval FROM open o WHERE o.log = l.id ORDER BY key) AS open_awaiting,
ARRAY(SELECT unstarted FROM open o WHERE o.log = l.id ORDER BY key) AS open_unstarted";

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
    let unstarted: Vec<bool> = row.try_get("open_unstarted")?;
    let mut open = Vec::with_capacity(keys.len());
    let rows = keys.into_iter().zip(effects).zip(awaiting).zip(unstarted);
    for (((key, effect), awaiting_approval), unstarted) in rows {
        let effect: RequestedEffect = serde_json::from_slice(&effect)
            .map_err(|e| JournalError::Corrupt(format!("open effect {key:?}: {e}")))?;
        open.push(OpenEffect {
            key,
            effect,
            awaiting_approval,
            unstarted,
        });
    }
    let (finished, failed): (bool, bool) = (row.try_get("finished")?, row.try_get("failed")?);
    let stopped: bool = row.try_get("stopped")?;
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
        status: LogStatus::of(finished, failed, stopped, &open),
        stopped,
        open,
    })
}

impl PgJournal {
    /// Up to `limit` events of `log` from `from_seq`, through its ancestry.
    pub async fn read(
        &self,
        log: LogId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        let c = self.client().await?;
        let st = c.prepare_cached(ANCESTRY_EVENTS).await?;
        decode(ancestry_rows(&c, &st, log, from_seq, limit).await?)
    }

    /// Like [`read`](Self::read), each event checked against its predecessor
    /// on its stored bytes (see the trait).
    pub async fn read_checked(
        &self,
        log: LogId,
        pos: &mut ChainPos,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        let c = self.client().await?;
        let st = c.prepare_cached(ANCESTRY_EVENTS).await?;
        let rows = ancestry_rows(&c, &st, log, pos.next_seq, limit).await?;
        checked(log, pos, rows)
    }

    /// The log's metadata, head and open effects.
    pub async fn info(&self, log: LogId) -> Result<Option<LogInfo>, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {} FROM logs l WHERE l.id = $1",
                INFO_COLUMNS
            ))
            .await?;
        match c.query_opt(&st, &[&log]).await? {
            Some(row) => Ok(Some(info_of(&row)?)),
            None => Ok(None),
        }
    }

    /// The log a name points at.
    pub async fn resolve(&self, tenant: &str, name: &str) -> Result<Option<LogId>, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT log FROM names WHERE tenant = $1 AND name = $2")
            .await?;
        match c.query_opt(&st, &[&tenant, &name]).await? {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    /// A page of the tenant's logs in id order.
    pub async fn list_page(
        &self,
        tenant: &str,
        after: Option<LogId>,
        limit: usize,
    ) -> Result<LogPage, JournalError> {
        let limit = limit.max(1);
        let c = self.client().await?;
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        // One statement per form, so each is a plain range of the
        // `(tenant, id)` index: a page costs the page.
        let rows = match after {
            Some(after) => {
                let st = c
                    .prepare_cached(&format!(
                        "SELECT {INFO_COLUMNS} FROM logs l WHERE l.tenant = $1 AND l.id > $2 \
                         ORDER BY l.id LIMIT $3"
                    ))
                    .await?;
                c.query(&st, &[&tenant, &after, &fetch]).await?
            }
            None => {
                let st = c
                    .prepare_cached(&format!(
                        "SELECT {INFO_COLUMNS} FROM logs l WHERE l.tenant = $1 \
                         ORDER BY l.id LIMIT $2"
                    ))
                    .await?;
                c.query(&st, &[&tenant, &fetch]).await?
            }
        };
        let mut page = LogPage::default();
        for row in rows.iter().take(limit) {
            page.logs.push(info_of(row)?);
        }
        if rows.len() > limit {
            page.next = page.logs.last().map(|i| i.id);
        }
        Ok(page)
    }

    /// How many logs and sessions the tenant holds.
    pub async fn count(&self, tenant: &str) -> Result<TenantCount, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT logs, sessions FROM tenants WHERE tenant = $1")
            .await?;
        match c.query_opt(&st, &[&tenant]).await? {
            Some(row) => Ok(TenantCount {
                logs: back(row.try_get(0)?),
                sessions: back(row.try_get(1)?),
            }),
            None => Ok(TenantCount::default()),
        }
    }

    /// Logs with an open effect, ids after `after`, at most `limit`, in id order.
    pub async fn open_logs(
        &self,
        after: Option<LogId>,
        limit: usize,
    ) -> Result<Vec<LogId>, JournalError> {
        let c = self.client().await?;
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let rows = match after {
            Some(after) => {
                let st = c
                    .prepare_cached(
                        "SELECT DISTINCT log FROM open WHERE log > $1 ORDER BY log LIMIT $2",
                    )
                    .await?;
                c.query(&st, &[&after, &limit]).await?
            }
            None => {
                let st = c
                    .prepare_cached("SELECT DISTINCT log FROM open ORDER BY log LIMIT $1")
                    .await?;
                c.query(&st, &[&limit]).await?
            }
        };
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// How many logs the journal holds, of every tenant: the sum of the
    /// tenants' counts, O(tenants).
    pub async fn count_logs(&self) -> Result<usize, JournalError> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT COALESCE(sum(logs), 0)::int8 FROM tenants", &[])
            .await?;
        let n: i64 = row.try_get(0)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Recomputes the log's hash chain from seq 0, through its ancestry.
    pub async fn verify(&self, log: LogId) -> Result<Verified, JournalError> {
        /// Events read per round trip.
        const PAGE: usize = 1024;
        let c = self.client().await?;
        let exists = c
            .query_opt("SELECT 1 FROM logs WHERE id = $1", &[&log])
            .await?;
        if exists.is_none() {
            return Err(JournalError::UnknownLog(log));
        }
        let st = c.prepare_cached(ANCESTRY_EVENTS).await?;
        let mut check = ChainCheck::new();
        let mut from = 0;
        loop {
            let rows = ancestry_rows(&c, &st, log, from, PAGE).await?;
            verify_rows(&mut check, &rows);
            match rows.last() {
                Some(last) if rows.len() == PAGE => from = last.seq.saturating_add(1),
                _ => break,
            }
        }
        Ok(check.finish())
    }

    /// For a fork, the parent log and the last seq it shares with it.
    pub async fn parent(&self, log: LogId) -> Result<Option<LogPos>, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT parent_log, parent_seq FROM logs WHERE id = $1")
            .await?;
        let Some(row) = c.query_opt(&st, &[&log]).await? else {
            return Err(JournalError::UnknownLog(log));
        };
        let parent: Option<LogId> = row.try_get(0)?;
        let seq: Option<i64> = row.try_get(1)?;
        Ok(parent.zip(seq).map(|(p, s)| LogPos {
            log: p.to_string(),
            seq: back(s),
        }))
    }
}
