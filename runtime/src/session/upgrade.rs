//! Guest upgrades (DESIGN §5): `guest-changed` moves a session to another
//! guest, which re-folds the whole log on its next activation; a replay check
//! runs a guest over a recorded log without performing anything and finds the
//! first seq where what it wants differs from what the log recorded. Both
//! read the log through the replayer (session::replay), under the limits of
//! the log's tenant; the check walks it from `init`, never from a snapshot.
//!
//! How the check reads a log: the host records what the guest wants in the
//! same commit as the event that made it want it, round after round, and
//! `cancelled` when it stops wanting an open effect. So each event the guest
//! caused (`requested`, `output`, `finished`, `sent`, `continued`, a question's
//! `approval-requested`) must be wanted by the checked guest, with the same
//! content, once it has folded the events before it (or the events of the
//! round before, which is checked first); a `cancelled` key must no longer be
//! wanted; and before each event from outside (an input, a result, a
//! decision) and at the end, every key it wants must be in the log already.

use std::collections::HashMap;
use std::ops::ControlFlow;

use crate::effects::{Effect, EffectBody};
use crate::guest::{GuestBatch, GuestError, GuestInstance};
use crate::journal::{ErrorKind, Event, EventBody, GuestRef, LogInfo, RequestedEffect};
use crate::session::keys::{Keys, Recorded};
use crate::session::replay::{Replayer, Walked};
use crate::session::{Host, SessionError, Shared, now_ms};

/// Where a replayed guest first disagrees with the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The seq of the event where they part.
    pub seq: u64,
    /// What the log recorded there.
    pub log: String,
    /// What the replayed guest wants instead.
    pub guest: String,
}

/// The outcome of a replay check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events read.
    pub events: u64,
    /// The first difference; `None` when the guest agrees with the whole log.
    pub difference: Option<Difference>,
}

/// What an event is to the check.
enum Role<'e> {
    /// The host wrote it because the guest wanted `key`.
    Wanted(&'e str),
    /// The guest stopped wanting `key`.
    Cancelled(&'e str),
    /// Written by the host on its own, in the same round (policy).
    Neutral,
    /// Came from outside: the guest's wants must all be recorded before it.
    Outside,
}

fn role(body: &EventBody) -> Role<'_> {
    match body {
        EventBody::Requested { key, .. }
        | EventBody::Output { key, .. }
        | EventBody::Finished { key, .. }
        | EventBody::Sent { key, .. } => Role::Wanted(key),
        EventBody::ApprovalRequested {
            key,
            question: Some(_),
            ..
        } => Role::Wanted(key),
        EventBody::Continued { .. } => Role::Wanted(""),
        // A send the host refused when the guest asked: the record of its want.
        EventBody::Failed {
            key,
            error: ErrorKind::UnknownTarget | ErrorKind::TargetEnded | ErrorKind::LimitReached,
            ..
        } => Role::Wanted(key),
        EventBody::Cancelled { key } => Role::Cancelled(key),
        EventBody::ApprovalRequested { .. }
        | EventBody::Created(_)
        | EventBody::Failed {
            error: ErrorKind::Unsupported,
            ..
        } => Role::Neutral,
        _ => Role::Outside,
    }
}

/// Whether `effect` is what `body` recorded.
fn matches(body: &EventBody, effect: &EffectBody) -> bool {
    match (body, effect) {
        (EventBody::Requested { effect: r, .. }, e) => match (r, e) {
            (RequestedEffect::Model { model, digest, .. }, EffectBody::Model(req)) => {
                &req.model == model && &req.digest() == digest
            }
            (RequestedEffect::Tool(a), EffectBody::Tool(b)) => {
                a.name == b.name && a.arguments == b.arguments
            }
            (RequestedEffect::Ask(a), EffectBody::Ask(b)) => a == b,
            (RequestedEffect::Sleep { until }, EffectBody::Sleep(u)) => until == u,
            _ => false,
        },
        (EventBody::Output { content, .. }, EffectBody::Output(c)) => content == c,
        (EventBody::Finished { result, .. }, EffectBody::Finish(r)) => result == r,
        (EventBody::Sent { .. } | EventBody::Failed { .. }, EffectBody::Send { .. }) => true,
        (EventBody::Continued { .. }, EffectBody::Compact(_)) => true,
        (
            EventBody::ApprovalRequested {
                question: Some(q), ..
            },
            EffectBody::Ask(a),
        ) => q == a,
        _ => false,
    }
}

