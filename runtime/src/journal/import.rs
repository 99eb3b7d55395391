//! Import: a whole log from elsewhere, stored under a new id in one durable
//! transaction.
//!
//! Invariants: nothing is written unless the whole chain verifies; the
//! imported events keep their seqs, times, bodies and hashes byte for byte (so
//! exporting the import gives the file back, the id aside); the log's
//! projections (metadata, open effects) are rebuilt from its events by the
//! same rules the writer uses. The import bypasses the group-commit writer:
//! it writes only a log id that nobody else knows yet, and redb serializes
//! it with the writer's transactions, so its tenant's session limit is
//! checked against counts no other transaction is changing. An import is a
//! session of its own (see [`super::tenants`]).
//!
//! A copy ([`copy`], `logbook migrate`) is written the same way, under the
//! id it brings, after [`super::copy::prepare`] has checked it against the
//! stored parent; its open effects and flags are written as given.

use redb::{Database, Durability, ReadableTable};

use super::chain::verify_events;
use super::copy::{CopiedLog, Prepared};
use super::event::{EventBody, StoredEvent};
use super::info::LogMeta;
use super::info::OpenRecord;
use super::tables::{self, GUESTS};
use super::tenants;
use super::writer::{WriteTables, encode_open, project};
use super::{JournalError, LogId};

/// What every journal checks of a log to import before it writes anything:
/// that it has events, that its chain holds, and that it starts with
/// `created`, which it answers with its first event.
pub(crate) fn checked(
    events: &[StoredEvent],
) -> Result<(&StoredEvent, &super::event::Created), JournalError> {
    let Some(first) = events.first() else {
        return Err(bad(None, "an import needs at least one event".into()));
    };
    if let Some((seq, why)) = verify_events(events).first_bad {
        return Err(bad(Some(seq), why));
    }
    let EventBody::Created(created) = &first.event.body else {
        return Err(bad(None, "the first event is not `created`".into()));
    };
    Ok((first, created))
}

/// An import that does not hold as a log.
fn bad(seq: Option<u64>, why: String) -> JournalError {
    JournalError::BadLog {
        copy: None,
        seq,
        why,
    }
}

/// Checks `events` and writes them as a new log of `tenant`, named `name`.
pub(crate) fn import(
    db: &Database,
    tenant: &str,
    name: Option<&str>,
    events: &[StoredEvent],
    session_limit: Option<u64>,
) -> Result<LogId, JournalError> {
    let (first, created) = checked(events)?;
    let id = LogId::now_v7();
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut t = WriteTables::open(&txn)?;
        let guests = txn.open_table(GUESTS)?;
        // The guest the log runs on now must be here, or it could not be woken.
        let mut current = &created.guest;
        for e in events {
            match &e.event.body {
                EventBody::Created(c) => current = &c.guest,
                EventBody::GuestChanged { to, .. } => current = to,
                _ => {}
            }
        }
        if guests.get(current.digest.as_str())?.is_none() {
            return Err(JournalError::GuestNotStored {
                name: current.name.clone(),
                digest: current.digest.clone(),
            });
        }
        if let Some(name) = name
            && t.names.get((tenant, name))?.is_some()
        {
            return Err(JournalError::NameTaken {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
            });
        }
        if let Some(limit) = session_limit
            && tenants::counts(&t.tenant_counts, tenant)?.1 >= limit
        {
            return Err(JournalError::LimitReached {
                tenant: tenant.to_owned(),
                limit,
            });
        }
        let meta = LogMeta {
            tenant: tenant.to_owned(),
            name: name.map(str::to_owned),
            guest: created.guest.clone(),
            created_at: first.event.at,
            finished: false,
            failed: false,
            stopped: false,
            // The parent of an imported fork is in another journal: the
            // import holds the whole history as its own rows.
            parent: None,
        };
        let log = id.as_u128();
        t.put_meta(log, &meta)?;
        tenants::add(&mut t, tenant, log, true)?;
        if let Some(name) = name {
            t.names.insert((tenant, name), log)?;
        }
        for e in events {
            let body = e.event.body.to_canonical();
            let value = tables::encode_event(e.event.at, &e.hash, &body);
            t.events.insert((log, e.event.seq), value.as_slice())?;
            project(&mut t, log, &e.event.body, true)?;
        }
    }
    txn.commit()?;
    Ok(id)
}

/// Writes a checked copy under its own id: refused when the id is taken,
/// when its name is bound to another log, or when its current guest is not
/// stored here.
pub(crate) fn copy(
    db: &Database,
    copy: &CopiedLog,
    prepared: Prepared,
) -> Result<(), JournalError> {
    let log = copy.id.as_u128();
    let tenant = copy.tenant.as_str();
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut t = WriteTables::open(&txn)?;
        let guests = txn.open_table(GUESTS)?;
        if t.logs.get(log)?.is_some() {
            return Err(JournalError::LogExists(copy.id));
        }
        let guest = &prepared.meta.guest;
        if guests.get(guest.digest.as_str())?.is_none() {
            return Err(JournalError::GuestNotStored {
                name: guest.name.clone(),
                digest: guest.digest.clone(),
            });
        }
        if let Some(name) = &copy.name {
            if t.names.get((tenant, name.as_str()))?.is_some() {
                return Err(JournalError::NameTaken {
                    tenant: tenant.to_owned(),
                    name: name.clone(),
                });
            }
            t.names.insert((tenant, name.as_str()), log)?;
        }
        t.put_meta(log, &prepared.meta)?;
        tenants::add(&mut t, tenant, log, prepared.session)?;
        for e in &copy.events {
            let body = e.event.body.to_canonical();
            let value = tables::encode_event(e.event.at, &e.hash, &body);
            t.events.insert((log, e.event.seq), value.as_slice())?;
        }
        for o in &copy.open {
            let record = OpenRecord {
                unstarted: o.unstarted,
                effect: o.effect.clone(),
                awaiting_approval: o.awaiting_approval,
            };
            t.open
                .insert((log, o.key.as_str()), encode_open(&record)?.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}
