//! Import into PostgreSQL: a whole log from elsewhere, stored under a new id
//! in one transaction of its own.
//!
//! Invariants: nothing is written unless the whole chain verifies; the
//! events keep their seqs, times, hashes and canonical bodies byte for byte;
//! the projections (flags, current guest, open effects) are folded from the
//! events by the writer's rules. The import bypasses the writer: it writes a
//! log id nobody knows yet, and its tenant's limit is checked against the
//! tenant's row, which it locks like a create does.
//!
//! A copy ([`copy`], `logbook migrate`) is written the same way under the id
//! it brings, after [`crate::journal::copy::prepare`] has checked it against
//! the stored parent; its open effects and flags are written as given, and
//! its tenant's counts grow without a limit.

use std::collections::BTreeMap;

use deadpool_postgres::{Object, Transaction};

use super::plan::OpenEffectRow;
use super::{bits, order};
use crate::journal::copy::{CopiedLog, Prepared};
use crate::journal::event::{GuestRef, StoredEvent};
use crate::journal::info::{LogMeta, MetaChange, OpenAction, OpenRecord};
use crate::journal::{JournalError, LogId};

/// Checks `events` and writes them as a new log of `tenant`, named `name`.
pub(super) async fn import(
    c: &mut Object,
    tenant: &str,
    name: Option<&str>,
    events: &[StoredEvent],
    session_limit: Option<u64>,
) -> Result<LogId, JournalError> {
    let (first, created) = crate::journal::import::checked(events)?;
    let mut meta = LogMeta {
        tenant: tenant.to_owned(),
        name: name.map(str::to_owned),
        guest: created.guest.clone(),
        created_at: first.event.at,
        finished: false,
        failed: false,
        stopped: false,
        // The parent of an imported fork is in another journal: the import
        // holds the whole history as its own rows.
        parent: None,
    };
    let mut open: BTreeMap<String, OpenRecord> = BTreeMap::new();
    for e in events {
        let body = &e.event.body;
        if let Some(key) = body.key() {
            match OpenAction::of(body, open.get(key).cloned(), true) {
                OpenAction::Keep => {}
                OpenAction::Put(record) => {
                    open.insert(key.to_owned(), record);
                }
                OpenAction::Remove => {
                    open.remove(key);
                }
            }
        }
        if MetaChange::applies(body) {
            MetaChange::of(body, &mut meta);
        }
    }
    let last = events.last().unwrap_or(first);
    let id = LogId::now_v7();

    let txn = c.transaction().await?;
    require_guest(&txn, &meta.guest).await?;
    if let Some(name) = name {
        let taken = txn
            .execute(
                "INSERT INTO names (tenant, name, log) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, name) DO NOTHING",
                &[&tenant, &name, &id],
            )
            .await?;
        if taken == 0 {
            return Err(JournalError::NameTaken {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
            });
        }
    }
    let limited = txn
        .query_one(
            "WITH u AS (INSERT INTO tenants AS t (tenant, logs, sessions) VALUES ($1, 1, 1) \
               ON CONFLICT (tenant) DO UPDATE SET logs = t.logs + 1, sessions = t.sessions + 1 \
               RETURNING sessions) \
             SELECT $2::int8 IS NOT NULL AND (SELECT sessions FROM u) > $2::int8",
            &[&tenant, &session_limit.map(order)],
        )
        .await?;
    if limited.try_get::<_, bool>(0)? {
        return Err(JournalError::LimitReached {
            tenant: tenant.to_owned(),
            limit: session_limit.unwrap_or_default(),
        });
    }
    txn.execute(
        "INSERT INTO logs (id, tenant, name, guest_name, guest_digest, created_at, next_seq, \
         last_hash, finished, failed, stopped, session) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, true)",
        &[
            &id,
            &tenant,
            &name,
            &meta.guest.name,
            &meta.guest.digest,
            &bits(meta.created_at),
            &bits(last.event.seq.saturating_add(1)),
            &last.hash.as_slice(),
            &meta.finished,
            &meta.failed,
            &meta.stopped,
        ],
    )
    .await?;
    insert_events(&txn, id, events).await?;
    for (key, record) in &open {
        insert_open(&txn, id, key, record).await?;
    }
    txn.commit().await?;
    Ok(id)
}

