//! The writer's statements: prepared once per connection, one for each kind
//! of row a commit writes ([`Op`]), each re-checking in the database what
//! planning could only check against rows read before the batch.
//!
//! Invariant: a statement that refuses raises an error whose SQLSTATE names
//! the rule (`LB001`-`LB006`, or a primary key's unique violation), so the
//! writer can answer the commit with the journal's error for it. The grouped
//! statements of a batch (`*_all`, see [`grouped`](super::grouped)) write
//! the rows of many commits; one that refuses (`LB007`, or any other error)
//! only says that the batch must be sent again, a savepoint per commit.

use tokio_postgres::{Client, Statement};

use super::plan::Op;
use super::writer::StepFuture;
use super::{bits, order, reads};
use crate::journal::JournalError;

/// The writer's statements, prepared on its connection.
pub(super) struct Statements {
    pub(super) new_log: Statement,
    pub(super) new_fork: Statement,
    pub(super) name_new: Statement,
    pub(super) tenant_add: Statement,
    pub(super) fork_opens: Statement,
    pub(super) advance: Statement,
    pub(super) flags: Statement,
    pub(super) open_put: Statement,
    pub(super) open_await_or_open: Statement,
    pub(super) open_await: Statement,
    pub(super) open_decided: Statement,
    pub(super) claim: Statement,
    pub(super) open_remove: Statement,
    pub(super) name_move: Statement,
    pub(super) advance_all: Statement,
    pub(super) open_put_all: Statement,
    pub(super) open_remove_all: Statement,
    pub(super) notify: Statement,
    pub(super) fetch_logs: Statement,
    pub(super) fetch_body: Statement,
    pub(super) ancestry: Statement,
}

