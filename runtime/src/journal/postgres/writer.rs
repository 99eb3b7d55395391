//! The PostgreSQL group-commit writer: one task with its own connection
//! takes every pending commit (up to `max_batch_events`) into one
//! transaction, and answers each only after `COMMIT` has returned.
//!
//! A batch goes first the grouped way ([`grouped`](super::grouped)) when it
//! can: one round trip, one statement for every head it moves and event it
//! adds, one for the effects it opens and one for those it ends. A batch that
//! cannot be grouped (a fork, two appends to one log, an approval and an open
//! of one key), or whose grouped form was refused, goes with a savepoint per
//! commit, in two round trips when nothing is refused: one pipeline of
//! `BEGIN`, each commit's statements between `SAVEPOINT` and `RELEASE`, and
//! the `NOTIFY` of the new heads; and `COMMIT`. One more, before either,
//! reads the rows its planning needs ([`Fetched`]) that the writer's cache
//! of the heads it wrote does not hold.
//!
//! Invariants:
//! - A commit refused by planning sends nothing. A commit refused by the
//!   database (its head moved, its lease was taken over, its name or id was
//!   taken, its tenant's limit reached) is rolled back to its savepoint,
//!   alone; the commits after it in the pipeline, which the aborted
//!   transaction refused unread, are planned again and sent again. A grouped
//!   batch that the database refuses wrote nothing, and is sent again with
//!   savepoints, to find which commit it was.
//! - Every ticket of a batch is answered after the batch's `COMMIT` returned
//!   (or with the error that failed it: then whether it was written is
//!   unknown), on a session whose `synchronous_commit` is not `off`, so an
//!   answered commit is on disk.
//! - The heads of the logs a batch wrote are notified on `logbook_heads` in
//!   the same transaction, so PostgreSQL delivers them at commit, to every worker.
//! - The head cache holds only heads of committed batches; it is emptied when
//!   a batch fails and loses the logs of refused commits. A cached head never
//!   refuses a commit on its own: a stale-looking append re-reads its log.
//! - Statements of a pipeline are prepared once per connection and sent in
//!   order: each future is first polled in order, and tokio-postgres sends a
//!   request when its future is first polled.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::grouped::Grouped;
use super::plan::{Fetched, FetchedLog, Head, Op, Plan, View};
use super::statements::Statements;
use super::{bits, hash32, listen, reads};
use crate::journal::tenants::compacted_from;
use crate::journal::{
    Append, Commit, Committed, EventBody, JournalError, LogId, WriterStats, decode_body,
};

/// What a caller of `commit` gets back.
pub(super) type Answer = Result<Committed, JournalError>;

/// More logs than this in the head cache and it is emptied before the next
/// batch: each entry is small, but the number of logs is unbounded.
const HEAD_CACHE_MAX_LOGS: usize = 100_000;

/// How often a commit that lost a deadlock or serialization race to another
/// worker's transaction is tried again before its error is the answer.
const RACE_RETRIES: u32 = 3;

/// The `application_name` of the writer's connection.
pub(super) const APPLICATION: &str = "logbook-writer";

/// A commit waiting for the writer, with where to send its answer.
pub(super) struct Request {
    pub(super) commit: Commit,
    pub(super) reply: oneshot::Sender<Answer>,
}