/// One line for what the log recorded.
fn show_event(body: &EventBody) -> String {
    match body {
        EventBody::Output { key, content } => {
            format!("{key}: output {:?}", crate::journal::plain_text(content))
        }
        EventBody::Finished { key, result } => format!("{key}: finish {result:?}"),
        EventBody::Cancelled { key } => format!("{key}: cancelled"),
        other => {
            let json = String::from_utf8_lossy(&other.to_canonical()).into_owned();
            format!("{} {json}", other.kind())
        }
    }
}

/// One line for what the guest wants.
fn show_effect(key: &str, effect: &EffectBody) -> String {
    let detail = match effect {
        EffectBody::Model(r) => format!("model {} (request {})", r.model, r.digest()),
        EffectBody::Tool(c) => format!("tool {} {}", c.name, c.arguments),
        EffectBody::Ask(q) => format!("ask {:?}", q.text),
        EffectBody::Sleep(until) => format!("sleep until {until}"),
        EffectBody::Output(c) => format!("output {:?}", crate::journal::plain_text(c)),
        EffectBody::Send { target, .. } => format!("send to {target}"),
        EffectBody::Compact(s) => format!("compact {s:?}"),
        EffectBody::Finish(r) => format!("finish {r:?}"),
    };
    format!("{key}: {detail}")
}

/// What the check knows of the guest's folding: events wait in `pending`
/// until its wants are needed.
#[derive(Default)]
struct Checked {
    pending: Vec<Event>,
    wants: Option<HashMap<String, EffectBody>>,
}

impl Checked {
    fn flush(&mut self, guest: &mut GuestInstance) -> Result<(), GuestError> {
        if !self.pending.is_empty() {
            let batch = GuestBatch::new(&self.pending);
            self.pending.clear();
            self.wants = None;
            guest.apply_batch(&batch)?;
        }
        Ok(())
    }

    /// The wants after folding everything pushed so far.
    fn fresh_wants(
        &mut self,
        guest: &mut GuestInstance,
    ) -> Result<&HashMap<String, EffectBody>, GuestError> {
        self.flush(guest)?;
        if self.wants.is_none() {
            let wanted = guest.effects()?;
            self.wants = Some(
                wanted
                    .into_iter()
                    .map(|Effect { key, body }| (key, body))
                    .collect(),
            );
        }
        Ok(self.wants.get_or_insert_with(HashMap::new))
    }
}

/// Check one event; `Some((log, guest))` describes a difference.
fn check(
    c: &mut Checked,
    guest: &mut GuestInstance,
    keys: &Keys,
    e: &Event,
) -> Result<Option<(String, String)>, GuestError> {
    let found = |wants: &HashMap<String, EffectBody>, key: &str| -> bool {
        match key {
            "" => wants.values().any(|w| matches(&e.body, w)),
            key => wants.get(key).is_some_and(|w| matches(&e.body, w)),
        }
    };
    Ok(match role(&e.body) {
        Role::Wanted(key) => {
            let before = c.wants.as_ref().is_some_and(|w| found(w, key));
            if before || found(c.fresh_wants(guest)?, key) {
                None
            } else {
                let guest = match c.fresh_wants(guest)?.get(key) {
                    Some(w) => format!("wants {}", show_effect(key, w)),
                    None if key.is_empty() => "does not want to compact".to_owned(),
                    None => format!("does not want {key}"),
                };
                Some((show_event(&e.body), guest))
            }
        }
        Role::Cancelled(key) => {
            let gone = c.wants.as_ref().is_some_and(|w| !w.contains_key(key));
            match c.fresh_wants(guest)?.get(key) {
                Some(w) if !gone => Some((
                    show_event(&e.body),
                    format!("still wants {}", show_effect(key, w)),
                )),
                _ => None,
            }
        }
        Role::Neutral => None,
        Role::Outside => unrecorded(c, guest, keys)?.map(|w| {
            (
                format!("nothing more before this {}", e.body.kind()),
                format!("wants {w}"),
            )
        }),
    })
}

