//! Writer leases, durable timers and waiting for events, across workers.
//!
//! Invariants:
//! - A lease is live while its holder's heartbeat (`workers`) is younger
//!   than `lease_ttl_ms` by the database's clock; the heartbeat is renewed
//!   every third of that.
//! - Each acquisition raises the log's epoch in the statement that takes
//!   it, so every holder, even an earlier one in this process, is fenced.
//! - A waiter sees every worker's commits: they notify their heads at commit
//!   ([`listen`](super::listen)).

use deadpool_postgres::Pool;

use super::{PgJournal, back, bits, order};
use crate::journal::{JournalError, Lease, LogId, Timer};

impl PgJournal {
    /// Takes the writer lease of `log` for this worker: when nobody holds it,
    /// this worker does, or the holder's heartbeat is older than the TTL.
    /// Every success raises the log's epoch.
    pub async fn acquire_lease(&self, log: LogId) -> Result<Lease, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "UPDATE logs l SET lease_worker = $2, lease_epoch = l.lease_epoch + 1 \
                 WHERE l.id = $1 AND (l.lease_worker IS NULL OR l.lease_worker = $2 \
                   OR NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = l.lease_worker \
                     AND w.heartbeat > clock_timestamp() - $3::int8 * interval '1 millisecond')) \
                 RETURNING l.lease_epoch",
            )
            .await?;
        let ttl = order(self.config.lease_ttl_ms);
        match c.query_opt(&st, &[&log, &self.config.worker, &ttl]).await? {
            Some(row) => Ok(Lease {
                log,
                epoch: back(row.try_get(0)?),
            }),
            None => {
                let exists = c
                    .query_opt("SELECT 1 FROM logs WHERE id = $1", &[&log])
                    .await?;
                Err(match exists {
                    Some(_) => JournalError::Leased { log },
                    None => JournalError::UnknownLog(log),
                })
            }
        }
    }

    /// Gives the lease up if it is still held at that epoch.
    pub async fn release_lease(&self, lease: Lease) -> Result<(), JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "UPDATE logs SET lease_worker = NULL \
                 WHERE id = $1 AND lease_epoch = $2 AND lease_worker = $3",
            )
            .await?;
        c.execute(&st, &[&lease.log, &bits(lease.epoch), &self.config.worker])
            .await?;
        Ok(())
    }

    /// Open `sleep` effects due at or before `due_by`, earliest first, at
    /// most `limit`, of logs no other live worker holds.
    pub async fn timers(&self, due_by: u64, limit: usize) -> Result<Vec<Timer>, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT o.log, o.key, o.sleep_until FROM open o JOIN logs l ON l.id = o.log \
                 WHERE o.sleep_until IS NOT NULL AND o.sleep_until <= $1 AND NOT l.stopped \
                   AND (l.lease_worker IS NULL OR l.lease_worker = $3 \
                     OR NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = l.lease_worker \
                       AND w.heartbeat > clock_timestamp() - $4::int8 * interval '1 millisecond')) \
                 ORDER BY o.sleep_until, o.log, o.key LIMIT $2",
            )
            .await?;
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let ttl = order(self.config.lease_ttl_ms);
        c.query(&st, &[&order(due_by), &limit, &self.config.worker, &ttl])
            .await?
            .iter()
            .map(|row| {
                Ok(Timer {
                    log: row.try_get(0)?,
                    key: row.try_get(1)?,
                    until: back(row.try_get(2)?),
                })
            })
            .collect()
    }

    /// Up to `limit` logs with a model or tool call open (not awaiting a
    /// human, not a timer) whose lease no live worker holds, in id order:
    /// sessions a dead worker left running, for this one to resume.
    pub async fn orphans(&self, limit: usize) -> Result<Vec<LogId>, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT DISTINCT o.log FROM open o JOIN logs l ON l.id = o.log \
                 WHERE NOT o.awaiting_approval AND o.sleep_until IS NULL AND NOT l.stopped \
                   AND (l.lease_worker IS NULL \
                     OR NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = l.lease_worker \
                       AND w.heartbeat > clock_timestamp() - $2::int8 * interval '1 millisecond')) \
                 ORDER BY o.log LIMIT $1",
            )
            .await?;
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let ttl = order(self.config.lease_ttl_ms);
        c.query(&st, &[&limit, &ttl])
            .await?
            .iter()
            .map(|row| Ok(row.try_get(0)?))
            .collect()
    }

    /// Resolves once `log` holds an event at `from_seq` or later, with its
    /// next seq; sees the commits of every worker. Cancel-safe.
    pub async fn wait_events(&self, log: LogId, from_seq: u64) -> Result<u64, JournalError> {
        let stored = async {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT next_seq FROM logs WHERE id = $1")
                .await?;
            Ok(match c.query_opt(&st, &[&log]).await? {
                Some(row) => back(row.try_get(0)?),
                None => 0,
            })
        };
        self.heads.wait(log, from_seq, stored).await
    }
}

/// Renews this worker's heartbeat.
pub(super) async fn beat(pool: &Pool, worker: uuid::Uuid) -> Result<(), JournalError> {
    let c = pool.get().await?;
    let st = c
        .prepare_cached(
            "INSERT INTO workers (id, heartbeat) VALUES ($1, clock_timestamp()) \
             ON CONFLICT (id) DO UPDATE SET heartbeat = clock_timestamp()",
        )
        .await?;
    c.execute(&st, &[&worker]).await?;
    Ok(())
}
