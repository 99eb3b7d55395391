//! What one commit writes, as the PostgreSQL writer plans it: the checks that
//! Rust can make against the state the batch has reached, the hashes of its
//! events, and the statements ([`Op`]) that write it and re-check, in the
//! database, what another worker may have changed meanwhile.
//!
//! Invariants:
//! - Planning reads nothing: it sees the rows the writer fetched before the
//!   batch ([`Fetched`]) and what the commits planned before it in the same
//!   batch wrote ([`View`]). A refusal found here writes nothing.
//! - Every rule another worker could break between the fetch and the commit
//!   is checked again by the statement that writes the row it depends on: the
//!   head (expected seq, hash, lease epoch), ids and names (primary keys),
//!   the session limit (the tenant's row), a fork's parent.

use std::collections::HashMap;

use super::{bits, order};
use crate::journal::chain::{GENESIS_HASH, event_hash};
use crate::journal::event::{Event, EventBody, GuestRef, RequestedEffect, StoredEvent};
use crate::journal::tenants::{compacted_from, continues_into};
use crate::journal::{Commit, Committed, JournalError, LogId, NewLog};

/// A log's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) next_seq: u64,
    pub(super) last_hash: [u8; 32],
}

/// A stored log as the fetch before a batch found it.
#[derive(Clone, Debug)]
pub(super) struct FetchedLog {
    pub(super) tenant: String,
    pub(super) head: Head,
}

/// The rows a batch's planning needs, read before its transaction.
#[derive(Debug, Default)]
pub(super) struct Fetched {
    /// Every stored log the batch names (appended to, forked, named, or
    /// continued), by id.
    pub(super) logs: HashMap<LogId, FetchedLog>,
    /// The stored hash at `(log, seq)`, through the log's ancestry: each fork point.
    pub(super) fork_points: HashMap<(LogId, u64), [u8; 32]>,
    /// For each `(log, seq)` a new log claims to continue: the log the
    /// stored event there is a `continued` into, if it is one.
    pub(super) continued: HashMap<(LogId, u64), Option<LogId>>,
}

/// Events planned in a batch: `(log, seq) -> (hash, the log it is a
/// `continued` into)`.
type Planned = HashMap<(LogId, u64), ([u8; 32], Option<LogId>)>;

/// The state a batch has reached: the fetched rows and what the commits
/// planned so far write.
pub(super) struct View<'a> {
    fetched: &'a Fetched,
    heads: HashMap<LogId, Head>,
    tenants: HashMap<LogId, String>,
    events: Planned,
}

/// One statement of a commit, with its parameters. Each knows how to name a
/// refusal of its own (see `writer::refusal`).
#[derive(Debug)]
pub(super) enum Op {
    NewLog(NewRow),
    NameNew {
        tenant: String,
        name: String,
        log: LogId,
    },
    TenantAdd {
        tenant: String,
        session: bool,
        limit: Option<u64>,
    },
    ForkOpens {
        log: LogId,
        parent: LogId,
        parent_seq: u64,
    },
    /// Moves the head past an append and writes its events, in one statement.
    Advance(Advance),
    Flags {
        log: LogId,
        finished: bool,
        failed: Option<bool>,
        /// `Some(true)` after a `stopped`, `Some(false)` after a `resumed`.
        stopped: Option<bool>,
        guest: Option<GuestRef>,
    },
    /// A `requested`: opens the key, replacing what was there.
    OpenPut {
        log: LogId,
        key: String,
        effect: OpenEffectRow,
    },
    /// An `approval-requested`: marks the key awaiting, opening it with
    /// `effect` when nothing was requested.
    OpenAwait {
        log: LogId,
        key: String,
        effect: Option<OpenEffectRow>,
    },
    /// An `approval-decided`; `unstarted` when it approves a tool and its
    /// append carried no lease.
    OpenDecided {
        log: LogId,
        key: String,
        unstarted: bool,
    },
    /// A lease holder claims an unstarted approved tool (journal::Claim).
    Claim {
        log: LogId,
        key: String,
        lease: u64,
    },
    OpenRemove {
        log: LogId,
        key: String,
    },
    NameMove {
        tenant: String,
        name: String,
        log: LogId,
    },
}

/// An append's move of its log's head, from where it expects it (the seq,
/// the hash it chains from, the lease epoch) to `head`, with its events.
#[derive(Debug)]
pub(super) struct Advance {
    pub(super) log: LogId,
    pub(super) expected: u64,
    pub(super) prev: [u8; 32],
    pub(super) lease: Option<u64>,
    /// Planned at the head the writer had fetched, for an append that goes
    /// at the head whatever it is (`Append::at_head`): if another worker
    /// moved it since, the log is read again and the commit planned again.
    pub(super) at_head: bool,
    pub(super) head: Head,
    pub(super) events: EventRows,
}

