//! The writer's fast path: a batch in one round trip, its rows grouped by
//! kind. Every head the batch moves and every event it adds go in one
//! statement, every open effect it opens in one and every one it ends in
//! one, then the `NOTIFY` and `COMMIT`, all in one pipeline with no
//! savepoints.
//!
//! Invariants:
//! - A batch takes this path only when grouping cannot change what it
//!   writes: no fork (its statement reads the parent's head and open
//!   effects, which commits before it in the batch may move), no log
//!   appended to by two of its commits (the grouped statement moves each
//!   head once), and no key of an open effect touched both by an open or
//!   end and by an op sent alone (an approval, a decision, a claim).
//! - Ops that are not grouped (new logs, names, tenants' counts, flags,
//!   approvals, claims) are sent alone, first, in commit order: a new log's
//!   row is there before the append to it, and no grouped op reads or
//!   writes a row they write, other than a log's head, which they only read.
//! - Of the opens and ends of one key in a batch only the last counts: an
//!   open replaces the whole row (as if the key were ended first), an end
//!   removes it.
//! - Any error aborts the transaction, which the pipelined `COMMIT` then
//!   rolls back: nothing of the batch is written, and the writer sends it
//!   again with a savepoint per commit, where a refusal is answered alone.
//!   A batch is answered from this path only when every statement and the
//!   `COMMIT` returned without error.

use std::collections::{BTreeMap, HashSet};

use tokio_postgres::Client;

use super::plan::{Op, Plan};
use super::statements::Statements;
use super::writer::{StepFuture, pipeline};
use crate::journal::LogId;

/// The heads a batch moves, as columns, in log order (the order their rows
/// are locked in, so two workers' batches lock shared rows alike).
#[derive(Debug, Default)]
struct Heads<'a> {
    logs: Vec<LogId>,
    expected: Vec<i64>,
    prev: Vec<&'a [u8]>,
    lease: Vec<Option<i64>>,
    next: Vec<i64>,
    hash: Vec<&'a [u8]>,
}

/// The events a batch adds, as columns.
#[derive(Debug, Default)]
struct Events<'a> {
    logs: Vec<LogId>,
    seqs: Vec<i64>,
    ats: Vec<i64>,
    hashes: Vec<&'a [u8]>,
    bodies: Vec<&'a [u8]>,
}

/// The open effects a batch opens (or replaces), as columns.
#[derive(Debug, Default)]
struct Opens<'a> {
    logs: Vec<LogId>,
    keys: Vec<&'a str>,
    effects: Vec<&'a [u8]>,
    is_ask: Vec<bool>,
    sleep_until: Vec<Option<i64>>,
}

/// A batch's statements, grouped.
#[derive(Debug, Default)]
pub(super) struct Grouped<'a> {
    /// Sent one by one, in commit order, before the grouped ones.
    alone: Vec<&'a Op>,
    heads: Heads<'a>,
    events: Events<'a>,
    opens: Opens<'a>,
    /// The open effects a batch ends: logs and keys.
    ends: (Vec<LogId>, Vec<&'a str>),
}