/// The writer's counters, shared with the journal handle.
#[derive(Debug, Default)]
pub(super) struct Counters {
    commits: AtomicU64,
    events: AtomicU64,
    requests: AtomicU64,
    /// Transactions written by the grouped path (`grouped`).
    pub(super) grouped: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> WriterStats {
        WriterStats {
            commits: self.commits.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// The epoch an append is fenced by.
fn lease_of(append: &Append) -> Option<u64> {
    append.lease
}

/// The writer's connection and its prepared statements.
struct Conn {
    client: Client,
    st: Statements,
}

pub(super) struct Writer {
    config: tokio_postgres::Config,
    tls: super::Tls,
    conn: Option<Conn>,
    max_batch_events: usize,
    counters: Arc<Counters>,
    /// Heads (and tenants) of logs as this writer's committed batches left
    /// them: a batch that only appends to them needs no read before it.
    /// Another worker may have moved them since; see [`Writer::write_batch`].
    heads: HashMap<LogId, FetchedLog>,
}

impl Writer {
    pub(super) fn new(
        config: tokio_postgres::Config,
        tls: super::Tls,
        max_batch_events: usize,
        counters: Arc<Counters>,
    ) -> Self {
        Writer {
            config,
            tls,
            conn: None,
            max_batch_events,
            counters,
            heads: HashMap::new(),
        }
    }

    /// Serves requests until every sender is gone.
    pub(super) async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        while let Some(first) = requests.recv().await {
            let mut events = first.commit.event_count();
            let mut batch = vec![first];
            while events < self.max_batch_events {
                match requests.try_recv() {
                    Ok(r) => {
                        events += r.commit.event_count();
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.run_batch(batch).await;
        }
    }

    async fn run_batch(&mut self, batch: Vec<Request>) {
        let requests = batch.len() as u64;
        let (replies, commits): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|r| (r.reply, r.commit)).unzip();
        let outcome = self.write_batch(&commits).await;
        self.counters
            .requests
            .fetch_add(requests, Ordering::Relaxed);
        match outcome {
            Ok(answers) => {
                let events: usize = answers
                    .iter()
                    .filter_map(|a| a.as_ref().ok())
                    .map(|c| c.events.len())
                    .sum();
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .events
                    .fetch_add(events as u64, Ordering::Relaxed);
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // A caller that dropped its ticket does not want the answer.
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "postgres journal transaction failed");
                if let Some(conn) = self.conn.take() {
                    if conn.client.is_closed() {
                        // Reconnect for the next batch.
                    } else if conn.client.batch_execute("ROLLBACK").await.is_ok() {
                        self.conn = Some(conn);
                    }
                }
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    async fn conn(&mut self) -> Result<&Conn, JournalError> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let (client, connection) = self.config.connect(self.tls.clone()).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "postgres journal writer connection ended");
                }
            });
            // A ticket is answered after COMMIT returns: with
            // `synchronous_commit = off` that would be before the WAL is on
            // disk. `local`, `remote_write`, `remote_apply` are durable here.
            let setting = client.query_one("SHOW synchronous_commit", &[]).await?;
            if setting.try_get::<_, String>(0)? == "off" {
                client.batch_execute("SET synchronous_commit = on").await?;
            }
            // The writer's statements find their rows by primary key; a
            // generic plan is never worse, is planned once, and joins the
            // grouped statements' arrays to `logs` row by row in array order
            // (a custom plan may hash-join a whole scan of the table).
            client
                .batch_execute("SET plan_cache_mode = force_generic_plan")
                .await?;
            let st = Statements::prepare(&client).await?;
            self.conn = Some(Conn { client, st });
        }
        self.conn.as_ref().ok_or(JournalError::Closed)
    }

