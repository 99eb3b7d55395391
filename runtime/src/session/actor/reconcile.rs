//! Advancing a session: stage events, fold them into the guest, reconcile
//! what it wants against the log, commit once, then perform.
//!
//! Invariants: events are folded as they are staged, but nothing is
//! performed, broadcast or acknowledged before the commit that holds them is
//! durable; a guest fault keeps only the events that caused it, followed by
//! `guest-failed`.

use std::collections::HashSet;

use super::context::ModelBase;
use super::{Actor, MAX_ROUNDS, Perform};
use crate::config::Policy;
use crate::effects::{Effect, EffectBody, ModelRequest};
use crate::guest::{GuestError, GuestInstance};
use crate::journal::{
    Append, Claim, Commit, Event, EventBody, JournalError, LogId, Outcome, RequestedEffect,
    StoredEvent, blocking,
};
use crate::session::keys::{Keys, Recorded};
use crate::session::{SessionError, now_ms};

/// What one round of folding staged.
struct Folded {
    staged: Vec<Event>,
    cancels: Vec<String>,
    failure: Option<GuestError>,
    /// The journal failed mid-fold: nothing of it may be committed.
    journal: Option<JournalError>,
}

/// How [`wanted`] asks the journal's key index which of some keys it holds.
pub(in crate::session) type AskIndex<'a> =
    dyn FnMut(&[&str]) -> Result<HashSet<String>, JournalError> + 'a;