/// A new row of `logs`, written with its `created` event.
#[derive(Debug)]
pub(super) struct NewRow {
    pub(super) id: LogId,
    pub(super) tenant: String,
    pub(super) name: Option<String>,
    pub(super) guest: GuestRef,
    pub(super) created_at: u64,
    pub(super) head: Head,
    /// The canonical body of its `created` (the event before `head`).
    pub(super) body: Vec<u8>,
    pub(super) session: bool,
    /// A fork's parent and fork point.
    pub(super) parent: Option<(LogId, u64)>,
}

/// The stored form of an open effect.
#[derive(Debug)]
pub(super) struct OpenEffectRow {
    pub(super) json: Vec<u8>,
    pub(super) is_ask: bool,
    pub(super) sleep_until: Option<i64>,
}

impl OpenEffectRow {
    pub(super) fn of(effect: &RequestedEffect) -> Result<Self, JournalError> {
        Ok(OpenEffectRow {
            json: serde_json::to_vec(effect)
                .map_err(|e| JournalError::Corrupt(format!("open effect: {e}")))?,
            is_ask: matches!(effect, RequestedEffect::Ask(_)),
            sleep_until: match effect {
                RequestedEffect::Sleep { until } => Some(order(*until)),
                _ => None,
            },
        })
    }
}

/// The events of one append, as columns for one `UNNEST` insert.
#[derive(Debug, Default)]
pub(super) struct EventRows {
    pub(super) seqs: Vec<i64>,
    pub(super) ats: Vec<i64>,
    pub(super) hashes: Vec<Vec<u8>>,
    pub(super) bodies: Vec<Vec<u8>>,
}

/// A planned commit: its statements, its answer, and the heads it leaves.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) ops: Vec<Op>,
    pub(super) committed: Committed,
    pub(super) heads: Vec<(LogId, u64)>,
}

impl<'a> View<'a> {
    pub(super) fn new(fetched: &'a Fetched) -> Self {
        View {
            fetched,
            heads: HashMap::new(),
            tenants: HashMap::new(),
            events: HashMap::new(),
        }
    }

    /// The heads and tenants of the logs the planned commits wrote, as they
    /// leave them.
    pub(super) fn ends(&self) -> Vec<(LogId, FetchedLog)> {
        self.heads
            .iter()
            .filter_map(|(log, head)| {
                let tenant = self.tenant(*log)?.to_owned();
                Some((
                    *log,
                    FetchedLog {
                        tenant,
                        head: *head,
                    },
                ))
            })
            .collect()
    }

    fn head(&self, log: LogId) -> Option<Head> {
        self.heads
            .get(&log)
            .copied()
            .or_else(|| self.fetched.logs.get(&log).map(|l| l.head))
    }

    fn tenant(&self, log: LogId) -> Option<&str> {
        self.tenants
            .get(&log)
            .or_else(|| self.fetched.logs.get(&log).map(|l| &l.tenant))
            .map(String::as_str)
    }