impl<'a> Grouped<'a> {
    /// The batch's statements, grouped; `None` when grouping could change
    /// what it writes (see the module's invariants).
    pub(super) fn of(plans: &'a [Option<Plan>]) -> Option<Self> {
        let mut g = Grouped::default();
        let mut advances = BTreeMap::new();
        // The last open or end of each key, in key order.
        let mut last: BTreeMap<(LogId, &str), &Op> = BTreeMap::new();
        let mut keys_alone: HashSet<(LogId, &str)> = HashSet::new();
        for op in plans.iter().flatten().flat_map(|p| &p.ops) {
            match op {
                Op::NewLog(row) if row.parent.is_some() => return None,
                Op::ForkOpens { .. } => return None,
                Op::Advance(a) => {
                    if advances.insert(a.log, a).is_some() {
                        return None;
                    }
                }
                Op::OpenPut { log, key, .. } | Op::OpenRemove { log, key } => {
                    last.insert((*log, key.as_str()), op);
                }
                Op::OpenAwait { log, key, .. }
                | Op::OpenDecided { log, key, .. }
                | Op::Claim { log, key, .. } => {
                    keys_alone.insert((*log, key.as_str()));
                    g.alone.push(op);
                }
                Op::NewLog(_)
                | Op::NameNew { .. }
                | Op::TenantAdd { .. }
                | Op::Flags { .. }
                | Op::NameMove { .. } => g.alone.push(op),
            }
        }
        if last.keys().any(|k| keys_alone.contains(k)) {
            return None;
        }
        for a in advances.into_values() {
            let (log, events) = (&a.log, &a.events);
            let h = &mut g.heads;
            h.logs.push(*log);
            h.expected.push(super::bits(a.expected));
            h.prev.push(a.prev.as_slice());
            h.lease.push(a.lease.map(super::bits));
            h.next.push(super::bits(a.head.next_seq));
            h.hash.push(a.head.last_hash.as_slice());
            let e = &mut g.events;
            e.logs.extend(std::iter::repeat_n(*log, events.seqs.len()));
            e.seqs.extend(&events.seqs);
            e.ats.extend(&events.ats);
            e.hashes.extend(events.hashes.iter().map(Vec::as_slice));
            e.bodies.extend(events.bodies.iter().map(Vec::as_slice));
        }
        for ((log, key), op) in last {
            match op {
                Op::OpenPut { effect, .. } => {
                    let o = &mut g.opens;
                    o.logs.push(log);
                    o.keys.push(key);
                    o.effects.push(effect.json.as_slice());
                    o.is_ask.push(effect.is_ask);
                    o.sleep_until.push(effect.sleep_until);
                }
                _ => {
                    g.ends.0.push(log);
                    g.ends.1.push(key);
                }
            }
        }
        Some(g)
    }

    /// Writes the batch: `BEGIN`, its statements, the `NOTIFY` of `notify`
    /// and `COMMIT`, in one pipeline. `Ok(true)`: committed. `Ok(false)`: a
    /// statement failed, so the transaction wrote nothing and is over. An
    /// error: the `COMMIT` failed, and whether the batch was written is
    /// unknown.
    pub(super) async fn write(
        &self,
        c: &Client,
        st: &Statements,
        notify: &[String],
    ) -> Result<bool, tokio_postgres::Error> {
        let mut steps: Vec<StepFuture<'_>> = vec![Box::pin(c.batch_execute("BEGIN"))];
        steps.extend(self.alone.iter().map(|op| st.run(c, op)));
        if !self.heads.logs.is_empty() {
            let (h, e) = (&self.heads, &self.events);
            steps.push(Box::pin(async move {
                c.execute(
                    &st.advance_all,
                    &[
                        &h.logs,
                        &h.expected,
                        &h.prev,
                        &h.lease,
                        &h.next,
                        &h.hash,
                        &e.logs,
                        &e.seqs,
                        &e.ats,
                        &e.hashes,
                        &e.bodies,
                    ],
                )
                .await
                .map(drop)
            }));
        }
        if !self.opens.logs.is_empty() {
            let o = &self.opens;
            steps.push(Box::pin(async move {
                c.execute(
                    &st.open_put_all,
                    &[&o.logs, &o.keys, &o.effects, &o.is_ask, &o.sleep_until],
                )
                .await
                .map(drop)
            }));
        }
        if !self.ends.0.is_empty() {
            let (logs, keys) = &self.ends;
            steps.push(Box::pin(async move {
                c.execute(&st.open_remove_all, &[logs, keys])
                    .await
                    .map(drop)
            }));
        }
        steps.push(Box::pin(async move {
            c.execute(&st.notify, &[&notify]).await.map(drop)
        }));
        steps.push(Box::pin(c.batch_execute("COMMIT")));
        let mut results = pipeline(steps).await;
        let Some(commit) = results.pop() else {
            return Ok(false);
        };
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            tracing::debug!(error = %e, "a grouped batch was refused; sending it with savepoints");
            // A statement failed: the COMMIT rolled the transaction back.
            return commit.map(|()| false);
        }
        commit.map(|()| true)
    }
}