/// Writes a checked copy under its own id, in one transaction: refused when
/// the id is taken, when its name is bound to another log, or when its
/// current guest is not stored here.
pub(super) async fn copy(
    c: &mut Object,
    copy: &CopiedLog,
    prepared: Prepared,
) -> Result<(), JournalError> {
    let meta = &prepared.meta;
    let id = copy.id;
    let tenant = copy.tenant.as_str();
    let txn = c.transaction().await?;
    require_guest(&txn, &meta.guest).await?;
    let (parent_log, parent_seq) = match &meta.parent {
        Some(p) => (
            Some(
                LogId::parse_str(&p.log).map_err(|_| JournalError::BadParent {
                    parent: p.log.clone(),
                })?,
            ),
            Some(bits(p.seq)),
        ),
        None => (None, None),
    };
    let inserted = txn
        .execute(
            "INSERT INTO logs (id, tenant, name, guest_name, guest_digest, created_at, next_seq, \
             last_hash, finished, failed, stopped, parent_log, parent_seq, session) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (id) DO NOTHING",
            &[
                &id,
                &tenant,
                &meta.name,
                &meta.guest.name,
                &meta.guest.digest,
                &bits(meta.created_at),
                &bits(prepared.next_seq),
                &prepared.last_hash.as_slice(),
                &meta.finished,
                &meta.failed,
                &meta.stopped,
                &parent_log,
                &parent_seq,
                &prepared.session,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(JournalError::LogExists(id));
    }
    if let Some(name) = &copy.name {
        let taken = txn
            .execute(
                "INSERT INTO names (tenant, name, log) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, name) DO NOTHING",
                &[&tenant, name, &id],
            )
            .await?;
        if taken == 0 {
            return Err(JournalError::NameTaken {
                tenant: tenant.to_owned(),
                name: name.clone(),
            });
        }
    }
    txn.execute(
        "INSERT INTO tenants AS t (tenant, logs, sessions) VALUES ($1, 1, $2) \
         ON CONFLICT (tenant) DO UPDATE SET logs = t.logs + 1, sessions = t.sessions + $2",
        &[&tenant, &i64::from(prepared.session)],
    )
    .await?;
    insert_events(&txn, id, &copy.events).await?;
    for o in &copy.open {
        let record = OpenRecord {
            effect: o.effect.clone(),
            awaiting_approval: o.awaiting_approval,
            unstarted: o.unstarted,
        };
        insert_open(&txn, id, &o.key, &record).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Refuses a log whose current guest is not stored in this database.
async fn require_guest(txn: &Transaction<'_>, guest: &GuestRef) -> Result<(), JournalError> {
    let stored = txn
        .query_opt("SELECT 1 FROM guests WHERE digest = $1", &[&guest.digest])
        .await?;
    match stored {
        Some(_) => Ok(()),
        None => Err(JournalError::GuestNotStored {
            name: guest.name.clone(),
            digest: guest.digest.clone(),
        }),
    }
}

/// Writes a whole run of stored events of `log` in one statement.
async fn insert_events(
    txn: &Transaction<'_>,
    log: LogId,
    events: &[StoredEvent],
) -> Result<(), JournalError> {
    let seqs: Vec<i64> = events.iter().map(|e| bits(e.event.seq)).collect();
    let ats: Vec<i64> = events.iter().map(|e| bits(e.event.at)).collect();
    let hashes: Vec<Vec<u8>> = events.iter().map(|e| e.hash.to_vec()).collect();
    let bodies: Vec<Vec<u8>> = events.iter().map(|e| e.event.body.to_canonical()).collect();
    txn.execute(
        "INSERT INTO events (log, seq, at, hash, body) \
         SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::bytea[], $5::bytea[])",
        &[&log, &seqs, &ats, &hashes, &bodies],
    )
    .await?;
    Ok(())
}

/// Writes one open effect of `log`.
async fn insert_open(
    txn: &Transaction<'_>,
    log: LogId,
    key: &str,
    record: &OpenRecord,
) -> Result<(), JournalError> {
    let row = OpenEffectRow::of(&record.effect)?;
    txn.execute(
        "INSERT INTO open (log, key, effect, awaiting_approval, is_ask, sleep_until, \
         unstarted) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &log,
            &key,
            &row.json,
            &record.awaiting_approval,
            &row.is_ask,
            &row.sleep_until,
            &record.unstarted,
        ],
    )
    .await?;
    Ok(())
}