/// A wanted effect that the log has never recorded, if any.
fn unrecorded(
    c: &mut Checked,
    guest: &mut GuestInstance,
    keys: &Keys,
) -> Result<Option<String>, GuestError> {
    let wants = c.fresh_wants(guest)?;
    let mut missing: Vec<_> = wants
        .iter()
        // A walk's ledger holds every key (session::keys): no journal to ask.
        .filter(|(k, _)| keys.recorded(k) != Recorded::Yes)
        .map(|(k, w)| show_effect(k, w))
        .collect();
    missing.sort();
    Ok(missing.into_iter().next())
}

impl Host {
    /// Run `guest` over a session's recorded log, performing nothing, and
    /// report the first event where what it wants differs from the log.
    pub async fn replay_check(
        &self,
        tenant: &str,
        id_or_name: &str,
        guest: GuestRef,
    ) -> Result<ReplayReport, SessionError> {
        let info = self.resolve(tenant, id_or_name).await?;
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || replay_check(&shared, &info, &guest.digest))
            .await
            .map_err(|e| SessionError::TaskFailed {
                task: "replay task",
                why: e.to_string(),
            })?
    }

    /// Move a session to another guest: append `guest-changed` (which also
    /// un-parks a session whose guest failed). The session's actor is
    /// stopped first; the next activation re-folds the whole log into the
    /// new guest. Answers the seq of `guest-changed`.
    pub async fn upgrade(
        &self,
        tenant: &str,
        id_or_name: &str,
        guest: GuestRef,
    ) -> Result<u64, SessionError> {
        let bytes = self
            .shared
            .journal
            .guest_bytes(&guest.digest)
            .await?
            .ok_or_else(|| SessionError::UnknownGuest(guest.name.clone()))?;
        self.shared.engine.load(&guest.digest, &bytes)?;
        let mut tries = 0;
        loop {
            let info = self.resolve(tenant, id_or_name).await?;
            if info.guest.digest == guest.digest {
                return Err(SessionError::SameGuest {
                    session: id_or_name.to_string(),
                    digest: guest.digest.clone(),
                });
            }
            self.hibernate(info.id);
            let change = EventBody::GuestChanged {
                from: info.guest,
                to: guest.clone(),
            };
            let commit =
                crate::journal::Commit::append(info.id, info.next_seq, vec![(now_ms(), change)]);
            match self.shared.journal.commit(commit).await {
                Ok(_) => return Ok(info.next_seq),
                // The stopping actor wrote one last commit: read the head again.
                Err(crate::journal::JournalError::Conflict { .. }) if tries < 10 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Walk the log with the checked guest, under the tenant's limits.
fn replay_check(
    shared: &Shared,
    info: &LogInfo,
    digest: &str,
) -> Result<ReplayReport, SessionError> {
    let failed = |seq: u64, e: GuestError| ReplayReport {
        events: seq,
        difference: Some(Difference {
            seq,
            log: "the log goes on".into(),
            guest: format!("the guest failed: {e}"),
        }),
    };
    let mut c = Checked::default();
    let walked = Replayer::new(shared, info)
        .guest(digest)
        .upto(info.next_seq)
        .walk(|guest, ledger, e| {
            match check(&mut c, guest, &ledger.keys, e) {
                Ok(None) => {}
                Ok(Some((log, guest))) => {
                    return ControlFlow::Break(ReplayReport {
                        events: e.seq,
                        difference: Some(Difference {
                            seq: e.seq,
                            log,
                            guest,
                        }),
                    });
                }
                Err(why) => return ControlFlow::Break(failed(e.seq, why)),
            }
            if !matches!(
                role(&e.body),
                Role::Wanted(_) | Role::Cancelled(_) | Role::Neutral
            ) {
                c.wants = None;
            }
            c.pending.push(e.clone());
            ControlFlow::Continue(())
        })?;
    let (mut guest, ledger) = match walked {
        Walked::Faulted(e) => return Ok(failed(0, e)),
        Walked::Stopped(report) => return Ok(report),
        Walked::Ended { guest, ledger } => (guest, ledger),
    };
    // At the end, too, everything it wants must be in the log.
    let next = ledger.next_seq;
    match unrecorded(&mut c, &mut guest, &ledger.keys) {
        Ok(None) => Ok(ReplayReport {
            events: next,
            difference: None,
        }),
        Ok(Some(w)) => Ok(ReplayReport {
            events: next,
            difference: Some(Difference {
                seq: next,
                log: "the log ends".into(),
                guest: format!("wants {w}"),
            }),
        }),
        Err(why) => Ok(failed(next, why)),
    }
}
