//! [`PgJournal`]: the journal in a PostgreSQL database (15 or later) that
//! many workers share (DESIGN §7, `docs/postgres.md`).
//!
//! Writes go through one group-commit writer task per journal handle, with
//! its own connection ([`writer`]); reads use a small pool of connections
//! and see the last committed state; one more connection listens for the
//! heads every worker's writer notifies ([`listen`]). A heartbeat task keeps
//! this worker's row young, which keeps its leases live. Every connection
//! uses TLS as the URL's `sslmode` says ([`tls`]; libpq's `prefer` when
//! absent).
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

mod grouped;
mod guests;
mod import;
mod keys;
mod leases;
mod listen;
mod plan;
mod reads;
mod schema;
mod statements;
mod tls;
mod writer;

pub use self::tls::SslMode;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres_rustls::MakeRustlsConnect;

use self::writer::{Counters, Request, Writer};
use super::chain::{ChainPos, Verified};
use super::commit::{Commit, CommitTicket};
use super::copy::CopiedLog;
use super::event::{BlobRef, GuestRef, LogPos, StoredEvent};
use super::info::LogInfo;
use super::lease::Heads;
use super::{
    IndexedKey, IndexedKeys, Journal, JournalError, Lease, LogId, LogPage, TenantCount, Timer,
    WriterStats,
};

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

/// One connection to the database at `url`, TLS as its `sslmode` says,
/// driven by a task of its own (for tools around the journal: the bench's
/// admin connection).
pub(crate) async fn connect_client(url: &str) -> Result<tokio_postgres::Client, JournalError> {
    let tls::Target { pg, tls, mode } = tls::target(url)?;
    let (client, connection) = pg
        .connect(tls)
        .await
        .map_err(|e| tls::failure(&e, mode).unwrap_or_else(|| e.into()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// The connector type every connection of a [`PgJournal`] uses.
type Tls = MakeRustlsConnect;

impl PgJournal {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`,
    /// with `?sslmode=…&sslrootcert=…` as libpq takes them), brings its schema
    /// to this build's version, registers this worker, and starts the writer,
    /// the heartbeat and the listener.
    ///
    /// Refused with [`JournalError::SchemaTooNew`] when a newer build has
    /// migrated the database, [`JournalError::BadUrl`] for TLS settings it
    /// cannot use, and [`JournalError::Tls`] when the server's certificate
    /// fails a check `sslmode` asks for.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), logbook::journal::JournalError> {
    /// use logbook::journal::*;
    /// let url = "postgres://logbook:logbook@127.0.0.1:5432/logbook";
    /// let journal = PgJournal::connect(url, PgConfig::default()).await?;
    /// let log = journal.resolve(DEFAULT_TENANT, "support-bot").await?;
    /// if let Some(log) = log {
    ///     // Only this worker appends to the log while it holds the lease.
    ///     let lease = journal.acquire_lease(log).await?;
    ///     let next = journal.info(log).await?.map_or(0, |i| i.next_seq);
    ///     let body = EventBody::GuestFailed { message: "trap".into() };
    ///     journal
    ///         .commit(Commit::append(log, next, vec![(1_700_000_000_000, body)]).fenced(lease.epoch))
    ///         .await?;
    ///     journal.release_lease(lease).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str, config: PgConfig) -> Result<Arc<PgJournal>, JournalError> {
        let tls::Target { pg, tls, mode } = tls::target(url)?;
        {
            let (mut client, connection) = pg
                .connect(tls.clone())
                .await
                .map_err(|e| tls::failure(&e, mode).unwrap_or_else(|| e.into()))?;
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
            tls.clone(),
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
        leases::beat(&pool, worker).await?;

        let heads = Arc::new(Heads::default());
        let (ready_tx, ready) = oneshot::channel();
        let listener = tokio::spawn(listen::run(
            role(&pg, listen::APPLICATION),
            tls.clone(),
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
                if let Err(e) = leases::beat(&beat_pool, worker).await {
                    tracing::warn!(error = %e, "postgres journal heartbeat failed");
                }
            }
        });

        let counters = Arc::new(Counters::default());
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(
            Writer::new(
                role(&pg, writer::APPLICATION),
                tls,
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

    /// Stores a log from another journal under its own id (see the trait).
    pub async fn copy_log(&self, log: &CopiedLog) -> Result<(), JournalError> {
        let prepared = crate::journal::copy::prepare(self, log).await?;
        let mut c = self.client().await?;
        import::copy(&mut c, log, prepared).await
    }

    /// The writer's counters.
    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

    /// How many of the writer's transactions (`stats().commits`) went the
    /// fast way, in one round trip with the rows of their commits grouped by
    /// kind; the others had a savepoint per commit (docs/postgres.md).
    pub fn grouped_batches(&self) -> u64 {
        self.counters.grouped.load(Ordering::Relaxed)
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

    async fn put_blob(&self, tenant: &str, bytes: &[u8]) -> Result<BlobRef, JournalError> {
        PgJournal::put_blob(self, tenant, bytes).await
    }

    async fn blob(&self, tenant: &str, digest: &str) -> Result<Option<Vec<u8>>, JournalError> {
        PgJournal::blob(self, tenant, digest).await
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

    async fn indexed_keys(&self, log: LogId, keys: &[&str]) -> Result<IndexedKeys, JournalError> {
        PgJournal::indexed_keys(self, log, keys).await
    }

    async fn index_keys(
        &self,
        log: LogId,
        mark: u64,
        keys: &[IndexedKey],
    ) -> Result<(), JournalError> {
        PgJournal::index_keys(self, log, mark, keys).await
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

    async fn copy_log(&self, log: &CopiedLog) -> Result<(), JournalError> {
        PgJournal::copy_log(self, log).await
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

    fn watch_head(&self, log: LogId) -> tokio::sync::watch::Receiver<u64> {
        self.heads.subscribe(log)
    }

    async fn orphans(&self, limit: usize) -> Result<Vec<LogId>, JournalError> {
        PgJournal::orphans(self, limit).await
    }

    fn lease_ttl_ms(&self) -> Option<u64> {
        Some(self.config.lease_ttl_ms)
    }
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
