//! Moving every log, guest, name and snapshot of one journal into another
//! (`logbook migrate --from DATA_DIR --to postgres://…`).
//!
//! Invariants:
//! - The source is only read.
//! - Logs are copied with [`Journal::copy_log`]: they keep their ids, fork
//!   points, events and hashes, so the destination verifies as the source
//!   does. Each tenant's logs are copied in id order, which is creation
//!   order (UUIDv7), so a fork's parent and a compacted log are always
//!   there before the fork or the continuation that names them (both are
//!   of the same tenant).
//! - Every guest a log was created on or moved to or from is stored before
//!   the log; each tenant's guest names are bound as in the source at the
//!   end (a guest whose digest no name binds and no log names is not
//!   reachable, and is not copied).
//! - Resumable: a log already in the destination with the same tenant, next
//!   seq and last hash is skipped (its snapshots are still completed); one
//!   that differs stops the migration with [`MigrateError::Differs`], before
//!   anything of it is written.
//! - Tenants' session limits are not checked in the destination: the logs
//!   were admitted where they were made.

use std::collections::HashSet;

use super::event::{EventBody, GuestRef, StoredEvent};
use super::{CopiedLog, Journal, JournalError, LogId, LogInfo};

/// Logs asked of the source per page.
const LIST_PAGE: usize = 500;
/// Events asked of the source per read.
const EVENT_PAGE: usize = 4096;

/// Why a migration stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// Reading the source or writing the destination failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A log is in the destination already, and is not the source's log.
    #[error(
        "log {log} (tenant {tenant:?}) is in the destination already and differs: \
         {there} there, {here} in the source; nothing of it was copied \
         (migrate into a database that does not hold it)"
    )]
    Differs {
        /// The log.
        log: LogId,
        /// Its tenant in the source.
        tenant: String,
        /// What the destination holds: tenant, events, last hash.
        there: String,
        /// What the source holds.
        here: String,
    },
    /// A log refers to a blob that the source does not hold.
    #[error(
        "log {log} (tenant {tenant:?}) refers to the blob {digest}, which the source does not hold"
    )]
    MissingBlob {
        /// The log.
        log: LogId,
        /// Its tenant.
        tenant: String,
        /// The blob's digest.
        digest: String,
    },
    /// A guest that a log names, or that a name binds, has no bytes in the
    /// source.
    #[error("guest {name} ({digest}) is named in tenant {tenant:?} but not stored in the source")]
    MissingGuest {
        /// The tenant.
        tenant: String,
        /// The guest's name.
        name: String,
        /// Its digest.
        digest: String,
    },
}

/// How far a migration got: what it copied and what it found already there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrateProgress {
    /// Tenants done.
    pub tenants: u64,
    /// Logs copied.
    pub logs: u64,
    /// Logs already in the destination, the same: skipped.
    pub logs_skipped: u64,
    /// Events copied (a log's own events; a fork's prefix is its parent's).
    pub events: u64,
    /// Guest components stored (bytes of a digest the destination lacked).
    pub guests: u64,
    /// Guest names bound or moved in the destination.
    pub guest_names: u64,
    /// Snapshots copied.
    pub snapshots: u64,
    /// Blobs (large tool parts) copied.
    pub blobs: u64,
}