    /// Writes a batch in one transaction. The outer error fails the whole
    /// batch; the inner results are each commit's own answer.
    ///
    /// Heads come from the cache when it has them. A cached head may be
    /// behind (another worker appended since): an append it makes look
    /// stale is not refused on its word, but the log is read again and the
    /// batch planned again before anything is sent; an append it makes look
    /// right is checked by `logbook_append` in any case. The cache is
    /// emptied when a batch fails, and loses every log a refused commit named.
    async fn write_batch(&mut self, commits: &[Commit]) -> Result<Vec<Answer>, JournalError> {
        // Out of `self` while the connection is borrowed; dropped on failure.
        let mut cache = std::mem::take(&mut self.heads);
        if cache.len() > HEAD_CACHE_MAX_LOGS {
            cache.clear();
        }
        let conn = self.conn().await?;
        let (mut fetched, mut cached) = fetch(conn, commits, &cache).await?;
        let mut refused: Vec<Option<JournalError>> = vec![None; commits.len()];
        let mut races = vec![0u32; commits.len()];
        // Commits before `sent` are settled in the open transaction.
        let mut sent = 0;
        let mut begun = false;
        // Whether the batch goes with a savepoint per commit: it cannot be
        // grouped, or its grouped form was refused.
        let mut resent = false;
        loop {
            let mut view = View::new(&fetched);
            let mut plans: Vec<Option<Plan>> = Vec::with_capacity(commits.len());
            for (i, commit) in commits.iter().enumerate() {
                if refused[i].is_some() {
                    plans.push(None);
                    continue;
                }
                match view.plan(commit, lease_of) {
                    Ok(plan) => plans.push(Some(plan)),
                    Err(e) => {
                        refused[i] = Some(e);
                        plans.push(None);
                    }
                }
            }
            if !begun {
                let stale: Vec<LogId> = refused
                    .iter()
                    .filter_map(|r| match r {
                        Some(JournalError::Conflict { log, .. }) if cached.contains(log) => {
                            Some(*log)
                        }
                        _ => None,
                    })
                    .collect();
                if !stale.is_empty() {
                    drop(view);
                    for log in &stale {
                        cached.remove(log);
                        fetched.logs.remove(log);
                    }
                    read_logs(conn, &stale, &mut fetched).await?;
                    refused.iter_mut().for_each(|r| *r = None);
                    continue;
                }
            }
            let mut heads: HashMap<LogId, u64> = HashMap::new();
            for plan in plans.iter().flatten() {
                for (log, next) in &plan.heads {
                    let h = heads.entry(*log).or_default();
                    *h = (*h).max(*next);
                }
            }
            let notify = listen::payloads(heads.iter().map(|(l, n)| (*l, *n)));

            if !begun
                && !resent
                && let Some(grouped) = Grouped::of(&plans)
            {
                if grouped.write(&conn.client, &conn.st, &notify).await? {
                    self.counters.grouped.fetch_add(1, Ordering::Relaxed);
                    let answers = settle(commits, plans, refused, view.ends(), &mut cache);
                    self.heads = cache;
                    return Ok(answers);
                }
                // Refused somewhere, and nothing written: one savepoint per
                // commit finds which.
                resent = true;
                continue;
            }
            resent = true;

            let mut steps: Vec<Step> = Vec::new();
            if !begun {
                steps.push(Step::Begin);
            }
            for (i, plan) in plans.iter().enumerate().skip(sent) {
                if let Some(plan) = plan {
                    steps.push(Step::Savepoint);
                    steps.extend((0..plan.ops.len()).map(|j| Step::Op(i, j)));
                    steps.push(Step::Release);
                }
            }
            steps.push(Step::Notify);
            let results =
                pipeline(steps.iter().map(|s| s.run(conn, &plans, &notify)).collect()).await;
            begun = true;

            let Some((at, err)) = results
                .into_iter()
                .enumerate()
                .find_map(|(at, r)| r.err().map(|e| (at, e)))
            else {
                conn.client.batch_execute("COMMIT").await?;
                let answers = settle(commits, plans, refused, view.ends(), &mut cache);
                self.heads = cache;
                return Ok(answers);
            };
            let Step::Op(k, j) = steps[at] else {
                return Err(err.into());
            };
            let op = plans[k]
                .as_ref()
                .and_then(|p| p.ops.get(j))
                .ok_or(JournalError::Closed)?;
            conn.client
                .batch_execute("ROLLBACK TO SAVEPOINT c; RELEASE SAVEPOINT c")
                .await?;
            match refusal(op, err) {
                Refusal::Refused(e) => {
                    refused[k] = Some(e);
                    sent = k + 1;
                }
                Refusal::Race(_) if races[k] < RACE_RETRIES => {
                    races[k] += 1;
                    sent = k;
                }
                Refusal::Moved(log, _) if races[k] < RACE_RETRIES => {
                    races[k] += 1;
                    sent = k;
                    cached.remove(&log);
                    fetched.logs.remove(&log);
                    read_logs(conn, &[log], &mut fetched).await?;
                }
                // Lost every race: this commit alone is refused.
                Refusal::Race(err) | Refusal::Moved(_, err) => {
                    refused[k] = Some(err.into());
                    sent = k + 1;
                }
                Refusal::Failed(err) => return Err(err.into()),
            }
        }
    }
}