    /// Plans one commit against the state the batch has reached and, when it
    /// holds, moves that state past it.
    pub(super) fn plan(
        &mut self,
        commit: &Commit,
        lease_of: impl Fn(&crate::journal::Append) -> Option<u64>,
    ) -> Result<Plan, JournalError> {
        let mut ops = Vec::new();
        let mut written = Vec::with_capacity(commit.event_count());
        let mut heads: HashMap<LogId, Head> = HashMap::new();
        let mut tenants: HashMap<LogId, String> = HashMap::new();
        let mut planned: Planned = HashMap::new();

        for nl in &commit.new_logs {
            if self.tenant(nl.id).is_some() || tenants.contains_key(&nl.id) {
                return Err(JournalError::LogExists(nl.id));
            }
            let (seq, prev, parent) = match &nl.created.parent {
                None => (0, GENESIS_HASH, None),
                Some(p) => {
                    let (pid, prev) =
                        self.fork_point(nl, &p.log, p.seq, (&heads, &tenants), &planned)?;
                    (p.seq + 1, prev, Some((pid, p.seq)))
                }
            };
            let session = !self.continues(commit, nl, &tenants);
            let body = EventBody::Created(nl.created.clone());
            let canonical = body.to_canonical();
            let hash = event_hash(&prev, seq, nl.at, &canonical);
            let head = Head {
                next_seq: seq + 1,
                last_hash: hash,
            };
            ops.push(Op::NewLog(NewRow {
                id: nl.id,
                tenant: nl.tenant.clone(),
                name: nl.name.clone(),
                guest: nl.created.guest.clone(),
                created_at: nl.at,
                head,
                body: canonical,
                session,
                parent,
            }));
            if let Some(name) = &nl.name {
                ops.push(Op::NameNew {
                    tenant: nl.tenant.clone(),
                    name: name.clone(),
                    log: nl.id,
                });
            }
            ops.push(Op::TenantAdd {
                tenant: nl.tenant.clone(),
                session,
                limit: nl.session_limit,
            });
            if let Some((parent, parent_seq)) = parent {
                ops.push(Op::ForkOpens {
                    log: nl.id,
                    parent,
                    parent_seq,
                });
            }
            planned.insert((nl.id, seq), (hash, None));
            heads.insert(nl.id, head);
            tenants.insert(nl.id, nl.tenant.clone());
            written.push((
                nl.id,
                StoredEvent {
                    event: Event {
                        seq,
                        at: nl.at,
                        body,
                    },
                    hash,
                },
            ));
        }

        for ap in &commit.appends {
            let Some(head) = heads.get(&ap.log).copied().or_else(|| self.head(ap.log)) else {
                return Err(JournalError::UnknownLog(ap.log));
            };
            if !ap.at_head && ap.expected_seq != head.next_seq {
                return Err(JournalError::Conflict {
                    log: ap.log,
                    expected: ap.expected_seq,
                    actual: head.next_seq,
                });
            }
            let mut rows = EventRows::default();
            let mut flags = (false, None, None);
            let mut stopped = None;
            let mut opens = Vec::new();
            let mut end = head;
            for (at, body) in &ap.events {
                if matches!(body, EventBody::Created(_)) {
                    return Err(JournalError::CreatedNotFirst { log: ap.log });
                }
                let canonical = body.to_canonical();
                let seq = end.next_seq;
                let hash = event_hash(&end.last_hash, seq, *at, &canonical);
                rows.seqs.push(bits(seq));
                rows.ats.push(bits(*at));
                rows.hashes.push(hash.to_vec());
                rows.bodies.push(canonical);
                let into = match body {
                    EventBody::Continued { log } => LogId::parse_str(log).ok(),
                    _ => None,
                };
                planned.insert((ap.log, seq), (hash, into));
                match body {
                    EventBody::Finished { .. } | EventBody::Continued { .. } => flags.0 = true,
                    EventBody::GuestFailed { .. } => flags.1 = Some(true),
                    EventBody::Unparked { .. } => flags.1 = Some(false),
                    EventBody::Stopped { .. } => stopped = Some(true),
                    EventBody::Resumed { .. } => stopped = Some(false),
                    EventBody::GuestChanged { to, .. } => {
                        flags.1 = Some(false);
                        flags.2 = Some(to.clone());
                    }
                    _ => {}
                }
                if let Some(op) = open_op(ap.log, body, lease_of(ap).is_some())? {
                    opens.push(op);
                }
                written.push((
                    ap.log,
                    StoredEvent {
                        event: Event {
                            seq,
                            at: *at,
                            body: body.clone(),
                        },
                        hash,
                    },
                ));
                end = Head {
                    next_seq: seq + 1,
                    last_hash: hash,
                };
            }
            ops.push(Op::Advance(Advance {
                log: ap.log,
                expected: head.next_seq,
                prev: head.last_hash,
                lease: lease_of(ap),
                at_head: ap.at_head,
                head: end,
                events: rows,
            }));
            if flags != (false, None, None) || stopped.is_some() {
                ops.push(Op::Flags {
                    log: ap.log,
                    finished: flags.0,
                    failed: flags.1,
                    stopped,
                    guest: flags.2,
                });
            }
            ops.extend(opens);
            heads.insert(ap.log, end);
        }

        // After the appends: a claim may follow the approval it claims.
        for c in &commit.claims {
            ops.push(Op::Claim {
                log: c.log,
                key: c.key.clone(),
                lease: c.lease,
            });
        }

        for n in &commit.names {
            let tenant = tenants
                .get(&n.log)
                .map(String::as_str)
                .or_else(|| self.tenant(n.log));
            if tenant != Some(n.tenant.as_str()) {
                return Err(JournalError::UnknownLog(n.log));
            }
            ops.push(Op::NameMove {
                tenant: n.tenant.clone(),
                name: n.name.clone(),
                log: n.log,
            });
        }

        let mut ends: Vec<(LogId, u64)> = heads.iter().map(|(l, h)| (*l, h.next_seq)).collect();
        ends.sort();
        self.heads.extend(heads);
        self.tenants.extend(tenants);
        self.events.extend(planned);
        Ok(Plan {
            ops,
            committed: Committed { events: written },
            heads: ends,
        })
    }

