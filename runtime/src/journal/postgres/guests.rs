//! What a PostgreSQL journal stores beside the logs: guest components by
//! digest, the names that point at them, and snapshot records.
//!
//! Invariants: a component is stored once per digest and never changed; a
//! name is moved in the statement that stores its component, so it never
//! points at a digest that is not stored. Snapshots are a cache: only the
//! newest of a log and guest is kept, and deleting any costs only speed.

use super::{PgJournal, back, bits, order};
use crate::journal::JournalError;
use crate::journal::LogId;
use crate::journal::chain::digest_of;
use crate::journal::event::{BlobRef, GuestRef};

impl PgJournal {
    /// Stores a guest component (once per digest) and binds `(tenant, name)` to it.
    pub async fn put_guest(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<GuestRef, JournalError> {
        let digest = digest_of(bytes);
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "WITH g AS (INSERT INTO guests (digest, bytes) VALUES ($3, $4) \
                   ON CONFLICT (digest) DO NOTHING) \
                 INSERT INTO guest_names (tenant, name, digest) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, name) DO UPDATE SET digest = EXCLUDED.digest",
            )
            .await?;
        c.execute(&st, &[&tenant, &name, &digest, &bytes]).await?;
        Ok(GuestRef {
            name: name.to_owned(),
            digest,
        })
    }

    /// A guest component's bytes by digest.
    pub async fn guest_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT bytes FROM guests WHERE digest = $1")
            .await?;
        match c.query_opt(&st, &[&digest]).await? {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    /// Stores a large tool part's bytes once per tenant and digest.
    pub async fn put_blob(&self, tenant: &str, bytes: &[u8]) -> Result<BlobRef, JournalError> {
        let digest = digest_of(bytes);
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO blobs (tenant, digest, bytes) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, digest) DO NOTHING",
            )
            .await?;
        c.execute(&st, &[&tenant, &digest, &bytes]).await?;
        Ok(BlobRef {
            digest,
            size: bytes.len() as u64,
        })
    }

    /// A tenant's blob by digest.
    pub async fn blob(&self, tenant: &str, digest: &str) -> Result<Option<Vec<u8>>, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT bytes FROM blobs WHERE tenant = $1 AND digest = $2")
            .await?;
        match c.query_opt(&st, &[&tenant, &digest]).await? {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    /// The guest a name is bound to in a tenant.
    pub async fn guest_by_name(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<GuestRef>, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT digest FROM guest_names WHERE tenant = $1 AND name = $2")
            .await?;
        match c.query_opt(&st, &[&tenant, &name]).await? {
            Some(row) => Ok(Some(GuestRef {
                name: name.to_owned(),
                digest: row.try_get(0)?,
            })),
            None => Ok(None),
        }
    }

    /// Every guest name of a tenant, with its digest, by name.
    pub async fn guests(&self, tenant: &str) -> Result<Vec<GuestRef>, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT name, digest FROM guest_names WHERE tenant = $1 ORDER BY name")
            .await?;
        c.query(&st, &[&tenant])
            .await?
            .iter()
            .map(|row| {
                Ok(GuestRef {
                    name: row.try_get(0)?,
                    digest: row.try_get(1)?,
                })
            })
            .collect()
    }

    /// Stores a snapshot record of `log` at `seq` made by guest `digest`,
    /// removing the older ones of the same log and guest.
    pub async fn put_snapshot(
        &self,
        log: LogId,
        seq: u64,
        digest: &str,
        record: &[u8],
    ) -> Result<(), JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "WITH d AS (DELETE FROM snapshots WHERE log = $1 AND seq < $2 AND digest = $3) \
                 INSERT INTO snapshots (log, seq, digest, record) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (log, seq, digest) DO UPDATE SET record = EXCLUDED.record",
            )
            .await?;
        c.execute(&st, &[&log, &bits(seq), &digest, &record])
            .await?;
        Ok(())
    }

    /// The newest snapshot record of `log` by guest `digest` below `before`.
    pub async fn latest_snapshot(
        &self,
        log: LogId,
        digest: &str,
        before: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, JournalError> {
        if before == 0 {
            return Ok(None);
        }
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT seq, record FROM snapshots WHERE log = $1 AND digest = $2 AND seq < $3 \
                 ORDER BY seq DESC LIMIT 1",
            )
            .await?;
        match c.query_opt(&st, &[&log, &digest, &order(before)]).await? {
            Some(row) => Ok(Some((back(row.try_get(0)?), row.try_get(1)?))),
            None => Ok(None),
        }
    }

    /// Every snapshot of `log`: `(seq, guest digest, record)`, by seq.
    pub async fn snapshots(&self, log: LogId) -> Result<Vec<(u64, String, Vec<u8>)>, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT seq, digest, record FROM snapshots WHERE log = $1 ORDER BY seq, digest",
            )
            .await?;
        c.query(&st, &[&log])
            .await?
            .iter()
            .map(|row| Ok((back(row.try_get(0)?), row.try_get(1)?, row.try_get(2)?)))
            .collect()
    }
}
