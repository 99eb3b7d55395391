//! [`PgJournal`]: the journal in a PostgreSQL database (15 or later) that
//! many workers share (DESIGN §7, `docs/postgres.md`).
//!
//! Writes go through one group-commit writer task per journal handle, with
//! its own connection ([`writer`]); reads use a small pool of connections
//! and see the last committed state; one more connection listens for the
//! heads every worker's writer notifies ([`listen`]). A heartbeat task keeps
//! this worker's row young, which keeps its leases live. Connections are
//! plain TCP without TLS (`NoTls`).
//!
//! Invariants (beside the [`Journal`](super::Journal) contract's):
//! - The schema is brought to this build's version at [`PgJournal::connect`],
//!   or the connect is refused ([`schema`]).
//! - A log's lease is live while its holder's heartbeat is younger than
//!   `lease_ttl_ms` by the database's clock. Each acquisition raises the
//!   log's epoch, and the writer refuses an append whose epoch is not the
//!   current one, in the statement that moves the head.
//! - Dropping the journal stops its heartbeat and listener; its writer ends
//!   once every commit sent to it has been answered.

mod import;
mod listen;
mod plan;
mod reads;
mod schema;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use self::writer::{Counters, Request, Writer};
use super::chain::{ChainCheck, ChainPos, Verified, digest_of};
use super::commit::{Commit, CommitTicket};
use super::event::{GuestRef, LogPos, StoredEvent};
use super::info::LogInfo;
use super::lease::Heads;
use super::{Journal, JournalError, Lease, LogId, LogPage, TenantCount, Timer, WriterStats};

/// Settings of a [`PgJournal`].
#[derive(Clone, Debug)]
pub struct PgConfig {
    /// This worker's id: the holder named in the leases it takes. Default: a
    /// new UUIDv7, so each process is a worker of its own.
    pub worker: uuid::Uuid,
    /// How long a lease outlives its holder's last heartbeat, in ms: after a
    /// worker dies, its logs can be taken over this much later. The
    /// heartbeat runs every third of it. Default 5000.
    pub lease_ttl_ms: u64,
    /// The most events the writer puts in one transaction (a commit larger
    /// than this still goes in whole, alone). Default 4096.
    pub max_batch_events: usize,
    /// Connections of the read pool. Default 4.
    pub pool_size: usize,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            worker: uuid::Uuid::now_v7(),
            lease_ttl_ms: 5000,
            max_batch_events: 4096,
            pool_size: 4,
        }
    }
}