/// The answers of a committed batch, and the head cache moved past it: the
/// heads it left, without the logs its refused commits named.
fn settle(
    commits: &[Commit],
    plans: Vec<Option<Plan>>,
    refused: Vec<Option<JournalError>>,
    ends: Vec<(LogId, FetchedLog)>,
    cache: &mut HashMap<LogId, FetchedLog>,
) -> Vec<Answer> {
    for (commit, refused) in commits.iter().zip(&refused) {
        if refused.is_some() {
            for log in commit.appends.iter().map(|a| a.log) {
                cache.remove(&log);
            }
        }
    }
    cache.extend(ends);
    plans
        .into_iter()
        .zip(refused)
        .map(|(plan, refused)| match (plan, refused) {
            (_, Some(e)) => Err(e),
            (Some(plan), None) => Ok(plan.committed),
            (None, None) => Err(JournalError::Closed),
        })
        .collect()
}

/// One message of a batch's pipeline.
#[derive(Clone, Copy, Debug)]
enum Step {
    Begin,
    Savepoint,
    Op(usize, usize),
    Release,
    Notify,
}

pub(super) type StepFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a>>;

impl Step {
    fn run<'a>(
        self,
        conn: &'a Conn,
        plans: &'a [Option<Plan>],
        notify: &'a [String],
    ) -> StepFuture<'a> {
        let c = &conn.client;
        match self {
            Step::Begin => Box::pin(c.batch_execute("BEGIN")),
            // One name serves every commit: a savepoint is released (or
            // rolled back) before the next is taken.
            Step::Savepoint => Box::pin(c.batch_execute("SAVEPOINT c")),
            Step::Release => Box::pin(c.batch_execute("RELEASE SAVEPOINT c")),
            Step::Notify => {
                Box::pin(async move { c.execute(&conn.st.notify, &[&notify]).await.map(drop) })
            }
            Step::Op(i, j) => match plans
                .get(i)
                .and_then(Option::as_ref)
                .and_then(|p| p.ops.get(j))
            {
                Some(op) => conn.st.run(c, op),
                None => Box::pin(async { Ok(()) }),
            },
        }
    }
}