impl Statements {
    pub(super) async fn prepare(c: &Client) -> Result<Self, JournalError> {
        Ok(Statements {
            new_log: c
                .prepare(
                    "WITH e AS (INSERT INTO events (log, seq, at, hash, body) \
                       VALUES ($1, $7::int8 - 1, $6, $8, $10)) \
                     INSERT INTO logs (id, tenant, name, guest_name, guest_digest, created_at, \
                     next_seq, last_hash, session) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .await?,
            // A fork at its parent's head starts in the parent's state (its
            // flags; failed only on the same guest); an earlier fork with none.
            new_fork: c
                .prepare(
                    "WITH p AS (SELECT next_seq, finished, failed, guest_digest FROM logs \
                       WHERE id = $10 AND tenant = $2 AND next_seq > $11), \
                     i AS (INSERT INTO logs (id, tenant, name, guest_name, guest_digest, \
                       created_at, next_seq, last_hash, session, parent_log, parent_seq, \
                       finished, failed) \
                       SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                         p.next_seq = $11 + 1 AND p.finished, \
                         p.next_seq = $11 + 1 AND p.failed AND p.guest_digest = $5 \
                       FROM p RETURNING 1), \
                     e AS (INSERT INTO events (log, seq, at, hash, body) \
                       SELECT $1, $7::int8 - 1, $6, $8, $12 FROM i) \
                     SELECT logbook_require(EXISTS (SELECT 1 FROM i), 'LB005', 'unknown parent')",
                )
                .await?,
            name_new: c
                .prepare("INSERT INTO names (tenant, name, log) VALUES ($1, $2, $3)")
                .await?,
            tenant_add: c
                .prepare(
                    "WITH u AS (INSERT INTO tenants AS t (tenant, logs, sessions) \
                       VALUES ($1, 1, $2::int8) ON CONFLICT (tenant) DO UPDATE \
                       SET logs = t.logs + 1, sessions = t.sessions + EXCLUDED.sessions \
                       RETURNING sessions) \
                     SELECT logbook_require($3::int8 IS NULL OR $2::int8 = 0 \
                       OR (SELECT sessions FROM u) <= $3::int8, 'LB006', 'limit reached')",
                )
                .await?,
            fork_opens: c
                .prepare(
                    "INSERT INTO open (log, key, effect, awaiting_approval, is_ask, sleep_until) \
                     SELECT $1, o.key, o.effect, o.awaiting_approval, o.is_ask, o.sleep_until \
                     FROM open o JOIN logs p ON p.id = o.log \
                     WHERE o.log = $2 AND p.next_seq = $3::int8 + 1",
                )
                .await?,
            advance: c
                .prepare("SELECT logbook_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                .await?,
            flags: c
                .prepare(
                    "UPDATE logs SET finished = finished OR $2, failed = COALESCE($3, failed), \
                     stopped = COALESCE($6, stopped), guest_name = COALESCE($4, guest_name), \
                     guest_digest = COALESCE($5, guest_digest) WHERE id = $1",
                )
                .await?,
            open_put: c
                .prepare(
                    "INSERT INTO open (log, key, effect, awaiting_approval, is_ask, sleep_until) \
                     VALUES ($1, $2, $3, false, $4, $5) ON CONFLICT (log, key) DO UPDATE \
                     SET effect = EXCLUDED.effect, awaiting_approval = false, unstarted = false, \
                     is_ask = EXCLUDED.is_ask, sleep_until = EXCLUDED.sleep_until",
                )
                .await?,
            open_await_or_open: c
                .prepare(
                    "INSERT INTO open (log, key, effect, awaiting_approval, is_ask, sleep_until) \
                     VALUES ($1, $2, $3, true, $4, $5) ON CONFLICT (log, key) DO UPDATE \
                     SET awaiting_approval = true",
                )
                .await?,
            open_await: c
                .prepare("UPDATE open SET awaiting_approval = true WHERE log = $1 AND key = $2")
                .await?,
            // The deleted and the updated rows are disjoint (is_ask or not).
            open_decided: c
                .prepare(
                    "WITH d AS (DELETE FROM open WHERE log = $1 AND key = $2 AND is_ask) \
                     UPDATE open SET awaiting_approval = false, unstarted = $3 \
                     WHERE log = $1 AND key = $2 AND NOT is_ask",
                )
                .await?,
            // A data-modifying CTE runs whether or not it is read; a refusal
            // undoes it with the rest of the commit.
            claim: c
                .prepare(
                    "WITH u AS (UPDATE open SET unstarted = false \
                       WHERE log = $1 AND key = $2 AND unstarted) \
                     SELECT logbook_require(EXISTS (SELECT 1 FROM logs \
                       WHERE id = $1 AND lease_epoch = $3::int8), 'LB002', 'fenced')",
                )
                .await?,
            open_remove: c
                .prepare("DELETE FROM open WHERE log = $1 AND key = $2")
                .await?,
            // The previous holder and the new one are different rows.
            name_move: c
                .prepare(
                    "WITH l AS (SELECT id FROM logs WHERE id = $3 AND tenant = $1), \
                     prev AS (SELECT log FROM names WHERE tenant = $1 AND name = $2), \
                     ins AS (INSERT INTO names (tenant, name, log) SELECT $1, $2, id FROM l \
                       ON CONFLICT (tenant, name) DO UPDATE SET log = EXCLUDED.log RETURNING 1), \
                     clr AS (UPDATE logs SET name = NULL WHERE id IN (SELECT log FROM prev) \
                       AND id <> $3 AND name = $2 AND EXISTS (SELECT 1 FROM l) RETURNING 1), \
                     setn AS (UPDATE logs SET name = $2 WHERE id IN (SELECT id FROM l) RETURNING 1) \
                     SELECT logbook_require(EXISTS (SELECT 1 FROM l), 'LB001', 'unknown log')",
                )
                .await?,
            // The grouped statements of a batch (`grouped`). Every head moves
            // in one statement, which also inserts every event: `LB007` when
            // any head was not where the batch expected it (the batch is sent
            // again with savepoints, where each refusal is named). Rows are
            // locked in the order of the arrays, which the writer sorts.
            advance_all: c
                .prepare(
                    "WITH a AS (SELECT * FROM unnest($1::uuid[], $2::int8[], $3::bytea[], \
                       $4::int8[], $5::int8[], $6::bytea[]) AS a(log, expected, prev, lease, next, hash)), \
                     u AS (UPDATE logs l SET next_seq = a.next, last_hash = a.hash FROM a \
                       WHERE l.id = a.log AND l.next_seq = a.expected AND l.last_hash = a.prev \
                         AND (a.lease IS NULL OR l.lease_epoch = a.lease) RETURNING 1), \
                     e AS (INSERT INTO events (log, seq, at, hash, body) \
                       SELECT * FROM unnest($7::uuid[], $8::int8[], $9::int8[], $10::bytea[], $11::bytea[])) \
                     SELECT logbook_require((SELECT count(*) FROM u) = cardinality($1::uuid[]), \
                       'LB007', 'a head moved')",
                )
                .await?,
            // At most one row per key (the writer keeps the last).
            open_put_all: c
                .prepare(
                    "INSERT INTO open (log, key, effect, awaiting_approval, is_ask, sleep_until) \
                     SELECT o.log, o.key, o.effect, false, o.is_ask, o.sleep_until \
                     FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::bool[], $5::int8[]) \
                       AS o(log, key, effect, is_ask, sleep_until) \
                     ON CONFLICT (log, key) DO UPDATE \
                     SET effect = EXCLUDED.effect, awaiting_approval = false, unstarted = false, \
                     is_ask = EXCLUDED.is_ask, sleep_until = EXCLUDED.sleep_until",
                )
                .await?,
            open_remove_all: c
                .prepare(
                    "DELETE FROM open o USING unnest($1::uuid[], $2::text[]) AS r(log, key) \
                     WHERE o.log = r.log AND o.key = r.key",
                )
                .await?,
            notify: c
                .prepare("SELECT pg_notify('logbook_heads', x) FROM unnest($1::text[]) x")
                .await?,
            fetch_logs: c
                .prepare("SELECT id, tenant, next_seq, last_hash FROM logs WHERE id = ANY($1)")
                .await?,
            fetch_body: c
                .prepare("SELECT body FROM events WHERE log = $1 AND seq = $2")
                .await?,
            ancestry: c.prepare(reads::ANCESTRY_EVENTS).await?,
        })
    }

    /// Sends one statement of a commit.
    pub(super) fn run<'a>(&'a self, c: &'a Client, op: &'a Op) -> StepFuture<'a> {
        Box::pin(async move {
            match op {
                Op::NewLog(row) => {
                    let hash = row.head.last_hash.to_vec();
                    let (at, next) = (bits(row.created_at), bits(row.head.next_seq));
                    match row.parent {
                        None => {
                            c.execute(
                                &self.new_log,
                                &[
                                    &row.id,
                                    &row.tenant,
                                    &row.name,
                                    &row.guest.name,
                                    &row.guest.digest,
                                    &at,
                                    &next,
                                    &hash,
                                    &row.session,
                                    &row.body,
                                ],
                            )
                            .await
                        }
                        Some((parent, seq)) => {
                            c.execute(
                                &self.new_fork,
                                &[
                                    &row.id,
                                    &row.tenant,
                                    &row.name,
                                    &row.guest.name,
                                    &row.guest.digest,
                                    &at,
                                    &next,
                                    &hash,
                                    &row.session,
                                    &parent,
                                    &bits(seq),
                                    &row.body,
                                ],
                            )
                            .await
                        }
                    }
                }
                Op::NameNew { tenant, name, log } => {
                    c.execute(&self.name_new, &[tenant, name, log]).await
                }
                Op::TenantAdd {
                    tenant,
                    session,
                    limit,
                } => {
                    let limit = limit.map(order);
                    c.execute(&self.tenant_add, &[tenant, &i64::from(*session), &limit])
                        .await
                }
                Op::ForkOpens {
                    log,
                    parent,
                    parent_seq,
                } => {
                    c.execute(&self.fork_opens, &[log, parent, &bits(*parent_seq)])
                        .await
                }
                Op::Advance(a) => {
                    let lease = a.lease.map(bits);
                    c.execute(
                        &self.advance,
                        &[
                            &a.log,
                            &bits(a.expected),
                            &a.prev.as_slice(),
                            &lease,
                            &bits(a.head.next_seq),
                            &a.head.last_hash.as_slice(),
                            &a.events.seqs,
                            &a.events.ats,
                            &a.events.hashes,
                            &a.events.bodies,
                        ],
                    )
                    .await
                }
                Op::Flags {
                    log,
                    finished,
                    failed,
                    stopped,
                    guest,
                } => {
                    let name = guest.as_ref().map(|g| g.name.as_str());
                    let digest = guest.as_ref().map(|g| g.digest.as_str());
                    c.execute(
                        &self.flags,
                        &[log, finished, failed, &name, &digest, stopped],
                    )
                    .await
                }
                Op::OpenPut { log, key, effect } => {
                    c.execute(
                        &self.open_put,
                        &[log, key, &effect.json, &effect.is_ask, &effect.sleep_until],
                    )
                    .await
                }
                Op::OpenAwait {
                    log,
                    key,
                    effect: Some(effect),
                } => {
                    c.execute(
                        &self.open_await_or_open,
                        &[log, key, &effect.json, &effect.is_ask, &effect.sleep_until],
                    )
                    .await
                }
                Op::OpenAwait {
                    log,
                    key,
                    effect: None,
                } => c.execute(&self.open_await, &[log, key]).await,
                Op::OpenDecided {
                    log,
                    key,
                    unstarted,
                } => c.execute(&self.open_decided, &[log, key, unstarted]).await,
                Op::Claim { log, key, lease } => {
                    let lease = bits(*lease);
                    c.execute(&self.claim, &[log, key, &lease]).await
                }
                Op::OpenRemove { log, key } => c.execute(&self.open_remove, &[log, key]).await,
                Op::NameMove { tenant, name, log } => {
                    c.execute(&self.name_move, &[tenant, name, log]).await
                }
            }
            .map(drop)
        })
    }
}