/// Why [`wanted`] could not say what the guest wants.
#[derive(Debug, thiserror::Error)]
pub(in crate::session) enum WantedError {
    /// The guest failed.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// The journal's key index could not be read (session::keys).
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl From<WantedError> for SessionError {
    fn from(e: WantedError) -> Self {
        match e {
            WantedError::Guest(e) => SessionError::Guest(e),
            WantedError::Journal(e) => SessionError::Journal(e),
        }
    }
}

/// Run guest code off the async executor. A guest's WASI calls (a flush of
/// its stderr, say) block on tokio internally, which must not happen on a
/// worker thread that is driving tasks.
pub(in crate::session) fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Actor {
    /// Stage `external` events, fold them and whatever the guest wants in
    /// turn, commit it all in one durable append, then perform.
    pub(super) async fn advance(
        &mut self,
        external: Vec<EventBody>,
        mut performs: Vec<Perform>,
    ) -> Result<Vec<StoredEvent>, SessionError> {
        let base = self.ledger.next_seq;
        let at = now_ms();
        let external_len = external.len();
        let Folded {
            mut staged,
            cancels: mut cancels_,
            failure,
            journal,
        } = off_runtime(|| self.fold_and_reconcile(base, at, external, &mut performs));
        if let Some(e) = journal {
            // The instance folded what is not committed: it folds anew, and
            // the model call held may be one the log never recorded.
            self.guest = None;
            self.model_base = None;
            return Err(e.into());
        }
        let cancels = &mut cancels_;
        let faulted = failure.is_some();
        if let Some(error) = failure {
            if !error.is_guest_fault() {
                return Err(error.into());
            }
            // What the guest said after the events that made it fail is not trusted.
            staged.truncate(external_len);
            staged.push(Event {
                seq: base + external_len as u64,
                at,
                body: EventBody::GuestFailed {
                    message: error.to_string(),
                },
            });
            performs.clear();
            cancels.clear();
            self.guest = None;
        }
        // A stopped session starts nothing: not what it asked now, nor an
        // approved tool (session::stop). Past a limit, it is stopped here.
        let stays_stopped =
            staged
                .iter()
                .fold(self.ledger.stopped.is_some(), |s, e| match e.body {
                    EventBody::Stopped { .. } => true,
                    EventBody::Resumed { .. } => false,
                    _ => s,
                });
        let mut unleased = false;
        if stays_stopped {
            unleased = self.withhold(&mut performs);
        } else if !faulted && let Some(reason) = self.over_limit(&staged, &performs, at) {
            tracing::warn!(log = %self.log, "session stopped: {reason}");
            // What the guest said past the limit is not logged: its instance
            // folded it, so it is dropped, and folds the log anew when needed.
            staged.truncate(external_len);
            staged.push(Event {
                seq: base + external_len as u64,
                at,
                body: EventBody::Stopped {
                    by: "logbook".into(),
                    reason,
                },
            });
            cancels.clear();
            unleased = self.withhold(&mut performs);
            self.guest = None;
        }
        let claims: Vec<Claim> = match self.lease {
            Some(lease) => std::mem::take(&mut self.claims)
                .into_iter()
                .map(|key| Claim {
                    log: self.log,
                    key,
                    lease: lease.epoch,
                })
                .collect(),
            None => Vec::new(),
        };
        if staged.is_empty() && claims.is_empty() {
            self.start(performs);
            return Ok(Vec::new());
        }
        let (new_logs, names) = self.compaction(base, &staged, &mut performs).await?;
        // Sends go in this commit, at their targets' heads; nothing of them
        // is performed after it but a wake.
        let mut deliveries = Vec::new();
        performs = performs
            .into_iter()
            .filter_map(|p| match p {
                Perform::Send(delivery) => {
                    deliveries.push(delivery);
                    None
                }
                other => Some(other),
            })
            .collect();
        let targets: Vec<LogId> = deliveries.iter().map(|d| d.target).collect();
        let mut appends = if staged.is_empty() {
            Vec::new()
        } else {
            vec![Append {
                log: self.log,
                expected_seq: base,
                at_head: false,
                events: staged.into_iter().map(|e| (e.at, e.body)).collect(),
                // An approved tool held back by a stop is logged as a writer
                // without the lease logs it: `unstarted`, for the resume.
                lease: self.lease.filter(|_| !unleased).map(|l| l.epoch),
            }]
        };
        appends.extend(deliveries.into_iter().map(|d| d.append(at)));
        let committed = self
            .host
            .journal
            .commit(Commit {
                new_logs,
                appends,
                names,
                claims,
            })
            .await?;
        let log = self.log;
        let mut stored: Vec<StoredEvent> = Vec::with_capacity(committed.events.len());
        for (l, e) in committed.events {
            if l == log {
                stored.push(e);
            } else if targets.contains(&l) {
                // A send's input, durable now: the target's followers see it.
                self.host.feeds.advanced(l, e.event.seq + 1);
            }
        }
        for event in &stored {
            self.ledger.note(&event.event);
        }
        self.index_keys();
        self.count(&performs);
        self.host.feeds.advanced(self.log, self.ledger.next_seq);
        for key in cancels.drain(..) {
            if let Some(running) = self.running.remove(&key) {
                running.handle.abort();
            }
        }
        if self.ledger.ended() {
            for (_, running) in self.running.drain() {
                running.handle.abort();
            }
            self.guest = None;
        }
        self.hold_timers();
        self.start(performs);
        for target in targets {
            self.host.wake(target);
        }
        Ok(stored)
    }

    /// Stage events and fold them into the guest, round after round, until it
    /// wants nothing new that is immediate. Synchronous: it runs the guest.
    fn fold_and_reconcile(
        &mut self,
        base: u64,
        at: u64,
        external: Vec<EventBody>,
        performs: &mut Vec<Perform>,
    ) -> Folded {
        let mut staged: Vec<Event> = Vec::new();
        let mut fresh = Keys::default();
        let mut cancels: Vec<String> = Vec::new();
        let mut pending = external;
        let mut stopped = self.ledger.stopped.is_some();
        for round in 0.. {
            let first_new = staged.len();
            for body in pending.drain(..) {
                match body {
                    EventBody::Stopped { .. } => stopped = true,
                    EventBody::Resumed { .. } => stopped = false,
                    _ => {}
                }
                let seq = base + staged.len() as u64;
                fresh.note(seq, &body);
                staged.push(Event { seq, at, body });
            }
            let Some(guest) = &mut self.guest else { break };
            if round >= MAX_ROUNDS {
                let failure = GuestError::Trap(format!(
                    "the guest wanted new immediate effects {MAX_ROUNDS} rounds in a row"
                ));
                return Folded {
                    staged,
                    cancels,
                    failure: Some(failure),
                    journal: None,
                };
            }
            if stopped {
                // Folded, and nothing asked of the guest (session::stop).
                let failure = guest.apply(&staged[first_new..]).err();
                return Folded {
                    staged,
                    cancels,
                    failure,
                    journal: None,
                };
            }
            let known = &self.ledger.keys;
            let base = &mut self.model_base;
            let (journal, log) = (&self.host.journal, self.log);
            let mut ask = |keys: &[&str]| {
                blocking(journal.indexed_keys(log, keys))
                    .map(|found| found.found.into_iter().map(|k| k.key).collect())
            };
            let wanted = match guest
                .apply(&staged[first_new..])
                .map_err(WantedError::from)
                .and_then(|()| wanted(guest, known, &fresh, base, &mut ask))
            {
                Ok(wanted) => wanted,
                Err(WantedError::Guest(e)) => {
                    return Folded {
                        staged,
                        cancels,
                        failure: Some(e),
                        journal: None,
                    };
                }
                Err(WantedError::Journal(e)) => {
                    return Folded {
                        staged,
                        cancels,
                        failure: None,
                        journal: Some(e),
                    };
                }
            };
            let (keys, new) = wanted;
            pending = match self.reconcile(&keys, new, &fresh, performs, &mut cancels) {
                Ok(pending) => pending,
                Err(e) => {
                    return Folded {
                        staged,
                        cancels,
                        failure: None,
                        journal: Some(e),
                    };
                }
            };
            if pending.is_empty() {
                break;
            }
        }
        Folded {
            staged,
            cancels,
            failure: None,
            journal: None,
        }
    }

    /// Diff what the guest wants against the log; return the events that
    /// record the new effects, and note what to perform once they are
    /// durable. Fails only when the journal cannot be read (to find a
    /// send's target).
    fn reconcile(
        &self,
        wanted_keys: &HashSet<String>,
        new: Vec<Effect>,
        fresh: &Keys,
        performs: &mut Vec<Perform>,
        cancels: &mut Vec<String>,
    ) -> Result<Vec<EventBody>, JournalError> {
        let mut events = Vec::new();
        // A send answers the latest input, staged in this advance or logged.
        let hops = fresh.send_hops.or(self.ledger.keys.send_hops).unwrap_or(0);
        // Inputs of sends to this log itself.
        let mut own = Vec::new();
        // Effects that end the log come after everything else the guest said
        // in the same breath (the stable sort keeps the guest's order).
        let mut new = new;
        new.sort_by_key(|e| matches!(e.body, EffectBody::Compact(_) | EffectBody::Finish(_)));
        for Effect { key, body } in new {
            match body {
                EffectBody::Output(content) => events.push(EventBody::Output { key, content }),
                EffectBody::Finish(result) => events.push(EventBody::Finished { key, result }),
                EffectBody::Compact(summary) => {
                    // One compaction per commit: the guest keeps wanting it
                    // until the log it is in has ended.
                    if !performs.iter().any(|p| matches!(p, Perform::Compact(..))) {
                        let next = uuid::Uuid::now_v7();
                        events.push(EventBody::Continued {
                            log: next.to_string(),
                        });
                        performs.push(Perform::Compact(next, summary));
                    }
                }
                EffectBody::Send { target, content } => {
                    self.send(key, target, content, hops, &mut events, &mut own, performs)?;
                }
                EffectBody::Model(request) => {
                    events.push(model_requested(self.model_base.as_ref(), &key, &request));
                    performs.push(Perform::Model(key, request));
                }
                EffectBody::Sleep(until) => {
                    events.push(EventBody::Requested {
                        key: key.clone(),
                        effect: RequestedEffect::Sleep { until },
                    });
                    performs.push(Perform::Timer(key, until));
                }
                EffectBody::Ask(question) => events.push(EventBody::ApprovalRequested {
                    key,
                    tool: None,
                    question: Some(question),
                }),
                EffectBody::Tool(call) => {
                    events.push(EventBody::Requested {
                        key: key.clone(),
                        effect: RequestedEffect::Tool(call.clone()),
                    });
                    match self.host.tools.policy_for(&self.tenant, &call.name) {
                        Policy::Allow => performs.push(Perform::Tool(key, call)),
                        Policy::Ask => events.push(EventBody::ApprovalRequested {
                            key,
                            tool: Some(call),
                            question: None,
                        }),
                        Policy::Deny => events.push(EventBody::Completed {
                            key,
                            outcome: Outcome::tool_text(
                                format!("tool {} is denied by the host's policy", call.name),
                                true,
                            ),
                        }),
                    }
                }
            }
        }
        // Whatever is open in the log but no longer wanted is cancelled.
        for (key, _) in self.ledger.keys.open() {
            if !wanted_keys.contains(key) && fresh.recorded(key) != Recorded::Yes {
                events.push(EventBody::Cancelled { key: key.clone() });
                cancels.push(key.clone());
            }
        }
        events.append(&mut own);
        Ok(events)
    }
}

/// The `requested` that records model call `key`: digested from where the
/// base's digest left off when the base holds this very request.
pub(in crate::session) fn model_requested(
    base: Option<&ModelBase>,
    key: &str,
    request: &ModelRequest,
) -> EventBody {
    let digest = match base {
        Some(base) if base.key() == key => base.digest(),
        _ => request.digest(),
    };
    EventBody::Requested {
        key: key.to_string(),
        effect: RequestedEffect::Model {
            model: request.model.clone(),
            digest,
            summary: request.summary(),
        },
    }
}

/// What the guest wants now: every key, and the effects under the keys that
/// neither the log (`known`) nor this advance (`fresh`) has recorded, with
/// their bodies. Only those bodies cross from the guest, so a round costs
/// the guest's outstanding keys and its new effects, never its history; and
/// a new model request may cross as the messages after those of the call
/// `base` holds, which it then holds whole in its place (actor::context).
///
/// Keys that `known` left to the journal's key index (session::keys) are
/// looked up with `ask`, all of a round at once: it answers those the index
/// holds.
pub(in crate::session) fn wanted(
    guest: &mut GuestInstance,
    known: &Keys,
    fresh: &Keys,
    base: &mut Option<ModelBase>,
    ask: &mut AskIndex<'_>,
) -> Result<(HashSet<String>, Vec<Effect>), WantedError> {
    let keys = guest.wanted_keys()?;
    let mut unknown = Vec::new();
    for key in &keys {
        if fresh.recorded(key) == Recorded::No && known.recorded(key) == Recorded::AskJournal {
            unknown.push(key.as_str());
        }
    }
    let indexed = if unknown.is_empty() {
        HashSet::new()
    } else {
        ask(&unknown)?
    };
    let mut new = Vec::new();
    for key in &keys {
        if known.recorded(key) == Recorded::Yes
            || fresh.recorded(key) == Recorded::Yes
            || indexed.contains(key)
        {
            continue;
        }
        match guest.effect(key, base.as_ref().map(ModelBase::key))? {
            Some(Effect {
                key,
                body: EffectBody::Model(request),
            }) => {
                let held = ModelBase::take(base.as_ref(), &key, request)
                    .map_err(|e| GuestError::Trap(e.to_string()))?;
                let request = held.request().clone();
                *base = Some(held);
                new.push(Effect {
                    key,
                    body: EffectBody::Model(request),
                });
            }
            Some(effect) => new.push(effect),
            None => {}
        }
    }
    Ok((keys.into_iter().collect(), new))
}