/// Copies every log of `tenants` in `source` (with its guests, name and
/// snapshots) into `dest`, then binds each tenant's guest names as in the
/// source. With `dry_run`, reads both and writes nothing, counting what it
/// would copy. `progress` is told after each log.
pub async fn migrate(
    source: &dyn Journal,
    tenants: &[String],
    dest: &dyn Journal,
    dry_run: bool,
    mut progress: impl FnMut(&MigrateProgress),
) -> Result<MigrateProgress, MigrateError> {
    let mut done = MigrateProgress::default();
    for tenant in tenants {
        let mut stored: HashSet<String> = HashSet::new();
        let mut after = None;
        loop {
            let page = source.list_page(tenant, after, LIST_PAGE).await?;
            for info in &page.logs {
                copy_one(source, dest, info, dry_run, &mut stored, &mut done).await?;
                progress(&done);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        for guest in source.guests(tenant).await? {
            if dest.guest_by_name(tenant, &guest.name).await?.as_ref() == Some(&guest) {
                continue;
            }
            let bytes = store_guest(source, dest, tenant, &guest, dry_run, &mut done).await?;
            if !dry_run {
                dest.put_guest(tenant, &guest.name, &bytes).await?;
            }
            done.guest_names += 1;
        }
        done.tenants += 1;
        progress(&done);
    }
    Ok(done)
}

/// Copies one log (or checks that it is there already) and its snapshots.
async fn copy_one(
    source: &dyn Journal,
    dest: &dyn Journal,
    info: &LogInfo,
    dry_run: bool,
    stored: &mut HashSet<String>,
    done: &mut MigrateProgress,
) -> Result<(), MigrateError> {
    let there = dest.info(info.id).await?;
    if let Some(there) = &there {
        if (&there.tenant, there.next_seq, there.last_hash)
            != (&info.tenant, info.next_seq, info.last_hash)
        {
            return Err(MigrateError::Differs {
                log: info.id,
                tenant: info.tenant.clone(),
                there: head(there),
                here: head(info),
            });
        }
        done.logs_skipped += 1;
    } else {
        let events = own_events(source, info.id).await?;
        for guest in guests_named(&events) {
            if stored.insert(guest.digest.clone()) {
                store_guest(source, dest, &info.tenant, &guest, dry_run, done).await?;
            }
        }
        // Blobs before the events that refer to them.
        for event in &events {
            for blob in event.event.body.blob_refs() {
                // (`stored` keeps dry runs from counting one blob twice.)
                if !stored.insert(format!("blob {} {}", info.tenant, blob.digest))
                    || dest.blob(&info.tenant, &blob.digest).await?.is_some()
                {
                    continue;
                }
                let Some(bytes) = source.blob(&info.tenant, &blob.digest).await? else {
                    return Err(MigrateError::MissingBlob {
                        log: info.id,
                        tenant: info.tenant.clone(),
                        digest: blob.digest.clone(),
                    });
                };
                if !dry_run {
                    dest.put_blob(&info.tenant, &bytes).await?;
                }
                done.blobs += 1;
            }
        }
        let copy = CopiedLog::new(info, events);
        if !dry_run {
            dest.copy_log(&copy).await?;
        }
        done.logs += 1;
        done.events += copy.events.len() as u64;
    }
    let have = match there {
        Some(_) => dest.snapshots(info.id).await?,
        None => Vec::new(),
    };
    for (seq, digest, record) in source.snapshots(info.id).await? {
        if have
            .iter()
            .any(|(s, d, r)| *s == seq && *d == digest && *r == record)
        {
            continue;
        }
        if !dry_run {
            dest.put_snapshot(info.id, seq, &digest, &record).await?;
        }
        done.snapshots += 1;
    }
    Ok(())
}

/// Stores a guest's bytes in `dest` when it lacks them (binding its name
/// there for now: the names are bound as in the source at the end), and
/// returns them.
async fn store_guest(
    source: &dyn Journal,
    dest: &dyn Journal,
    tenant: &str,
    guest: &GuestRef,
    dry_run: bool,
    done: &mut MigrateProgress,
) -> Result<Vec<u8>, MigrateError> {
    let Some(bytes) = source.guest_bytes(&guest.digest).await? else {
        return Err(MigrateError::MissingGuest {
            tenant: tenant.to_owned(),
            name: guest.name.clone(),
            digest: guest.digest.clone(),
        });
    };
    if dest.guest_bytes(&guest.digest).await?.is_none() {
        if !dry_run {
            dest.put_guest(tenant, &guest.name, &bytes).await?;
        }
        done.guests += 1;
    }
    Ok(bytes)
}

/// A log's own events: after its fork point, or from seq 0.
async fn own_events(source: &dyn Journal, log: LogId) -> Result<Vec<StoredEvent>, JournalError> {
    let mut from = match source.parent(log).await? {
        Some(p) => p.seq.saturating_add(1),
        None => 0,
    };
    let mut out = Vec::new();
    loop {
        let page = source.read(log, from, EVENT_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        from = last.event.seq.saturating_add(1);
        out.extend(page);
    }
}

/// Every guest the events run on: `created`, and both sides of each
/// `guest-changed`.
fn guests_named(events: &[StoredEvent]) -> Vec<GuestRef> {
    let mut out = Vec::new();
    for e in events {
        match &e.event.body {
            EventBody::Created(c) => out.push(c.guest.clone()),
            EventBody::GuestChanged { from, to } => {
                out.push(from.clone());
                out.push(to.clone());
            }
            _ => {}
        }
    }
    out
}

fn head(info: &LogInfo) -> String {
    format!(
        "tenant {:?}, {} events, last hash {}",
        info.tenant,
        info.next_seq,
        hex::encode(info.last_hash)
    )
}