/// Polls every future, each first in order (so their requests go out in
/// order), until all are done; their results in order.
pub(super) async fn pipeline<T>(
    futures: Vec<Pin<Box<dyn Future<Output = T> + Send + '_>>>,
) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut results: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, r) in futures.iter_mut().zip(results.iter_mut()) {
            if let Some(fut) = f {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *r = Some(v);
                        *f = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    results.into_iter().flatten().collect()
}

/// How a failed statement answers its commit.
enum Refusal {
    /// The commit is refused with this error; the batch goes on.
    Refused(JournalError),
    /// Another worker's transaction won a race (deadlock, serialization):
    /// the commit may be tried again.
    Race(tokio_postgres::Error),
    /// Another worker moved the head of a log that an append goes at the
    /// head of, whatever it is (`Append::at_head`): the commit may be
    /// planned again once the log is read again.
    Moved(LogId, tokio_postgres::Error),
    /// The connection or the transaction failed: the batch fails.
    Failed(tokio_postgres::Error),
}

fn refusal(op: &Op, err: tokio_postgres::Error) -> Refusal {
    let Some(db) = err.as_db_error() else {
        return Refusal::Failed(err);
    };
    let code = db.code();
    if *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE {
        return Refusal::Race(err);
    }
    let unique = *code == SqlState::UNIQUE_VIOLATION;
    let refused = match (op, code.code()) {
        (Op::NewLog(row), _) if unique => JournalError::LogExists(row.id),
        (Op::NewLog(row), "LB005") => match row.parent {
            Some((parent, _)) => JournalError::UnknownLog(parent),
            None => JournalError::UnknownLog(row.id),
        },
        (Op::NameNew { tenant, name, .. }, _) if unique => JournalError::NameTaken {
            tenant: tenant.clone(),
            name: name.clone(),
        },
        (Op::TenantAdd { tenant, limit, .. }, "LB006") => JournalError::LimitReached {
            tenant: tenant.clone(),
            limit: limit.unwrap_or_default(),
        },
        (Op::Advance(a), "LB001") => JournalError::UnknownLog(a.log),
        (Op::Advance(a), "LB002") => JournalError::Fenced {
            log: a.log,
            epoch: a.lease.unwrap_or_default(),
        },
        (Op::Advance(a), "LB003") if a.at_head => return Refusal::Moved(a.log, err),
        (Op::Advance(a), "LB003") => match db.message().parse::<i64>() {
            Ok(actual) => JournalError::Conflict {
                log: a.log,
                expected: a.expected,
                actual: super::back(actual),
            },
            Err(_) => return Refusal::Failed(err),
        },
        (Op::Advance(a), "LB004") => JournalError::Corrupt(format!(
            "log {}: the stored head's hash is not the one its seq had when read",
            a.log
        )),
        (Op::NameMove { log, .. }, "LB001") => JournalError::UnknownLog(*log),
        (Op::Claim { log, lease, .. }, "LB002") => JournalError::Fenced {
            log: *log,
            epoch: *lease,
        },
        // Any other error of the server refuses this commit alone.
        _ => JournalError::Postgres(Arc::new(err)),
    };
    Refusal::Refused(refused)
}

/// Reads the rows planning the batch needs, in one pipeline (and one more
/// per fork point or compaction, which are rare).
async fn fetch(
    conn: &Conn,
    commits: &[Commit],
    cache: &HashMap<LogId, FetchedLog>,
) -> Result<(Fetched, HashSet<LogId>), JournalError> {
    let mut ids = BTreeSet::new();
    let mut forks = BTreeSet::new();
    let mut continued = BTreeSet::new();
    let mut cacheable = BTreeSet::new();
    for commit in commits {
        cacheable.extend(commit.appends.iter().map(|a| a.log));
        cacheable.extend(commit.names.iter().map(|n| n.log));
        for nl in &commit.new_logs {
            if let Some(p) = &nl.created.parent
                && let Ok(pid) = LogId::parse_str(&p.log)
            {
                ids.insert(pid);
                forks.insert((pid, p.seq));
            }
            if let Some((from, seq)) = compacted_from(&nl.created) {
                ids.insert(LogId::from_u128(from));
                continued.insert((LogId::from_u128(from), seq));
            }
        }
    }
    let mut fetched = Fetched::default();
    let mut cached = HashSet::new();
    // Fork parents and compacted logs are always read: a fork checks its
    // point against the parent's head, which a stale cache could put too low.
    for log in cacheable {
        match cache.get(&log) {
            Some(l) if !ids.contains(&log) => {
                fetched.logs.insert(log, l.clone());
                cached.insert(log);
            }
            _ => {
                ids.insert(log);
            }
        }
    }
    let ids: Vec<LogId> = ids.into_iter().collect();
    read_logs(conn, &ids, &mut fetched).await?;
    for (pid, seq) in forks {
        if fetched
            .logs
            .get(&pid)
            .is_none_or(|l| seq >= l.head.next_seq)
        {
            continue;
        }
        let rows = reads::ancestry_rows(&conn.client, &conn.st.ancestry, pid, seq, 1).await?;
        if let Some(row) = rows.into_iter().next().filter(|r| r.seq == seq) {
            fetched.fork_points.insert((pid, seq), row.hash);
        }
    }
    for (from, seq) in continued {
        if !fetched.logs.contains_key(&from) {
            continue;
        }
        let row = conn
            .client
            .query_opt(&conn.st.fetch_body, &[&from, &bits(seq)])
            .await?;
        let into = match row {
            Some(row) => {
                let body: Vec<u8> = row.try_get(0)?;
                match decode_body(&body)? {
                    EventBody::Continued { log } => LogId::parse_str(&log).ok(),
                    _ => None,
                }
            }
            None => None,
        };
        fetched.continued.insert((from, seq), into);
    }
    Ok((fetched, cached))
}

/// Reads the heads and tenants of `ids` (those that exist) into `fetched`.
async fn read_logs(conn: &Conn, ids: &[LogId], fetched: &mut Fetched) -> Result<(), JournalError> {
    if ids.is_empty() {
        return Ok(());
    }
    for row in conn.client.query(&conn.st.fetch_logs, &[&ids]).await? {
        let id: LogId = row.try_get(0)?;
        fetched.logs.insert(
            id,
            FetchedLog {
                tenant: row.try_get(1)?,
                head: Head {
                    next_seq: super::back(row.try_get(2)?),
                    last_hash: hash32(row.try_get(3)?)?,
                },
            },
        );
    }
    Ok(())
}