/// A journal in a PostgreSQL database, shared with any number of workers.
#[derive(Debug)]
pub struct PgJournal {
    pool: Pool,
    requests: mpsc::UnboundedSender<Request>,
    counters: Arc<Counters>,
    heads: Arc<Heads>,
    config: PgConfig,
    /// The heartbeat and the listener, stopped on drop.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PgJournal {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A `u64` as an `int8`, bit for bit (values past `i64::MAX` come back
/// unchanged through [`back`]; no seq or time gets there).
fn bits(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// An `int8` read back as the `u64` that [`bits`] stored.
fn back(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

/// A `u64` as an `int8` that sorts like it: past `i64::MAX` it is `i64::MAX`.
fn order(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The connection settings with an `application_name` that says what the
/// connection is for (in `pg_stat_activity`), unless the URL names one.
fn role(pg: &tokio_postgres::Config, application: &str) -> tokio_postgres::Config {
    let mut pg = pg.clone();
    if pg.get_application_name().is_none() {
        pg.application_name(application);
    }
    pg
}

/// A stored hash.
fn hash32(v: Vec<u8>) -> Result<[u8; 32], JournalError> {
    <[u8; 32]>::try_from(v.as_slice())
        .map_err(|_| JournalError::Corrupt(format!("a stored hash of {} bytes", v.len())))
}

impl From<PoolError> for JournalError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => e.into(),
            // Timed out, closed or misconfigured: no connection to ask.
            _ => JournalError::Closed,
        }
    }
}

impl PgJournal {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`),
    /// brings its schema to this build's version, registers this worker, and
    /// starts the writer, the heartbeat and the listener.
    ///
    /// Refused with [`JournalError::SchemaTooNew`] when a newer build has
    /// migrated the database.
    pub async fn connect(url: &str, config: PgConfig) -> Result<Arc<PgJournal>, JournalError> {
        let pg: tokio_postgres::Config = url.parse()?;
        {
            let (mut client, connection) = pg.connect(NoTls).await?;
            let driver = tokio::spawn(connection);
            let migrated = schema::migrate(&mut client).await;
            drop(client);
            // The connection ends with its client; its own error is the
            // migration's, already in hand.
            let _ = driver.await;
            migrated?;
        }
        let manager = Manager::from_config(
            role(&pg, "logbook"),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .build()
            .map_err(|_| JournalError::Closed)?;

        let worker = config.worker;
        // Registered before any lease is taken, so this worker's leases are live.
        beat(&pool, worker).await?;

        let heads = Arc::new(Heads::default());
        let (ready_tx, ready) = oneshot::channel();
        let listener = tokio::spawn(listen::run(
            role(&pg, listen::APPLICATION),
            heads.clone(),
            Some(ready_tx),
        ));
        ready.await.map_err(|_| JournalError::Closed)??;

        let period = Duration::from_millis((config.lease_ttl_ms / 3).max(1));
        let beat_pool = pool.clone();
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = beat(&beat_pool, worker).await {
                    tracing::warn!(error = %e, "postgres journal heartbeat failed");
                }
            }
        });

        let counters = Arc::new(Counters::default());
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(
            Writer::new(
                role(&pg, writer::APPLICATION),
                config.max_batch_events.max(1),
                counters.clone(),
            )
            .run(rx),
        );
        Ok(Arc::new(PgJournal {
            pool,
            requests,
            counters,
            heads,
            config,
            tasks: vec![listener, heartbeat],
        }))
    }

    /// This worker's id.
    pub fn worker(&self) -> uuid::Uuid {
        self.config.worker
    }

    async fn client(&self) -> Result<Object, JournalError> {
        Ok(self.pool.get().await?)
    }

    /// Submits a commit to the writer; the ticket resolves once it is
    /// committed or refused.
    pub fn commit(&self, commit: Commit) -> CommitTicket {
        let (reply, ticket) = CommitTicket::new();
        if let Err(refused) = self.requests.send(Request { commit, reply }) {
            // The ticket is alive in this frame, so the answer arrives.
            let _ = refused.0.reply.send(Err(JournalError::Closed));
        }
        ticket
    }

    /// Up to `limit` events of `log` from `from_seq`, through its ancestry.
    pub async fn read(
        &self,
        log: LogId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        let c = self.client().await?;
        let st = c.prepare_cached(reads::ANCESTRY_EVENTS).await?;
        reads::decode(reads::ancestry_rows(&c, &st, log, from_seq, limit).await?)
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
        let st = c.prepare_cached(reads::ANCESTRY_EVENTS).await?;
        let rows = reads::ancestry_rows(&c, &st, log, pos.next_seq, limit).await?;
        reads::checked(log, pos, rows)
    }

    /// The log's metadata, head and open effects.
    pub async fn info(&self, log: LogId) -> Result<Option<LogInfo>, JournalError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {} FROM logs l WHERE l.id = $1",
                reads::INFO_COLUMNS
            ))
            .await?;
        match c.query_opt(&st, &[&log]).await? {
            Some(row) => Ok(Some(reads::info_of(&row)?)),
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
        let st = c
            .prepare_cached(&format!(
                "SELECT {} FROM logs l WHERE l.tenant = $1 AND ($2::uuid IS NULL OR l.id > $2) \
                 ORDER BY l.id LIMIT $3",
                reads::INFO_COLUMNS
            ))
            .await?;
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let rows = c.query(&st, &[&tenant, &after, &fetch]).await?;
        let mut page = LogPage::default();
        for row in rows.iter().take(limit) {
            page.logs.push(reads::info_of(row)?);
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
        let st = c
            .prepare_cached(
                "SELECT DISTINCT log FROM open WHERE ($1::uuid IS NULL OR log > $1) \
                 ORDER BY log LIMIT $2",
            )
            .await?;
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        c.query(&st, &[&after, &limit])
            .await?
            .iter()
            .map(|row| Ok(row.try_get(0)?))
            .collect()
    }

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

    /// How many logs the journal holds, of every tenant.
    pub async fn count_logs(&self) -> Result<usize, JournalError> {
        let c = self.client().await?;
        let row = c.query_one("SELECT count(*) FROM logs", &[]).await?;
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
        let st = c.prepare_cached(reads::ANCESTRY_EVENTS).await?;
        let mut check = ChainCheck::new();
        let mut from = 0;
        loop {
            let rows = reads::ancestry_rows(&c, &st, log, from, PAGE).await?;
            reads::verify_rows(&mut check, &rows);
            match rows.last() {
                Some(last) if rows.len() == PAGE => from = last.seq.saturating_add(1),
                _ => break,
            }
        }
        Ok(check.finish())
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

    /// Stores a whole log from elsewhere under a new id (see the trait).
    pub async fn import(
        &self,
        tenant: &str,
        name: Option<&str>,
        events: &[StoredEvent],
        session_limit: Option<u64>,
    ) -> Result<LogId, JournalError> {
        let mut c = self.client().await?;
        import::import(&mut c, tenant, name, events, session_limit).await
    }

    /// The writer's counters.
    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

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
                 WHERE o.sleep_until IS NOT NULL AND o.sleep_until <= $1 \
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

/// The trait's methods are the inherent ones: callers that hold a
/// `PgJournal` need no trait in scope, and `dyn Journal` gets the same.
#[async_trait::async_trait]
impl Journal for PgJournal {
    fn commit(&self, commit: Commit) -> CommitTicket {
        PgJournal::commit(self, commit)
    }

    async fn read(
        &self,
        log: LogId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        PgJournal::read(self, log, from_seq, limit).await
    }

    async fn read_checked(
        &self,
        log: LogId,
        pos: &mut ChainPos,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        PgJournal::read_checked(self, log, pos, limit).await
    }

    async fn info(&self, log: LogId) -> Result<Option<LogInfo>, JournalError> {
        PgJournal::info(self, log).await
    }

    async fn resolve(&self, tenant: &str, name: &str) -> Result<Option<LogId>, JournalError> {
        PgJournal::resolve(self, tenant, name).await
    }

    async fn list_page(
        &self,
        tenant: &str,
        after: Option<LogId>,
        limit: usize,
    ) -> Result<LogPage, JournalError> {
        PgJournal::list_page(self, tenant, after, limit).await
    }

    async fn count(&self, tenant: &str) -> Result<TenantCount, JournalError> {
        PgJournal::count(self, tenant).await
    }

    async fn open_logs(
        &self,
        after: Option<LogId>,
        limit: usize,
    ) -> Result<Vec<LogId>, JournalError> {
        PgJournal::open_logs(self, after, limit).await
    }

    async fn put_guest(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<GuestRef, JournalError> {
        PgJournal::put_guest(self, tenant, name, bytes).await
    }

    async fn guest_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, JournalError> {
        PgJournal::guest_bytes(self, digest).await
    }

    async fn guest_by_name(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<GuestRef>, JournalError> {
        PgJournal::guest_by_name(self, tenant, name).await
    }

    async fn guests(&self, tenant: &str) -> Result<Vec<GuestRef>, JournalError> {
        PgJournal::guests(self, tenant).await
    }

    async fn count_logs(&self) -> Result<usize, JournalError> {
        PgJournal::count_logs(self).await
    }

    async fn verify(&self, log: LogId) -> Result<Verified, JournalError> {
        PgJournal::verify(self, log).await
    }

    async fn put_snapshot(
        &self,
        log: LogId,
        seq: u64,
        digest: &str,
        record: &[u8],
    ) -> Result<(), JournalError> {
        PgJournal::put_snapshot(self, log, seq, digest, record).await
    }

    async fn latest_snapshot(
        &self,
        log: LogId,
        digest: &str,
        before: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, JournalError> {
        PgJournal::latest_snapshot(self, log, digest, before).await
    }

    async fn snapshots(&self, log: LogId) -> Result<Vec<(u64, String, Vec<u8>)>, JournalError> {
        PgJournal::snapshots(self, log).await
    }

    async fn parent(&self, log: LogId) -> Result<Option<LogPos>, JournalError> {
        PgJournal::parent(self, log).await
    }

    async fn import(
        &self,
        tenant: &str,
        name: Option<&str>,
        events: &[StoredEvent],
        session_limit: Option<u64>,
    ) -> Result<LogId, JournalError> {
        PgJournal::import(self, tenant, name, events, session_limit).await
    }

    fn stats(&self) -> WriterStats {
        PgJournal::stats(self)
    }

    async fn acquire_lease(&self, log: LogId) -> Result<Lease, JournalError> {
        PgJournal::acquire_lease(self, log).await
    }

    async fn release_lease(&self, lease: Lease) -> Result<(), JournalError> {
        PgJournal::release_lease(self, lease).await
    }

    async fn timers(&self, due_by: u64, limit: usize) -> Result<Vec<Timer>, JournalError> {
        PgJournal::timers(self, due_by, limit).await
    }

    async fn wait_events(&self, log: LogId, from_seq: u64) -> Result<u64, JournalError> {
        PgJournal::wait_events(self, log, from_seq).await
    }
}

/// Renews this worker's heartbeat.
async fn beat(pool: &Pool, worker: uuid::Uuid) -> Result<(), JournalError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_round_trip_and_order() {
        for v in [0, 1, u64::MAX / 2, u64::MAX / 2 + 1, u64::MAX] {
            assert_eq!(back(bits(v)), v);
        }
        assert_eq!(order(u64::MAX), i64::MAX);
        assert_eq!(order(7), 7);
    }
}