    /// Checks a fork's parent against what is known before the database
    /// checks it again, and answers the hash the fork's `created` chains from.
    fn fork_point(
        &self,
        nl: &NewLog,
        parent: &str,
        seq: u64,
        (heads, tenants): (&HashMap<LogId, Head>, &HashMap<LogId, String>),
        planned: &Planned,
    ) -> Result<(LogId, [u8; 32]), JournalError> {
        let Ok(pid) = LogId::parse_str(parent) else {
            return Err(JournalError::BadParent {
                parent: parent.to_string(),
            });
        };
        let tenant = tenants
            .get(&pid)
            .map(String::as_str)
            .or_else(|| self.tenant(pid));
        if tenant != Some(nl.tenant.as_str()) {
            return Err(JournalError::UnknownLog(pid));
        }
        let next = heads
            .get(&pid)
            .copied()
            .or_else(|| self.head(pid))
            .map_or(0, |h| h.next_seq);
        if seq >= next {
            return Err(JournalError::NoSeq {
                log: pid,
                seq,
                next,
            });
        }
        planned
            .get(&(pid, seq))
            .or_else(|| self.events.get(&(pid, seq)))
            .map(|(hash, _)| *hash)
            .or_else(|| self.fetched.fork_points.get(&(pid, seq)).copied())
            .map(|hash| (pid, hash))
            .ok_or_else(|| JournalError::Corrupt(format!("log {pid} has no row for seq {seq}")))
    }

    /// Whether `nl` is a compaction's continuation (see
    /// [`tenants`](crate::journal::tenants)): the log it names, of its
    /// tenant, has at that seq a `continued` into it, in this commit, earlier
    /// in the batch, or stored.
    fn continues(&self, commit: &Commit, nl: &NewLog, tenants: &HashMap<LogId, String>) -> bool {
        let Some((from, seq)) = compacted_from(&nl.created) else {
            return false;
        };
        let from = LogId::from_u128(from);
        let tenant = tenants
            .get(&from)
            .map(String::as_str)
            .or_else(|| self.tenant(from));
        if tenant != Some(nl.tenant.as_str()) {
            return false;
        }
        let in_commit = commit.appends.iter().any(|a| {
            a.log == from
                && seq
                    .checked_sub(a.expected_seq)
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| a.events.get(i))
                    .is_some_and(|(_, body)| continues_into(body, nl.id))
        });
        let earlier = self
            .events
            .get(&(from, seq))
            .is_some_and(|(_, into)| *into == Some(nl.id));
        let stored = self.fetched.continued.get(&(from, seq)) == Some(&Some(nl.id));
        in_commit || earlier || stored
    }
}

/// The statement that keeps the open effects in step with one event, by the
/// rules of [`OpenAction::of`](crate::journal::info): the row holds whether
/// the effect is an `ask`, which is all an `approval-decided` needs to know.
fn open_op(log: LogId, body: &EventBody, leased: bool) -> Result<Option<Op>, JournalError> {
    let Some(key) = body.key().map(str::to_owned) else {
        return Ok(None);
    };
    Ok(match body {
        EventBody::Requested { effect, .. } => Some(Op::OpenPut {
            log,
            key,
            effect: OpenEffectRow::of(effect)?,
        }),
        EventBody::ApprovalRequested { tool, question, .. } => {
            let fallback = match (question, tool) {
                (Some(q), _) => Some(RequestedEffect::Ask(q.clone())),
                (None, Some(t)) => Some(RequestedEffect::Tool(t.clone())),
                (None, None) => None,
            };
            Some(Op::OpenAwait {
                log,
                key,
                effect: fallback.as_ref().map(OpenEffectRow::of).transpose()?,
            })
        }
        EventBody::ApprovalDecided { allow, .. } => Some(Op::OpenDecided {
            log,
            key,
            unstarted: *allow && !leased,
        }),
        EventBody::Completed { .. } | EventBody::Cancelled { .. } => {
            Some(Op::OpenRemove { log, key })
        }
        EventBody::Failed { retryable, .. } if !retryable => Some(Op::OpenRemove { log, key }),
        _ => None,
    })
}
